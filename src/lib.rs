//! fedsim: a deterministic, virtual-time federated-learning simulator that speaks the Clara
//! Train 3.1 `fed_learn` protocol with real protobuf bytes on every hop.
//!
//! The crate reads top-down like a map; dependencies point down the list:
//!
//! - [`fed_learn`]: the protocol itself (messages, events, contexts, transformers, the .npy
//!   tensor codec). It knows nothing of the simulation.
//! - [`rng`]: seeded random streams keyed by (seed, purpose, client, round).
//! - [`dist`]: fixed-or-drawn parameters (uniform, normal, lognormal, exponential).
//! - [`learn`]: synthetic data generators and the models clients train.
//! - [`aggregate`]: server strategies (FedAvg, FedAvgM) behind the `Aggregator` trait.
//! - [`sim`]: the engine: server and client tasks, the network, virtual time, events.
//! - [`scenario`]: YAML scenario files, checked with positioned errors, compiled for the engine.
//! - [`report`]: the files a run writes, its charts and its progress bar.

pub mod aggregate;
pub mod dist;
pub mod fed_learn;
pub mod learn;
pub mod report;
pub mod rng;
pub mod scenario;
pub mod sim;

pub use sim::{RunResult, SimConfig, Simulation};
