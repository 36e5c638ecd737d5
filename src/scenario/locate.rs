//! Finding where a key path (`server.min_num_clients`, `events[2].clients`) sits in a YAML
//! text, so that errors found after parsing still name a line and column.
//!
//! serde_norway attaches positions to errors raised while it deserializes. So the locator
//! walks the document with a deserializer that fails on purpose when it reaches the path, and
//! reads the position off that error: the same parser, so the same idea of lines and columns.
//! The position it reports is the start of the innermost mapping; the text is then searched
//! from there for the key itself.

use std::fmt;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// One step of a key path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Seg {
    /// A mapping key.
    Key(String),
    /// A sequence index.
    Index(usize),
}

/// Line and column (1-based) of `path` in `text`, or of the closest enclosing node found.
pub(crate) fn locate(text: &str, path: &[Seg]) -> (usize, usize) {
    let de = serde_yaml::Deserializer::from_str(text);
    let (line, col) = match Walk(path).deserialize(de) {
        Err(e) => e.location().map_or((1, 1), |l| (l.line(), l.column())),
        Ok(()) => (1, 1),
    };
    match path.last() {
        Some(Seg::Key(k)) => refine(text, line, col, k).unwrap_or((line, col)),
        _ => (line, col),
    }
}

/// The first `key:` at or after (line, col).
fn refine(text: &str, line: usize, col: usize, key: &str) -> Option<(usize, usize)> {
    for (i, l) in text.lines().enumerate().skip(line.saturating_sub(1)) {
        let from = if i + 1 == line {
            col.saturating_sub(1).min(l.len())
        } else {
            0
        };
        let mut search = from;
        while let Some(pos) = l.get(search..).and_then(|s| s.find(key)) {
            let at = search + pos;
            let before_ok = at == 0
                || !l.as_bytes()[at - 1].is_ascii_alphanumeric() && l.as_bytes()[at - 1] != b'_';
            let after = l[at + key.len()..].trim_start();
            if before_ok && after.starts_with(':') {
                return Some((i + 1, at + 1));
            }
            search = at + key.len();
        }
    }
    None
}

const HERE: &str = "fedsim-locate-here";

struct Walk<'a>(&'a [Seg]);

impl<'de> DeserializeSeed<'de> for Walk<'_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        if self.0.is_empty() {
            return Err(de::Error::custom(HERE));
        }
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Walk<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML node")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<(), A::Error> {
        while let Some(k) = m.next_key::<serde_yaml::Value>()? {
            let hit =
                matches!((&self.0[0], k.as_str()), (Seg::Key(want), Some(got)) if want == got);
            if hit {
                m.next_value_seed(Walk(&self.0[1..]))?;
            } else {
                m.next_value::<IgnoredAny>()?;
            }
        }
        Err(de::Error::custom(HERE))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut s: A) -> Result<(), A::Error> {
        let want = match self.0[0] {
            Seg::Index(i) => i,
            Seg::Key(_) => usize::MAX,
        };
        let mut i = 0;
        loop {
            let more = if i == want {
                s.next_element_seed(Walk(&self.0[1..]))?.is_some()
            } else {
                s.next_element::<IgnoredAny>()?.is_some()
            };
            if !more {
                return Err(de::Error::custom(HERE));
            }
            i += 1;
        }
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Err(E::custom(HERE))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Err(E::custom(HERE))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Err(E::custom(HERE))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Err(E::custom(HERE))
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Err(E::custom(HERE))
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Err(E::custom(HERE))
    }
}

/// Builds a path from `"server.min_num_clients"`-style text with `[i]` indices.
pub(crate) fn path(spec: &str) -> Vec<Seg> {
    let mut out = Vec::new();
    for part in spec.split('.') {
        let mut rest = part;
        if let Some(i) = rest.find('[') {
            if i > 0 {
                out.push(Seg::Key(rest[..i].to_string()));
            }
            rest = &rest[i..];
            while let Some(r) = rest.strip_prefix('[') {
                let end = r.find(']').unwrap_or(r.len());
                if let Ok(n) = r[..end].parse() {
                    out.push(Seg::Index(n));
                }
                rest = r.get(end + 1..).unwrap_or("");
            }
        } else if !rest.is_empty() {
            out.push(Seg::Key(rest.to_string()));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "name: x\nserver:\n  rounds: 5\n  min_num_clients: 9\nevents:\n  - { at: {round: 1}, quit: {} }\n  - at: {round: 2}\n    clients: [40]\n";

    #[test]
    fn finds_keys_in_block_and_flow_style() {
        assert_eq!(locate(DOC, &path("server.min_num_clients")), (4, 3));
        assert_eq!(locate(DOC, &path("server.rounds")), (3, 3));
        assert_eq!(locate(DOC, &path("events[1].clients")), (8, 5));
        assert_eq!(locate(DOC, &path("events[0].quit")), (6, 23));
        assert_eq!(
            path("events[2].at.round"),
            vec![
                Seg::Key("events".into()),
                Seg::Index(2),
                Seg::Key("at".into()),
                Seg::Key("round".into())
            ]
        );
    }
}
