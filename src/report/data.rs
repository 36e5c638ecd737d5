//! What a chart needs from a run, built from a fresh [`RunResult`] or read back from a run
//! directory (`rounds.csv`, `events.jsonl`, `summary.json`), so `fedsim plot` redraws exactly
//! what `fedsim run` drew.

use std::io::BufRead;
use std::path::Path;

use serde_json::Value;

use super::ReportError;
use crate::fed_learn::EventType;
use crate::sim::{
    CrossSiteMatrix, EventName, EventRecord, Reason, RoundStats, RunResult, SimEvent,
};

/// The header of `rounds.csv`.
pub const ROUNDS_HEADER: &str = "round,t_us,selected,contributed,rejected,aggregated,train_loss,test_loss,test_accuracy,bytes_up,bytes_down";

/// A kind of event worth a marker on the charts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum MarkerKind {
    /// A client dropped out.
    Dropout,
    /// A client quit.
    Quit,
    /// A client joined.
    Join,
    /// A contribution was rejected as late.
    Late,
}

impl MarkerKind {
    /// The legend label.
    pub fn label(self) -> &'static str {
        match self {
            MarkerKind::Dropout => "dropout",
            MarkerKind::Quit => "quit",
            MarkerKind::Join => "join",
            MarkerKind::Late => "late rejection",
        }
    }

    /// The marker kind of a log line's event name and reason, if any.
    pub fn of(event: &str, reason: Option<&str>) -> Option<MarkerKind> {
        let late = Reason::Late.as_str();
        match (EventName::parse(event)?, reason) {
            (EventName::Sim(SimEvent::DropoutStart), _) => Some(MarkerKind::Dropout),
            (EventName::Protocol(EventType::ClientQuit), _) => Some(MarkerKind::Quit),
            (EventName::Sim(SimEvent::ClientJoin), _) => Some(MarkerKind::Join),
            (EventName::Sim(SimEvent::ContributionRejected), Some(r)) if r == late => {
                Some(MarkerKind::Late)
            }
            _ => None,
        }
    }
}

/// A run, as the charts see it.
#[derive(Debug, Clone)]
pub struct RunData {
    /// The scenario name (the label in comparisons).
    pub name: String,
    /// One row per aggregated round.
    pub rounds: Vec<RoundStats>,
    /// Marker events: when, what.
    pub markers: Vec<(u64, MarkerKind)>,
    /// Cross-site validation's matrix, if it ran.
    pub cross_site: Option<CrossSiteMatrix>,
}

impl RunData {
    /// From a run that kept its events.
    pub fn from_result(r: &RunResult) -> RunData {
        let markers = markers(r.events.iter());
        RunData {
            name: r.name.clone(),
            rounds: r.rounds.clone(),
            markers,
            cross_site: r.cross_site.clone(),
        }
    }

    /// From a run directory.
    pub fn read(dir: &Path) -> Result<RunData, ReportError> {
        let summary: Value = read_json(&dir.join("summary.json"))?;
        let name = summary["scenario"].as_str().unwrap_or("run").to_string();
        let rounds = read_rounds(&dir.join("rounds.csv"))?;
        let cross_site = summary.get("cross_site").and_then(matrix_from_json);
        let (markers, lines) = read_markers(&dir.join("events.jsonl"))?;
        same_run(dir, &summary, rounds.len(), lines)?;
        Ok(RunData {
            name,
            rounds,
            markers,
            cross_site,
        })
    }
}

fn markers<'a>(events: impl Iterator<Item = &'a EventRecord>) -> Vec<(u64, MarkerKind)> {
    events
        .filter_map(|e| {
            MarkerKind::of(e.event.as_str(), e.detail_str("reason")).map(|k| (e.t_us, k))
        })
        .collect()
}

fn read_json(path: &Path) -> Result<Value, ReportError> {
    let text = super::input::read_text(path, super::input::MAX_TABLE_BYTES)?;
    serde_json::from_str(&text).map_err(|e| ReportError::invalid(path, e.to_string()))
}

/// Checks that a directory's files come from one run: `summary.json`'s counts of rounds and
/// events must be those of `rounds.csv` and `events.jsonl`. A run interrupted while writing
/// its files, or files of two runs side by side, fail it.
fn same_run(dir: &Path, summary: &Value, rounds: usize, events: u64) -> Result<(), ReportError> {
    let counted: u64 = summary["event_counts"]
        .as_object()
        .map_or(0, |m| m.values().filter_map(Value::as_u64).sum());
    let rounds_said = summary["rounds_completed"].as_u64();
    if rounds_said != Some(rounds as u64) || counted != events {
        let said = rounds_said.map_or("no".into(), |r| r.to_string());
        return Err(ReportError::invalid(
            dir,
            format!(
                "its files are not of one run (summary.json says {said} rounds and {counted} \
                 events; rounds.csv has {rounds} rounds and events.jsonl {events} events); run \
                 it again"
            ),
        ));
    }
    Ok(())
}

fn read_markers(path: &Path) -> Result<(Vec<(u64, MarkerKind)>, u64), ReportError> {
    let f = super::input::open(path, super::input::MAX_LOG_BYTES)?;
    let mut out = Vec::new();
    let mut lines = 0;
    for (i, line) in std::io::BufReader::new(f).lines().enumerate() {
        lines += 1;
        let line = line.map_err(|e| ReportError::io(path, e))?;
        let v: Value = serde_json::from_str(&line)
            .map_err(|e| ReportError::invalid(path, format!("line {}: {e}", i + 1)))?;
        let (Some(event), Some(t)) = (v["event"].as_str(), v["t_us"].as_u64()) else {
            continue;
        };
        if let Some(k) = MarkerKind::of(event, v["detail"]["reason"].as_str()) {
            out.push((t, k));
        }
    }
    Ok((out, lines))
}

/// `rounds.csv`'s text.
pub fn rounds_csv(rounds: &[RoundStats]) -> String {
    let mut s = String::from(ROUNDS_HEADER);
    s.push('\n');
    for r in rounds {
        s.push_str(&format!(
            "{},{},{},{},{},{},{},{},{},{},{}\n",
            r.round,
            r.t_us,
            r.selected,
            r.contributed,
            r.rejected,
            r.aggregated,
            num(r.train_loss),
            num(r.test_loss),
            num(r.test_accuracy),
            r.bytes_up,
            r.bytes_down
        ));
    }
    s
}

/// A float for CSV: shortest round-trip form, empty for NaN.
fn num(v: f64) -> String {
    if v.is_finite() {
        format!("{v}")
    } else {
        String::new()
    }
}

fn read_rounds(path: &Path) -> Result<Vec<RoundStats>, ReportError> {
    let text = super::input::read_text(path, super::input::MAX_TABLE_BYTES)?;
    let mut lines = text.lines();
    if lines.next() != Some(ROUNDS_HEADER) {
        let reason = format!("expected the header `{ROUNDS_HEADER}`");
        return Err(ReportError::invalid(path, reason));
    }
    lines
        .enumerate()
        .map(|(i, l)| {
            let c: Vec<&str> = l.split(',').collect();
            let bad = || {
                let reason = format!("line {}: expected 11 columns of numbers", i + 2);
                ReportError::invalid(path, reason)
            };
            if c.len() != 11 {
                return Err(bad());
            }
            let u = |k: usize| c[k].parse::<u64>().map_err(|_| bad());
            let f = |k: usize| {
                if c[k].is_empty() {
                    Ok(f64::NAN)
                } else {
                    c[k].parse::<f64>().map_err(|_| bad())
                }
            };
            Ok(RoundStats {
                round: u(0)? as u32,
                t_us: u(1)?,
                selected: u(2)? as usize,
                contributed: u(3)? as usize,
                rejected: u(4)? as usize,
                aggregated: u(5)? as usize,
                train_loss: f(6)?,
                test_loss: f(7)?,
                test_accuracy: f(8)?,
                timed_out: false,
                bytes_up: u(9)?,
                bytes_down: u(10)?,
            })
        })
        .collect()
}

/// The matrix as JSON, for summary.json.
pub fn matrix_to_json(m: &CrossSiteMatrix) -> Value {
    serde_json::json!({"models": m.models, "clients": m.clients, "accuracy": m.accuracy})
}

fn matrix_from_json(v: &Value) -> Option<CrossSiteMatrix> {
    let strings = |k: &str| {
        v[k].as_array().map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(String::from))
                .collect::<Vec<_>>()
        })
    };
    let accuracy = v["accuracy"]
        .as_array()?
        .iter()
        .map(|row| {
            row.as_array()
                .map(|r| r.iter().map(Value::as_f64).collect())
        })
        .collect::<Option<Vec<Vec<Option<f64>>>>>()?;
    Some(CrossSiteMatrix {
        models: strings("models")?,
        clients: strings("clients")?,
        accuracy,
    })
}
