//! Scenario errors: each names the file, line and column, says what was expected, and where it
//! can, suggests the word that was probably meant.

use std::fmt;
use std::path::PathBuf;

/// One problem in a scenario file.
#[derive(Debug, Clone, PartialEq)]
pub struct ScenarioError {
    /// The file.
    pub file: PathBuf,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// What is wrong and what was expected.
    pub message: String,
    /// A suggestion, such as "did you mean `dropout`?".
    pub hint: Option<String>,
}

impl fmt::Display for ScenarioError {
    /// One line: control characters in the path or the message (a newline in a file name, a
    /// NUL in a bad value) are written escaped.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let file = self.file.display().to_string();
        write!(f, "{}:{}:{}: ", Escaped(&file), self.line, self.column)?;
        write!(f, "{}", Escaped(&self.message))?;
        if let Some(h) = &self.hint {
            write!(f, " ({})", Escaped(h))?;
        }
        Ok(())
    }
}

/// Text with its control characters escaped (`\n`, `\u{0}`).
struct Escaped<'a>(&'a str);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in self.0.chars() {
            if c.is_control() {
                write!(f, "{}", c.escape_default())?;
            } else {
                write!(f, "{c}")?;
            }
        }
        Ok(())
    }
}

/// Every problem found in a scenario file, in file order.
#[derive(Debug, Clone, PartialEq)]
pub struct ScenarioErrors(pub Vec<ScenarioError>);

impl fmt::Display for ScenarioErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "error: {e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ScenarioErrors {}

/// Suggests the candidate closest to `word`, if it is close enough to be a typo.
pub(crate) fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<String> {
    candidates
        .into_iter()
        .map(|c| (edit_distance(word, c), c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 3))
        .min()
        .map(|(_, c)| format!("did you mean `{c}`?"))
}

/// The hint for a serde "unknown field/variant `x`, expected one of `a`, `b`" message.
pub(crate) fn hint_for(message: &str) -> Option<String> {
    let rest = message
        .split("unknown field `")
        .nth(1)
        .or_else(|| message.split("unknown variant `").nth(1))?;
    let word = rest.split('`').next()?;
    let expected = rest.split_once("expected")?.1;
    let candidates: Vec<&str> = expected.split('`').skip(1).step_by(2).collect();
    did_you_mean(word, candidates)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != *cb))
                .min(prev[j + 1] + 1)
                .min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_is_one_line_whatever_its_path_and_message_hold() {
        let e = ScenarioError {
            file: "odd\nname.yaml".into(),
            line: 3,
            column: 5,
            message: "unknown time unit `m\0`".into(),
            hint: None,
        };
        assert_eq!(
            e.to_string(),
            "odd\\nname.yaml:3:5: unknown time unit `m\\u{0}`"
        );
    }

    #[test]
    fn hints_come_from_serde_messages() {
        let m = "events[0]: unknown field `dropuot`, expected one of `at`, `clients`, `dropout`, `quit`";
        assert_eq!(hint_for(m).as_deref(), Some("did you mean `dropout`?"));
        assert_eq!(hint_for("unknown field `zzzzzzzz`, expected `at`"), None);
        assert_eq!(
            did_you_mean("fedvg", ["fedavg", "fedavgm"]).as_deref(),
            Some("did you mean `fedavg`?")
        );
    }
}
