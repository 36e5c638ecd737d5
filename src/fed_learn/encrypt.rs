//! `ModelEncryptor`: AES-256-GCM authenticated encryption of every tensor of a model.
//!
//! Each tensor becomes `nonce (12 bytes) || ciphertext || tag (16 bytes)`, authenticated with
//! its own name as associated data. A manifest entry, itself encrypted, lists every tensor
//! name: a message whose protobuf framing was damaged so that a tensor vanished, got renamed
//! or was swapped with another fails to decode, just as one whose tensor bytes were flipped.

use aes_gcm::aead::{AeadInPlace, KeyInit};
use aes_gcm::{Aes256Gcm, Key, Nonce, Tag};
use bytes::Bytes;
use rand::RngCore;
use rand_chacha::ChaCha8Rng;

use super::error::FLCommunicationError;
use super::pb::{ModelData, NDArray};
use super::transform::ModelTransformer;

const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
/// The name prefix of the manifest entry; it starts with NUL so it cannot clash with a layer
/// name. A model encrypted twice carries two manifests, numbered by depth.
const MANIFEST: &str = "\0aead-manifest-";

/// The manifest key for one more layer of encryption over `model`.
fn manifest_key(depth: usize) -> String {
    format!("{MANIFEST}{depth}")
}

/// How many layers of encryption `model` carries.
fn depth_of(model: &ModelData) -> usize {
    model
        .params
        .keys()
        .filter(|k| k.starts_with(MANIFEST))
        .count()
}

/// Encrypts and authenticates models with AES-256-GCM.
///
/// Nonces come from a seeded ChaCha stream owned by this encryptor, so a run is reproducible
/// byte for byte, and each actor's stream is distinct, so nonces do not repeat in practice.
pub struct ModelEncryptor {
    cipher: Aes256Gcm,
    nonces: ChaCha8Rng,
}

impl ModelEncryptor {
    /// An encryptor with a 256-bit key from configuration and a seeded nonce stream.
    pub fn new(key: [u8; 32], nonces: ChaCha8Rng) -> Self {
        ModelEncryptor {
            cipher: Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&key)),
            nonces,
        }
    }

    fn seal(&mut self, plain: &[u8], aad: &[u8]) -> Result<Vec<u8>, FLCommunicationError> {
        let mut out = Vec::with_capacity(NONCE_LEN + plain.len() + TAG_LEN);
        let mut nonce = [0u8; NONCE_LEN];
        self.nonces.fill_bytes(&mut nonce);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(plain);
        let tag = self
            .cipher
            .encrypt_in_place_detached(Nonce::from_slice(&nonce), aad, &mut out[NONCE_LEN..])
            .map_err(|_| FLCommunicationError::new("AES-GCM encryption failed"))?;
        out.extend_from_slice(&tag);
        Ok(out)
    }

    fn open(&self, sealed: &[u8], aad: &[u8]) -> Result<Vec<u8>, FLCommunicationError> {
        if sealed.len() < NONCE_LEN + TAG_LEN {
            return Err(FLCommunicationError::new("encrypted tensor is too short"));
        }
        let (nonce, rest) = sealed.split_at(NONCE_LEN);
        let (body, tag) = rest.split_at(rest.len() - TAG_LEN);
        let mut plain = body.to_vec();
        self.cipher
            .decrypt_in_place_detached(
                Nonce::from_slice(nonce),
                aad,
                &mut plain,
                Tag::from_slice(tag),
            )
            .map_err(|_| FLCommunicationError::new("AES-GCM authentication failed"))?;
        Ok(plain)
    }
}

/// The manifest's plaintext: every tensor name, each followed by NUL.
fn manifest_of<'a>(names: impl Iterator<Item = &'a String>) -> Vec<u8> {
    let mut m = Vec::new();
    for name in names {
        m.extend_from_slice(name.as_bytes());
        m.push(0);
    }
    m
}

impl ModelTransformer for ModelEncryptor {
    fn name(&self) -> &str {
        "aes-gcm"
    }

    fn encode(&mut self, model: ModelData) -> Result<ModelData, FLCommunicationError> {
        let manifest = manifest_of(model.params.keys());
        let key = manifest_key(depth_of(&model));
        let mut out = ModelData::default();
        for (name, nd) in model.params {
            let sealed = self.seal(&nd.ndarray, name.as_bytes())?;
            out.params.insert(
                name,
                NDArray {
                    ndarray: Bytes::from(sealed),
                },
            );
        }
        let sealed = self.seal(&manifest, key.as_bytes())?;
        out.params.insert(
            key,
            NDArray {
                ndarray: Bytes::from(sealed),
            },
        );
        Ok(out)
    }

    fn decode(&self, mut model: ModelData) -> Result<ModelData, FLCommunicationError> {
        let key = depth_of(&model)
            .checked_sub(1)
            .map(manifest_key)
            .ok_or_else(|| FLCommunicationError::new("encrypted model has no manifest"))?;
        let manifest = model
            .params
            .remove(&key)
            .ok_or_else(|| FLCommunicationError::new("encrypted model's manifest is misnamed"))?;
        let manifest = self.open(&manifest.ndarray, key.as_bytes())?;
        if manifest != manifest_of(model.params.keys()) {
            return Err(FLCommunicationError::new(
                "encrypted model's tensors do not match its manifest",
            ));
        }
        let mut out = ModelData::default();
        for (name, nd) in model.params {
            let plain = self.open(&nd.ndarray, name.as_bytes())?;
            out.params.insert(
                name,
                NDArray {
                    ndarray: Bytes::from(plain),
                },
            );
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn enc(seed: u64) -> ModelEncryptor {
        ModelEncryptor::new([9u8; 32], ChaCha8Rng::seed_from_u64(seed))
    }

    fn model() -> ModelData {
        let mut m = ModelData::default();
        for (k, v) in [("a", 1u8), ("b", 2)] {
            m.params.insert(
                k.into(),
                NDArray {
                    ndarray: Bytes::from(vec![v; 40]),
                },
            );
        }
        m
    }

    #[test]
    fn round_trip_and_fresh_nonces() {
        let mut e = enc(1);
        let one = e.encode(model()).unwrap();
        let two = e.encode(model()).unwrap();
        assert_ne!(one.params["a"], two.params["a"], "a nonce was reused");
        assert_eq!(enc(2).decode(one).unwrap(), model());
    }

    #[test]
    fn same_seed_same_ciphertext() {
        assert_eq!(
            enc(5).encode(model()).unwrap(),
            enc(5).encode(model()).unwrap()
        );
    }

    #[test]
    fn swapped_removed_or_wrong_key_fails() {
        let sealed = enc(1).encode(model()).unwrap();
        let mut swapped = sealed.clone();
        let a = swapped.params["a"].clone();
        let b = swapped.params.insert("b".into(), a.clone()).unwrap();
        swapped.params.insert("a".into(), b);
        assert!(enc(1).decode(swapped).is_err());
        let mut removed = sealed.clone();
        removed.params.remove("b");
        assert!(enc(1).decode(removed).is_err());
        let other = ModelEncryptor::new([8u8; 32], ChaCha8Rng::seed_from_u64(1));
        assert!(other.decode(sealed).is_err());
    }
}
