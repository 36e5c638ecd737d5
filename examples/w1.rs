//! Runs BENCHMARKS.md's W1 and prints client updates per second.
//! `cargo run --release --example w1 -- [clients] [per_round] [rounds] [threads]`
fn main() {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let get = |i: usize, d: u64| args.get(i).copied().unwrap_or(d);
    let mut cfg =
        fedsim::SimConfig::w1(get(0, 1000) as u32, get(1, 100) as usize, get(2, 20) as u32);
    cfg.threads = get(3, 1) as usize;
    let r = fedsim::Simulation::new(cfg)
        .keep_events(false)
        .run()
        .expect("W1 runs");
    println!(
        "fedsim W1 rounds={} updates={} wall_s={:.3} updates_per_s={:.0} acc={:.3} events={}",
        r.rounds.len(),
        r.client_updates,
        r.wall_s,
        r.updates_per_s(),
        r.metrics.accuracy,
        r.event_counts.values().sum::<u64>()
    );
}
