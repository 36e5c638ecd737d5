//! Entry points for the fuzz targets in `fuzz/` and for `tests/fuzz_corpus.rs`, which replays
//! their corpus: each feeds arbitrary bytes to one of fedsim's decoders, exactly as the
//! simulation uses it. Not an API: hidden from the docs.

use std::path::Path;
use std::sync::{Arc, OnceLock};

use bytes::Bytes;

use crate::fed_learn::pb::NDArray;
use crate::fed_learn::{MessageCompressor, ModelEncryptor, ModelTransformer, TransformChain};
use crate::learn::{ModelKind, Params};
use crate::rng::{self, NONE};

/// W1's model, whose shape decoded tensors must have.
fn template() -> &'static Arc<Params> {
    static T: OnceLock<Arc<Params>> = OnceLock::new();
    T.get_or_init(|| {
        let mut r = rng::stream(0, "init", NONE, NONE);
        Arc::new(ModelKind::Softmax.init(60, 10, &mut r))
    })
}

/// No transformers, and gzip then AES-GCM.
fn chains() -> &'static [Arc<TransformChain>; 2] {
    static C: OnceLock<[Arc<TransformChain>; 2]> = OnceLock::new();
    C.get_or_init(|| {
        let steps: Vec<Box<dyn ModelTransformer>> = vec![
            Box::new(MessageCompressor::gzip(6)),
            Box::new(ModelEncryptor::new(
                [7; 32],
                rng::stream(0, "nonce", 0, NONE),
            )),
        ];
        [
            Arc::new(TransformChain::new(Vec::new())),
            Arc::new(TransformChain::new(steps)),
        ]
    })
}

/// A scenario file's bytes, loaded and checked as `fedsim check` does.
pub fn scenario(data: &[u8]) {
    let _ = crate::scenario::Scenario::from_bytes(data, Path::new("fuzz.yaml"));
}

/// The rest of the input as a frame: as it is, or (bit 6 of `pick` set) sealed with its
/// checksum, so that the fuzzer reaches the decoders behind the check.
fn frame(pick: u8, rest: &[u8]) -> Bytes {
    if pick & 0x40 == 0 {
        return Bytes::copy_from_slice(rest);
    }
    let mut f = rest.to_vec();
    f.extend_from_slice(&crc32fast::hash(rest).to_le_bytes());
    f.into()
}

/// A frame the server receives: the first byte picks the RPC, the chain (bit 7) and whether
/// the rest is sealed (bit 6).
pub fn server_message(data: &[u8]) {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let chain = &chains()[usize::from(pick >> 7)];
    let frame = frame(pick, rest);
    crate::sim::server::inbound::decode_for_fuzz(template(), chain, pick, frame);
}

/// A frame a client receives as a task: the first byte picks the chain (bit 7) and whether the
/// rest is sealed (bit 6).
pub fn client_task(data: &[u8]) {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let chain = &chains()[usize::from(pick >> 7)];
    crate::sim::client::update::decode_task(template(), chain, frame(pick, rest));
}

/// A tensor's `.npy` bytes, decoded as any tensor and as one of the template's.
pub fn npy(data: &[u8]) {
    let nd = NDArray {
        ndarray: Bytes::copy_from_slice(data),
    };
    let _ = crate::fed_learn::proto_to_ndarray::<f32>(&nd);
    let _ = crate::fed_learn::proto_to_ndarray::<f64>(&nd);
    let name = template().0[0].0.clone();
    let _ = Params::from_npy([(name.as_str(), data)].into_iter(), template());
}
