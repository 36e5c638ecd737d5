//! fedsim: a deterministic, virtual-time federated-learning simulator that speaks the Clara
//! Train 3.1 `fed_learn` protocol with real protobuf bytes on every hop.
//!
//! # Testing protocol behaviour
//!
//! A scenario plus assertions on its event log is a regression test. Here client 7 is late in
//! round 3: its contribution must be rejected as late, after round 3 has ended, and round 3 must
//! still aggregate the other nine.
//!
//! ```
//! use fedsim::fed_learn::EventType;
//! use fedsim::sim::Reason;
//! use fedsim::Simulation;
//!
//! let run = Simulation::from_yaml_str(r#"
//! name: late-client
//! seed: 1
//! task: { model: softmax, data: { generator: w1 } }
//! server: { rounds: 6, min_num_clients: 5, wait_after_min_clients: 10s, round_timeout: 5m }
//! clients: { count: 10, groups: [{ share: 1.0, compute: { per_sample: 1ms } }] }
//! events:
//!   - { at: { round: 3 }, clients: [7], late: { delay: 30s } }
//! "#)
//! .unwrap()
//! .run()
//! .unwrap();
//!
//! let log = &run.events;
//! let rejected = log.rejected(Reason::Late).client(7).first().expect("client 7 was rejected");
//! let end_of_3 = log.of(EventType::EndRound).round(3).first().unwrap();
//! assert!(end_of_3.seq < rejected.seq, "the rejection comes after round 3 ends");
//! assert_eq!(log.of(EventType::ReceiveContribution).round(3).count(), 9);
//! assert_eq!(run.rounds[3].aggregated, 9);
//! ```
//!
//! `Simulation` also takes your own [`aggregate::Aggregator`] and event handlers
//! ([`sim::EventHandler`]), to test your algorithm against scripted faults.
//!
//! # Map
//!
//! The crate reads top-down like a map; each module uses only those above it:
//!
//! - [`fed_learn`]: the protocol itself (messages, events, contexts, transformers, the .npy
//!   tensor codec). It knows nothing of the simulation.
//! - [`fastpath`]: the one switch (`FEDSIM_KERNELS=portable`) between the fast paths and
//!   their reference paths.
//! - [`rng`]: seeded random streams keyed by (seed, purpose, client, round).
//! - [`dist`]: fixed-or-drawn parameters (uniform, normal, lognormal, exponential).
//! - [`learn`]: synthetic data generators and the models clients train.
//! - [`aggregate`]: server strategies (FedAvg, FedAvgM) behind the `Aggregator` trait.
//! - [`sim`]: the engine: server and client tasks, the network, virtual time, events.
//! - [`scenario`]: YAML scenario files, checked with positioned errors, compiled for the engine.
//! - [`report`]: the files a run writes, its charts and its progress bar.

pub mod aggregate;
pub mod dist;
pub mod fastpath;
pub mod fed_learn;
pub mod learn;
pub mod report;
pub mod rng;
pub mod scenario;
pub mod sim;

pub use sim::{RunResult, SimConfig, Simulation};
