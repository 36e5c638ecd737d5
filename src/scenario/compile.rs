//! The semantic pass: checks what the types alone cannot (shares summing to 1, clients that
//! exist, triggers within the run) and compiles a scenario file into the engine's
//! [`SimConfig`]. Every problem is collected, with its position, before giving up.

use std::path::Path;

use super::error::ScenarioError;
use super::faults::{availability, events};
use super::locate::{locate, path};
use super::schema::*;
use crate::dist::Dist;
use crate::learn::{DataSpec, Generator, ModelKind, TrainConfig, MAX_SAMPLES};
use crate::rng::{self, NONE};
use crate::sim::{
    Profile, Profiles, RetryConfig, ServerConfig, SimConfig, TransportConfig, SECOND,
};

/// Collects positioned errors while compiling.
pub(crate) struct Checker<'a> {
    pub text: &'a str,
    pub file: &'a Path,
    pub errors: Vec<ScenarioError>,
}

impl Checker<'_> {
    /// Records a problem at key path `at`. Past [`MAX_REPORTED`] problems the rest are
    /// only counted as one: finding each one's position reads the file again, and a file
    /// of thousands of bad events would take minutes to report.
    pub(crate) fn err(&mut self, at: &str, message: impl Into<String>, hint: Option<String>) {
        let (message, hint) = match self.errors.len() {
            n if n < MAX_REPORTED => (format!("{at}: {}", message.into()), hint),
            MAX_REPORTED => (format!("{at}: and more problems, not listed"), None),
            _ => return,
        };
        let (line, column) = locate(self.text, &path(at));
        self.errors.push(ScenarioError {
            file: self.file.to_path_buf(),
            line,
            column,
            message,
            hint,
        });
    }
}

/// The most problems a scenario's errors list one by one.
pub const MAX_REPORTED: usize = 20;

/// The most clients a scenario may have, joins included.
pub const MAX_CLIENTS: u64 = 10_000_000;
/// The most rounds (`server.rounds`, Clara's exclusive end).
pub const MAX_ROUNDS: u32 = 1_000_000_000;
/// The most input features, classes and hidden units, and model parameters in all.
pub const MAX_FEATURES: usize = 100_000;
/// See [`MAX_FEATURES`].
pub const MAX_CLASSES: usize = 10_000;
/// See [`MAX_FEATURES`].
pub const MAX_HIDDEN: usize = 100_000;
/// See [`MAX_FEATURES`].
pub const MAX_PARAMETERS: u64 = 100_000_000;
/// The shortest heartbeat interval.
pub const MIN_HEARTBEAT_US: u64 = 1_000;

impl Checker<'_> {
    /// Checks that `v` is a finite number within `range`, else reports `what` at `at`.
    fn within(&mut self, at: &str, v: f64, range: std::ops::RangeInclusive<f64>, what: &str) {
        if !(v.is_finite() && range.contains(&v)) {
            self.err(at, format!("expected {what}, found {v}"), None);
        }
    }
}

/// Compiles `f` (already type-checked) into an engine config, or the list of problems.
pub(crate) fn compile(f: &ScenarioFile, ck: &mut Checker) -> Option<SimConfig> {
    check_name(&f.name, ck);
    let count = f.clients.count;
    if count == 0 {
        ck.err("clients.count", "expected at least 1 client, found 0", None);
    }
    let total = f.total_clients();
    if total > MAX_CLIENTS {
        ck.err(
            "clients.count",
            format!("{total} clients with the joins; scenarios are limited to {MAX_CLIENTS}"),
            None,
        );
        return None;
    }
    // Within u32: MAX_CLIENTS is.
    let total = total as u32;
    let model = model(f, ck);
    let data = data(f, ck);
    let server = server(f, ck);
    let transport = transport(f, ck);
    let retry = retry(&f.clients.retry, ck);
    let groups = group_blocks(f, ck);
    let kinds = f.clients.groups.iter().map(profile).collect();
    let profiles = Profiles::groups(&groups, kinds, total);
    let mut faults = events(f, ck, &groups, count, total);
    if let Some(a) = &f.availability {
        faults.extend(availability(f, a, ck, total));
    }
    let training = TrainConfig {
        local_epochs: f.training.local_epochs,
        batch_size: f.training.batch_size,
        lr: f.training.lr,
        prox_mu: f.training.fedprox_mu,
    };
    check_training(&f.training, ck);
    if !ck.errors.is_empty() {
        return None;
    }
    Some(SimConfig {
        name: f.name.clone(),
        seed: f.seed,
        model,
        data,
        training,
        server,
        transport,
        initial_clients: count,
        profiles,
        faults,
        retry,
        threads: 1,
    })
}

/// A run's name becomes a directory (`results/<name>/`): it may hold letters, digits, `.`, `_`
/// and `-`, and not start with `.`, so that it is one plain directory name on any system.
/// (`--out` picks any directory.)
fn check_name(name: &str, ck: &mut Checker) {
    let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if name.is_empty() || name.len() > 128 || name.starts_with('.') || !name.chars().all(plain) {
        ck.err(
            "name",
            format!("`{}` cannot name a results directory", name.escape_debug()),
            Some("use letters, digits, `.`, `_` and `-` (not first: `.`), at most 128".into()),
        );
    }
}

fn check_training(t: &TrainingSpec, ck: &mut Checker) {
    if t.batch_size == 0 {
        ck.err(
            "training.batch_size",
            "expected a batch size of at least 1",
            None,
        );
    }
    if !(1..=10_000).contains(&t.local_epochs) {
        let found = t.local_epochs;
        ck.err(
            "training.local_epochs",
            format!("expected 1 to 10000 epochs, found {found}"),
            None,
        );
    }
    if !(t.lr.is_finite() && t.lr > 0.0) {
        let lr = t.lr;
        ck.err(
            "training.lr",
            format!("expected a finite learning rate > 0, found {lr}"),
            None,
        );
    }
    let mu = f64::from(t.fedprox_mu);
    ck.within(
        "training.fedprox_mu",
        mu,
        0.0..=f64::MAX,
        "a finite weight >= 0",
    );
}

fn model(f: &ScenarioFile, ck: &mut Checker) -> ModelKind {
    let kind = match f.task.model {
        ModelSpec::Linear => ModelKind::Linear,
        ModelSpec::Softmax => ModelKind::Softmax,
        ModelSpec::Mlp { hidden } => {
            if !(1..=MAX_HIDDEN).contains(&hidden) {
                ck.err(
                    "task.model.mlp.hidden",
                    format!("expected 1 to {MAX_HIDDEN} hidden units, found {hidden}"),
                    None,
                );
            }
            ModelKind::Mlp { hidden }
        }
    };
    let (n, c) = (f.task.features as u64, f.task.classes.max(1) as u64);
    let params = match kind {
        ModelKind::Mlp { hidden } => (n + 1) * hidden as u64 + (hidden as u64 + 1) * c,
        _ => (n + 1) * c,
    };
    if params > MAX_PARAMETERS {
        ck.err(
            "task.model",
            format!("{params} parameters; models are limited to {MAX_PARAMETERS}"),
            None,
        );
    }
    let regression = f.task.data.generator == GeneratorName::Regression;
    if regression != (kind == ModelKind::Linear) {
        let msg = if regression {
            "the regression generator needs `model: linear`"
        } else {
            "`model: linear` needs `generator: regression`"
        };
        ck.err("task.model", msg, None);
    }
    kind
}

fn data(f: &ScenarioFile, ck: &mut Checker) -> DataSpec {
    let d = &f.task.data;
    check_data(f, ck);
    let generator = match d.generator {
        GeneratorName::W1 => Generator::W1 {
            noise: d.noise.unwrap_or(0.3),
        },
        GeneratorName::Regression => Generator::Regression {
            noise: d.noise.unwrap_or(0.3),
        },
        GeneratorName::Synthetic => Generator::Synthetic {
            alpha: d.alpha.unwrap_or(1.0),
            beta: d.beta.unwrap_or(1.0),
        },
    };
    if !(0.0..1.0).contains(&d.test_fraction) {
        ck.err(
            "task.data.test_fraction",
            format!("expected a fraction in [0, 1), found {}", d.test_fraction),
            None,
        );
    }
    if !(1..=MAX_FEATURES).contains(&f.task.features) {
        ck.err(
            "task.features",
            format!(
                "expected 1 to {MAX_FEATURES} features, found {}",
                f.task.features
            ),
            None,
        );
    }
    if d.generator != GeneratorName::Regression && !(2..=MAX_CLASSES).contains(&f.task.classes) {
        ck.err(
            "task.classes",
            format!(
                "expected 2 to {MAX_CLASSES} classes, found {}",
                f.task.classes
            ),
            None,
        );
    }
    let label_skew = match f.partition {
        PartitionSpec::Iid => None,
        PartitionSpec::Dirichlet(a) if a > 0.0 && a <= 1e6 => Some(a),
        PartitionSpec::Dirichlet(a) => {
            ck.err(
                "partition.dirichlet",
                format!("expected a concentration above 0, at most 1e6, found {a}"),
                None,
            );
            None
        }
    };
    DataSpec {
        generator,
        features: f.task.features,
        classes: f.task.classes,
        samples: d.samples_per_client.dist,
        test_fraction: d.test_fraction,
        label_skew,
        global_test_clients: d.global_test_clients,
        global_test_samples: d.global_test_samples,
    }
}

/// The data keys' values, and that each key belongs to the generator named.
fn check_data(f: &ScenarioFile, ck: &mut Checker) {
    let d = &f.task.data;
    let own: &[&str] = match d.generator {
        GeneratorName::Synthetic => &["alpha", "beta"],
        GeneratorName::W1 | GeneratorName::Regression => &["noise"],
    };
    for (key, v) in [("alpha", d.alpha), ("beta", d.beta), ("noise", d.noise)] {
        let Some(v) = v else { continue };
        let at = format!("task.data.{key}");
        if !own.contains(&key) {
            let name = format!("{:?}", d.generator).to_lowercase();
            ck.err(
                &at,
                format!("`{key}` is not a setting of the `{name}` generator"),
                Some(format!("it takes {}", own.join(" and "))),
            );
        }
        ck.within(&at, v, 0.0..=1e6, "a finite number >= 0");
    }
    let at = "task.data.samples_per_client";
    match d.samples_per_client.dist {
        Dist::Fixed(n) if n.fract() != 0.0 => ck.err(
            at,
            format!("expected a whole number of samples, found {n}"),
            None,
        ),
        Dist::Fixed(n) => ck.within(
            at,
            n,
            1.0..=MAX_SAMPLES as f64,
            &format!("1 to {MAX_SAMPLES} samples"),
        ),
        Dist::Uniform { high, .. } => ck.within(
            at,
            high,
            1.0..=MAX_SAMPLES as f64,
            "a distribution drawing at most 1000000 samples",
        ),
        Dist::Normal { mean, .. } | Dist::Exponential { mean } => ck.within(
            at,
            mean,
            1.0..=MAX_SAMPLES as f64,
            "a distribution around 1 to 1000000 samples",
        ),
        Dist::LogNormal { mu, .. } => ck.within(
            at,
            mu.exp(),
            1.0..=MAX_SAMPLES as f64,
            "a median of 1 to 1000000 samples",
        ),
    }
    for (key, n, most) in [
        ("global_test_clients", d.global_test_clients, 100_000),
        ("global_test_samples", d.global_test_samples, MAX_SAMPLES),
    ] {
        if !(1..=most).contains(&n) {
            ck.err(
                &format!("task.data.{key}"),
                format!("expected 1 to {most}, found {n}"),
                None,
            );
        }
    }
}

fn server(f: &ScenarioFile, ck: &mut Checker) -> ServerConfig {
    let s = &f.server;
    let count = f.clients.count as usize;
    let t = |q: Option<super::units::Q<super::units::Time>>, default: u64| {
        q.map_or(default, |q| q.value.round() as u64)
    };
    let cfg = ServerConfig {
        min_num_clients: s.min_num_clients,
        max_num_clients: s.max_num_clients.unwrap_or(usize::MAX),
        wait_after_min_clients: t(s.wait_after_min_clients, 0),
        heart_beat_timeout: t(s.heart_beat_timeout, 600 * SECOND),
        heart_beat_interval: t(s.heart_beat_interval, 60 * SECOND),
        start_round: s.start_round,
        num_rounds: s.rounds,
        clients_per_round: s.clients_per_round,
        round_timeout: t(s.round_timeout, 3600 * SECOND),
        cross_site_validation: s.cross_site_validation,
        aggregator: s.aggregator.clone(),
    };
    if s.min_num_clients > count {
        ck.err(
            "server.min_num_clients",
            format!(
                "min_num_clients ({}) is more than clients.count ({count}): no round could start",
                s.min_num_clients
            ),
            None,
        );
    }
    if s.clients_per_round > count {
        ck.err(
            "server.clients_per_round",
            format!(
                "clients_per_round ({}) is more than clients.count ({count})",
                s.clients_per_round
            ),
            Some("omit it to take every live client".into()),
        );
    }
    if let Some(max) = s.max_num_clients {
        if max < s.min_num_clients {
            ck.err(
                "server.max_num_clients",
                format!(
                    "max_num_clients ({max}) is less than min_num_clients ({})",
                    s.min_num_clients
                ),
                None,
            );
        }
    }
    if s.rounds > MAX_ROUNDS {
        ck.err(
            "server.rounds",
            format!("expected at most {MAX_ROUNDS} rounds, found {}", s.rounds),
            None,
        );
    }
    if s.min_num_clients == 0 {
        ck.err(
            "server.min_num_clients",
            "expected at least 1: a round needs a client to contribute",
            None,
        );
    }
    if s.max_num_clients == Some(0) {
        ck.err(
            "server.max_num_clients",
            "expected at least 1: no client could register",
            None,
        );
    }
    if cfg.heart_beat_interval < MIN_HEARTBEAT_US {
        ck.err(
            "server.heart_beat_interval",
            "expected a heartbeat interval of at least 1ms",
            None,
        );
    }
    if s.rounds <= s.start_round {
        ck.err("server.rounds", format!("rounds ({}) must be more than start_round ({}): rounds run from start_round up to rounds", s.rounds, s.start_round), None);
    }
    if cfg.heart_beat_interval >= cfg.heart_beat_timeout {
        ck.err("server.heart_beat_interval", "heart_beat_interval must be shorter than heart_beat_timeout, or every client is removed between heartbeats", None);
    }
    let name = s.aggregator.name();
    for (key, problem) in s.aggregator.problems() {
        ck.err(&format!("server.aggregator.{name}.{key}"), problem, None);
    }
    cfg
}

fn transport(f: &ScenarioFile, ck: &mut Checker) -> TransportConfig {
    let t = &f.transport;
    for (key, p) in [
        ("transport.loss", t.loss),
        ("transport.corruption", t.corruption),
    ] {
        if !(0.0..1.0).contains(&p) {
            ck.err(
                key,
                format!("expected a probability in [0, 1), found {p}"),
                None,
            );
        }
    }
    if t.level.is_some_and(|l| l > 9) {
        ck.err("transport.level", "expected a gzip level from 0 to 9", None);
    }
    if t.level.is_some() && t.compression != Compression::Gzip {
        ck.err(
            "transport.level",
            "a gzip level without `compression: gzip` would do nothing",
            None,
        );
    }
    if t.key.is_some() && t.encryption != Encryption::AesGcm {
        ck.err(
            "transport.key",
            "a key without `encryption: aes-gcm` would do nothing",
            None,
        );
    }
    let aes_key = (t.encryption == Encryption::AesGcm).then(|| match &t.key {
        Some(hex) => parse_key(hex).unwrap_or_else(|| {
            ck.err(
                "transport.key",
                "expected 64 hex digits (a 256-bit key)",
                None,
            );
            [0; 32]
        }),
        None => {
            let mut key = [0u8; 32];
            rand::RngCore::fill_bytes(&mut rng::stream(f.seed, "aes-key", NONE, NONE), &mut key);
            key
        }
    });
    TransportConfig {
        gzip_level: (t.compression == Compression::Gzip).then(|| t.level.unwrap_or(6)),
        aes_key,
        loss_rate: t.loss,
        corruption_rate: t.corruption,
    }
}

fn retry(r: &RetrySpec, ck: &mut Checker) -> RetryConfig {
    let d = RetryConfig::default();
    let t = |q: Option<super::units::Q<super::units::Time>>, default: u64| {
        q.map_or(default, |q| q.value.round() as u64)
    };
    let cfg = RetryConfig {
        deadline: t(r.deadline, d.deadline),
        initial: t(r.backoff.initial, d.initial),
        max: t(r.backoff.max, d.max),
        multiplier: r.backoff.multiplier.unwrap_or(d.multiplier),
        jitter: r.backoff.jitter.unwrap_or(d.jitter),
    };
    if cfg.deadline < crate::sim::MIN_DEADLINE {
        ck.err(
            "clients.retry.deadline",
            "expected a deadline of at least 1ms: the server answers a task request it holds after half of it, and the client asks again at once",
            None,
        );
    }
    if !(cfg.multiplier >= 1.0 && cfg.multiplier.is_finite()) {
        ck.err(
            "clients.retry.backoff.multiplier",
            format!(
                "expected a finite multiplier of at least 1, found {}",
                cfg.multiplier
            ),
            None,
        );
    }
    if !(0.0..1.0).contains(&cfg.jitter) {
        ck.err(
            "clients.retry.backoff.jitter",
            format!("expected a fraction in [0, 1), found {}", cfg.jitter),
            None,
        );
    }
    if cfg.max < cfg.initial {
        ck.err(
            "clients.retry.backoff.max",
            "expected a longest wait no shorter than the first (`initial`)",
            None,
        );
    }
    cfg
}

fn parse_key(hex: &str) -> Option<[u8; 32]> {
    let hex = hex.trim();
    if hex.len() != 64 {
        return None;
    }
    let mut key = [0u8; 32];
    for (i, b) in key.iter_mut().enumerate() {
        *b = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(key)
}

/// Each group's id block among the initial clients: `[start, end)`, by shares, largest
/// remainders first.
fn group_blocks(f: &ScenarioFile, ck: &mut Checker) -> Vec<(u32, u32)> {
    let groups = &f.clients.groups;
    if groups.is_empty() {
        return Vec::new();
    }
    let total: f64 = groups.iter().map(|g| g.share).sum();
    if (total - 1.0).abs() > 1e-6 {
        ck.err(
            "clients.groups",
            format!("group shares must sum to 1, they sum to {total}"),
            None,
        );
    }
    for (i, g) in groups.iter().enumerate() {
        if !(g.share > 0.0 && g.share <= 1.0) {
            ck.err(
                &format!("clients.groups[{i}].share"),
                format!("expected a share in (0, 1], found {}", g.share),
                None,
            );
        }
        if let Some(name) = &g.name {
            if groups[..i].iter().any(|o| o.name.as_ref() == Some(name)) {
                ck.err(
                    &format!("clients.groups[{i}].name"),
                    format!("group name `{name}` is used twice"),
                    None,
                );
            }
        }
    }
    split_by_shares(
        f.clients.count,
        &groups.iter().map(|g| g.share).collect::<Vec<_>>(),
    )
}

fn split_by_shares(n: u32, shares: &[f64]) -> Vec<(u32, u32)> {
    // Shares out of (0, 1] are reported as errors; here they only must not break the sums.
    let shares: Vec<f64> = shares
        .iter()
        .map(|s| {
            if s.is_finite() {
                s.clamp(0.0, 1.0)
            } else {
                0.0
            }
        })
        .collect();
    let total: f64 = shares.iter().sum::<f64>().max(1e-12);
    let exact: Vec<f64> = shares.iter().map(|s| s / total * f64::from(n)).collect();
    let mut sizes: Vec<u32> = exact.iter().map(|e| e.floor() as u32).collect();
    let mut order: Vec<usize> = (0..shares.len()).collect();
    order.sort_by(|&a, &b| {
        (exact[b] - exact[b].floor())
            .total_cmp(&(exact[a] - exact[a].floor()))
            .then(a.cmp(&b))
    });
    let given: u64 = sizes.iter().map(|&s| u64::from(s)).sum();
    let missing = u64::from(n).saturating_sub(given);
    for &i in order.iter().take(missing as usize) {
        sizes[i] += 1;
    }
    let mut start = 0u32;
    sizes
        .iter()
        .map(|s| {
            let end = start.saturating_add(*s).min(n);
            let b = (start, end);
            start = end;
            b
        })
        .collect()
}

/// The group of client `id`: by block for initial clients, round-robin by block order for
/// clients that join later.
fn profile(g: &GroupSpec) -> Profile {
    Profile {
        per_sample_us: g.compute.per_sample.map_or(Dist::Fixed(0.0), |d| d.dist),
        latency_us: g.link.latency.map_or(Dist::Fixed(0.0), |d| d.dist),
        bandwidth: g
            .link
            .bandwidth
            .map_or(Dist::Fixed(f64::INFINITY), |d| d.dist),
        per_round: g.per_round,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_split_by_largest_remainder() {
        assert_eq!(split_by_shares(10, &[0.8, 0.2]), vec![(0, 8), (8, 10)]);
        assert_eq!(
            split_by_shares(10, &[1.0 / 3.0; 3]),
            vec![(0, 4), (4, 7), (7, 10)]
        );
        // Shares the checker refuses still split without overflowing (a fuzzer's find).
        assert_eq!(split_by_shares(10, &[2.0, -1.0]), vec![(0, 10), (10, 10)]);
        assert_eq!(split_by_shares(4, &[f64::NAN, 0.5]), vec![(0, 0), (0, 4)]);
    }
}
