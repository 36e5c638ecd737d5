//! What a run leaves behind (DESIGN.md §5): `events.jsonl` (streamed during the run),
//! `rounds.csv`, `summary.json`, `model.pb`, and the charts, each written whole.
//!
//! - [`atomic`]: temporary-file-then-rename writing.
//! - [`data`]: a run as the charts see it, from a result or from a run directory.
//! - [`chart`]: convergence charts, the cross-site heatmap, comparisons.
//! - [`golden`]: event logs checked against recorded golden traces.
//! - [`input`]: reading files back, regular and of bounded size only.
//! - [`progress`]: the live progress bar.

pub mod atomic;
pub mod chart;
pub mod data;
mod error;
pub mod golden;
pub mod input;
pub mod progress;

pub use error::ReportError;

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::json;

use crate::sim::RunResult;
use data::RunData;

/// The contents of `summary.json`.
pub fn summary(r: &RunResult) -> serde_json::Value {
    let counts: BTreeMap<&str, u64> = r
        .event_counts
        .iter()
        .map(|(k, v)| (k.as_str(), *v))
        .collect();
    let mut s = json!({
        "scenario": r.name,
        "seed": r.seed,
        "rounds_completed": r.rounds.len(),
        "completed": r.completed,
        "final": {
            "test_accuracy": finite(r.metrics.accuracy),
            "test_loss": finite(r.metrics.loss),
        },
        "virtual_time_us": r.virtual_us,
        "event_counts": counts,
        "wall_s": r.wall_s,
        "client_updates": r.client_updates,
        "updates_per_s": r.updates_per_s(),
    });
    if let Some(m) = &r.cross_site {
        s["cross_site"] = data::matrix_to_json(m);
    }
    if let Some(e) = &r.error {
        s["error"] = json!(e);
    }
    if r.interrupted {
        s["interrupted"] = json!(true);
    }
    s
}

fn finite(v: f64) -> serde_json::Value {
    if v.is_finite() {
        json!(v)
    } else {
        serde_json::Value::Null
    }
}

/// The files a run writes into its directory.
pub const RUN_FILES: [&str; 8] = [
    "events.jsonl",
    "rounds.csv",
    "summary.json",
    "model.pb",
    "convergence.png",
    "convergence.svg",
    "cross_site.png",
    "cross_site.svg",
];

/// Removes a previous run's files from `dir` (only regular files: anything else under one of
/// those names is an error, not something to delete), so that the directory never holds
/// files of two runs.
pub fn clear_run(dir: &Path) -> std::io::Result<()> {
    for name in RUN_FILES {
        let path = dir.join(name);
        atomic::replaceable(&path)?;
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(atomic::at(&path, e)),
            _ => {}
        }
    }
    Ok(())
}

/// Writes every file except `events.jsonl` (streamed by the caller) into `dir`.
pub fn write_run(dir: &Path, r: &RunResult) -> Result<(), ReportError> {
    std::fs::create_dir_all(dir).map_err(|e| ReportError::io(dir, e))?;
    let write = |name: &str, bytes: &[u8]| {
        let path = dir.join(name);
        atomic::write(&path, bytes).map_err(ReportError::Write)
    };
    write("rounds.csv", data::rounds_csv(&r.rounds).as_bytes())?;
    let summary = serde_json::to_string_pretty(&summary(r)).expect("a JSON value prints") + "\n";
    write("summary.json", summary.as_bytes())?;
    write("model.pb", &r.model_bytes())?;
    chart::write_charts(dir, &RunData::from_result(r))
}
