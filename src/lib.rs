//! fedsim: a deterministic, virtual-time federated-learning simulator that speaks the Clara
//! Train 3.1 `fed_learn` protocol with real protobuf bytes on every hop.
//!
//! The crate reads top-down like a map; dependencies point down the list:
//!
//! - [`fed_learn`]: the protocol itself (messages, events, contexts, transformers, the .npy
//!   tensor codec). It knows nothing of the simulation.

pub mod fed_learn;
