//! How much memory a run will need, worked out from the scenario before anything is allocated,
//! so that a run that cannot fit is refused with the key that makes it large instead of
//! aborting on a failed allocation.
//!
//! The figures are upper estimates of the big items; small fixed costs are left out.

use crate::dist::Dist;
use crate::learn::{ModelKind, MAX_SAMPLES};
use crate::sim::SimConfig;

/// Bytes kept per client whatever it does: its task, inbox, link, profile, registry entry and
/// data slot.
const PER_CLIENT: u64 = 2_048;
/// Bytes per event kept in memory for the run's result.
const PER_EVENT: u64 = 160;
/// The program itself, its allocator's arenas and threads, before any client: a small run's
/// peak (PERFORMANCE.md).
const BASE: u64 = 20 << 20;

/// One part of the estimate: what it is, the scenario key that sizes it, and its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    /// What the memory holds.
    pub what: &'static str,
    /// The scenario key that makes it large, as a dotted path.
    pub key: &'static str,
    /// Bytes.
    pub bytes: u64,
}

/// A run's estimated memory, part by part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Estimate {
    /// The parts, largest first.
    pub parts: Vec<Part>,
}

impl Estimate {
    /// All parts together.
    pub fn total(&self) -> u64 {
        self.parts.iter().map(|p| p.bytes).sum()
    }

    /// The largest part.
    pub fn largest(&self) -> &Part {
        &self.parts[0]
    }
}

/// Bytes as people read them: `1.5 GiB`.
pub fn human(bytes: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = bytes as f64;
    let mut i = 0;
    while v >= 1024.0 && i + 1 < units.len() {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", units[i])
    }
}

/// The mean of a sample-count distribution, clamped as draws are.
fn mean_samples(d: Dist) -> f64 {
    let mean = match d {
        Dist::Fixed(v) => v,
        Dist::Uniform { low, high } => (low + high) / 2.0,
        Dist::Normal { mean, .. } | Dist::Exponential { mean } => mean,
        Dist::LogNormal { mu, sigma } => (mu + sigma * sigma / 2.0).exp(),
    };
    mean.clamp(2.0, MAX_SAMPLES as f64)
}

/// The estimate for `cfg`.
pub fn estimate(cfg: &SimConfig) -> Estimate {
    let clients = u64::from(cfg.total_clients());
    let d = &cfg.data;
    let row = (d.features as u64).next_multiple_of(16) * 4 + 8;
    let samples = mean_samples(d.samples);
    let data = (clients as f64 * samples * row as f64) as u64
        + (d.global_test_clients * d.global_test_samples) as u64 * row;
    let classes = d.classes.max(1) as u64;
    let n = d.features as u64;
    let params = match cfg.model {
        ModelKind::Mlp { hidden } => (n + 1) * hidden as u64 + (hidden as u64 + 1) * classes,
        _ => (n + 1) * classes,
    };
    let per_round = match cfg.server.clients_per_round {
        0 => clients,
        k => (k as u64).min(clients),
    };
    // Each update in flight is a task frame, the trained model, a contribution frame and the
    // server's decoded copy; a client keeping its best model for cross-site holds one more.
    let mut models = params * 4 * per_round * 4;
    let rounds = u64::from(cfg.server.num_rounds.saturating_sub(cfg.server.start_round));
    let mut events = (rounds * per_round * 6 + clients * 2) * PER_EVENT;
    if cfg.server.cross_site_validation {
        // Every client validates every client's best model and the server's: each of those
        // (client, model) pairs is a model on the wire, with its frame, and a few events.
        let pairs = clients.saturating_mul(clients + 1);
        models = models.saturating_add(pairs.saturating_mul(params * 4 + 512));
        events = events.saturating_add(pairs.saturating_mul(2 * PER_EVENT));
    }
    let mut parts = vec![
        Part {
            what: "the program",
            key: "name",
            bytes: BASE,
        },
        Part {
            what: "clients' data",
            key: "task.data.samples_per_client",
            bytes: data,
        },
        Part {
            what: "per-client state",
            key: "clients.count",
            bytes: clients * PER_CLIENT,
        },
        Part {
            what: "models in flight",
            key: "task.model",
            bytes: models,
        },
        Part {
            what: "the event log",
            key: "server.rounds",
            bytes: events,
        },
    ];
    parts.sort_by_key(|p| std::cmp::Reverse(p.bytes));
    Estimate { parts }
}

/// The memory this machine has available (Linux's `MemAvailable`), if it can be read.
pub fn available() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thousand_w1_clients_need_megabytes_and_a_billion_need_far_more() {
        let w1 = estimate(&SimConfig::w1(1000, 100, 20));
        assert!(
            w1.total() > 10 << 20 && w1.total() < 200 << 20,
            "{}",
            human(w1.total())
        );
        let mut huge = SimConfig::w1(1000, 100, 20);
        huge.data.samples = Dist::Fixed(1e6);
        let e = estimate(&huge);
        assert_eq!(e.largest().key, "task.data.samples_per_client");
        assert!(e.total() > 100 << 30, "{}", human(e.total()));
        assert_eq!(human(1536), "1.5 KiB");
    }
}
