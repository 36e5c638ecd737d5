//! What a scenario file may be at most, checked before the YAML parser sees it: a parser's
//! time can grow faster than the input (deeply nested flow collections took serde_norway
//! quadratic time), so the limits are enforced on the bytes first.

/// The largest scenario file, in bytes.
pub const MAX_BYTES: u64 = 16 * 1024 * 1024;

/// The deepest nesting of mappings and lists, block or flow.
pub const MAX_DEPTH: usize = 64;

/// Where the text first nests deeper than [`MAX_DEPTH`]: its 1-based line and column.
pub(crate) fn too_deep(text: &str) -> Option<(usize, usize)> {
    let mut indents: Vec<usize> = Vec::new();
    let mut flow = 0usize;
    for (n, line) in text.lines().enumerate() {
        let body = line.trim_start_matches(' ');
        if body.is_empty() || body.starts_with('#') {
            continue;
        }
        if flow == 0 {
            let indent = line.len() - body.len();
            while indents.last().is_some_and(|&i| i > indent) {
                indents.pop();
            }
            if indents.last().is_none_or(|&i| i < indent) {
                indents.push(indent);
            }
            // A list item (`- `) opens a level of its own.
            let items = body.split("- ").take_while(|s| s.is_empty()).count();
            if indents.len() + items > MAX_DEPTH {
                return Some((n + 1, line.len() - body.len() + 1));
            }
        }
        let mut quote: Option<char> = None;
        for (col, ch) in body.char_indices() {
            match (quote, ch) {
                (Some(q), c) if c == q => quote = None,
                (Some(_), _) => {}
                (None, '"' | '\'') => quote = Some(ch),
                (None, '#') => break,
                (None, '[' | '{') => {
                    flow += 1;
                    if indents.len() + flow > MAX_DEPTH {
                        return Some((n + 1, line.len() - body.len() + col + 1));
                    }
                }
                (None, ']' | '}') => flow = flow.saturating_sub(1),
                _ => {}
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nesting_past_the_limit_is_found_where_it_starts_and_scenarios_pass() {
        let deep = format!("a: {}{}", "[".repeat(100), "]".repeat(100));
        assert_eq!(too_deep(&deep), Some((1, 3 + MAX_DEPTH)));
        let ok = format!("a: {}{}", "{b: ".repeat(10), "}".repeat(10));
        assert_eq!(too_deep(&ok), None);
        let block: String = (0..80)
            .map(|i| format!("{}k{i}:\n", " ".repeat(i)))
            .collect();
        assert_eq!(too_deep(&block).map(|(l, _)| l), Some(MAX_DEPTH + 1));
        // Brackets in strings and comments do not count.
        assert_eq!(
            too_deep(&format!("a: \"{}\" # {}", "[".repeat(99), "{".repeat(99))),
            None
        );
        for f in std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/scenarios")).unwrap() {
            let text = std::fs::read_to_string(f.unwrap().path()).unwrap();
            assert_eq!(too_deep(&text), None);
        }
    }
}
