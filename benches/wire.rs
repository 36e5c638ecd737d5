//! W2's bytes path: a ~10M-parameter model through ModelData encode -> decode, plain, gzip,
//! AES-GCM and gzip+AES-GCM, beside a memcpy of the same bytes (the physical limit).
//!
//! Run with `cargo bench --bench wire`. Compare each throughput with `memcpy` of the same run.

use std::hint::black_box;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use fedsim::fed_learn::pb::ModelData;
use fedsim::fed_learn::{
    ndarray_to_proto, proto_to_ndarray, MessageCompressor, ModelEncryptor, ModelTransformer,
    TransformChain,
};
use ndarray::{Array, ArrayD, IxDyn};
use prost::Message as _;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// An MLP of 3072 -> 3072 -> 192 -> 10: 10,038,730 f32 parameters, about 40 MB.
fn mlp_params() -> Vec<(String, ArrayD<f32>)> {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let shapes: [(&str, &[usize]); 6] = [
        ("fc1.weight", &[3072, 3072]),
        ("fc1.bias", &[3072]),
        ("fc2.weight", &[3072, 192]),
        ("fc2.bias", &[192]),
        ("fc3.weight", &[192, 10]),
        ("fc3.bias", &[10]),
    ];
    shapes
        .iter()
        .map(|(name, shape)| {
            let n: usize = shape.iter().product();
            let v: Vec<f32> = (0..n).map(|_| rng.random_range(-0.05..0.05)).collect();
            (
                name.to_string(),
                Array::from_shape_vec(IxDyn(shape), v).unwrap(),
            )
        })
        .collect()
}

fn encode(params: &[(String, ArrayD<f32>)], chain: &mut TransformChain) -> Vec<u8> {
    let model = ModelData {
        params: params
            .iter()
            .map(|(k, a)| (k.clone(), ndarray_to_proto(a)))
            .collect(),
    };
    chain.encode(model).unwrap().encode_to_vec()
}

fn decode(wire: Bytes, chain: &mut TransformChain) -> Vec<ArrayD<f32>> {
    let model = chain.decode(ModelData::decode(wire).unwrap()).unwrap();
    model
        .params
        .values()
        .map(|nd| proto_to_ndarray(nd).unwrap())
        .collect()
}

fn chain(kind: &str) -> TransformChain {
    let aes = || -> Box<dyn ModelTransformer> {
        Box::new(ModelEncryptor::new([3; 32], ChaCha8Rng::seed_from_u64(1)))
    };
    let gzip = || -> Box<dyn ModelTransformer> { Box::new(MessageCompressor::gzip(1)) };
    TransformChain::new(match kind {
        "plain" => vec![],
        "gzip" => vec![gzip()],
        "aes-gcm" => vec![aes()],
        _ => vec![gzip(), aes()],
    })
}

fn bench(c: &mut Criterion) {
    let params = mlp_params();
    let raw: usize = params.iter().map(|(_, a)| a.len() * 4).sum();
    let mut g = c.benchmark_group("w2_wire");
    g.sample_size(10);
    g.throughput(Throughput::Bytes(raw as u64));

    let src = vec![1u8; raw];
    let mut dst = vec![0u8; raw];
    g.bench_function("memcpy", |b| {
        b.iter(|| {
            dst.copy_from_slice(black_box(&src));
            black_box(&dst);
        })
    });

    for kind in ["plain", "gzip", "aes-gcm", "gzip+aes-gcm"] {
        let mut tx = chain(kind);
        g.bench_function(format!("encode/{kind}"), |b| {
            b.iter(|| encode(&params, &mut tx))
        });
        let wire = Bytes::from(encode(&params, &mut chain(kind)));
        let mut rx = chain(kind);
        g.bench_function(format!("decode/{kind}"), |b| {
            b.iter(|| decode(wire.clone(), &mut rx))
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
