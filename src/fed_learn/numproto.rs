//! Tensors to and from `NDArray` messages. An `NDArray` holds the bytes of a .npy v1.0 file,
//! exactly what numpy's `np.save(allow_pickle=False)` writes, as Clara and NVFlare do: any
//! protobuf library plus numpy can read fedsim's models.

use std::cell::RefCell;
use std::io::Cursor;

use bytes::Bytes;
use ndarray::{ArrayBase, ArrayD, Data, Dimension};
use ndarray_npy::npy::header::Header;
use ndarray_npy::{ReadNpyError, ReadNpyExt};

use super::npy_fast::{self, NpyElement};
use super::pb::NDArray;

/// Why an `NDArray` could not become an array.
#[derive(Debug, thiserror::Error)]
pub enum NumprotoError {
    /// The bytes are not a valid .npy file of the requested element type.
    #[error("invalid .npy payload: {0}")]
    Npy(#[from] ReadNpyError),
    /// The .npy header names a dtype fedsim does not carry.
    #[error("unsupported dtype {0}")]
    UnsupportedDtype(String),
    /// The .npy header nests deeper than the dict numpy writes (a dict holding a tuple).
    #[error("invalid .npy payload: the header nests deeper than numpy's")]
    DeepHeader,
}

/// The deepest bracket nesting a .npy header of a plain array has: the dict, and the shape
/// tuple inside it.
const HEADER_DEPTH: usize = 2;

/// Refuses a header that nests deeper than a plain array's, before ndarray-npy's general
/// Python-literal parser sees it: that parser takes exponential time on deeply nested braces
/// (a fuzzer's find), and fedsim carries no structured dtypes anyway.
fn check_depth(npy: &[u8]) -> Result<(), NumprotoError> {
    // The header is as long as its length field says (newlines and all): two bytes after the
    // version in format 1, four in formats 2 and 3. Anything else is scanned as far as 64 KiB.
    let header = match npy.get(6) {
        Some(1) => npy
            .get(8..10)
            .map(|l| (10, usize::from(u16::from_le_bytes([l[0], l[1]])))),
        Some(2 | 3) => npy
            .get(8..12)
            .map(|l| (12, u32::from_le_bytes([l[0], l[1], l[2], l[3]]) as usize)),
        _ => None,
    };
    let (start, len): (usize, usize) = header.unwrap_or((0, 1 << 16));
    let end = start.saturating_add(len).min(npy.len());
    let mut depth = 0usize;
    for &b in npy.get(start.min(end)..end).unwrap_or_default() {
        match b {
            b'{' | b'[' | b'(' => {
                depth += 1;
                if depth > HEADER_DEPTH {
                    return Err(NumprotoError::DeepHeader);
                }
            }
            b'}' | b']' | b')' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

/// Encodes an array of any rank and layout as an `NDArray`.
///
/// The header is laid out exactly as numpy 1.x/2.x's `np.save` lays it out (the trailing
/// `", "` before `}`, the spaces that leave room for the shape to grow, 64-byte alignment),
/// so fedsim's bytes equal numpy's for the same C- or Fortran-order array. The data bytes are
/// written by ndarray-npy.
pub fn ndarray_to_proto<A, S, D>(array: &ArrayBase<S, D>) -> NDArray
where
    A: NpyElement,
    S: Data<Elem = A>,
    D: Dimension,
{
    let fortran = !array.is_standard_layout() && array.t().is_standard_layout();
    let standard;
    let data = match array.as_slice_memory_order() {
        Some(s) if array.is_standard_layout() || fortran => s,
        _ => {
            standard = array.as_standard_layout();
            standard
                .as_slice_memory_order()
                .expect("standard layout is contiguous")
        }
    };
    npy_bytes(fortran, array.shape(), data)
}

/// The .npy file of `data` (in memory order) as an array of `shape`: header, then data.
fn npy_bytes<A: NpyElement>(fortran: bool, shape: &[usize], data: &[A]) -> NDArray {
    let mut buf = Vec::with_capacity(128 + std::mem::size_of_val(data));
    with_header::<A>(fortran, shape, |h| buf.extend_from_slice(h));
    if cfg!(target_endian = "little") && !crate::fastpath::reference_only() {
        buf.extend_from_slice(npy_fast::native_bytes(data));
    } else {
        A::write_slice(data, &mut buf)
            .expect("writing .npy data to a Vec cannot fail for the supported element types");
    }
    NDArray {
        ndarray: Bytes::from(buf),
    }
}

/// An `NDArray` of a C-order f32 array of `shape` whose elements `write` puts, in order, into
/// the slice it is given: the same bytes as [`ndarray_to_proto`] of that array, for callers
/// that hold the values in another layout and would otherwise copy them into an array first.
/// `write` must set every element: it is handed a reused buffer.
pub(crate) fn f32_to_proto(shape: &[usize], write: impl FnOnce(&mut [f32])) -> NDArray {
    let mut buf = Vec::with_capacity(f32_npy_len(shape));
    put_f32_npy(shape, write, &mut buf);
    NDArray {
        ndarray: Bytes::from(buf),
    }
}

/// The length of the .npy file of a C-order f32 array of `shape`.
pub(crate) fn f32_npy_len(shape: &[usize]) -> usize {
    let mut len = 0;
    with_header::<f32>(false, shape, |h| len = h.len());
    len + 4 * shape.iter().product::<usize>()
}

/// Appends the .npy file of [`f32_to_proto`] (the same bytes) to `buf`, for a caller that
/// writes it straight into a frame.
pub(crate) fn put_f32_npy(
    shape: &[usize],
    write: impl FnOnce(&mut [f32]),
    buf: &mut dyn bytes::BufMut,
) {
    thread_local! {
        static VALUES: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
    }
    let n: usize = shape.iter().product();
    with_header::<f32>(false, shape, |h| buf.put_slice(h));
    VALUES.with_borrow_mut(|values| {
        if values.len() < n {
            values.resize(n, 0.0);
        }
        let values = &mut values[..n];
        write(values);
        if cfg!(target_endian = "little") && !crate::fastpath::reference_only() {
            buf.put_slice(npy_fast::native_bytes(values));
        } else {
            values.iter().for_each(|v| buf.put_f32_le(*v));
        }
    })
}

/// A header made before: element type, order, shape, and its bytes.
type CachedHeader = (&'static str, bool, Vec<usize>, Vec<u8>);

thread_local! {
    /// Each thread's last few headers. A federation encodes the same few tensor shapes over
    /// and over, and formatting a header (the dtype through `py_literal`, the dict through
    /// `fmt`) cost more than copying the tensor's bytes.
    static HEADERS: RefCell<Vec<CachedHeader>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` on the .npy header of an `A` array of `shape`, made once per thread.
fn with_header<A: NpyElement>(fortran: bool, shape: &[usize], f: impl FnOnce(&[u8])) {
    const KEEP: usize = 8;
    let ty = std::any::type_name::<A>();
    HEADERS.with_borrow_mut(|cache| {
        let hit = cache
            .iter()
            .position(|(t, o, s, _)| *t == ty && *o == fortran && s == shape);
        let i = hit.unwrap_or_else(|| {
            if cache.len() == KEEP {
                cache.remove(0);
            }
            let descr = A::type_descriptor().to_string();
            let header = npy_header(&descr, fortran, shape);
            cache.push((ty, fortran, shape.to_vec(), header));
            cache.len() - 1
        });
        f(&cache[i].3)
    })
}

/// numpy's .npy v1.0 header: magic, version, length, the dict, padding, newline.
fn npy_header(descr: &str, fortran: bool, shape: &[usize]) -> Vec<u8> {
    use std::fmt::Write as _;
    // numpy leaves room for the growth axis (first for C order, last for Fortran) to reach
    // 21 digits, so a file can be appended to in place.
    const GROWTH_AXIS_MAX_DIGITS: usize = 21;
    const ALIGN: usize = 64;
    let mut dict = String::with_capacity(128);
    let order = if fortran { "True" } else { "False" };
    let _ = write!(
        dict,
        "{{'descr': {descr}, 'fortran_order': {order}, 'shape': ("
    );
    for (i, n) in shape.iter().enumerate() {
        if i > 0 {
            dict.push_str(", ");
        }
        let _ = write!(dict, "{n}");
    }
    if shape.len() == 1 {
        dict.push(',');
    }
    dict.push_str("), }");
    let growth = if fortran { shape.last() } else { shape.first() };
    if let Some(n) = growth {
        let digits = n.to_string().len();
        dict.extend(std::iter::repeat_n(
            ' ',
            GROWTH_AXIS_MAX_DIGITS.saturating_sub(digits),
        ));
    }
    let hlen = dict.len() + 1;
    let pad = ALIGN - ((6 + 2 + 2 + hlen) % ALIGN);
    let mut out = Vec::with_capacity(10 + hlen + pad);
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&((hlen + pad) as u16).to_le_bytes());
    out.extend_from_slice(dict.as_bytes());
    out.extend(std::iter::repeat_n(b' ', pad));
    out.push(b'\n');
    out
}

/// Copies the elements of the .npy file `npy` (an `NDArray`'s bytes) into `out` (replacing
/// its contents) if it is a C-order array of `A` of exactly `shape` in the machine's byte
/// order, as fedsim writes them, without building an array; `None` for anything else, which
/// [`proto_to_ndarray`] then reads or rejects.
pub(crate) fn npy_into<A: NpyElement>(npy: &[u8], shape: &[usize], out: &mut Vec<A>) -> Option<()> {
    if crate::fastpath::reference_only() {
        return None;
    }
    if let Some(data) = as_written::<A>(npy, shape) {
        npy_fast::native_copy_into(data, data.len() / A::SIZE, out);
        return Some(());
    }
    npy_fast::read_into(npy, shape, out)
}

/// The array of `shape` in the .npy file `npy` (an `NDArray`'s bytes) when it is a
/// well-formed numpy file of `A` in numpy's own header layout (what [`proto_to_ndarray`]
/// reads first); `None` for anything else, another shape included, which `proto_to_ndarray`
/// then reads or rejects.
pub(crate) fn npy_to_ndarray_shaped<A: NpyElement>(
    npy: &[u8],
    shape: &[usize],
) -> Option<ArrayD<A>> {
    if crate::fastpath::reference_only() {
        return None;
    }
    if let Some(data) = as_written::<A>(npy, shape) {
        let mut v = Vec::new();
        npy_fast::native_copy_into(data, data.len() / A::SIZE, &mut v);
        return ArrayD::from_shape_vec(shape, v).ok();
    }
    npy_fast::read(npy).filter(|a| a.shape() == shape)
}

/// The data of `npy` when its header is, byte for byte, the one fedsim writes for a C-order
/// `A` array of `shape` and as many bytes follow as the shape needs: recognised by comparing
/// with the cached header rather than parsed on every tensor. The data is then
/// in the machine's byte order, on little-endian machines; elsewhere this declines.
fn as_written<'a, A: NpyElement>(npy: &'a [u8], shape: &[usize]) -> Option<&'a [u8]> {
    if !cfg!(target_endian = "little") {
        return None;
    }
    let len = shape
        .iter()
        .try_fold(A::SIZE, |len, &d| len.checked_mul(d))?;
    let mut data = None;
    with_header::<A>(false, shape, |h| {
        data = npy.strip_prefix(h).filter(|d| d.len() == len);
    });
    data
}

/// Decodes an `NDArray` into an array of element type `A`. A dtype other than `A`'s, a
/// truncated buffer or garbage gives an error, never a panic.
pub fn proto_to_ndarray<A: NpyElement>(nd: &NDArray) -> Result<ArrayD<A>, NumprotoError> {
    if !crate::fastpath::reference_only() {
        if let Some(a) = npy_fast::read::<A>(&nd.ndarray) {
            return Ok(a);
        }
    }
    check_depth(&nd.ndarray)?;
    Ok(ArrayD::<A>::read_npy(Cursor::new(&nd.ndarray[..]))?)
}

/// An array whose element type is known only at run time, as read from a .npy header.
#[derive(Debug, Clone, PartialEq)]
pub enum Tensor {
    /// numpy `float32`.
    F32(ArrayD<f32>),
    /// numpy `float64`.
    F64(ArrayD<f64>),
    /// numpy `int32`.
    I32(ArrayD<i32>),
    /// numpy `int64`.
    I64(ArrayD<i64>),
    /// numpy `uint8`.
    U8(ArrayD<u8>),
}

impl Tensor {
    /// Encodes the tensor as an `NDArray`.
    pub fn to_proto(&self) -> NDArray {
        match self {
            Tensor::F32(a) => ndarray_to_proto(a),
            Tensor::F64(a) => ndarray_to_proto(a),
            Tensor::I32(a) => ndarray_to_proto(a),
            Tensor::I64(a) => ndarray_to_proto(a),
            Tensor::U8(a) => ndarray_to_proto(a),
        }
    }

    /// Decodes an `NDArray` of any supported dtype, in either byte order.
    pub fn from_proto(nd: &NDArray) -> Result<Self, NumprotoError> {
        let descr = match npy_fast::parse_header(&nd.ndarray) {
            Some(h) => h.descr.to_string(),
            None => Header::from_reader(&mut Cursor::new(
                &nd.ndarray[..check_depth(&nd.ndarray).map(|_| nd.ndarray.len())?],
            ))
            .map_err(|e| NumprotoError::Npy(ReadNpyError::from(e)))?
            .type_descriptor
            .to_string(),
        };
        let kind = descr.trim_matches(|c| c == '\'' || c == '"');
        let kind = kind.trim_start_matches(['<', '>', '|', '=']);
        Ok(match kind {
            "f4" => Tensor::F32(proto_to_ndarray(nd)?),
            "f8" => Tensor::F64(proto_to_ndarray(nd)?),
            "i4" => Tensor::I32(proto_to_ndarray(nd)?),
            "i8" => Tensor::I64(proto_to_ndarray(nd)?),
            "u1" => Tensor::U8(proto_to_ndarray(nd)?),
            _ => return Err(NumprotoError::UnsupportedDtype(descr)),
        })
    }

    /// The array's shape.
    pub fn shape(&self) -> &[usize] {
        match self {
            Tensor::F32(a) => a.shape(),
            Tensor::F64(a) => a.shape(),
            Tensor::I32(a) => a.shape(),
            Tensor::I64(a) => a.shape(),
            Tensor::U8(a) => a.shape(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{arr0, array, Array, IxDyn};

    #[test]
    fn a_header_nesting_deeper_than_numpys_is_refused_before_parsing() {
        let mut npy = b"\x93NUMPY\x01\x00v\x00{'descr': '<f4', 's': ".to_vec();
        npy.extend(std::iter::repeat_n(b'{', 40));
        npy.extend_from_slice(b"'shape': (10,) }\n");
        let nd = NDArray {
            ndarray: npy.into(),
        };
        assert!(matches!(
            proto_to_ndarray::<f32>(&nd),
            Err(NumprotoError::DeepHeader)
        ));
        assert!(matches!(
            Tensor::from_proto(&nd),
            Err(NumprotoError::DeepHeader)
        ));
    }

    #[test]
    fn headers_as_fedsim_writes_them_are_recognised_and_others_parsed() {
        if crate::fastpath::reference_only() {
            return; // This is the fast path's test; FEDSIM_KERNELS=portable turns it off.
        }
        let values: Vec<f32> = (0..12).map(|i| i as f32 * 0.5 - 2.0).collect();
        let shape = [3, 4];
        let mut npy = Vec::new();
        put_f32_npy(&shape, |v| v.copy_from_slice(&values), &mut npy);
        assert!(as_written::<f32>(&npy, &shape).is_some());
        let (mut out, want) = (
            vec![9.0; 2],
            Array::from_shape_vec(IxDyn(&shape), values.clone()),
        );
        assert_eq!(npy_into(&npy, &shape, &mut out), Some(()));
        assert_eq!(out, values);
        assert_eq!(npy_to_ndarray_shaped(&npy, &shape), want.clone().ok());
        // The same array with numpy's keys in another order: parsed, and the same values.
        let dict = b"{'fortran_order': False, 'shape': (3, 4), 'descr': '<f4', }";
        let mut other = b"\x93NUMPY\x01\x00".to_vec();
        let pad = 64 - (10 + dict.len() + 1) % 64;
        other.extend_from_slice(&((dict.len() + pad + 1) as u16).to_le_bytes());
        other.extend_from_slice(dict);
        other.extend(std::iter::repeat_n(b' ', pad));
        other.push(b'\n');
        other.extend_from_slice(&npy[npy.len() - 48..]);
        assert!(as_written::<f32>(&other, &shape).is_none());
        assert_eq!(npy_into(&other, &shape, &mut out), Some(()));
        assert_eq!(out, values);
        assert_eq!(npy_to_ndarray_shaped(&other, &shape), want.ok());
        // Another shape, a short file, another dtype: declined.
        assert!(as_written::<f32>(&npy, &[4, 3]).is_none());
        assert!(npy_to_ndarray_shaped::<f32>(&npy, &[4, 3]).is_none());
        assert!(npy_into(&npy[..npy.len() - 4], &shape, &mut out).is_none());
        assert!(as_written::<f64>(&npy, &shape).is_none());
    }

    #[test]
    fn f32_round_trip_keeps_values_and_shape() {
        let a = array![[1.0f32, 2.0, 3.0], [4.0, 5.0, 6.0]].into_dyn();
        let back: ArrayD<f32> = proto_to_ndarray(&ndarray_to_proto(&a)).unwrap();
        assert_eq!(back, a);
    }

    #[test]
    fn zero_d_and_empty_arrays_round_trip() {
        let z = arr0(2.5f64).into_dyn();
        assert_eq!(proto_to_ndarray::<f64>(&ndarray_to_proto(&z)).unwrap(), z);
        let e = Array::<i64, _>::zeros(IxDyn(&[0, 3]));
        assert_eq!(proto_to_ndarray::<i64>(&ndarray_to_proto(&e)).unwrap(), e);
    }

    #[test]
    fn wrong_dtype_is_an_error() {
        let nd = ndarray_to_proto(&array![1i32, 2]);
        assert!(proto_to_ndarray::<f32>(&nd).is_err());
        assert!(matches!(Tensor::from_proto(&nd).unwrap(), Tensor::I32(_)));
    }

    #[test]
    fn truncated_and_garbage_bytes_are_errors() {
        let nd = ndarray_to_proto(&array![[1.0f32, 2.0], [3.0, 4.0]]);
        for cut in [0, 5, 10, nd.ndarray.len() - 1] {
            let bad = NDArray {
                ndarray: nd.ndarray.slice(..cut),
            };
            assert!(proto_to_ndarray::<f32>(&bad).is_err(), "cut at {cut}");
            assert!(Tensor::from_proto(&bad).is_err(), "cut at {cut}");
        }
        let junk = NDArray {
            ndarray: Bytes::from_static(b"\x93NUMPY\x01\x00\xff\xffgarbage"),
        };
        assert!(Tensor::from_proto(&junk).is_err());
    }

    #[test]
    fn unsupported_dtype_is_named() {
        let mut bytes = npy_header("'<i2'", false, &[2]);
        bytes.extend_from_slice(&[1, 0, 2, 0]);
        let nd = NDArray {
            ndarray: Bytes::from(bytes),
        };
        let err = Tensor::from_proto(&nd).unwrap_err();
        assert!(err.to_string().contains("i2"), "{err}");
    }
}
