//! FedScale-style availability traces: CSV rows `client,active_from,active_until`, each a window
//! in which that client is online. Times are durations (`90s`, `5m`) or plain seconds.

use std::collections::BTreeMap;
use std::path::Path;

use super::error::ScenarioError;
use super::units::{Time, Unit};
use crate::sim::Micros;

/// Each traced client's online windows, sorted.
pub(crate) type Windows = BTreeMap<u32, Vec<(Micros, Micros)>>;

/// Reads and checks a trace file.
pub(crate) fn read(path: &Path) -> Result<Windows, Vec<ScenarioError>> {
    let err = |line: usize, column: usize, message: String| ScenarioError {
        file: path.to_path_buf(),
        line,
        column,
        message,
        hint: None,
    };
    let text = std::fs::read_to_string(path)
        .map_err(|e| vec![err(1, 1, format!("cannot read the trace: {e}"))])?;
    // A byte-order mark, as spreadsheets write one, is not part of the header.
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    let mut windows = Windows::new();
    let mut errors = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line_no = i + 1;
        let l = line.trim();
        if l.is_empty() || l.starts_with('#') || (i == 0 && l.starts_with("client")) {
            continue;
        }
        let cells: Vec<&str> = l.split(',').map(str::trim).collect();
        if cells.len() != 3 {
            errors.push(err(
                line_no,
                1,
                format!(
                    "expected 3 columns `client,active_from,active_until`, found {}",
                    cells.len()
                ),
            ));
            continue;
        }
        let col = |k: usize| line.split(',').take(k).map(|c| c.len() + 1).sum::<usize>() + 1;
        let cell = cells[0].trim();
        let client = match crate::sim::client_id(cell).or_else(|| cell.parse().ok()) {
            Some(c) => c,
            None => {
                errors.push(err(
                    line_no,
                    col(0),
                    format!("expected a client id, found `{}`", cells[0]),
                ));
                continue;
            }
        };
        let time = |k: usize| -> Result<Micros, ScenarioError> {
            let v = cells[k];
            let us = match v.parse::<f64>() {
                Ok(secs) if secs >= 0.0 => Ok(secs * 1e6),
                _ => Time::parse(v),
            };
            let us = us
                .and_then(Time::check)
                .map_err(|m| err(line_no, col(k), m))?;
            Ok(us.round() as Micros)
        };
        match (time(1), time(2)) {
            (Ok(from), Ok(until)) if from < until => {
                windows.entry(client).or_default().push((from, until))
            }
            (Ok(_), Ok(_)) => errors.push(err(
                line_no,
                col(1),
                "active_from must be before active_until".into(),
            )),
            (Err(e), _) | (_, Err(e)) => errors.push(e),
        }
    }
    for w in windows.values_mut() {
        w.sort();
    }
    if errors.is_empty() {
        Ok(windows)
    } else {
        Err(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trace_with_a_byte_order_mark_and_named_clients_reads() {
        let path = std::env::temp_dir().join(format!("fedsim-trace-{}.csv", std::process::id()));
        std::fs::write(
            &path,
            "\u{feff}client,active_from,active_until\nclient-0002,0,10\n3,1m,2m\n",
        )
        .unwrap();
        let w = read(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(w[&2], [(0, 10_000_000)]);
        assert_eq!(w[&3], [(60_000_000, 120_000_000)]);
    }
}
