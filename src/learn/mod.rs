//! Local learning: synthetic federated data and the models clients train on it.

/// A stream's ChaCha words sixteen blocks at a time, for bulk readers.
mod chacha;
pub mod data;
mod dataset;
/// Dense f32 kernels for small layers, deterministic across CPUs.
mod kernel;
pub mod model;
/// Models as stacks of affine layers in the kernels' layout.
mod net;
/// Standard normal draws in bulk, identical to `rand_distr`'s one at a time.
mod normal;
mod ziggurat;

pub use data::{ClientData, DataGen, DataSpec, Generator, MAX_SAMPLES};
pub use dataset::{Dataset, Targets, TargetsView};
pub use model::{zeros_like, Evaluator, Metrics, ModelKind, Params, PartScore, TrainConfig};
pub(crate) use net::{Net, NetTensors};
