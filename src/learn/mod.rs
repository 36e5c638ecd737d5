//! Local learning: synthetic federated data and the models clients train on it.

pub mod data;
mod kernel;
pub mod model;
mod net;

pub use data::{ClientData, DataGen, DataSpec, Dataset, Generator, Targets};
pub use model::{zeros_like, Metrics, ModelKind, Params, TrainConfig};
