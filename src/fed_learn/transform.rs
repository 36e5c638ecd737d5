//! `ModelTransformer`: what happens to a model on its way onto the wire and back. Clara chains
//! these (compress, encrypt, ...) on both ends; `decode` undoes `encode`.

use super::error::FLCommunicationError;
use super::pb::ModelData;

/// One reversible step applied to every model that crosses the wire.
///
/// `encode` takes `&mut self` because some steps keep state between messages (the encryptor
/// draws a fresh nonce per message from its seeded stream). Each actor owns its own chain.
/// `decode` keeps no state, so one chain can undo many messages at once, on any thread (the
/// server decodes a step's contributions in parallel).
pub trait ModelTransformer: Send + Sync {
    /// A short name for logs and benchmark labels, for example `"gzip"`.
    fn name(&self) -> &str;

    /// Transforms a model for sending.
    fn encode(&mut self, model: ModelData) -> Result<ModelData, FLCommunicationError>;

    /// Undoes [`encode`](Self::encode). Bytes that were damaged or forged give an error.
    fn decode(&self, model: ModelData) -> Result<ModelData, FLCommunicationError>;
}

/// Transformers applied in order on encode and in reverse order on decode, itself a
/// transformer. The empty chain passes models through unchanged.
#[derive(Default)]
pub struct TransformChain {
    steps: Vec<Box<dyn ModelTransformer>>,
}

impl TransformChain {
    /// A chain of the given steps, first applied first.
    pub fn new(steps: Vec<Box<dyn ModelTransformer>>) -> Self {
        TransformChain { steps }
    }

    /// True when the chain does nothing.
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }
}

impl ModelTransformer for TransformChain {
    fn name(&self) -> &str {
        "chain"
    }

    fn encode(&mut self, mut model: ModelData) -> Result<ModelData, FLCommunicationError> {
        for step in &mut self.steps {
            model = step.encode(model)?;
        }
        Ok(model)
    }

    fn decode(&self, mut model: ModelData) -> Result<ModelData, FLCommunicationError> {
        for step in self.steps.iter().rev() {
            model = step.decode(model)?;
        }
        Ok(model)
    }
}
