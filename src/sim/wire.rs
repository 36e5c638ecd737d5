//! Protocol messages as bytes. Every hop is a Clara admin `Message` (topic = the RPC, body = the
//! federated.proto request or reply) encoded with prost, followed by a CRC-32 of those bytes:
//! the stand-in for the transport's own integrity check, so a message damaged on the link is
//! detected as corrupt instead of decoding into wrong numbers.

use bytes::{BufMut, Bytes, BytesMut};

use super::port::Method;
use crate::fed_learn::{FLCommunicationError, Message, MessageIds, MsgHeader, ReturnCode, Text};

/// The body type names written in `Message.body_type`.
pub(crate) use crate::fed_learn::message::body_types as types;

impl Method {
    /// The RPC name, used as the message topic.
    pub fn topic(self) -> &'static str {
        use crate::fed_learn::message::topics;
        match self {
            Method::Register => topics::REGISTER,
            Method::Quit => topics::QUIT,
            Method::GetTask => topics::GET_TASK,
            Method::SubmitUpdate => topics::SUBMIT_UPDATE,
            Method::Heartbeat => topics::HEARTBEAT,
            Method::Reply | Method::Task => crate::fed_learn::message::REPLY_TOPIC,
        }
    }
}

/// Frames a message: its admin.proto bytes and their CRC-32.
pub(crate) fn frame(msg: &Message) -> Bytes {
    let mut buf = BytesMut::with_capacity(msg.encoded_len() + 4);
    msg.encode_to(&mut buf);
    let crc = crc32fast::hash(&buf);
    buf.put_u32_le(crc);
    buf.freeze()
}

/// Checks and decodes a frame.
pub(crate) fn unframe(frame: Bytes) -> Result<Message, FLCommunicationError> {
    if frame.len() < 4 {
        return Err(FLCommunicationError::new("frame shorter than its checksum"));
    }
    let body = frame.slice(..frame.len() - 4);
    let crc = u32::from_le_bytes(frame[frame.len() - 4..].try_into().expect("4 bytes"));
    if crc32fast::hash(&body) != crc {
        return Err(FLCommunicationError::new(
            "checksum mismatch: the message was damaged in transit",
        ));
    }
    Message::from_bytes(body)
}

/// A request message with a fresh id.
pub(crate) fn request(
    ids: &mut MessageIds,
    method: Method,
    body_type: &'static str,
    body: &impl prost::Message,
) -> Message {
    request_with_id(ids.next_id(), method, body_type, body)
}

/// A request message with the id `id` (drawn earlier by the sender).
pub(crate) fn request_with_id(
    id: String,
    method: Method,
    body_type: &'static str,
    body: &impl prost::Message,
) -> Message {
    Message::with_id(id, method.topic(), body_type, body.encode_to_vec())
}

/// A successful reply to `req_id` carrying `body` (already encoded, so a model shared by many
/// replies is encoded once).
pub(crate) fn reply(
    ids: &mut MessageIds,
    req_id: &Text,
    body_type: &'static str,
    body: Bytes,
) -> Message {
    let mut m = crate::fed_learn::ok_reply(ids, Some((body_type, body)));
    m.set_ref_id(req_id);
    m
}

/// A failed reply to `req_id`.
pub(crate) fn error(ids: &mut MessageIds, req_id: &Text, err: &str) -> Message {
    let mut m = crate::fed_learn::error_reply(ids, err);
    m.set_ref_id(req_id);
    m
}

/// True when a reply says the request failed.
pub(crate) fn is_error(msg: &Message) -> bool {
    msg.get_header(MsgHeader::RETURN_CODE) == Some(ReturnCode::ERROR)
}

/// Decodes a message body as `T`.
pub(crate) fn body<T: prost::Message + Default>(msg: &Message) -> Result<T, FLCommunicationError> {
    Ok(T::decode(msg.body.clone())?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fed_learn::pb;
    use crate::rng;

    #[test]
    fn frames_round_trip_and_damage_is_caught() {
        let mut ids = MessageIds::new(rng::stream(1, "ids", 0, 0));
        let login = pb::ClientLogin {
            client_id: "client-0001".into(),
            token: String::new(),
            num_samples: 64,
        };
        let msg = request(&mut ids, Method::Register, types::LOGIN, &login);
        let f = frame(&msg);
        let back = unframe(f.clone()).unwrap();
        assert_eq!(back, msg);
        assert_eq!(body::<pb::ClientLogin>(&back).unwrap(), login);
        for i in 0..f.len() {
            let mut bad = f.to_vec();
            bad[i] ^= 0x10;
            assert!(unframe(Bytes::from(bad)).is_err(), "flip at {i} unnoticed");
        }
    }
}
