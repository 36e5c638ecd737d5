//! What a scenario file may be at most, checked before the YAML parser sees it: a parser's
//! time can grow faster than the input (deeply nested flow collections took serde_norway
//! quadratic time), so the limits are enforced on the bytes first.

/// The largest scenario file, in bytes.
pub const MAX_BYTES: u64 = 16 * 1024 * 1024;

/// The deepest nesting of mappings and lists, block or flow.
pub const MAX_DEPTH: usize = 64;

/// The most values (list items, mapping entries, flow collections) a scenario file may
/// hold: the YAML parser keeps every one as an event of its own, about a hundred bytes each.
pub const MAX_VALUES: usize = 2_000_000;

/// The most aliases (`*name`) a scenario file may use: each one is expanded in full, so a
/// few thousand aliases of a large anchor make gigabytes out of a small file.
pub const MAX_ALIASES: usize = 1_000;

/// A limit the text goes past.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Excess {
    /// Nested deeper than [`MAX_DEPTH`].
    Depth,
    /// More than [`MAX_VALUES`] values.
    Values,
    /// More than [`MAX_ALIASES`] aliases.
    Aliases,
}

impl Excess {
    /// What the error says.
    pub(crate) fn message(self) -> String {
        match self {
            Excess::Depth => {
                format!("nested more than {MAX_DEPTH} levels deep; scenarios are limited to that")
            }
            Excess::Values => {
                format!("more than {MAX_VALUES} values; scenarios are limited to that")
            }
            Excess::Aliases => {
                format!("more than {MAX_ALIASES} aliases (`*name`); scenarios are limited to that")
            }
        }
    }
}

/// Where the text first nests deeper than [`MAX_DEPTH`]: its 1-based line and column.
#[cfg(test)]
pub(crate) fn too_deep(text: &str) -> Option<(usize, usize)> {
    excess(text)
        .filter(|e| e.2 == Excess::Depth)
        .map(|(l, c, _)| (l, c))
}

/// Where the text first goes past one of the limits above, and which: checked on the bytes,
/// before the parser spends time and memory on them.
pub(crate) fn excess(text: &str) -> Option<(usize, usize, Excess)> {
    let mut indents: Vec<usize> = Vec::new();
    let mut flow = 0usize;
    let (mut values, mut aliases) = (0usize, 0usize);
    for (n, line) in text.lines().enumerate() {
        let body = line.trim_start_matches(' ');
        if body.is_empty() || body.starts_with('#') {
            continue;
        }
        values += 1;
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
                return Some((n + 1, line.len() - body.len() + 1, Excess::Depth));
            }
        }
        let mut quote: Option<char> = None;
        // Whether the previous character ends a token (so a quote here starts a quoted scalar
        // rather than sitting inside a plain one, `a'b`), and whether it is a space (so `#`
        // here starts a comment).
        let (mut boundary, mut spaced) = (true, true);
        let mut chars = body.char_indices().peekable();
        while let Some((col, ch)) = chars.next() {
            match (quote, ch) {
                // `\"` inside double quotes, `''` inside single ones: an escaped quote.
                (Some('"'), '\\') => {
                    chars.next();
                }
                (Some('\''), '\'') if chars.peek().is_some_and(|&(_, c)| c == '\'') => {
                    chars.next();
                }
                (Some(q), c) if c == q => quote = None,
                (Some(_), _) => {}
                (None, '"' | '\'') if boundary => quote = Some(ch),
                (None, '#') if spaced => break,
                (None, '[' | '{') => {
                    flow += 1;
                    values += 1;
                    if indents.len() + flow > MAX_DEPTH {
                        return Some((n + 1, line.len() - body.len() + col + 1, Excess::Depth));
                    }
                }
                (None, ']' | '}') => flow = flow.saturating_sub(1),
                (None, ',') => values += 1,
                (None, '*') if boundary => aliases += 1,
                _ => {}
            }
            let at = (n + 1, line.len() - body.len() + col + 1);
            if values > MAX_VALUES {
                return Some((at.0, at.1, Excess::Values));
            }
            if aliases > MAX_ALIASES {
                return Some((at.0, at.1, Excess::Aliases));
            }
            spaced = ch.is_whitespace();
            boundary = spaced || matches!(ch, '[' | '{' | ',' | ':' | '-' | '?');
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
            // The key plain, or in quotes: `seed`, `"seed"`, `'seed'`.
            let quote = line[..i]
                .chars()
                .next_back()
                .filter(|&q| (q == '"' || q == '\'') && line[search..].starts_with(q));
            let (i, end) = match quote {
                Some(q) => (i - q.len_utf8(), search + q.len_utf8()),
                None => (i, search),
            };
            let before = line[..i].trim_end();
            let starts = before.is_empty() || before.ends_with(['{', ',', '-', '?']);
            let is_key = line[end..].trim_start().starts_with(':');
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
        // Quoted keys are keys too.
        let quoted = "\"seed\": 1\nname: t\nseed: 2\n";
        assert_eq!(second_key(quoted, (1, 1), "seed"), Some((3, 1)));
        assert_eq!(second_key("a: 1\n'a': 2\n", (1, 1), "a"), Some((2, 1)));
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
        // A quote or `#` inside a plain scalar starts nothing: the brackets after it count.
        for mark in ["'", "\"", "#"] {
            let hidden = format!("name: [a{mark}b, {}{}]", "[".repeat(100), "]".repeat(100));
            assert!(too_deep(&hidden).is_some(), "{mark}");
        }
        assert_eq!(too_deep("a: ['it''s [', \"say \\\" [\"]"), None);
        let many = format!("a: [{}]", "1,".repeat(MAX_VALUES));
        assert_eq!(excess(&many).map(|e| e.2), Some(Excess::Values));
        let bomb = format!("a: [&x [1, 2], {}]", "*x, ".repeat(MAX_ALIASES + 1));
        assert_eq!(excess(&bomb).map(|e| e.2), Some(Excess::Aliases));
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
