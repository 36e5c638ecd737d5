//! Clara's admin `Message`: a topic, a body and string headers, with a reference id that ties
//! a reply to its request. Every hop of fedsim's in-memory network is one of these, encoded as
//! `admin.proto` bytes.

use std::collections::BTreeMap;
use std::ops::Range;

use bytes::Bytes;
use prost::encoding::{encode_key, encode_varint, encoded_len_varint, key_len, WireType};
use prost::Message as _;
use rand::RngCore;
use rand_chacha::ChaCha8Rng;

use super::error::FLCommunicationError;
use super::pb;
use super::text::Text;
use super::view::{walk, Field};

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

/// The RPCs a client calls, as message topics.
pub mod topics {
    /// Log in and get a token.
    pub const REGISTER: &str = "Register";
    /// Leave the federation.
    pub const QUIT: &str = "Quit";
    /// Ask for the next task.
    pub const GET_TASK: &str = "GetTask";
    /// Hand in a contribution.
    pub const SUBMIT_UPDATE: &str = "SubmitUpdate";
    /// Say it is still alive.
    pub const HEARTBEAT: &str = "Heartbeat";
}

/// The federated.proto message names written as a `Message`'s body type.
pub mod body_types {
    /// `ClientLogin`.
    pub const LOGIN: &str = "fedlearn.ClientLogin";
    /// `ClientState`.
    pub const STATE: &str = "fedlearn.ClientState";
    /// `CurrentTask`.
    pub const TASK: &str = "fedlearn.CurrentTask";
    /// `Contribution`.
    pub const CONTRIBUTION: &str = "fedlearn.Contribution";
    /// `FederatedSummary`.
    pub const SUMMARY: &str = "fedlearn.FederatedSummary";
}

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
        self.draw().as_str().to_owned()
    }

    /// [`MessageIds::next_id`] held in place, for a sender that writes it straight into a
    /// frame (one allocation fewer per message).
    pub fn draw(&mut self) -> MessageId {
        let mut b = [0u8; 16];
        self.rng.fill_bytes(&mut b);
        b[6] = (b[6] & 0x0f) | 0x40;
        b[8] = (b[8] & 0x3f) | 0x80;
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut s = [b'-'; 36];
        let mut at = 0;
        for (i, byte) in b.iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                at += 1;
            }
            s[at] = HEX[usize::from(byte >> 4)];
            s[at + 1] = HEX[usize::from(byte & 0xf)];
            at += 2;
        }
        MessageId(s)
    }
}

/// A message id from [`MessageIds::draw`]: 36 ASCII bytes on the stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageId([u8; 36]);

impl MessageId {
    /// A copy of `id` held in place, if it is as long as the ids fedsim draws: for a receiver
    /// that remembers which message it answered without keeping the message's frame alive.
    pub fn copy_of(id: &str) -> Option<MessageId> {
        id.as_bytes().try_into().ok().map(MessageId)
    }

    /// Whether `id` is this id, compared as bytes.
    pub fn is(&self, id: &str) -> bool {
        self.0 == id.as_bytes()
    }

    /// The id.
    pub fn as_str(&self) -> &str {
        // Hex digits and dashes: ASCII, which `from_utf8` checks a word at a time.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

/// What a [`MessageRef`] carries as its body: bytes as they are, or a protobuf message
/// encoded in place ([`Proto`]).
pub trait Body {
    /// The body's encoded length.
    fn encoded_len(&self) -> usize;
    /// Appends the body's bytes (exactly `encoded_len` of them).
    fn put(&self, buf: &mut impl bytes::BufMut);
}

impl Body for &[u8] {
    fn encoded_len(&self) -> usize {
        self.len()
    }
    fn put(&self, buf: &mut impl bytes::BufMut) {
        buf.put_slice(self);
    }
}

/// A protobuf message as a [`Body`], encoded straight into the frame that carries it.
pub struct Proto<'a, M>(pub &'a M);

impl<M: prost::Message> Body for Proto<'_, M> {
    fn encoded_len(&self) -> usize {
        self.0.encoded_len()
    }
    fn put(&self, buf: &mut impl bytes::BufMut) {
        self.0.encode_raw(buf);
    }
}

/// A message's fields, borrowed: encodes to the bytes of the [`Message`] that has them, with
/// no `Message` built first. Why: a sender's message lived only to be encoded, and building it
/// (an id string, a header map, the body encoded into a buffer of its own and then copied
/// into the frame) was several allocations and a copy per hop.
pub struct MessageRef<'a, B> {
    /// The message id.
    pub id: &'a str,
    /// The topic: an RPC name or [`REPLY_TOPIC`].
    pub topic: &'a str,
    /// The body's protobuf type.
    pub body_type: &'a str,
    /// The body.
    pub body: B,
    /// The headers, in key order (a `Message`'s map keeps them so); keys are distinct.
    pub headers: &'a [(&'a str, &'a str)],
}

impl<B: Body> MessageRef<'_, B> {
    /// The length of [`MessageRef::encode_to`]'s bytes.
    pub fn encoded_len(&self) -> usize {
        let body = self.body.encoded_len();
        let body = if body == 0 {
            0
        } else {
            key_len(4) + encoded_len_varint(body as u64) + body
        };
        field_len(1, self.id.as_bytes())
            + field_len(2, self.topic.as_bytes())
            + field_len(3, self.body_type.as_bytes())
            + body
            + self
                .headers
                .iter()
                .map(|(k, v)| header_len(k.as_bytes(), v.as_bytes()))
                .sum::<usize>()
    }

    /// Appends the `admin.proto` bytes: those of [`Message::encode_to`] for the same fields.
    pub fn encode_to(&self, buf: &mut impl bytes::BufMut) {
        put_field(1, self.id.as_bytes(), buf);
        put_field(2, self.topic.as_bytes(), buf);
        put_field(3, self.body_type.as_bytes(), buf);
        let body = self.body.encoded_len();
        if body > 0 {
            encode_key(4, WireType::LengthDelimited, buf);
            encode_varint(body as u64, buf);
            self.body.put(buf);
        }
        for (k, v) in self.headers {
            put_header(k.as_bytes(), v.as_bytes(), buf);
        }
    }
}

/// A message between server and client: Clara's `Message(topic, body)`. Its strings are
/// [`Text`]s: a decoded message's share the frame's buffer.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Message {
    /// A fresh UUID-like id.
    pub id: Text,
    /// What the message is for: an RPC name or [`REPLY_TOPIC`].
    pub topic: Text,
    /// The protobuf type of `body` (`"fedlearn.ClientLogin"`), or `"str"` for text.
    pub body_type: Text,
    /// The payload, usually an encoded federated.proto message.
    pub body: Bytes,
    /// String headers; a `BTreeMap` so that encoding is deterministic.
    pub headers: BTreeMap<Text, Text>,
}

impl Message {
    /// A message with a fresh id and no headers.
    pub fn new(
        ids: &mut MessageIds,
        topic: impl Into<Text>,
        body_type: impl Into<Text>,
        body: impl Into<Bytes>,
    ) -> Self {
        Self::with_id(ids.next_id(), topic, body_type, body)
    }

    /// A message with the given id (drawn earlier from a [`MessageIds`]) and no headers.
    pub fn with_id(
        id: impl Into<Text>,
        topic: impl Into<Text>,
        body_type: impl Into<Text>,
        body: impl Into<Bytes>,
    ) -> Self {
        Message {
            id: id.into(),
            topic: topic.into(),
            body_type: body_type.into(),
            body: body.into(),
            headers: BTreeMap::new(),
        }
    }

    /// Sets a header, replacing any earlier value.
    pub fn set_header(&mut self, key: impl Into<Text>, value: impl Into<Text>) {
        self.headers.insert(key.into(), value.into());
    }

    /// A header's value, if set.
    pub fn get_header(&self, key: &str) -> Option<&str> {
        self.headers.get(key).map(Text::as_str)
    }

    /// Marks this message as the answer to the message with id `ref_id`.
    pub fn set_ref_id(&mut self, ref_id: impl Into<Text>) {
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
        let headers: usize = self
            .headers
            .iter()
            .map(|(k, v)| header_len(k.as_bytes(), v.as_bytes()))
            .sum();
        field_len(1, self.id.as_bytes())
            + field_len(2, self.topic.as_bytes())
            + field_len(3, self.body_type.as_bytes())
            + field_len(4, &self.body)
            + headers
    }

    /// Appends the `admin.proto` bytes to `buf`: the same bytes as encoding the generated
    /// `pb::Message`, written straight from this message's fields instead of a copy of them.
    pub fn encode_to(&self, buf: &mut impl bytes::BufMut) {
        // Written field by field as prost writes them (empty fields, and a map entry's empty
        // key or value, left out), but copying the bytes in place: prost's own `Bytes` encoder
        // clones each value first, an atomic count on a shared buffer per field.
        for (tag, v) in [(1, &self.id), (2, &self.topic), (3, &self.body_type)] {
            put_field(tag, v.as_bytes(), buf);
        }
        put_field(4, &self.body, buf);
        for (k, v) in &self.headers {
            put_header(k.as_bytes(), v.as_bytes(), buf);
        }
    }

    /// Decodes `admin.proto` bytes. The body and every string share `bytes`' buffer rather
    /// than copying it; anything but the plain layout fedsim writes (unknown fields, a field
    /// of the wrong wire type, bad UTF-8, truncation) goes to prost's decoder, which gives the
    /// same message or the same error as always.
    pub fn from_bytes(bytes: Bytes) -> Result<Self, FLCommunicationError> {
        if let Some(m) = Self::decode_shared(&bytes) {
            return Ok(m);
        }
        let pb = pb::Message::decode(bytes)?;
        Ok(Message {
            id: pb.id.into(),
            topic: pb.topic.into(),
            body_type: pb.body_type.into(),
            body: pb.body,
            headers: pb
                .headers
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        })
    }

    /// The fast path of [`Message::from_bytes`]: `None` where prost's decoder must decide.
    /// It walks the bytes as a slice and takes a counted reference to the buffer only for
    /// what it keeps (the id, the body, any string that is not a [`KNOWN`] word): each
    /// reference is an atomic count on a buffer that other threads also count.
    fn decode_shared(bytes: &Bytes) -> Option<Self> {
        let mut m = Message::default();
        walk(bytes, 0..bytes.len(), |tag, field| {
            let Field::Delimited(field) = field else {
                return None;
            };
            // As in prost, a field seen twice keeps its last value.
            match tag {
                1 => m.id = Text::from_utf8(bytes.slice(field)).ok()?,
                2 => m.topic = known_or_shared(bytes, field)?,
                3 => m.body_type = known_or_shared(bytes, field)?,
                4 => m.body = bytes.slice(field),
                5 => {
                    let (k, v) = header_entry(bytes, field)?;
                    m.headers.insert(k, v);
                }
                _ => return None,
            }
            Some(())
        })?;
        Some(m)
    }
}

/// The protocol's own words: RPC topics, body types, header names and return codes. A decoded
/// field that is one of them becomes the static `Text`, so it holds no reference to the frame
/// (each reference is an atomic count on a buffer that other threads also count).
const KNOWN: &[&str] = &[
    REPLY_TOPIC,
    "str",
    topics::REGISTER,
    topics::QUIT,
    topics::GET_TASK,
    topics::SUBMIT_UPDATE,
    topics::HEARTBEAT,
    body_types::LOGIN,
    body_types::STATE,
    body_types::TASK,
    body_types::CONTRIBUTION,
    body_types::SUMMARY,
    MsgHeader::REF_MSG_ID,
    MsgHeader::RETURN_CODE,
    ReturnCode::OK,
    ReturnCode::ERROR,
];

/// `bytes[field]` as a `Text`: a static one if it is a [`KNOWN`] word, else a checked slice.
fn known_or_shared(bytes: &Bytes, field: Range<usize>) -> Option<Text> {
    let v = &bytes[field.clone()];
    match KNOWN.iter().find(|k| k.as_bytes() == v) {
        Some(k) => Some(Text::from_static(k)),
        None => Text::from_utf8(bytes.slice(field)).ok(),
    }
}

/// The encoded length of a length-delimited field holding `v`; 0 when empty (left out).
pub(super) fn field_len(tag: u32, v: &[u8]) -> usize {
    delimited_len(tag, v.len())
}

/// The encoded length of a length-delimited field of `len` bytes: its key, its length and the
/// bytes; 0 when empty (proto3 leaves an empty field out).
pub(super) fn delimited_len(tag: u32, len: usize) -> usize {
    if len == 0 {
        0
    } else {
        key_len(tag) + encoded_len_varint(len as u64) + len
    }
}

/// Writes a length-delimited field holding `v`, unless it is empty.
pub(super) fn put_field(tag: u32, v: &[u8], buf: &mut impl bytes::BufMut) {
    if !v.is_empty() {
        encode_key(tag, WireType::LengthDelimited, buf);
        encode_varint(v.len() as u64, buf);
        buf.put_slice(v);
    }
}

/// The encoded length of a headers map entry (field 5).
fn header_len(k: &[u8], v: &[u8]) -> usize {
    let len = field_len(1, k) + field_len(2, v);
    key_len(5) + encoded_len_varint(len as u64) + len
}

/// Writes a headers map entry (field 5) as prost writes one: the empty key or value left out.
fn put_header(k: &[u8], v: &[u8], buf: &mut impl bytes::BufMut) {
    let len = field_len(1, k) + field_len(2, v);
    encode_key(5, WireType::LengthDelimited, buf);
    encode_varint(len as u64, buf);
    put_field(1, k, buf);
    put_field(2, v, buf);
}

/// The headers map entry at `bytes[entry]` (key = 1, value = 2, each empty when absent, as in
/// prost).
fn header_entry(bytes: &Bytes, entry: Range<usize>) -> Option<(Text, Text)> {
    let (mut k, mut v) = (Text::default(), Text::default());
    walk(bytes, entry, |tag, field| {
        let Field::Delimited(field) = field else {
            return None;
        };
        let field = known_or_shared(bytes, field)?;
        match tag {
            1 => k = field,
            2 => v = field,
            _ => return None,
        }
        Some(())
    })?;
    Some((k, v))
}

/// A successful reply carrying `data`, or the text `"ok"` when there is none.
pub fn ok_reply(ids: &mut MessageIds, data: Option<(&'static str, Bytes)>) -> Message {
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
        let bare = Message::default();
        for m in [full, bare] {
            let generated = pb::Message {
                id: m.id.to_string(),
                topic: m.topic.to_string(),
                body_type: m.body_type.to_string(),
                body: m.body.clone(),
                headers: m
                    .headers
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            }
            .encode_to_vec();
            assert_eq!(m.to_bytes(), generated);
            assert_eq!(m.encoded_len(), generated.len());
            assert_eq!(Message::from_bytes(generated.into()).unwrap(), m);
        }
    }

    #[test]
    fn what_the_fast_decoder_leaves_to_prost_decodes_as_prost_decodes_it() {
        let generated = |headers: &[(&str, &str)]| pb::Message {
            id: "id-1".into(),
            topic: "GetTask".into(),
            body_type: "str".into(),
            body: Bytes::from_static(b"ok"),
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        let mut plain = generated(&[("_rtnCode", "_ok")]).encode_to_vec();
        // An unknown varint field (tag 9): prost skips it, so the message is the same.
        let mut extra = plain.clone();
        extra.extend_from_slice(&[9 << 3, 1]);
        let want = Message::from_bytes(plain.clone().into()).unwrap();
        assert_eq!(Message::from_bytes(extra.into()).unwrap(), want);
        // A field repeated: the last value wins, on both paths.
        let again = generated(&[]);
        plain.extend_from_slice(
            &pb::Message {
                id: "id-2".into(),
                ..again
            }
            .encode_to_vec(),
        );
        assert_eq!(Message::from_bytes(plain.into()).unwrap().id, "id-2");
        // Bad UTF-8 in a string and a truncated field are errors, as prost says.
        let mut bad = generated(&[]).encode_to_vec();
        let at = bad.iter().position(|&b| b == b'G').unwrap();
        bad[at] = 0xff;
        let (ours, prost) = (
            Message::from_bytes(bad.clone().into())
                .unwrap_err()
                .to_string(),
            pb::Message::decode(Bytes::from(bad))
                .unwrap_err()
                .to_string(),
        );
        assert!(ours.contains(&prost), "{ours} / {prost}");
        let mut short = generated(&[]).encode_to_vec();
        short.truncate(short.len() - 1);
        assert!(Message::from_bytes(short.into()).is_err());
    }

    #[test]
    fn garbage_does_not_decode() {
        assert!(Message::from_bytes(Bytes::from_static(&[0xff, 0xff, 0xff])).is_err());
    }
}
