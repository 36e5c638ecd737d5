//! The server's inbound messages, decoded as far as they can be without its state: the frame's
//! checksum and admin `Message`, the body, and a training contribution's tensors.
//!
//! Why apart: in a step the server is handed many envelopes at once (in W1, a round's hundred
//! contributions and hundred task requests), and decoding them was over half of its work on
//! the runtime thread. Decoding is a pure function of the bytes, so [`decode_step`] does a
//! step's worth in parallel in the pool, and the server then handles the results in delivery
//! order, exactly as if it had decoded each on arrival.

use std::sync::Arc;

use bytes::Bytes;

use super::super::pool::Pool;
use super::super::port::{Envelope, Method, Payload};
use super::super::wire;
use crate::fed_learn::contribution::names;
use crate::fed_learn::pb;
use crate::fed_learn::view::{self, string_fields};
use crate::fed_learn::{FLCommunicationError, Message, ModelTransformer, Text, TransformChain};
use crate::learn::Params;

/// A wire envelope's message, decoded.
pub(super) enum Inbound {
    /// The frame or its body did not decode: the error, as the log words it.
    Damaged(String),
    Login(Message, pb::ClientLogin),
    /// A task request, heartbeat or quit, and the token of its `ClientState` (all the
    /// server reads of it).
    State(Message, Text),
    /// A contribution and, for a training one, its tensors decoded (or why they did not);
    /// boxed, as it is several times the size of the other variants.
    Submit(Message, Box<Submission>),
    /// A reply: the server asks nothing, so it ignores them.
    Reply,
}

/// A decoded contribution: see [`Inbound::Submit`].
pub(super) struct Submission {
    /// The token of its client state.
    pub token: Text,
    /// The round its meta data names.
    pub for_round: Option<u32>,
    pub what: Submitted,
}

/// What a contribution hands in.
pub(super) enum Submitted {
    /// A training update: its weight, its reported loss (NaN when it reports none) and its
    /// tensors decoded, or why they did not decode.
    Train {
        n_iter: i64,
        train_loss: f64,
        params: Result<Params, ModelError>,
    },
    /// Cross-site validation's best model or results, for that phase to read.
    CrossSite(pb::Contribution),
}

/// What decoding needs: the server's transformer chain (decoding only) and the model's
/// tensors, whose names and shapes a contribution must have.
#[derive(Clone)]
pub(super) struct Decoder {
    pub chain: Arc<TransformChain>,
    pub template: Arc<Params>,
}

impl Decoder {
    /// Decodes one frame that came by `method`.
    pub fn decode(&self, method: Method, frame: Bytes) -> Inbound {
        match self.try_decode(method, frame) {
            Ok(inbound) => inbound,
            Err(err) => Inbound::Damaged(err.to_string()),
        }
    }

    fn try_decode(&self, method: Method, frame: Bytes) -> Result<Inbound, FLCommunicationError> {
        let msg = wire::unframe(frame)?;
        Ok(match method {
            Method::Register => {
                let login = wire::body(&msg)?;
                Inbound::Login(msg, login)
            }
            Method::Heartbeat | Method::GetTask | Method::Quit => {
                let token = state_token(&msg.body)?;
                Inbound::State(msg, token)
            }
            Method::SubmitUpdate => {
                let s = match self.plain_update(&msg.body) {
                    Some(s) => s,
                    None => self.submission(wire::body(&msg)?),
                };
                Inbound::Submit(msg, Box::new(s))
            }
            Method::Reply | Method::Task => Inbound::Reply,
        })
    }

    /// A contribution as prost decoded it. Anything but cross-site validation's is taken
    /// for training, as the server does.
    fn submission(&self, mut c: pb::Contribution) -> Submission {
        let token = c.client.as_mut().map(|s| std::mem::take(&mut s.token));
        let for_round = c.meta_data.as_ref().map(|m| m.current_round.max(0) as u32);
        let what = match c.r#type.as_str() {
            names::BEST_MODEL | names::VALIDATION => Submitted::CrossSite(c),
            _ => Submitted::Train {
                n_iter: c.n_iter,
                train_loss: c.metrics.get("train_loss").copied().unwrap_or(f64::NAN),
                params: self.params(c.data.take()),
            },
        };
        Submission {
            token: token.unwrap_or_default().into(),
            for_round,
            what,
        }
    }

    /// A training contribution as fedsim writes it, with no transformers to undo, read in
    /// place and its tensors decoded straight from the frame (no strings or maps built only
    /// to be read once). `None` for anything else, which goes through prost.
    fn plain_update(&self, body: &Bytes) -> Option<Submission> {
        if !self.chain.is_empty() || crate::fastpath::reference_only() {
            return None;
        }
        let c = view::contribution(body)?;
        if [names::BEST_MODEL, names::VALIDATION]
            .map(str::as_bytes)
            .contains(&&body[c.kind])
        {
            return None;
        }
        let tensors = view::model_tensors(body, c.data?)?;
        let params = Params::from_npy(tensors.iter(body), &self.template)?;
        Some(Submission {
            token: Text::from_utf8(body.slice(c.token)).ok()?,
            for_round: c.meta.map(|m| m.current_round.max(0) as u32),
            what: Submitted::Train {
                n_iter: c.n_iter,
                train_loss: c.train_loss.unwrap_or(f64::NAN),
                params: Ok(params),
            },
        })
    }

    /// A contribution's tensors, through the chain and checked against the model's.
    pub fn params(&self, md: Option<pb::ModelData>) -> Result<Params, ModelError> {
        let md = self.chain.decode(md.unwrap_or_default())?;
        Ok(Params::from_model_data(md, &self.template)?)
    }
}

/// Why a contribution's model did not decode: the contribution is rejected as corrupt.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ModelError {
    /// A transformer (decompression, decryption) refused it.
    #[error(transparent)]
    Transform(#[from] FLCommunicationError),
    /// Its tensors are not the model's.
    #[error(transparent)]
    Tensors(#[from] crate::learn::model::ParamsError),
}

/// The token of a `ClientState` body, read in place (no `String` for it or the client id)
/// when the body holds its three string fields only, as fedsim writes it; anything else goes
/// through prost, which also words any error.
fn state_token(body: &Bytes) -> Result<Text, FLCommunicationError> {
    if let Some([_, token, _]) = string_fields::<3>(body) {
        if let Ok(token) = Text::from_utf8(body.slice(token)) {
            return Ok(token);
        }
    }
    let state: pb::ClientState = prost::Message::decode(body.clone())?;
    Ok(Text::from(state.token))
}

/// Fewest envelopes in a step worth decoding in the pool; fewer are decoded inline.
const PARALLEL_MIN: usize = 16;

/// Envelopes per pool job.
const PER_JOB: usize = 16;

/// Decodes the wire envelopes of `batch` (in the pool when there are enough of them): one
/// entry per envelope, in order, `None` for those that are not wire messages. The entries come
/// as they are decoded, so the server handles the first while the pool decodes the rest.
///
/// The frames are moved out of the envelopes (which keep an empty one), not copied: a copy
/// of a frame is a reference count on a buffer another thread made, the first one also an
/// allocation.
pub(super) fn decode_step(
    decoder: &Decoder,
    pool: &Arc<Pool>,
    batch: &mut [Envelope],
) -> impl Iterator<Item = Option<Inbound>> + use<> {
    let frames: Vec<Option<(Method, Bytes)>> = batch
        .iter_mut()
        .map(|e| match &mut e.payload {
            Payload::Wire { method, frame } => Some((*method, std::mem::take(frame))),
            _ => None,
        })
        .collect();
    let decoder = decoder.clone();
    pool.map(frames, PARALLEL_MIN, PER_JOB, move |f| {
        f.map(|(m, b)| decoder.decode(m, b))
    })
}

/// Decodes one frame as the server decodes what comes by `method` (picked by `method % 5`),
/// for the fuzz targets.
pub(crate) fn decode_for_fuzz(
    template: &Arc<Params>,
    chain: &Arc<TransformChain>,
    method: u8,
    frame: Bytes,
) {
    let decoder = Decoder {
        chain: chain.clone(),
        template: template.clone(),
    };
    let method = [
        Method::Register,
        Method::Quit,
        Method::GetTask,
        Method::SubmitUpdate,
        Method::Heartbeat,
    ][usize::from(method % 5)];
    let _ = decoder.decode(method, frame);
}
