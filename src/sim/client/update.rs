//! The heavy half of a client's round, run in the [`Pool`](crate::sim::pool::Pool): check
//! and decode the task's frame, train, and encode and frame the contribution. It depends only
//! on its inputs, so it gives the same bits on any thread.

use bytes::Bytes;

use super::ClientCommon;
use crate::fed_learn::contribution::names;
use crate::fed_learn::pb::{self, ModelData};
use crate::fed_learn::view;
use crate::fed_learn::{
    ContributionRef, Message, MessageId, ModelSource, ModelTransformer, Text, TransformChain,
};
use crate::learn::{Net, NetTensors, Params};
use crate::sim::events::ClientName;
use crate::sim::port::Method;
use crate::sim::wire::{self, types};

/// A local update that went wrong before training.
pub(super) enum Failed {
    /// The transformer chain could not undo the server's encoding.
    Transform(String),
    /// The tensors were not the model's.
    Tensors(String),
}

/// A task as [`local_update`] leaves it.
pub(super) enum Tasked {
    /// The frame failed its checksum or did not decode (the error).
    Damaged(String),
    /// The frame answers a task request the client no longer waits for (one it sent again
    /// and was answered twice): nothing is done with it.
    Stale,
    /// The frame holds a message with no task, for the client task to handle.
    Reply(Message),
    /// The body is not a `CurrentTask`.
    Corrupt,
    /// Not a training task: for the client task to handle.
    Other(pb::CurrentTask),
    /// A training task for round `round`, whose body was `bytes` long, and how it went.
    Train {
        round: u32,
        bytes: usize,
        outcome: Result<Trained, Failed>,
    },
}

/// What a local update produced.
pub(super) struct Trained {
    /// The contribution's message id.
    pub id: MessageId,
    pub n_iter: i64,
    /// The trained model, if the client keeps it (see [`ClientCommon::keep_best`]).
    pub params: Option<Params>,
    /// The framed contribution (`None` if the transformer chain failed to encode it).
    pub frame: Option<Bytes>,
}

/// The heavy half of a round for one client: check and decode the frame and the task and, if
/// it is training, the global model; train on the client's data (generated first if nobody has
/// yet); and encode and frame the contribution, as message `msg_id`. A task that does not
/// answer `answering` (the client's open task request) is not trained on.
pub(super) fn local_update(
    common: &ClientCommon,
    id: u32,
    chain: &mut TransformChain,
    (answering, msg_id): (Option<MessageId>, MessageId),
    frame: Bytes,
    token: Option<Text>,
) -> Tasked {
    let msg = match wire::unframe(frame) {
        Ok(msg) => msg,
        Err(err) => return Tasked::Damaged(err.to_string()),
    };
    if wire::is_error(&msg) || msg.body_type.as_str() != types::TASK {
        return Tasked::Reply(msg);
    }
    if answering.is_none_or(|a| !msg.get_ref_id().is_some_and(|r| a.is(r))) {
        return Tasked::Stale;
    }
    let body = msg.body;
    let bytes = body.len();
    let (meta, start) = match plain_training_task(common, chain, &body) {
        Some((meta, start)) => (meta, Ok(start)),
        None => {
            let Ok(task) = <pb::CurrentTask as prost::Message>::decode(body) else {
                return Tasked::Corrupt;
            };
            if task.task_name != names::TRAIN {
                return Tasked::Other(task);
            }
            let meta = task.meta_data.unwrap_or_default();
            let start = global_net(common, chain, task.data.unwrap_or_default());
            (meta, start)
        }
    };
    let round = meta.current_round.max(0) as u32;
    let outcome = start.and_then(|start| train(common, id, chain, msg_id, start, token, meta));
    Tasked::Train {
        round,
        bytes,
        outcome,
    }
}

/// A training task as fedsim writes it, with no transformers to undo: its meta data and the
/// global model, read in place straight into the kernels' layout. `None` for anything else,
/// which goes through prost (and, for the model, [`global_net`]).
fn plain_training_task(
    common: &ClientCommon,
    chain: &TransformChain,
    body: &[u8],
) -> Option<(pb::MetaData, Net)> {
    if !chain.is_empty() || crate::fastpath::reference_only() {
        return None;
    }
    let task = view::current_task(body)?;
    if &body[task.task_name] != names::TRAIN.as_bytes() {
        return None;
    }
    let tensors = view::model_tensors(body, task.data?)?;
    let start = Net::from_npy(tensors.iter(body), &common.template)?;
    Some((task.meta.unwrap_or_default(), start))
}

/// The global model `model` as a `Net`, once the chain's transformers are undone. A model in
/// fedsim's own layout goes straight into the kernels' layout; anything else (another
/// layout, a wrong name or shape) is decoded, or rejected, as tensors.
fn global_net(
    common: &ClientCommon,
    chain: &TransformChain,
    model: ModelData,
) -> Result<Net, Failed> {
    let md = chain
        .decode(model)
        .map_err(|e| Failed::Transform(e.to_string()))?;
    let template = &common.template;
    match Net::from_model_data(&md, template) {
        Some(net) => Ok(net),
        None => Params::from_model_data(md, template)
            .map(|global| Net::from_params(&global))
            .map_err(|e| Failed::Tensors(e.to_string())),
    }
}

/// Trains the global model `start` and frames the contribution, stamped with `meta`.
fn train(
    common: &ClientCommon,
    id: u32,
    chain: &mut TransformChain,
    msg_id: MessageId,
    start: Net,
    token: Option<Text>,
    meta: pb::MetaData,
) -> Result<Trained, Failed> {
    let template = &common.template;
    let data = common.data.get(id);
    let anchor = (common.training.prox_mu > 0.0).then(|| start.clone());
    let (net, loss) = common
        .model
        .train_net(start, &data.train, &common.training, anchor.as_ref());
    let n_iter = (data.train.len() * common.training.local_epochs) as i64;
    // Encoded straight from the kernels' layout (the global model has the template's names
    // and shapes, checked above); tensors are made only for a client that keeps its model
    // for cross-site validation.
    let params = common.keep_best.then(|| {
        let mut params = template.clone();
        net.write_params(&mut params);
        params
    });
    let name = ClientName::new(id);
    let frame_with = |data: &dyn ModelSource| {
        let c = ContributionRef {
            client_id: name.as_str(),
            token: token.as_deref().unwrap_or_default(),
            n_iter,
            kind: names::TRAIN,
            meta: Some(&meta),
            data: Some(data),
            task_name: names::TRAIN,
            metrics: &[("train_loss", loss)],
        };
        wire::request_frame(msg_id, Method::SubmitUpdate, types::CONTRIBUTION, c)
    };
    // With no transformers to apply, the tensors go from the net straight into the frame.
    let frame = if chain.is_empty() {
        Some(frame_with(&NetTensors::new(&net, template)))
    } else {
        let md = net.to_model_data(template);
        chain.encode(md).ok().map(|md| frame_with(&md))
    };
    // The client keeps a copy to send again if it goes unanswered, and the server slices the
    // token out of it: made shared here, in the pool, each of those is a count, not an
    // allocation on the runtime thread.
    let frame = frame.map(Bytes::from_owner);
    Ok(Trained {
        id: msg_id,
        n_iter,
        params,
        frame,
    })
}

/// Checks and decodes a task's frame as a client does before training, through the in-place
/// reader and through prost and the chain's transformers: for the fuzz targets. True if it
/// held a training model of the template's shape.
pub(crate) fn decode_task(template: &Params, chain: &TransformChain, frame: Bytes) -> bool {
    let Ok(msg) = wire::unframe(frame) else {
        return false;
    };
    if msg.body_type.as_str() != types::TASK {
        return false;
    }
    let body = msg.body;
    if let Some(task) = view::current_task(&body) {
        if let Some(tensors) = task.data.and_then(|d| view::model_tensors(&body, d)) {
            let _ = Net::from_npy(tensors.iter(&body), template);
        }
    }
    let Ok(task) = <pb::CurrentTask as prost::Message>::decode(body) else {
        return false;
    };
    let Ok(md) = chain.decode(task.data.unwrap_or_default()) else {
        return false;
    };
    Net::from_model_data(&md, template).is_some() || Params::from_model_data(md, template).is_ok()
}
