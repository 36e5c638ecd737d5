//! W1 of ../shared/BENCHMARKS.md: 1000 softmax clients, 100 per round, 20 rounds, FedAvg, every
//! message encoded and every event logged. Prints client updates per second.
//!
//! `cargo bench --bench w1` (set W1_CLIENTS, W1_ROUNDS, W1_FRAC, W1_REPEAT, W1_THREADS to vary
//! it). Run the numpy loop of BENCHMARKS.md in the same sitting and compare the two figures as
//! a ratio.
//!
//! `updates_per_s` is the best of the repeats; `first_run` is the first. The process's very
//! first run also pays for faulting in the allocator's memory, as `fedsim run` (one run per
//! process) does: `W1_THREADS=2 W1_REPEAT=1` gives that figure for two threads.

use std::io::Write;

use fedsim::{SimConfig, Simulation};

/// The allocator the `fedsim` binary uses, so the figure is the one users get.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Counts the bytes of the event log, so the log is really serialised but not stored.
struct CountingSink(u64);

impl Write for CountingSink {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0 += b.len() as u64;
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn env(name: &str, default: f64) -> f64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let clients = env("W1_CLIENTS", 1000.0) as u32;
    let rounds = env("W1_ROUNDS", 20.0) as u32;
    let per_round = ((env("W1_FRAC", 0.1) * f64::from(clients)) as usize).max(2);
    let repeat = env("W1_REPEAT", 5.0) as usize;
    let only = std::env::var("W1_THREADS")
        .ok()
        .and_then(|t| t.parse::<usize>().ok());
    for threads in [1, 2].into_iter().filter(|t| only.is_none_or(|o| o == *t)) {
        let (mut best, mut first) = (0.0f64, None);
        let mut acc = 0.0;
        for _ in 0..repeat {
            let mut cfg = SimConfig::w1(clients, per_round, rounds);
            cfg.threads = threads;
            let r = Simulation::new(cfg)
                .keep_events(false)
                .event_sink(Box::new(CountingSink(0)))
                .run()
                .expect("W1 runs");
            best = best.max(r.updates_per_s());
            first.get_or_insert(r.updates_per_s());
            acc = r.metrics.accuracy;
        }
        println!(
            "fedsim W1 clients={clients} rounds={rounds} threads={threads} best_of={repeat} updates_per_s={best:.0} first_run={:.0} acc={acc:.3}",
            first.unwrap_or(0.0)
        );
    }
}
