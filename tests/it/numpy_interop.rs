//! fedsim's .npy bytes against numpy's own: fixtures in tests/fixtures were written by numpy
//! (see make_fixtures.py there). Each decodes to the right values, and where numpy's layout is
//! the one fedsim writes, fedsim's bytes equal numpy's byte for byte.

use bytes::Bytes;
use fedsim::fed_learn::pb::NDArray;
use fedsim::fed_learn::{ndarray_to_proto, proto_to_ndarray, Tensor};
use ndarray::{arr0, array, Array, ArrayD, IxDyn, ShapeBuilder};

fn fixture(name: &str) -> NDArray {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    NDArray {
        ndarray: Bytes::from(std::fs::read(path).unwrap()),
    }
}

#[test]
fn c_order_f32_matches_numpy_both_ways() {
    let expected = array![[1.5f32, -2.0, 3.25], [4.0, 0.0, -6.5]].into_dyn();
    let nd = fixture("c_f32_2x3.npy");
    assert_eq!(proto_to_ndarray::<f32>(&nd).unwrap(), expected);
    assert_eq!(ndarray_to_proto(&expected).ndarray, nd.ndarray);
}

#[test]
fn fortran_order_matches_numpy_both_ways() {
    let nd = fixture("fortran_f64_2x3.npy");
    let got = proto_to_ndarray::<f64>(&nd).unwrap();
    let expected = array![[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]].into_dyn();
    assert_eq!(got, expected);
    let fortran = Array::from_shape_vec((2, 3).f(), vec![0.0, 3.0, 1.0, 4.0, 2.0, 5.0])
        .unwrap()
        .into_dyn();
    assert_eq!(fortran, expected);
    assert_eq!(ndarray_to_proto(&fortran).ndarray, nd.ndarray);
}

#[test]
fn big_endian_f4_decodes() {
    let got = proto_to_ndarray::<f32>(&fixture("big_endian_f4.npy")).unwrap();
    assert_eq!(got, array![1.0f32, -2.5, 1e10].into_dyn());
    // fedsim always writes little-endian: the bytes differ, the values do not.
    let ours = ndarray_to_proto(&got);
    assert_eq!(proto_to_ndarray::<f32>(&ours).unwrap(), got);
}

#[test]
fn zero_d_f64_matches_numpy_both_ways() {
    let nd = fixture("scalar_f64.npy");
    let expected = arr0(std::f64::consts::PI).into_dyn();
    assert_eq!(proto_to_ndarray::<f64>(&nd).unwrap(), expected);
    assert_eq!(ndarray_to_proto(&expected).ndarray, nd.ndarray);
}

#[test]
fn empty_i64_matches_numpy_both_ways() {
    let nd = fixture("empty_i64.npy");
    let expected: ArrayD<i64> = Array::zeros(IxDyn(&[0]));
    assert_eq!(proto_to_ndarray::<i64>(&nd).unwrap(), expected);
    assert_eq!(ndarray_to_proto(&expected).ndarray, nd.ndarray);
}

#[test]
fn i32_and_u8_match_numpy_both_ways() {
    let nd = fixture("c_i32_3d.npy");
    let expected = Array::from_shape_vec((2, 3, 4), (0..24).collect())
        .unwrap()
        .into_dyn();
    assert_eq!(proto_to_ndarray::<i32>(&nd).unwrap(), expected);
    assert_eq!(ndarray_to_proto(&expected).ndarray, nd.ndarray);
    let nd = fixture("c_u8.npy");
    let expected = array![0u8, 7, 255].into_dyn();
    assert_eq!(proto_to_ndarray::<u8>(&nd).unwrap(), expected);
    assert_eq!(ndarray_to_proto(&expected).ndarray, nd.ndarray);
}

#[test]
fn dynamic_decoding_finds_each_fixtures_dtype() {
    let cases = [
        ("c_f32_2x3.npy", "f32"),
        ("fortran_f64_2x3.npy", "f64"),
        ("big_endian_f4.npy", "f32"),
        ("scalar_f64.npy", "f64"),
        ("empty_i64.npy", "i64"),
        ("c_i32_3d.npy", "i32"),
        ("c_u8.npy", "u8"),
    ];
    for (file, dtype) in cases {
        let t = Tensor::from_proto(&fixture(file)).unwrap();
        let got = match t {
            Tensor::F32(_) => "f32",
            Tensor::F64(_) => "f64",
            Tensor::I32(_) => "i32",
            Tensor::I64(_) => "i64",
            Tensor::U8(_) => "u8",
        };
        assert_eq!(got, dtype, "{file}");
    }
}
