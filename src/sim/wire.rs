//! Protocol messages as bytes. Every hop is a Clara admin `Message` (topic = the RPC, body = the
//! federated.proto request or reply) encoded with prost, followed by a CRC-32 of those bytes:
//! the stand-in for the transport's own integrity check, so a message damaged on the link is
//! detected as corrupt instead of decoding into wrong numbers.

use bytes::{BufMut, Bytes, BytesMut};

use super::port::Method;
use crate::fed_learn::message::REPLY_TOPIC;
use crate::fed_learn::{
    Body, FLCommunicationError, Message, MessageId, MessageIds, MessageRef, MsgHeader, ReturnCode,
    Text,
};

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
    seal(buf)
}

/// Frames a message given by its fields: the bytes [`frame`] gives for the `Message` with
/// them, encoded straight into the frame.
pub(crate) fn frame_ref(msg: &MessageRef<'_, impl Body>) -> Bytes {
    let mut buf = BytesMut::with_capacity(msg.encoded_len() + 4);
    msg.encode_to(&mut buf);
    seal(buf)
}

/// Appends the CRC-32 of the bytes so far.
fn seal(mut buf: BytesMut) -> Bytes {
    let crc = crc32fast::hash(&buf);
    buf.put_u32_le(crc);
    buf.freeze()
}

/// The frame of a request with the id `id` (drawn by the sender) and `body`, encoded in place
/// (a protobuf message as [`Proto`](crate::fed_learn::Proto)).
pub(crate) fn request_frame(
    id: MessageId,
    method: Method,
    body_type: &'static str,
    body: impl Body,
) -> Bytes {
    frame_ref(&MessageRef {
        id: id.as_str(),
        topic: method.topic(),
        body_type,
        body,
        headers: &[],
    })
}

/// The frame of a successful reply to `req_id` carrying `body`: what framing [`reply`] gives.
pub(crate) fn reply_frame(
    ids: &mut MessageIds,
    req_id: &str,
    body_type: &'static str,
    body: impl Body,
) -> Bytes {
    let id = ids.draw();
    frame_ref(&MessageRef {
        id: id.as_str(),
        topic: REPLY_TOPIC,
        body_type,
        body,
        // In key order, as a `Message`'s map would hold them.
        headers: &[
            (MsgHeader::REF_MSG_ID, req_id),
            (MsgHeader::RETURN_CODE, ReturnCode::OK),
        ],
    })
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
    use crate::fed_learn::{pb, Proto};
    use crate::rng;

    fn ids() -> MessageIds {
        MessageIds::new(rng::stream(1, "ids", 0, 0))
    }

    fn login() -> pb::ClientLogin {
        pb::ClientLogin {
            client_id: "client-0001".into(),
            token: String::new(),
            num_samples: 64,
        }
    }

    #[test]
    fn frames_round_trip_and_damage_is_caught() {
        let id = ids().draw();
        let f = request_frame(id, Method::Register, types::LOGIN, Proto(&login()));
        let back = unframe(f.clone()).unwrap();
        assert_eq!(back.id.as_str(), id.as_str());
        assert_eq!(back.topic.as_str(), Method::Register.topic());
        assert_eq!(body::<pb::ClientLogin>(&back).unwrap(), login());
        for i in 0..f.len() {
            let mut bad = f.to_vec();
            bad[i] ^= 0x10;
            assert!(unframe(Bytes::from(bad)).is_err(), "flip at {i} unnoticed");
        }
    }

    /// Frames written from borrowed fields must be the bytes of framing the `Message` itself,
    /// which the rest of fedsim (and the golden traces' byte counts) take as the wire format.
    #[test]
    fn frames_of_fields_are_the_frames_of_their_messages() {
        let mut ids = ids();
        let id = ids.clone().draw();
        let body = login();
        let whole = Message::with_id(
            id.as_str().to_owned(),
            Method::Register.topic(),
            types::LOGIN,
            prost::Message::encode_to_vec(&body),
        );
        let framed = request_frame(id, Method::Register, types::LOGIN, Proto(&body));
        assert_eq!(framed, frame(&whole));
        // An empty body is left out, as prost leaves out an empty field.
        let empty = pb::ClientState::default();
        let whole = Message::with_id(
            id.as_str().to_owned(),
            Method::GetTask.topic(),
            types::STATE,
            vec![],
        );
        let framed = request_frame(id, Method::GetTask, types::STATE, Proto(&empty));
        assert_eq!(framed, frame(&whole));
        // A reply draws its id and carries both headers, in the map's order.
        let req = Text::from("a-request-id");
        let task = Bytes::from_static(b"task bytes");
        let mut whole =
            crate::fed_learn::ok_reply(&mut ids.clone(), Some((types::TASK, task.clone())));
        whole.set_ref_id(&req);
        let framed = reply_frame(&mut ids, &req, types::TASK, &task[..]);
        assert_eq!(framed, frame(&whole));
        assert_eq!(unframe(framed).unwrap(), whole);
    }
}
