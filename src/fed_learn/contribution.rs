//! What a client sends most, encoded from borrowed parts straight into the frame that carries
//! it: its training `Contribution` ([`ContributionRef`], whose model is a `ModelData` or a
//! [`ModelSource`] that writes its own tensors) and its `ClientState` ([`StateRef`]).
//!
//! Why: a client's training contribution was built as a `pb::Contribution` only to be encoded
//! and dropped: a `String` for each of its words, a map for its one metric, and, for each
//! tensor, a counted reference to the tensor's bytes that prost's encoder takes and drops
//! again (the first one allocating, as the buffer becomes shared). These write the same bytes
//! as prost from what the client already holds; tests compare the two.

use prost::encoding::{encode_key, encode_varint, encoded_len_varint, key_len, WireType};
use prost::Message as _;

use super::message::{delimited_len, field_len, put_field, Body};
use super::pb;

/// The names Clara gives tasks (`CurrentTask.task_name`) and contributions
/// (`Contribution.type`).
pub mod names {
    /// A training task, and the contribution that answers it.
    pub const TRAIN: &str = "train";
    /// Cross-site validation, step 1: the server asks for each client's best model.
    pub const SUBMIT_BEST_MODEL: &str = "submit_best_model";
    /// The contribution answering [`SUBMIT_BEST_MODEL`].
    pub const BEST_MODEL: &str = "best_model";
    /// Cross-site validation, step 2: the server hands out the models to validate.
    pub const VALIDATE: &str = "validate";
    /// The contribution answering [`VALIDATE`]: the scores.
    pub const VALIDATION: &str = "validation";
}

/// A `Contribution`'s fields, borrowed. Encodes, as a [`Body`], to the bytes of the
/// `pb::Contribution` with the same values (whose `client` is always set).
pub struct ContributionRef<'a> {
    /// The `client` state's `client_id`.
    pub client_id: &'a str,
    /// The `client` state's `token` (its `status` is empty).
    pub token: &'a str,
    /// Local iterations behind the update.
    pub n_iter: i64,
    /// The `type` field: `"train"`, `"best_model"` or `"validation"`.
    pub kind: &'a str,
    /// The round's meta data, as the task stamped it.
    pub meta: Option<&'a pb::MetaData>,
    /// The model: a `ModelData`, or anything else that writes its tensors (see
    /// [`ModelSource`]).
    pub data: Option<&'a dyn ModelSource>,
    /// The task this answers.
    pub task_name: &'a str,
    /// Metrics by name, in name order and each name once (as a map holds them).
    pub metrics: &'a [(&'a str, f64)],
}

impl Body for ContributionRef<'_> {
    fn encoded_len(&self) -> usize {
        let client = self.client_len();
        let data = self.data.map_or(0, |md| {
            let len = model_data_len(md);
            key_len(5) + encoded_len_varint(len as u64) + len
        });
        key_len(1)
            + encoded_len_varint(client as u64)
            + client
            + if self.n_iter == 0 {
                0
            } else {
                key_len(2) + encoded_len_varint(self.n_iter as u64)
            }
            + field_len(3, self.kind.as_bytes())
            + self.meta.map_or(0, |m| {
                let len = m.encoded_len();
                key_len(4) + encoded_len_varint(len as u64) + len
            })
            + data
            + field_len(6, self.task_name.as_bytes())
            + self
                .metrics
                .iter()
                .map(|(k, v)| {
                    let len = metric_len(k, *v);
                    key_len(7) + encoded_len_varint(len as u64) + len
                })
                .sum::<usize>()
    }

    fn put(&self, buf: &mut impl bytes::BufMut) {
        encode_key(1, WireType::LengthDelimited, buf);
        encode_varint(self.client_len() as u64, buf);
        self.state().put(buf);
        if self.n_iter != 0 {
            encode_key(2, WireType::Varint, buf);
            encode_varint(self.n_iter as u64, buf);
        }
        put_field(3, self.kind.as_bytes(), buf);
        if let Some(m) = self.meta {
            encode_key(4, WireType::LengthDelimited, buf);
            encode_varint(m.encoded_len() as u64, buf);
            m.encode_raw(buf);
        }
        if let Some(md) = self.data {
            encode_key(5, WireType::LengthDelimited, buf);
            encode_varint(model_data_len(md) as u64, buf);
            put_model_data(md, buf);
        }
        put_field(6, self.task_name.as_bytes(), buf);
        for (k, v) in self.metrics {
            encode_key(7, WireType::LengthDelimited, buf);
            encode_varint(metric_len(k, *v) as u64, buf);
            put_field(1, k.as_bytes(), buf);
            if *v != 0.0 {
                encode_key(2, WireType::SixtyFourBit, buf);
                buf.put_f64_le(*v);
            }
        }
    }
}

impl ContributionRef<'_> {
    /// The length of the `client` state's fields.
    fn client_len(&self) -> usize {
        self.state().encoded_len()
    }

    fn state(&self) -> StateRef<'_> {
        StateRef {
            client_id: self.client_id,
            token: self.token,
        }
    }
}

/// A model's tensors as a `ModelData` encodes them, written on demand. A `ModelData` is one;
/// so is a model held in another layout (a client's trained net), whose encoding then needs
/// no `ModelData` (a name and a file per tensor, each allocated and copied only to be copied
/// into the frame).
pub trait ModelSource {
    /// How many tensors.
    fn count(&self) -> usize;
    /// Tensor `i`'s name and the length of its .npy file; `i` counts in name order.
    fn tensor(&self, i: usize) -> (&str, usize);
    /// Appends tensor `i`'s .npy file, exactly as long as [`ModelSource::tensor`] says.
    fn put_npy(&self, i: usize, buf: &mut dyn bytes::BufMut);
}

/// A `ClientState` from borrowed parts (its `status` empty): as a [`Body`], the bytes of the
/// `pb::ClientState` with the same values. A client sends one with every task request.
pub struct StateRef<'a> {
    pub client_id: &'a str,
    pub token: &'a str,
}

impl Body for StateRef<'_> {
    fn encoded_len(&self) -> usize {
        field_len(1, self.client_id.as_bytes()) + field_len(2, self.token.as_bytes())
    }

    fn put(&self, buf: &mut impl bytes::BufMut) {
        put_field(1, self.client_id.as_bytes(), buf);
        put_field(2, self.token.as_bytes(), buf);
    }
}

/// A metrics map entry's length: the name, and the value unless it is 0 (prost leaves a
/// map entry's default key or value out; `-0.0 == 0.0` is left out too).
fn metric_len(k: &str, v: f64) -> usize {
    field_len(1, k.as_bytes()) + if v != 0.0 { key_len(2) + 8 } else { 0 }
}

impl ModelSource for pb::ModelData {
    fn count(&self) -> usize {
        self.params.len()
    }

    fn tensor(&self, i: usize) -> (&str, usize) {
        self.params
            .iter()
            .nth(i)
            .map_or(("", 0), |(k, t)| (k.as_str(), t.ndarray.len()))
    }

    fn put_npy(&self, i: usize, buf: &mut dyn bytes::BufMut) {
        if let Some(t) = self.params.values().nth(i) {
            buf.put_slice(&t.ndarray);
        }
    }
}

/// Each tensor's name and .npy length, in name order.
fn tensors(md: &dyn ModelSource) -> impl Iterator<Item = (&str, usize)> {
    (0..md.count()).map(|i| md.tensor(i))
}

/// A map entry's length: the tensor's name, and its `NDArray` (left out when empty, the
/// default) holding the .npy file in its one field.
fn entry_len(name: &str, npy: usize) -> usize {
    field_len(1, name.as_bytes()) + delimited_len(2, delimited_len(1, npy))
}

/// A `ModelData`'s length: one map entry per tensor.
fn model_data_len(md: &dyn ModelSource) -> usize {
    tensors(md)
        .map(|(k, npy)| {
            let len = entry_len(k, npy);
            key_len(1) + encoded_len_varint(len as u64) + len
        })
        .sum()
}

/// Writes a `ModelData`'s fields, each tensor's .npy file in place.
fn put_model_data(md: &dyn ModelSource, buf: &mut impl bytes::BufMut) {
    for (i, (k, npy)) in tensors(md).enumerate() {
        encode_key(1, WireType::LengthDelimited, buf);
        encode_varint(entry_len(k, npy) as u64, buf);
        put_field(1, k.as_bytes(), buf);
        if npy > 0 {
            encode_key(2, WireType::LengthDelimited, buf);
            encode_varint(delimited_len(1, npy) as u64, buf);
            encode_key(1, WireType::LengthDelimited, buf);
            encode_varint(npy as u64, buf);
            md.put_npy(i, buf);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn encoded(c: &ContributionRef) -> Vec<u8> {
        let mut out = Vec::new();
        c.put(&mut out);
        assert_eq!(out.len(), c.encoded_len());
        out
    }

    /// prost's bytes for `c`, whose model is `md`.
    fn prost_of(c: &ContributionRef, md: Option<&pb::ModelData>) -> Vec<u8> {
        pb::Contribution {
            client: Some(pb::ClientState {
                client_id: c.client_id.into(),
                token: c.token.into(),
                status: String::new(),
            }),
            n_iter: c.n_iter,
            r#type: c.kind.into(),
            meta_data: c.meta.cloned(),
            data: md.cloned(),
            task_name: c.task_name.into(),
            metrics: c.metrics.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
        }
        .encode_to_vec()
    }

    #[test]
    fn the_bytes_are_prosts_for_the_same_contribution() {
        let meta = pb::MetaData {
            current_round: 3,
            num_rounds: 20,
            ..Default::default()
        };
        let tensor = |b: &'static [u8]| pb::NDArray {
            ndarray: Bytes::from_static(b),
        };
        let mut md = pb::ModelData::default();
        md.params.insert("W".into(), tensor(&[1; 300]));
        md.params.insert("b".into(), tensor(b"bias"));
        let mut odd = md.clone();
        odd.params.insert(String::new(), tensor(b"no name"));
        odd.params.insert("empty".into(), tensor(b""));
        let empty = pb::ModelData::default();
        let base = ContributionRef {
            client_id: "client-0007",
            token: "a-token",
            n_iter: 64,
            kind: "train",
            meta: Some(&meta),
            data: Some(&md),
            task_name: "train",
            metrics: &[("train_loss", 1.25)],
        };
        // Each case with the model prost encodes for it.
        let cases = [
            (ContributionRef { ..base }, Some(&md)),
            (
                ContributionRef {
                    token: "",
                    n_iter: 0,
                    metrics: &[("train_loss", 0.0)],
                    ..base
                },
                Some(&md),
            ),
            (
                ContributionRef {
                    n_iter: -5,
                    metrics: &[("", 2.0), ("a", -0.0), ("b", f64::NAN)],
                    ..base
                },
                Some(&md),
            ),
            (
                ContributionRef {
                    client_id: "",
                    kind: "",
                    meta: None,
                    data: None,
                    task_name: "",
                    metrics: &[],
                    ..base
                },
                None,
            ),
            (
                ContributionRef {
                    meta: Some(&pb::MetaData::default()),
                    data: Some(&empty),
                    ..base
                },
                Some(&empty),
            ),
            (
                ContributionRef {
                    data: Some(&odd),
                    ..base
                },
                Some(&odd),
            ),
        ];
        for (i, (c, model)) in cases.iter().enumerate() {
            assert_eq!(encoded(c), prost_of(c, *model), "case {i}");
            let state = pb::ClientState {
                client_id: c.client_id.into(),
                token: c.token.into(),
                status: String::new(),
            };
            let mut out = Vec::new();
            c.state().put(&mut out);
            assert_eq!(out, state.encode_to_vec(), "case {i}");
        }
    }
}
