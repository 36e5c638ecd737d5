//! Protobuf messages read in place: where their fields lie in the bytes received, for the hot
//! paths that would otherwise decode into `String`s and maps only to read them once.
//!
//! Each reader accepts exactly the plain layout fedsim writes (known fields of the right wire
//! type, each message field once, map entries in key order) and gives `None` for anything
//! else, which the caller then hands to prost: prost stays the one judge of what an unusual
//! message means and of how every error is worded. Tests check the readers against prost.

use std::ops::Range;

use prost::encoding::{decode_key, decode_varint, WireType};
use prost::Message as _;

use super::pb;

/// Most tensors a [`Tensors`] holds (more go to prost).
const MAX_TENSORS: usize = 8;

/// One field's value.
pub(super) enum Field {
    /// A length-delimited field: where its bytes lie.
    Delimited(Range<usize>),
    /// A varint.
    Varint(u64),
    /// Eight bytes (a double).
    Fixed64(u64),
}

/// Calls `f` with each field of the message at `bytes[at]`, in order; `None` at the first
/// field that is malformed, of another wire type, or that `f` refuses. (Inlined: every
/// reader is a loop over a frame's fields, and a call per field would cost more than the
/// field's decoding.)
#[inline(always)]
pub(super) fn walk(
    bytes: &[u8],
    at: Range<usize>,
    mut f: impl FnMut(u32, Field) -> Option<()>,
) -> Option<()> {
    let mut rest = bytes.get(at.clone())?;
    while !rest.is_empty() {
        let (tag, wire) = decode_key(&mut rest).ok()?;
        let field = match wire {
            WireType::Varint => Field::Varint(decode_varint(&mut rest).ok()?),
            WireType::SixtyFourBit => {
                let (word, tail) = rest.split_first_chunk::<8>()?;
                rest = tail;
                Field::Fixed64(u64::from_le_bytes(*word))
            }
            WireType::LengthDelimited => {
                let len = usize::try_from(decode_varint(&mut rest).ok()?).ok()?;
                let start = at.end - rest.len();
                rest = rest.get(len..)?;
                Field::Delimited(start..start + len)
            }
            _ => return None,
        };
        f(tag, field)?;
    }
    Some(())
}

/// `range` if it is set for the first time; a message field seen twice would be merged by
/// prost, which is left to prost.
fn once(slot: &mut Option<Range<usize>>, range: Range<usize>) -> Option<()> {
    slot.replace(range).is_none().then_some(())
}

/// Where the fields of a message made only of the string fields `1..=N` lie in `bytes` (an
/// absent field is the empty range at 0): a reader can then take a counted reference to just
/// the one it needs. As in prost, a string seen twice keeps its last value.
pub(crate) fn string_fields<const N: usize>(bytes: &[u8]) -> Option<[Range<usize>; N]> {
    let mut fields = std::array::from_fn(|_| 0..0);
    walk(bytes, 0..bytes.len(), |tag, field| {
        let slot = fields.get_mut(usize::try_from(tag).ok()?.checked_sub(1)?)?;
        let Field::Delimited(r) = field else {
            return None;
        };
        std::str::from_utf8(&bytes[r.clone()]).ok()?;
        *slot = r;
        Some(())
    })?;
    Some(fields)
}

/// The tensors of a `ModelData`: each name's and .npy file's place, in name order.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Tensors {
    list: [(Range<usize>, Range<usize>); MAX_TENSORS],
    len: usize,
}

impl Tensors {
    /// Each tensor's name and .npy bytes, read from the `bytes` they were found in.
    pub fn iter<'a>(
        &'a self,
        bytes: &'a [u8],
    ) -> impl ExactSizeIterator<Item = (&'a str, &'a [u8])> {
        self.list[..self.len].iter().map(move |(name, npy)| {
            // Names were checked to be UTF-8 when found.
            let name = std::str::from_utf8(&bytes[name.clone()]).unwrap_or_default();
            (name, &bytes[npy.clone()])
        })
    }
}

/// The tensors of the `ModelData` at `bytes[at]`, if its entries come in strictly increasing
/// name order (as a map writes them, so none repeats), each with its name and `NDArray` once.
pub(crate) fn model_tensors(bytes: &[u8], at: Range<usize>) -> Option<Tensors> {
    let mut t = Tensors {
        list: std::array::from_fn(|_| (0..0, 0..0)),
        len: 0,
    };
    walk(bytes, at, |tag, field| {
        let (1, Field::Delimited(entry)) = (tag, field) else {
            return None;
        };
        let (mut name, mut npy) = (None, None);
        walk(bytes, entry, |tag, field| match (tag, field) {
            (1, Field::Delimited(r)) => once(&mut name, r),
            (2, Field::Delimited(r)) => once(&mut npy, tensor_bytes(bytes, r)?),
            _ => None,
        })?;
        let (name, npy) = (name.unwrap_or(0..0), npy.unwrap_or(0..0));
        let text = std::str::from_utf8(&bytes[name.clone()]).ok()?;
        if let Some((last, _)) = t.list[..t.len].last() {
            // Byte order is `str` order, the map's.
            (&bytes[last.clone()] < text.as_bytes()).then_some(())?;
        }
        *t.list.get_mut(t.len)? = (name, npy);
        t.len += 1;
        Some(())
    })?;
    Some(t)
}

/// Where the .npy bytes of the `NDArray` at `bytes[at]` lie.
fn tensor_bytes(bytes: &[u8], at: Range<usize>) -> Option<Range<usize>> {
    let mut npy = None;
    walk(bytes, at, |tag, field| match (tag, field) {
        (1, Field::Delimited(r)) => once(&mut npy, r),
        _ => None,
    })?;
    Some(npy.unwrap_or(0..0))
}

/// A `CurrentTask`, read in place.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TaskView {
    pub meta: Option<pb::MetaData>,
    /// Where the `ModelData` lies, if the task carries one.
    pub data: Option<Range<usize>>,
    /// The task's name (UTF-8, checked).
    pub task_name: Range<usize>,
    pub should_train: bool,
}

/// The `CurrentTask` in `bytes`.
pub(crate) fn current_task(bytes: &[u8]) -> Option<TaskView> {
    let (mut meta, mut data, mut task_name, mut should_train) = (None, None, 0..0, false);
    walk(bytes, 0..bytes.len(), |tag, field| {
        match (tag, field) {
            (1, Field::Delimited(r)) => once(&mut meta, r)?,
            (2, Field::Delimited(r)) => once(&mut data, r)?,
            (3, Field::Delimited(r)) => {
                std::str::from_utf8(&bytes[r.clone()]).ok()?;
                task_name = r;
            }
            (4, Field::Varint(v)) => should_train = v != 0,
            _ => return None,
        }
        Some(())
    })?;
    let meta = meta_data(bytes, meta)?;
    Some(TaskView {
        meta,
        data,
        task_name,
        should_train,
    })
}

/// The `MetaData` at `bytes[at]`, if there is one: `None` when it does not decode (for prost
/// to reject), `Some(None)` when the message has none. (It holds only numbers: decoding it
/// allocates nothing.)
fn meta_data(bytes: &[u8], at: Option<Range<usize>>) -> Option<Option<pb::MetaData>> {
    match at {
        Some(r) => pb::MetaData::decode(&bytes[r]).ok().map(Some),
        None => Some(None),
    }
}

/// A `Contribution`, read in place.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ContributionView {
    /// The `client` state's token (empty when there is no state).
    pub token: Range<usize>,
    pub n_iter: i64,
    /// The `type` field.
    pub kind: Range<usize>,
    pub meta: Option<pb::MetaData>,
    /// Where the `ModelData` lies, if there is one.
    pub data: Option<Range<usize>>,
    /// The `train_loss` metric, if reported.
    pub train_loss: Option<f64>,
}

/// The `Contribution` in `bytes`, if its metrics come in strictly increasing name order and
/// its client state is plain (see [`string_fields`]).
pub(crate) fn contribution(bytes: &[u8]) -> Option<ContributionView> {
    let (mut client, mut meta, mut data) = (None, None, None);
    let (mut n_iter, mut kind, mut task_name) = (0, 0..0, 0..0);
    let (mut last_metric, mut train_loss): (Option<Range<usize>>, _) = (None, None);
    walk(bytes, 0..bytes.len(), |tag, field| {
        match (tag, field) {
            (1, Field::Delimited(r)) => once(&mut client, r)?,
            (2, Field::Varint(v)) => n_iter = v as i64,
            (3, Field::Delimited(r)) => kind = r,
            (4, Field::Delimited(r)) => once(&mut meta, r)?,
            (5, Field::Delimited(r)) => once(&mut data, r)?,
            (6, Field::Delimited(r)) => task_name = r,
            (7, Field::Delimited(entry)) => {
                let (name, value) = metric(bytes, entry)?;
                if let Some(last) = &last_metric {
                    (bytes[last.clone()] < bytes[name.clone()]).then_some(())?;
                }
                if &bytes[name.clone()] == b"train_loss" {
                    train_loss = Some(value);
                }
                last_metric = Some(name);
            }
            _ => return None,
        }
        Some(())
    })?;
    for r in [&kind, &task_name] {
        std::str::from_utf8(&bytes[r.clone()]).ok()?;
    }
    let token = match client {
        Some(at) => {
            let state = &bytes[at.clone()];
            let [_, token, _] = string_fields::<3>(state)?;
            at.start + token.start..at.start + token.end
        }
        None => 0..0,
    };
    let meta = meta_data(bytes, meta)?;
    Some(ContributionView {
        token,
        n_iter,
        kind,
        meta,
        data,
        train_loss,
    })
}

/// A metrics map entry at `bytes[at]`: where its name lies (UTF-8, checked) and its value (0
/// when left out, as prost reads it).
fn metric(bytes: &[u8], at: Range<usize>) -> Option<(Range<usize>, f64)> {
    let (mut name, mut value) = (0..0, 0.0);
    walk(bytes, at.clone(), |tag, field| {
        match (tag, field) {
            (1, Field::Delimited(r)) => name = r,
            (2, Field::Fixed64(v)) => value = f64::from_bits(v),
            _ => return None,
        }
        Some(())
    })?;
    std::str::from_utf8(&bytes[name.clone()]).ok()?;
    Some((name, value))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fed_learn::ndarray_to_proto;
    use bytes::Bytes;

    fn task(names: &[&str]) -> pb::CurrentTask {
        let mut md = pb::ModelData::default();
        for (i, n) in names.iter().enumerate() {
            let a = ndarray::ArrayD::<f32>::from_elem(vec![2, i + 1], i as f32);
            md.params.insert(n.to_string(), ndarray_to_proto(&a));
        }
        pb::CurrentTask {
            meta_data: Some(pb::MetaData {
                current_round: 4,
                num_rounds: 9,
                ..Default::default()
            }),
            data: Some(md),
            task_name: "train".into(),
            should_train: true,
        }
    }

    /// What prost reads, from where the view says it lies.
    fn as_prost(bytes: &[u8], v: &TaskView) -> pb::CurrentTask {
        let data = v.data.clone().map(|at| {
            let t = model_tensors(bytes, at).expect("plain tensors");
            let params = t
                .iter(bytes)
                .map(|(n, npy)| {
                    let nd = pb::NDArray {
                        ndarray: Bytes::copy_from_slice(npy),
                    };
                    (n.to_string(), nd)
                })
                .collect();
            pb::ModelData { params }
        });
        pb::CurrentTask {
            meta_data: v.meta,
            data,
            task_name: std::str::from_utf8(&bytes[v.task_name.clone()])
                .unwrap()
                .into(),
            should_train: v.should_train,
        }
    }

    #[test]
    fn string_fields_are_found_where_prost_finds_them_or_left_to_prost() {
        let state = |id: &str, token: &str| pb::ClientState {
            client_id: id.into(),
            token: token.into(),
            status: String::new(),
        };
        let read = |b: &[u8]| {
            string_fields::<3>(b).map(|f| f.map(|r| std::str::from_utf8(&b[r]).unwrap().to_owned()))
        };
        for s in [
            state("client-0001", "tok"),
            state("", "t"),
            state("c", ""),
            state("", ""),
        ] {
            let b = s.encode_to_vec();
            let [id, token, status] = read(&b).unwrap();
            assert_eq!((id, token, status), (s.client_id, s.token, s.status));
        }
        // A field seen twice keeps its last value, as in prost.
        let mut twice = state("a", "first").encode_to_vec();
        twice.extend(state("", "second").encode_to_vec());
        assert_eq!(read(&twice).unwrap()[1], "second");
        // Anything else is prost's to decode or reject.
        let mut unknown = state("a", "b").encode_to_vec();
        unknown.extend_from_slice(&[9 << 3, 1]);
        let mut bad = state("a", "b").encode_to_vec();
        *bad.last_mut().unwrap() = 0xff;
        let mut short = state("a", "b").encode_to_vec();
        short.pop();
        let int = pb::ClientLogin {
            num_samples: 3,
            ..Default::default()
        }
        .encode_to_vec();
        for b in [unknown, bad, short, int] {
            assert_eq!(read(&b), None, "{b:?}");
        }
    }

    #[test]
    fn plain_tasks_read_as_prost_reads_them() {
        let bare = pb::CurrentTask::default();
        let no_model = pb::CurrentTask {
            data: None,
            ..task(&[])
        };
        for t in [
            task(&["W", "b"]),
            task(&["fc1.W", "fc1.b", "fc2.W"]),
            task(&[]),
            bare,
            no_model,
        ] {
            let b = t.encode_to_vec();
            let v = current_task(&b).expect("plain");
            assert_eq!(as_prost(&b, &v), t);
        }
    }

    /// A view of a contribution holds what prost reads for the fields it keeps.
    fn check_contribution(c: &pb::Contribution) {
        let b = c.encode_to_vec();
        let v = contribution(&b).expect("plain");
        let text = |r: Range<usize>| std::str::from_utf8(&b[r]).unwrap().to_owned();
        let token = c
            .client
            .as_ref()
            .map(|s| s.token.clone())
            .unwrap_or_default();
        assert_eq!(text(v.token), token);
        assert_eq!(text(v.kind), c.r#type);
        assert_eq!((v.n_iter, v.meta), (c.n_iter, c.meta_data));
        assert_eq!(
            v.train_loss.map(f64::to_bits),
            c.metrics.get("train_loss").map(|l| l.to_bits())
        );
        let tensors = v.data.map(|at| {
            let t = model_tensors(&b, at).unwrap();
            t.iter(&b)
                .map(|(n, npy)| (n.to_string(), npy.to_vec()))
                .collect::<Vec<_>>()
        });
        let want = c.data.as_ref().map(|md| {
            md.params
                .iter()
                .map(|(n, t)| (n.clone(), t.ndarray.to_vec()))
                .collect::<Vec<_>>()
        });
        assert_eq!(tensors, want);
    }

    #[test]
    fn plain_contributions_read_as_prost_reads_them() {
        let full = pb::Contribution {
            client: Some(pb::ClientState {
                client_id: "client-0003".into(),
                token: "tok".into(),
                status: String::new(),
            }),
            n_iter: -64,
            r#type: "train".into(),
            meta_data: task(&[]).meta_data,
            data: task(&["W", "b"]).data,
            task_name: "train".into(),
            metrics: [("a".to_string(), 2.0), ("train_loss".to_string(), 0.5)].into(),
        };
        let zero_loss = pb::Contribution {
            metrics: [("train_loss".to_string(), 0.0)].into(),
            ..full.clone()
        };
        for c in [full.clone(), zero_loss, pb::Contribution::default()] {
            check_contribution(&c);
        }
        // Anything unusual is prost's: an unknown field, the client twice, metrics out of order.
        let mut unknown = full.encode_to_vec();
        unknown.extend_from_slice(&[15 << 3, 1]);
        let mut twice = full.encode_to_vec();
        let client = pb::Contribution {
            client: full.client.clone(),
            ..Default::default()
        };
        twice.extend(client.encode_to_vec());
        let mut disorder = full.encode_to_vec();
        let metric = |name: &str| pb::Contribution {
            metrics: [(name.to_string(), 1.0)].into(),
            ..Default::default()
        };
        disorder.extend(metric("b").encode_to_vec());
        disorder.extend(metric("a").encode_to_vec());
        for bad in [unknown, twice, disorder] {
            assert_eq!(contribution(&bad), None);
        }
    }

    #[test]
    fn anything_unusual_is_left_to_prost() {
        let b = task(&["W", "b"]).encode_to_vec();
        // An unknown field.
        let mut unknown = b.clone();
        unknown.extend_from_slice(&[9 << 3, 1]);
        // The meta data twice (prost would merge the two).
        let mut twice = b.clone();
        let meta = pb::CurrentTask {
            meta_data: Some(pb::MetaData::default()),
            ..Default::default()
        };
        twice.extend(meta.encode_to_vec());
        // Truncated.
        let short = b[..b.len() - 1].to_vec();
        for bad in [unknown, twice, short] {
            assert_eq!(current_task(&bad), None);
        }
        // Entries out of name order, or a name twice (the map keeps the last).
        let entry = |name: &str| {
            let mut md = pb::ModelData::default();
            md.params.insert(name.into(), pb::NDArray::default());
            md.encode_to_vec()
        };
        let mut disorder = entry("b");
        disorder.extend(entry("a"));
        let mut repeat = entry("a");
        repeat.extend(entry("a"));
        for md in [disorder, repeat] {
            assert_eq!(model_tensors(&md, 0..md.len()), None);
        }
        let mut ordered = entry("a");
        ordered.extend(entry("b"));
        let t = model_tensors(&ordered, 0..ordered.len()).unwrap();
        let names: Vec<_> = t.iter(&ordered).map(|(n, npy)| (n, npy.len())).collect();
        assert_eq!(names, [("a", 0), ("b", 0)]);
    }
}
