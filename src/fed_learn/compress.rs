//! `MessageCompressor`: gzip on every `NDArray` of a model, as Clara's `"Gzip"` compression.

use std::io::{Read, Write};

use bytes::Bytes;
use flate2::{read::GzDecoder, write::GzEncoder, Compression};

use super::error::FLCommunicationError;
use super::pb::{ModelData, NDArray};
use super::transform::ModelTransformer;

/// Compresses each tensor's .npy bytes with gzip. The gzip header carries no time stamp or
/// file name, so the same model always compresses to the same bytes.
#[derive(Debug, Clone)]
pub struct MessageCompressor {
    level: Compression,
}

impl MessageCompressor {
    /// A gzip compressor at `level` (0 = store, 9 = smallest; 6 is gzip's default).
    pub fn gzip(level: u32) -> Self {
        MessageCompressor {
            level: Compression::new(level.min(9)),
        }
    }
}

impl Default for MessageCompressor {
    fn default() -> Self {
        MessageCompressor::gzip(6)
    }
}

impl ModelTransformer for MessageCompressor {
    fn name(&self) -> &str {
        "gzip"
    }

    fn encode(&mut self, model: ModelData) -> Result<ModelData, FLCommunicationError> {
        map_arrays(model, |bytes| {
            let mut enc = GzEncoder::new(Vec::with_capacity(bytes.len() / 2 + 64), self.level);
            enc.write_all(bytes)
                .and_then(|_| enc.finish())
                .map_err(|e| FLCommunicationError::with_cause("gzip compression failed", e))
        })
    }

    fn decode(&self, model: ModelData) -> Result<ModelData, FLCommunicationError> {
        map_arrays(model, |bytes| {
            let mut out = Vec::with_capacity(bytes.len() * 2);
            GzDecoder::new(bytes)
                .read_to_end(&mut out)
                .map_err(|e| FLCommunicationError::with_cause("gzip data is corrupt", e))?;
            Ok(out)
        })
    }
}

/// Replaces every tensor's bytes by `f(bytes)`, keeping names.
pub(crate) fn map_arrays(
    model: ModelData,
    mut f: impl FnMut(&[u8]) -> Result<Vec<u8>, FLCommunicationError>,
) -> Result<ModelData, FLCommunicationError> {
    let params = model
        .params
        .into_iter()
        .map(|(name, nd)| {
            let out = f(&nd.ndarray)?;
            Ok((
                name,
                NDArray {
                    ndarray: Bytes::from(out),
                },
            ))
        })
        .collect::<Result<_, FLCommunicationError>>()?;
    Ok(ModelData { params })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model() -> ModelData {
        let mut m = ModelData::default();
        m.params.insert(
            "w".into(),
            NDArray {
                ndarray: Bytes::from(vec![7u8; 4096]),
            },
        );
        m
    }

    #[test]
    fn compresses_and_restores() {
        let mut c = MessageCompressor::default();
        let enc = c.encode(model()).unwrap();
        assert!(enc.params["w"].ndarray.len() < 200);
        assert_eq!(c.decode(enc).unwrap(), model());
    }

    #[test]
    fn same_input_same_bytes() {
        let mut c = MessageCompressor::default();
        assert_eq!(c.encode(model()).unwrap(), c.encode(model()).unwrap());
    }

    #[test]
    fn garbage_is_a_communication_error() {
        let mut bad = ModelData::default();
        bad.params.insert(
            "w".into(),
            NDArray {
                ndarray: Bytes::from_static(b"not gzip"),
            },
        );
        let err = MessageCompressor::default().decode(bad).unwrap_err();
        assert!(err.to_string().contains("gzip"));
    }
}
