//! Golden traces: a run's event log checked line by line against a recorded one, so that any
//! change in protocol behaviour shows up as the first event where the two part ways.

use std::fmt;

use serde_json::Value;

/// Where two event logs first differ, with context.
#[derive(Debug, Clone, PartialEq)]
pub struct Divergence {
    /// 0-based line index of the first difference.
    pub line: usize,
    /// Lines both logs share just before it.
    pub before: Vec<String>,
    /// The golden log from the difference on (a few lines).
    pub expected: Vec<String>,
    /// The run's log from the difference on (a few lines).
    pub actual: Vec<String>,
}

impl fmt::Display for Divergence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "the event log departs from the golden trace at line {}:",
            self.line + 1
        )?;
        for l in &self.before {
            writeln!(f, "    {l}")?;
        }
        writeln!(f, "  golden:")?;
        if self.expected.is_empty() {
            writeln!(f, "  - (end of the golden trace)")?;
        }
        for l in &self.expected {
            writeln!(f, "  - {l}")?;
        }
        writeln!(f, "  this run:")?;
        if self.actual.is_empty() {
            writeln!(f, "  + (end of this run's log)")?;
        }
        for l in &self.actual {
            writeln!(f, "  + {l}")?;
        }
        Ok(())
    }
}

/// How many lines of context to show on each side.
const CONTEXT: usize = 3;

/// Compares two logs, ignoring the named `detail` keys. Nothing else is ignored.
pub fn compare(golden: &str, actual: &str, ignore_detail: &[String]) -> Result<(), Divergence> {
    let g: Vec<&str> = golden.lines().collect();
    let a: Vec<&str> = actual.lines().collect();
    let same = |x: &str, y: &str| {
        x == y
            || (!ignore_detail.is_empty()
                && normalise(x, ignore_detail) == normalise(y, ignore_detail))
    };
    let first = (0..g.len().max(a.len())).find(|&i| match (g.get(i), a.get(i)) {
        (Some(x), Some(y)) => !same(x, y),
        _ => true,
    });
    let Some(i) = first else { return Ok(()) };
    let take = |v: &[&str]| {
        v.iter()
            .skip(i)
            .take(CONTEXT + 1)
            .map(|s| s.to_string())
            .collect()
    };
    Err(Divergence {
        line: i,
        before: a[i.saturating_sub(CONTEXT)..i.min(a.len())]
            .iter()
            .map(|s| s.to_string())
            .collect(),
        expected: take(&g),
        actual: take(&a),
    })
}

/// Checks that `text` is an event log: at least one line, each a JSON object with an `event`.
/// A golden trace that is not one is a bad file, not a run that departed from it.
pub fn check_trace(text: &str) -> Result<(), String> {
    if text.trim().is_empty() {
        return Err("empty: expected an event log, one JSON object per line".into());
    }
    for (i, line) in text.lines().enumerate() {
        let v: Value = serde_json::from_str(line)
            .map_err(|e| format!("line {}: not an event log line: {e}", i + 1))?;
        if v.get("event").and_then(Value::as_str).is_none() {
            return Err(format!("line {}: not an event log line: no `event`", i + 1));
        }
    }
    Ok(())
}

/// The line as JSON with the ignored detail keys removed (unparsable lines stay as text).
fn normalise(line: &str, ignore: &[String]) -> Value {
    match serde_json::from_str::<Value>(line) {
        Ok(mut v) => {
            if let Some(d) = v.get_mut("detail").and_then(Value::as_object_mut) {
                for k in ignore {
                    d.remove(k);
                }
            }
            v
        }
        Err(_) => Value::String(line.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "{\"seq\":0,\"detail\":{\"bytes\":10}}\n{\"seq\":1,\"detail\":{}}\n";

    #[test]
    fn identical_logs_match_and_differences_are_located() {
        assert_eq!(compare(A, A, &[]), Ok(()));
        let b = A.replace("\"bytes\":10", "\"bytes\":11");
        let d = compare(A, &b, &[]).unwrap_err();
        assert_eq!(d.line, 0);
        assert!(d.to_string().contains("line 1"));
        assert_eq!(compare(A, &b, &["bytes".to_string()]), Ok(()));
        let short = compare(A, "{\"seq\":0,\"detail\":{\"bytes\":10}}\n", &[]).unwrap_err();
        assert_eq!(short.line, 1);
        assert!(short.to_string().contains("end of this run's log"));
    }
}
