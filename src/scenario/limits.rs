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

/// Where `key` appears as a mapping key for the second time after `from` (1-based line and
/// column), at the same indentation as its first appearance: a duplicate key, which serde
/// reports at the start of its mapping.
pub(crate) fn second_key(text: &str, from: (usize, usize), key: &str) -> Option<(usize, usize)> {
    if key.is_empty() {
        return None;
    }
    let mut first: Option<usize> = None;
    for (n, line) in text.lines().enumerate().skip(from.0.saturating_sub(1)) {
        let mut search = 0;
        while let Some(i) = line[search..].find(key).map(|i| i + search) {
            search = i + key.len();
            let before = line[..i].trim_end();
            let starts = before.is_empty() || before.ends_with(['{', ',', '-']);
            let is_key = line[i + key.len()..].trim_start().starts_with(':');
            if !(starts && is_key) || (n + 1 == from.0 && i + 1 < from.1) {
                continue;
            }
            match first {
                None => first = Some(i),
                Some(col) if col == i || before.ends_with([',', '{']) => {
                    return Some((n + 1, i + 1))
                }
                Some(_) => {}
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_second_of_two_keys_is_found() {
        let text = "name: t\nserver: { rounds: 3 }\nclients: 4\nserver: { rounds: 4 }\n";
        assert_eq!(second_key(text, (1, 1), "server"), Some((4, 1)));
        let flow = "a: { b: 1, c: 2, b: 3 }\n";
        assert_eq!(second_key(flow, (1, 4), "b"), Some((1, 18)));
        assert_eq!(second_key("a: 1\nb: 2\n", (1, 1), "a"), None);
        // An empty key (the fuzzer's find: it looped for ever) is not searched for.
        assert_eq!(second_key("a: 1\n", (1, 1), ""), None);
    }

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
