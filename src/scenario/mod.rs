//! Scenario files: the YAML format researchers write, loaded strictly (unknown keys are errors,
//! every error has a file, line and column) and compiled into the engine's [`SimConfig`].
//!
//! - `schema`: the format as serde types, and through schemars its JSON Schema.
//! - `units`: durations, bandwidths and distributions of them.
//! - `compile`: the semantic pass and compilation into a `SimConfig`.
//! - `locate`: positions of key paths, for errors found after parsing.
//! - `trace`: availability traces (CSV).
//! - [`limits`]: how large and how deep a file may be.
//! - [`estimate`]: how much memory a run will need.
//! - [`error`]: positioned errors with hints.
//! - [`expect`]: the `expect:` block, validated at load and checked against a finished run.

pub mod error;
pub mod estimate;
pub mod expect;
pub mod faults;
pub mod limits;
pub mod schema;
pub mod units;

mod compile;
mod locate;
mod trace;

use std::path::{Path, PathBuf};

pub use compile::{MAX_CLIENTS, MAX_ROUNDS};
pub use error::{ScenarioError, ScenarioErrors};
pub use schema::{Bound, ClientRef, ExpectSpec, FinalSpec, ScenarioFile};

use crate::sim::SimConfig;

/// A loaded, checked scenario.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// Where it came from (or a label for text not from a file).
    pub path: PathBuf,
    /// The file as written.
    pub file: ScenarioFile,
    /// What the engine runs.
    pub config: SimConfig,
    /// The file's text, for positioning errors found after loading.
    text: String,
}

impl Scenario {
    /// Loads and checks a scenario file.
    pub fn load(path: impl AsRef<Path>) -> Result<Scenario, ScenarioErrors> {
        let path = path.as_ref();
        let fail = |message: String| {
            ScenarioErrors(vec![ScenarioError {
                file: path.to_path_buf(),
                line: 1,
                column: 1,
                message,
                hint: None,
            }])
        };
        let meta =
            std::fs::metadata(path).map_err(|e| fail(format!("cannot read the scenario: {e}")))?;
        if !meta.is_file() {
            return Err(fail(
                "expected a scenario file, found a directory or a device".into(),
            ));
        }
        if meta.len() > limits::MAX_BYTES {
            return Err(fail(too_big(meta.len())));
        }
        let bytes =
            std::fs::read(path).map_err(|e| fail(format!("cannot read the scenario: {e}")))?;
        Scenario::from_bytes(&bytes, path)
    }

    /// Checks scenario text; `path` names it in errors and anchors relative trace paths.
    pub fn from_str(text: &str, path: impl AsRef<Path>) -> Result<Scenario, ScenarioErrors> {
        Scenario::from_bytes(text.as_bytes(), path.as_ref())
    }

    /// Checks scenario bytes, which may be anything: binary, truncated or empty input gives a
    /// positioned error, never a panic.
    pub fn from_bytes(bytes: &[u8], path: &Path) -> Result<Scenario, ScenarioErrors> {
        let one = |line, column, message: String, hint| {
            ScenarioErrors(vec![ScenarioError {
                file: path.to_path_buf(),
                line,
                column,
                message,
                hint,
            }])
        };
        if bytes.len() as u64 > limits::MAX_BYTES {
            return Err(one(1, 1, too_big(bytes.len() as u64), None));
        }
        let text = match std::str::from_utf8(bytes) {
            Ok(t) => t,
            Err(e) => {
                let (line, column) = position(bytes, e.valid_up_to());
                return Err(one(
                    line,
                    column,
                    "expected UTF-8 YAML text, found binary data".into(),
                    None,
                ));
            }
        };
        if let Some(i) = text.find('\0') {
            let (line, column) = position(bytes, i);
            return Err(one(
                line,
                column,
                "expected YAML text, found a NUL byte (binary data)".into(),
                None,
            ));
        }
        // A byte-order mark, as some editors write one, is not part of the YAML.
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        if let Some((line, column, excess)) = limits::excess(text) {
            return Err(one(line, column, excess.message(), None));
        }
        if text
            .lines()
            .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'))
        {
            return Err(one(1, 1, "the scenario is empty: expected a mapping with `name`, `task`, `server` and `clients`".into(), None));
        }
        let file: ScenarioFile = serde_yaml::from_str(text).map_err(|e| {
            let (mut line, mut column) = e.location().map_or((1, 1), |l| (l.line(), l.column()));
            // A key quoted in the message may hold line breaks: the error stays one line.
            let message: String = strip_position(&e.to_string())
                .chars()
                .flat_map(|c| {
                    let escaped: Vec<char> = if c.is_control() {
                        c.escape_default().collect()
                    } else {
                        vec![c]
                    };
                    escaped
                })
                .collect();
            // serde points a duplicate key at its mapping; point at the duplicate itself.
            if let Some(key) = duplicate_key(&message) {
                (line, column) =
                    limits::second_key(text, (line, column), key).unwrap_or((line, column));
            }
            let hint = error::hint_for(&message);
            one(line, column, message, hint)
        })?;
        let mut ck = compile::Checker {
            text,
            file: path,
            errors: Vec::new(),
        };
        expect::validate(&file, &mut ck);
        let config = compile::compile(&file, &mut ck);
        match config {
            Some(config) if ck.errors.is_empty() => Ok(Scenario {
                path: path.to_path_buf(),
                file,
                config,
                text: text.to_string(),
            }),
            _ => {
                let mut errors = ck.errors;
                errors.sort_by_key(|e| (e.file.clone(), e.line, e.column));
                Err(ScenarioErrors(errors))
            }
        }
    }
}

impl Scenario {
    /// An error about `key` (a dotted path such as `clients.count`), at its line and column.
    pub fn error_at(&self, key: &str, message: impl Into<String>) -> ScenarioError {
        let mut ck = compile::Checker {
            text: &self.text,
            file: &self.path,
            errors: Vec::new(),
        };
        ck.err(key, message, None);
        ck.errors.remove(0)
    }

    /// Refuses the run if its estimated memory is more than `limit` bytes, naming the key of
    /// the largest part.
    pub fn check_memory(&self, limit: u64) -> Result<estimate::Estimate, ScenarioError> {
        let e = estimate::estimate(&self.config);
        if e.total() <= limit {
            return Ok(e);
        }
        let parts: Vec<String> = e
            .parts
            .iter()
            .map(|p| format!("{} {}", p.what, estimate::human(p.bytes)))
            .collect();
        let message = format!(
            "the run needs an estimated {} ({}), more than the {} it may use; \
             --memory-limit overrides",
            estimate::human(e.total()),
            parts.join(", "),
            estimate::human(limit)
        );
        Err(self.error_at(e.largest().key, message))
    }
}

// Scenario loading for the engine lives here, so that `sim` knows nothing of file formats.
impl crate::sim::Simulation {
    /// A simulation of a scenario written in YAML (the format of `scenarios/`).
    pub fn from_yaml_str(yaml: &str) -> Result<Self, ScenarioErrors> {
        Ok(crate::sim::Simulation::new(
            Scenario::from_str(yaml, "<string>")?.config,
        ))
    }

    /// A simulation of the scenario file at `path`.
    pub fn from_path(path: impl AsRef<Path>) -> Result<Self, ScenarioErrors> {
        Ok(crate::sim::Simulation::new(Scenario::load(path)?.config))
    }
}

/// The JSON Schema of the scenario format.
pub fn json_schema() -> serde_json::Value {
    serde_json::to_value(schemars::schema_for!(ScenarioFile)).expect("a schema is JSON")
}

/// The key a "duplicate field `k`" message names.
fn duplicate_key(message: &str) -> Option<&str> {
    let (_, rest) = message.split_once("duplicate field `")?;
    rest.split('`').next()
}

fn too_big(len: u64) -> String {
    format!(
        "the scenario is {len} bytes; scenario files are limited to {} MiB",
        limits::MAX_BYTES >> 20
    )
}

/// serde_norway puts " at line L column C" into messages; the error prints its own position.
fn strip_position(msg: &str) -> String {
    let Some(i) = msg.find(" at line ") else {
        return msg.to_string();
    };
    let rest = &msg[i + " at line ".len()..];
    let Some(c) = rest.find(" column ") else {
        return msg.to_string();
    };
    let after = &rest[c + " column ".len()..];
    let digits = after
        .find(|ch: char| !ch.is_ascii_digit())
        .unwrap_or(after.len());
    format!("{}{}", &msg[..i], &after[digits..])
}

/// 1-based line and column of byte `offset`.
fn position(bytes: &[u8], offset: usize) -> (usize, usize) {
    let before = &bytes[..offset.min(bytes.len())];
    let line = before.iter().filter(|b| **b == b'\n').count() + 1;
    let column = before.iter().rev().take_while(|b| **b != b'\n').count() + 1;
    (line, column)
}
