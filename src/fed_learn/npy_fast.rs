//! A fast reader for the .npy headers numpy writes.
//!
//! ndarray-npy parses the header dict with a general Python-literal grammar (pest); on the small
//! tensors federated clients exchange, that parse cost more than everything else the tensor
//! needs (figures in PERFORMANCE.md). This reader understands exactly the dict numpy writes — `descr`, `fortran_order`
//! and `shape`, in any order — and anything else falls back to ndarray-npy, which also produces
//! every error message. So this is a shortcut, never a second source of truth.

use ndarray::{ArrayD, Dimension, IxDyn, ShapeBuilder};
use ndarray_npy::{ReadableElement, WritableElement};

mod sealed {
    /// Only the plain numeric types below: every bit pattern of them is a valid value, which
    /// the byte-copying fast paths rely on.
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for f64 {}
    impl Sealed for i32 {}
    impl Sealed for i64 {}
    impl Sealed for u8 {}
}

/// Element types fedsim carries in tensors (sealed: f32, f64, i32, i64, u8).
pub trait NpyElement:
    sealed::Sealed + ReadableElement + WritableElement + bytemuck::Pod + 'static
{
    /// The dtype kind and size in a descr, for example `"f4"`.
    const KIND: &'static str;
    /// Bytes per element.
    const SIZE: usize;
    /// Decodes one little-endian element.
    fn from_le(b: &[u8]) -> Self;
    /// Decodes one big-endian element.
    fn from_be(b: &[u8]) -> Self;
}

macro_rules! npy_element {
    ($t:ty, $kind:literal) => {
        impl NpyElement for $t {
            const KIND: &'static str = $kind;
            const SIZE: usize = std::mem::size_of::<$t>();
            fn from_le(b: &[u8]) -> Self {
                <$t>::from_le_bytes(b.try_into().expect("exact chunk"))
            }
            fn from_be(b: &[u8]) -> Self {
                <$t>::from_be_bytes(b.try_into().expect("exact chunk"))
            }
        }
    };
}
npy_element!(f32, "f4");
npy_element!(f64, "f8");
npy_element!(i32, "i4");
npy_element!(i64, "i8");
npy_element!(u8, "u1");

/// A parsed header and where the data starts.
#[derive(Debug, PartialEq)]
pub(crate) struct Header<'a> {
    pub descr: &'a str,
    pub fortran: bool,
    /// ndarray's dynamic shape, which holds up to four dimensions without allocating.
    pub shape: IxDyn,
    pub data_at: usize,
}

/// Parses a numpy-style header, or `None` if it is anything else.
pub(crate) fn parse_header(b: &[u8]) -> Option<Header<'_>> {
    if b.len() < 10 || &b[..6] != b"\x93NUMPY" {
        return None;
    }
    let (len, start): (usize, usize) = match b[6] {
        1 => (u16::from_le_bytes([b[8], b[9]]) as usize, 10),
        2 | 3 if b.len() >= 12 => (u32::from_le_bytes([b[8], b[9], b[10], b[11]]) as usize, 12),
        _ => return None,
    };
    let raw = b.get(start..start.checked_add(len)?)?;
    let (descr, fortran, shape) = match canonical(raw) {
        Some(dict) => dict,
        None => {
            let (descr, fortran, shape) = general(std::str::from_utf8(raw).ok()?)?;
            (descr, fortran, IxDyn(&shape))
        }
    };
    Some(Header {
        descr,
        fortran,
        shape,
        data_at: start + len,
    })
}

/// The header dict's three keys in any order and spacing: `(descr, fortran_order, shape)`.
fn general(text: &str) -> Option<(&str, bool, Vec<usize>)> {
    let mut p = Dict {
        s: text.trim_ascii_end().strip_prefix('{')?.trim_ascii_start(),
    };
    let (mut descr, mut fortran, mut shape) = (None, None, None);
    while !p.s.starts_with('}') {
        let key = p.quoted()?;
        p.expect(':')?;
        match key {
            "descr" => descr = Some(p.quoted()?),
            "fortran_order" => fortran = Some(p.boolean()?),
            "shape" => shape = Some(p.tuple()?),
            _ => return None,
        }
        if !p.s.starts_with('}') {
            p.expect(',')?;
        }
    }
    Some((descr?, fortran?, shape?))
}

/// The dict exactly as numpy (and fedsim) lays it out, `{'descr': '<f4', 'fortran_order':
/// False, 'shape': (60, 10), }` then spaces and a newline, read byte by byte; `None` for any
/// other spelling, which the general parser then reads. Nearly every tensor on the wire takes
/// this path, at a tenth of the general parser's cost.
fn canonical(text: &[u8]) -> Option<(&str, bool, IxDyn)> {
    let rest = text.strip_prefix(b"{'descr': '")?;
    let end = rest.iter().position(|&c| c == b'\'')?;
    let descr = std::str::from_utf8(&rest[..end]).ok()?;
    let rest = rest[end..].strip_prefix(b"', 'fortran_order': ")?;
    let (fortran, rest) = match rest.strip_prefix(b"False") {
        Some(rest) => (false, rest),
        None => (true, rest.strip_prefix(b"True")?),
    };
    let mut rest = rest.strip_prefix(b", 'shape': (")?;
    // Up to eight dimensions on the stack (more go to the general parser).
    let (mut shape, mut dims) = ([0usize; 8], 0);
    loop {
        let digits = rest.iter().take_while(|c| c.is_ascii_digit()).count();
        if digits == 0 {
            break;
        }
        let dim = rest[..digits].iter().try_fold(0usize, |n, &c| {
            n.checked_mul(10)?.checked_add(usize::from(c - b'0'))
        })?;
        *shape.get_mut(dims)? = dim;
        dims += 1;
        rest = &rest[digits..];
        match (rest.strip_prefix(b", "), rest.strip_prefix(b",")) {
            (Some(more), _) => rest = more,
            (None, Some(last)) => {
                rest = last;
                break;
            }
            (None, None) => break,
        }
    }
    let rest = rest.strip_prefix(b"), }")?;
    rest.iter()
        .all(|&c| c == b' ' || c == b'\n')
        .then(|| (descr, fortran, IxDyn(&shape[..dims])))
}

/// A cursor over the dict text.
struct Dict<'a> {
    s: &'a str,
}

impl<'a> Dict<'a> {
    fn expect(&mut self, c: char) -> Option<()> {
        self.s = self.s.strip_prefix(c)?.trim_ascii_start();
        Some(())
    }

    fn quoted(&mut self) -> Option<&'a str> {
        let q = self.s.chars().next().filter(|c| *c == '\'' || *c == '"')?;
        let rest = &self.s[1..];
        let end = rest.find(q)?;
        self.s = rest[end + 1..].trim_ascii_start();
        Some(&rest[..end])
    }

    fn boolean(&mut self) -> Option<bool> {
        for (word, v) in [("True", true), ("False", false)] {
            if let Some(rest) = self.s.strip_prefix(word) {
                self.s = rest.trim_ascii_start();
                return Some(v);
            }
        }
        None
    }

    fn tuple(&mut self) -> Option<Vec<usize>> {
        self.expect('(')?;
        let end = self.s.find(')')?;
        let dims = self.s[..end]
            .split(',')
            .map(str::trim_ascii)
            .filter(|d| !d.is_empty())
            .map(|d| d.parse().ok())
            .collect::<Option<Vec<usize>>>()?;
        self.s = self.s[end + 1..].trim_ascii_start();
        Some(dims)
    }
}

/// Decodes `b` as an array of `A` if it is a well-formed numpy file of that dtype; `None`
/// sends the caller to the full reader.
pub(crate) fn read<A: NpyElement>(b: &[u8]) -> Option<ArrayD<A>> {
    let (h, data) = header_and_data::<A>(b)?;
    let n = h.shape.size_checked()?;
    let v = if byte_order::<A>(h.descr)? == cfg!(target_endian = "little") {
        let mut v = Vec::new();
        native_copy_into(data, n, &mut v);
        v
    } else {
        let decode = if cfg!(target_endian = "little") {
            A::from_be
        } else {
            A::from_le
        };
        data.chunks_exact(A::SIZE).map(decode).collect()
    };
    ArrayD::from_shape_vec(h.shape.set_f(h.fortran), v).ok()
}

/// [`read`] for a C-order array of exactly `shape` in the machine's byte order (what fedsim
/// writes): its elements, in memory order, replace `out`'s, and no array is built. `None` for
/// anything else (`out` then holds nothing of use), which the caller leaves to [`read`].
pub(crate) fn read_into<A: NpyElement>(b: &[u8], shape: &[usize], out: &mut Vec<A>) -> Option<()> {
    let (h, data) = header_and_data::<A>(b)?;
    let native = byte_order::<A>(h.descr)? == cfg!(target_endian = "little");
    (native && !h.fortran && h.shape.slice() == shape).then(|| {
        native_copy_into(data, data.len() / A::SIZE, out);
    })
}

/// The header of `b` and its data bytes, if `b` is a numpy file of `A` whose data is exactly
/// as long as its shape says.
fn header_and_data<A: NpyElement>(b: &[u8]) -> Option<(Header<'_>, &[u8])> {
    let h = parse_header(b)?;
    byte_order::<A>(h.descr)?;
    let n = h.shape.size_checked()?;
    let data = b.get(h.data_at..)?;
    (data.len() == n.checked_mul(A::SIZE)?).then_some((h, data))
}

/// For a descr of `A`'s dtype, whether its bytes are little-endian; `None` for another dtype
/// or an unknown byte order.
fn byte_order<A: NpyElement>(descr: &str) -> Option<bool> {
    let (order, kind) = descr.split_at_checked(1)?;
    if kind != A::KIND {
        return None;
    }
    match order {
        "<" => Some(true),
        ">" => Some(false),
        "|" if A::SIZE == 1 => Some(true),
        "=" => Some(cfg!(target_endian = "little")),
        _ => None,
    }
}

/// The elements' bytes in native order, without copying.
pub(crate) fn native_bytes<A: NpyElement>(data: &[A]) -> &[u8] {
    bytemuck::cast_slice(data)
}

/// Copies `n` native-order elements out of `data` (exactly `n * A::SIZE` bytes) into `v`,
/// replacing its contents, in one memcpy.
pub(crate) fn native_copy_into<A: NpyElement>(data: &[u8], n: usize, v: &mut Vec<A>) {
    assert_eq!(data.len(), n * A::SIZE);
    v.clear();
    v.resize(n, A::zeroed());
    // `data` may lie at any address in a frame, so it is copied as bytes into `v`.
    bytemuck::cast_slice_mut::<A, u8>(v).copy_from_slice(data);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A version 1.0 .npy header around `dict`, with no data after it.
    fn header(dict: &[u8]) -> Vec<u8> {
        let mut b = b"\x93NUMPY\x01\x00".to_vec();
        b.extend_from_slice(&(dict.len() as u16).to_le_bytes());
        b.extend_from_slice(dict);
        b
    }

    #[test]
    fn parses_numpy_headers_in_any_key_order() {
        let b = header(b"{'shape': (2, 3), 'fortran_order': True, 'descr': '<f4', }   \n");
        let h = parse_header(&b).unwrap();
        assert_eq!(
            h,
            Header {
                descr: "<f4",
                fortran: true,
                shape: IxDyn(&[2, 3]),
                data_at: b.len()
            }
        );
    }

    #[test]
    fn the_canonical_path_reads_what_the_general_parser_reads() {
        let dicts: [&[u8]; 7] = [
            b"{'descr': '<f4', 'fortran_order': False, 'shape': (60, 10), }          \n",
            b"{'descr': '<f8', 'fortran_order': True, 'shape': (3,), }   \n",
            b"{'descr': '|u1', 'fortran_order': False, 'shape': (), }\n",
            b"{'descr': '>i8', 'fortran_order': False, 'shape': (2, 3, 4), }\n",
            // Not canonical: these take the general path and must still parse.
            b"{'descr': '<f4', 'fortran_order': False, 'shape': (60,10), }\n",
            b"{\"descr\": \"<f4\", \"fortran_order\": False, \"shape\": (1, 2), }\n",
            b"{'fortran_order': False, 'descr': '<f4', 'shape': (7,), }\n",
        ];
        for (i, dict) in dicts.iter().enumerate() {
            let b = header(dict);
            let text = std::str::from_utf8(&b[10..]).unwrap();
            assert_eq!(canonical(&b[10..]).is_some(), i < 4, "{text}");
            let h = parse_header(&b).unwrap();
            let (descr, fortran, shape) = general(text).unwrap();
            assert_eq!(
                (descr, fortran, &shape[..]),
                (h.descr, h.fortran, h.shape.slice()),
                "{text}"
            );
        }
    }

    #[test]
    fn fedsims_own_tensors_take_the_canonical_path() {
        let shapes: [&[usize]; 4] = [&[60, 10], &[10], &[], &[2, 3, 4]];
        for shape in shapes {
            let a = ndarray::ArrayD::<f32>::zeros(shape);
            let nd = crate::fed_learn::numproto::ndarray_to_proto(&a);
            let len = usize::from(u16::from_le_bytes([nd.ndarray[8], nd.ndarray[9]]));
            let dict = canonical(&nd.ndarray[10..10 + len]);
            assert_eq!(dict, Some(("<f4", false, IxDyn(shape))));
        }
    }

    #[test]
    fn odd_headers_are_left_to_the_full_reader() {
        let b = header(b"{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (1,), }\n");
        assert!(parse_header(&b).is_none());
        assert!(parse_header(b"\x93NUMPY\x01").is_none());
        assert!(read::<f32>(b"garbage").is_none());
    }
}
