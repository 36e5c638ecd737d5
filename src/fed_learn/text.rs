//! `Text`: an immutable UTF-8 string in shared bytes, for the admin `Message`'s string fields.
//!
//! Why: every hop decodes a `Message`, whose id, topic, body type and headers were seven
//! `String`s, seven allocations per message and as many frees, the largest share of the
//! simulator's allocations. A `Text` decoded from a frame is a checked slice of the frame's own
//! buffer, and a constant (a topic, a header name) is a static slice: neither allocates.

use std::borrow::Borrow;
use std::fmt;
use std::ops::Deref;

use bytes::Bytes;

/// An immutable UTF-8 string sharing a [`Bytes`] buffer. It reads as a `&str` (through
/// `Deref`), compares, orders and hashes as one, and looks one up in maps keyed by `Text`.
/// (Byte order is `str` order, so the derived comparisons agree with `str`'s; the hash is
/// `str`'s own, as `Borrow<str>` requires.)
#[derive(Clone, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Text(Bytes);

impl std::hash::Hash for Text {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl Text {
    /// A `Text` of a string constant, without copying it.
    pub const fn from_static(s: &'static str) -> Self {
        Text(Bytes::from_static(s.as_bytes()))
    }

    /// The bytes as a `Text` if they are UTF-8.
    pub fn from_utf8(bytes: Bytes) -> Result<Self, std::str::Utf8Error> {
        std::str::from_utf8(&bytes)?;
        Ok(Text(bytes))
    }

    /// The string.
    pub fn as_str(&self) -> &str {
        // SAFETY: every constructor checks or guarantees UTF-8, and the bytes never change.
        unsafe { std::str::from_utf8_unchecked(&self.0) }
    }

    /// The underlying bytes (what goes on the wire).
    pub fn as_bytes(&self) -> &Bytes {
        &self.0
    }
}

impl Deref for Text {
    type Target = str;

    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl Borrow<str> for Text {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl From<&'static str> for Text {
    fn from(s: &'static str) -> Self {
        Text::from_static(s)
    }
}

impl From<String> for Text {
    fn from(s: String) -> Self {
        Text(Bytes::from(s.into_bytes()))
    }
}

impl From<&Text> for Text {
    fn from(t: &Text) -> Self {
        t.clone()
    }
}

impl PartialEq<str> for Text {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Text {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl fmt::Debug for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn reads_orders_and_looks_up_like_a_str() {
        let a = Text::from_static("_refMsgId");
        let b = Text::from(String::from("_rtnCode"));
        assert_eq!(a, "_refMsgId");
        assert_eq!(a.len(), 9);
        assert!(a < b && "_refMsgId" < "_rtnCode");
        let map: BTreeMap<Text, Text> = [(b.clone(), a.clone())].into_iter().collect();
        assert_eq!(map.get("_rtnCode"), Some(&a));
        let set: std::collections::HashSet<Text> = [a.clone()].into_iter().collect();
        assert!(set.contains("_refMsgId"));
        assert_eq!(format!("{a} {b:?}"), "_refMsgId \"_rtnCode\"");
        assert!(Text::from_utf8(Bytes::from_static(&[0xff, 0xfe])).is_err());
        assert_eq!(Text::default(), "");
    }
}
