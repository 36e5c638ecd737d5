//! Property tests of the wire: tensors through NDArray, models through any transformer chain,
//! and tampering after encryption.

use bytes::Bytes;
use fedsim::fed_learn::pb::{ModelData, NDArray};
use fedsim::fed_learn::{
    MessageCompressor, ModelEncryptor, ModelTransformer, Tensor, TransformChain,
};
use ndarray::{ArrayD, IxDyn};
use proptest::prelude::*;
use prost::Message as _;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

fn shape() -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(0usize..5, 0..4)
}

fn tensor() -> impl Strategy<Value = Tensor> {
    (shape(), 0u8..5, any::<u64>()).prop_map(|(shape, dtype, seed)| {
        let n: usize = shape.iter().product();
        let vals: Vec<u64> = (0..n as u64)
            .map(|i| seed.wrapping_mul(i + 1).rotate_left(17))
            .collect();
        let dim = IxDyn(&shape);
        match dtype {
            0 => Tensor::F32(
                ArrayD::from_shape_vec(
                    dim,
                    vals.iter()
                        .map(|v| f32::from_bits(*v as u32 & 0x7f7f_ffff))
                        .collect(),
                )
                .unwrap(),
            ),
            1 => Tensor::F64(
                ArrayD::from_shape_vec(
                    dim,
                    vals.iter().map(|v| (*v as i64) as f64 / 3.0).collect(),
                )
                .unwrap(),
            ),
            2 => Tensor::I32(
                ArrayD::from_shape_vec(dim, vals.iter().map(|v| *v as i32).collect()).unwrap(),
            ),
            3 => Tensor::I64(
                ArrayD::from_shape_vec(dim, vals.iter().map(|v| *v as i64).collect()).unwrap(),
            ),
            _ => Tensor::U8(
                ArrayD::from_shape_vec(dim, vals.iter().map(|v| *v as u8).collect()).unwrap(),
            ),
        }
    })
}

fn model() -> impl Strategy<Value = ModelData> {
    prop::collection::btree_map("[a-z_.]{1,12}", tensor(), 0..5).prop_map(|m| ModelData {
        params: m.into_iter().map(|(k, t)| (k, t.to_proto())).collect(),
    })
}

/// A chain of up to three steps, each gzip or AES-GCM, in any order.
fn chain(steps: &[bool], seed: u64) -> TransformChain {
    TransformChain::new(
        steps
            .iter()
            .enumerate()
            .map(|(i, gzip)| -> Box<dyn ModelTransformer> {
                if *gzip {
                    Box::new(MessageCompressor::gzip(1 + i as u32))
                } else {
                    let rng = ChaCha8Rng::seed_from_u64(seed ^ i as u64);
                    Box::new(ModelEncryptor::new([i as u8 + 1; 32], rng))
                }
            })
            .collect(),
    )
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 128,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn tensor_round_trips_through_ndarray(t in tensor()) {
        let back = Tensor::from_proto(&t.to_proto()).unwrap();
        prop_assert_eq!(back.shape(), t.shape());
        // Compare through bytes so NaN payloads compare equal.
        prop_assert_eq!(back.to_proto(), t.to_proto());
    }

    #[test]
    fn model_round_trips_through_any_chain(
        m in model(),
        steps in prop::collection::vec(any::<bool>(), 0..4),
        seed in any::<u64>(),
    ) {
        let mut tx = chain(&steps, seed);
        let wire = tx.encode(m.clone()).unwrap().encode_to_vec();
        let rx = chain(&steps, seed.wrapping_add(1));
        let back = rx.decode(ModelData::decode(Bytes::from(wire)).unwrap()).unwrap();
        prop_assert_eq!(back, m);
    }

    #[test]
    fn tampering_after_encryption_is_detected(
        m in model(),
        gzip_first in any::<bool>(),
        pos in any::<prop::sample::Index>(),
        flip in 1u8..=255,
    ) {
        let steps = if gzip_first { vec![true, false] } else { vec![false] };
        let wire = chain(&steps, 1).encode(m).unwrap().encode_to_vec();
        let mut bad = wire.clone();
        let i = pos.index(bad.len());
        bad[i] ^= flip;
        let detected = match ModelData::decode(Bytes::from(bad)) {
            Err(_) => true,
            Ok(decoded) => chain(&steps, 2).decode(decoded).is_err(),
        };
        prop_assert!(detected, "flip {flip:#x} at byte {i} of {} went unnoticed", wire.len());
    }
}

#[test]
fn empty_model_is_still_authenticated() {
    let mut enc = ModelEncryptor::new([1; 32], ChaCha8Rng::seed_from_u64(0));
    let sealed = enc.encode(ModelData::default()).unwrap();
    assert_eq!(sealed.params.len(), 1, "the manifest alone");
    let mut stripped = sealed.clone();
    stripped.params.clear();
    assert!(enc.decode(stripped).is_err());
    let mut forged = sealed;
    forged.params.insert(
        "w".into(),
        NDArray {
            ndarray: Bytes::from(vec![0u8; 40]),
        },
    );
    assert!(enc.decode(forged).is_err());
}
