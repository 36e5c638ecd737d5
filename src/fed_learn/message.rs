//! Clara's admin `Message`: a topic, a body and string headers, with a reference id that ties
//! a reply to its request. Every hop of fedsim's in-memory network is one of these, encoded as
//! `admin.proto` bytes.

use std::collections::BTreeMap;

use bytes::Bytes;
use prost::encoding::{btree_map, bytes as bytes_field, string};
use prost::Message as _;
use rand::RngCore;
use rand_chacha::ChaCha8Rng;

use super::error::FLCommunicationError;
use super::pb;

/// Header names of Clara's `MsgHeader`.
pub struct MsgHeader;

impl MsgHeader {
    /// The id of the request a reply answers.
    pub const REF_MSG_ID: &'static str = "_refMsgId";
    /// The reply's return code, one of [`ReturnCode`]'s values.
    pub const RETURN_CODE: &'static str = "_rtnCode";
}

/// Return codes of Clara's `ReturnCode`.
pub struct ReturnCode;

impl ReturnCode {
    /// The request succeeded.
    pub const OK: &'static str = "_ok";
    /// The request failed; the body says why.
    pub const ERROR: &'static str = "_error";
}

/// The topic of every reply made by [`ok_reply`] and [`error_reply`].
pub const REPLY_TOPIC: &str = "reply";

/// Makes message ids: UUID-shaped strings drawn from a seeded stream, so that two runs of the
/// same scenario write the same ids. Each actor owns its own generator (no shared RNG).
#[derive(Debug, Clone)]
pub struct MessageIds {
    rng: ChaCha8Rng,
}

impl MessageIds {
    /// A generator over the given seeded stream.
    pub fn new(rng: ChaCha8Rng) -> Self {
        MessageIds { rng }
    }

    /// A fresh id in the 8-4-4-4-12 hex form of a version-4 UUID.
    pub fn next_id(&mut self) -> String {
        let mut b = [0u8; 16];
        self.rng.fill_bytes(&mut b);
        b[6] = (b[6] & 0x0f) | 0x40;
        b[8] = (b[8] & 0x3f) | 0x80;
        let mut s = String::with_capacity(36);
        for (i, byte) in b.iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                s.push('-');
            }
            push_hex(&mut s, *byte);
        }
        s
    }
}

fn push_hex(s: &mut String, byte: u8) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    s.push(HEX[(byte >> 4) as usize] as char);
    s.push(HEX[(byte & 0xf) as usize] as char);
}

/// A message between server and client: Clara's `Message(topic, body)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// A fresh UUID-like id.
    pub id: String,
    /// What the message is for: an RPC name or [`REPLY_TOPIC`].
    pub topic: String,
    /// The protobuf type of `body` (`"fedlearn.ClientLogin"`), or `"str"` for text.
    pub body_type: String,
    /// The payload, usually an encoded federated.proto message.
    pub body: Bytes,
    /// String headers; a `BTreeMap` so that encoding is deterministic.
    pub headers: BTreeMap<String, String>,
}

impl Message {
    /// A message with a fresh id and no headers.
    pub fn new(
        ids: &mut MessageIds,
        topic: impl Into<String>,
        body_type: impl Into<String>,
        body: impl Into<Bytes>,
    ) -> Self {
        Message {
            id: ids.next_id(),
            topic: topic.into(),
            body_type: body_type.into(),
            body: body.into(),
            headers: BTreeMap::new(),
        }
    }

    /// Sets a header, replacing any earlier value.
    pub fn set_header(&mut self, key: impl Into<String>, value: impl Into<String>) {
        self.headers.insert(key.into(), value.into());
    }

    /// A header's value, if set.
    pub fn get_header(&self, key: &str) -> Option<&str> {
        self.headers.get(key).map(String::as_str)
    }

    /// Marks this message as the answer to the message with id `ref_id`.
    pub fn set_ref_id(&mut self, ref_id: impl Into<String>) {
        self.set_header(MsgHeader::REF_MSG_ID, ref_id);
    }

    /// The id of the message this one answers, if any.
    pub fn get_ref_id(&self) -> Option<&str> {
        self.get_header(MsgHeader::REF_MSG_ID)
    }

    /// The return code of a reply, if set.
    pub fn return_code(&self) -> Option<&str> {
        self.get_header(MsgHeader::RETURN_CODE)
    }

    /// The message as `admin.proto` bytes, what crosses the network.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        self.encode_to(&mut out);
        out
    }

    /// The length of [`Message::to_bytes`].
    pub fn encoded_len(&self) -> usize {
        let text = |tag, v: &String| {
            if v.is_empty() {
                0
            } else {
                string::encoded_len(tag, v)
            }
        };
        let body = if self.body.is_empty() {
            0
        } else {
            bytes_field::encoded_len(4, &self.body)
        };
        text(1, &self.id)
            + text(2, &self.topic)
            + text(3, &self.body_type)
            + body
            + btree_map::encoded_len(string::encoded_len, string::encoded_len, 5, &self.headers)
    }

    /// Appends the `admin.proto` bytes to `buf`: the same bytes as encoding the generated
    /// `pb::Message`, written straight from this message's fields instead of a copy of them.
    pub fn encode_to(&self, buf: &mut impl bytes::BufMut) {
        for (tag, v) in [(1, &self.id), (2, &self.topic), (3, &self.body_type)] {
            if !v.is_empty() {
                string::encode(tag, v, buf);
            }
        }
        if !self.body.is_empty() {
            bytes_field::encode(4, &self.body, buf);
        }
        btree_map::encode(
            string::encode,
            string::encoded_len,
            string::encode,
            string::encoded_len,
            5,
            &self.headers,
            buf,
        );
    }

    /// Decodes `admin.proto` bytes; the body shares `bytes`' buffer rather than copying it.
    pub fn from_bytes(bytes: Bytes) -> Result<Self, FLCommunicationError> {
        let pb = pb::Message::decode(bytes)?;
        Ok(Message {
            id: pb.id,
            topic: pb.topic,
            body_type: pb.body_type,
            body: pb.body,
            headers: pb.headers,
        })
    }
}

/// A successful reply carrying `data`, or the text `"ok"` when there is none.
pub fn ok_reply(ids: &mut MessageIds, data: Option<(&str, Bytes)>) -> Message {
    let (body_type, body) = data.unwrap_or(("str", Bytes::from_static(b"ok")));
    let mut m = Message::new(ids, REPLY_TOPIC, body_type, body);
    m.set_header(MsgHeader::RETURN_CODE, ReturnCode::OK);
    m
}

/// A failed reply whose body is the error text.
pub fn error_reply(ids: &mut MessageIds, err: &str) -> Message {
    let mut m = Message::new(
        ids,
        REPLY_TOPIC,
        "str",
        Bytes::copy_from_slice(err.as_bytes()),
    );
    m.set_header(MsgHeader::RETURN_CODE, ReturnCode::ERROR);
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn ids() -> MessageIds {
        MessageIds::new(ChaCha8Rng::seed_from_u64(1))
    }

    #[test]
    fn ids_are_uuid_shaped_fresh_and_reproducible() {
        let (mut a, mut b) = (ids(), ids());
        let first = a.next_id();
        assert_eq!(first.len(), 36);
        assert_eq!(first.as_bytes()[14], b'4');
        assert_eq!(first.matches('-').count(), 4);
        assert_ne!(first, a.next_id());
        assert_eq!(first, b.next_id());
    }

    #[test]
    fn reply_refers_to_request_and_round_trips_as_bytes() {
        let mut ids = ids();
        let req = Message::new(
            &mut ids,
            "GetTask",
            "fedlearn.ClientState",
            &b"\x0a\x01x"[..],
        );
        let mut rep = ok_reply(&mut ids, None);
        rep.set_ref_id(&req.id);
        assert_eq!(rep.get_ref_id(), Some(req.id.as_str()));
        assert_eq!(rep.return_code(), Some(ReturnCode::OK));
        assert_eq!(rep.topic, REPLY_TOPIC);
        assert_eq!(&rep.body[..], b"ok");
        let back = Message::from_bytes(rep.to_bytes().into()).unwrap();
        assert_eq!(back, rep);
    }

    #[test]
    fn error_reply_carries_the_error_text() {
        let rep = error_reply(&mut ids(), "too many clients");
        assert_eq!(rep.return_code(), Some(ReturnCode::ERROR));
        assert_eq!(&rep.body[..], b"too many clients");
    }

    #[test]
    fn direct_encoding_matches_the_generated_one() {
        let mut ids = ids();
        let mut full = Message::new(
            &mut ids,
            "SubmitUpdate",
            "fedlearn.Contribution",
            vec![7; 300],
        );
        full.set_ref_id("abc");
        full.set_header(MsgHeader::RETURN_CODE, ReturnCode::OK);
        full.set_header("", "empty key");
        full.set_header("empty value", "");
        let bare = Message {
            id: String::new(),
            topic: String::new(),
            body_type: String::new(),
            body: Bytes::new(),
            headers: BTreeMap::new(),
        };
        for m in [full, bare] {
            let generated = pb::Message {
                id: m.id.clone(),
                topic: m.topic.clone(),
                body_type: m.body_type.clone(),
                body: m.body.clone(),
                headers: m.headers.clone(),
            }
            .encode_to_vec();
            assert_eq!(m.to_bytes(), generated);
            assert_eq!(m.encoded_len(), generated.len());
        }
    }

    #[test]
    fn garbage_does_not_decode() {
        assert!(Message::from_bytes(Bytes::from_static(&[0xff, 0xff, 0xff])).is_err());
    }
}
