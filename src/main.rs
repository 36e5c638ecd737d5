//! The `fedsim` command line: run a scenario, check scenario files, print the schema, redraw
//! and compare charts.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use fedsim::report::{self, atomic::AtomicFile, chart, data::RunData, progress::Progress};
use fedsim::scenario::{expect, Scenario};
use fedsim::Simulation;

/// Simulations allocate many small, short-lived buffers (messages, tensors, batches) on one
/// thread and free some on another; mimalloc does this markedly faster than the system
/// allocator (docs/DECISIONS.md has the figures).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Exit codes, as `--help` and the README list them.
mod exit {
    /// An expectation or the golden trace failed.
    pub const EXPECTATION: u8 = 1;
    /// Bad usage, or an invalid scenario (the positioned error is on stderr).
    pub const USAGE: u8 = 2;
    /// The run did not complete: it stalled, gave up for want of clients, or ran fewer rounds
    /// than asked (or learned nothing).
    pub const INCOMPLETE: u8 = 3;
    /// The run failed: a panic in fedsim or a plug-in, or results that could not be written.
    pub const FAILED: u8 = 4;
}

const EXIT_CODES: &str = "Exit codes: 0 success; 1 an expectation or the golden trace failed; \
2 bad usage or an invalid scenario; 3 the run did not complete (stalled, gave up for want of \
clients, fewer rounds than asked, nothing learned); 4 the run failed (a panic, or results that \
could not be written).";

/// A deterministic, virtual-time federated-learning simulator (Clara Train 3.1 fed_learn).
#[derive(Parser)]
#[command(name = "fedsim", version, about, after_help = EXIT_CODES)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a scenario and write its results (the built-in quickstart if no file is given).
    Run(Box<RunArgs>),
    /// Check scenario files without running them: exit 0 if all are valid, 2 otherwise.
    Check {
        /// Scenario files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Also print each run's estimated memory, part by part.
        #[arg(long)]
        verbose: bool,
    },
    /// Print the JSON Schema of the scenario format.
    Schema,
    /// Redraw a run's charts from the files in its directory.
    Plot {
        /// A run directory, such as results/quickstart.
        dir: PathBuf,
    },
    /// Overlay several runs in one chart, each labelled by its scenario name.
    Compare {
        /// Run directories.
        #[arg(required = true)]
        dirs: Vec<PathBuf>,
        /// Where to write the chart (an .svg is written beside it).
        #[arg(long, default_value = "compare.png")]
        out: PathBuf,
    },
}

#[derive(clap::Args)]
struct RunArgs {
    /// The scenario file.
    scenario: Option<PathBuf>,
    /// Where to write results (default: results/<scenario name>).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Override the scenario's seed.
    #[arg(long)]
    seed: Option<u64>,
    /// Run this many rounds, from the scenario's start_round on, instead of the scenario's
    /// (the run then ends at start_round + N; events after that never happen).
    #[arg(long)]
    rounds: Option<u32>,
    /// Threads for training, data generation and evaluation (1 to 1024); all cores if not
    /// given. Results are identical for any number.
    #[arg(long, value_parser = parse_threads)]
    threads: Option<usize>,
    /// Print only the final one-line summary.
    #[arg(long)]
    quiet: bool,
    /// Also list the expectations that passed.
    #[arg(long)]
    verbose: bool,
    /// Compare the event log with this recorded golden trace; fail at the first divergence.
    #[arg(long)]
    golden: Option<PathBuf>,
    /// With --golden: write this run's log as the new golden trace instead of comparing.
    #[arg(long, requires = "golden")]
    update: bool,
    /// With --golden: ignore this `detail` key when comparing (repeatable).
    #[arg(long = "ignore-detail", value_name = "KEY", requires = "golden")]
    ignore_detail: Vec<String>,
    /// The most memory the run may need, by its estimate (`8GiB`, `500MB`, or bytes); default:
    /// the memory available now.
    #[arg(long, value_parser = parse_bytes)]
    memory_limit: Option<u64>,
}

/// `8GiB`, `500MB`, `2048` (bytes).
fn parse_bytes(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let num: f64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not an amount of memory"))?;
    let scale = match unit.trim() {
        "" | "B" => 1.0,
        "kB" | "KB" => 1e3,
        "MB" => 1e6,
        "GB" => 1e9,
        "TB" => 1e12,
        "KiB" => 1024.0,
        "MiB" => 1024.0 * 1024.0,
        "GiB" => 1024.0 * 1024.0 * 1024.0,
        "TiB" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        other => return Err(format!("unknown unit `{other}`; use B, MB, GB, MiB or GiB")),
    };
    let bytes = num * scale;
    // A pebibyte is past any machine this runs on; past it the number is surely a mistake.
    if !(bytes >= 1.0 && bytes <= (1u64 << 50) as f64) {
        return Err(format!("`{s}`: expected from 1 byte to 1 PiB"));
    }
    Ok(bytes as u64)
}

/// A thread count from 1 to 1024.
fn parse_threads(s: &str) -> Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(n) if (1..=1024).contains(&n) => Ok(n),
        _ => Err(format!(
            "`{s}`: expected a number of threads from 1 to 1024"
        )),
    }
}

/// The quickstart scenario, built into the binary.
const QUICKSTART: &str = include_str!("../scenarios/quickstart.yaml");

fn main() -> ExitCode {
    // Every panic inside a simulation is caught and reported as one line (see `run`); the
    // default hook's report, with its thread name and backtrace hint, would only add noise.
    std::panic::set_hook(Box::new(|_| {}));
    match std::panic::catch_unwind(command) {
        Ok(code) => code,
        Err(panic) => {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            eprintln!("error: fedsim failed unexpectedly: {message}");
            ExitCode::from(exit::FAILED)
        }
    }
}

fn command() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run(args) => run(*args),
        Command::Check { files, verbose } => check(&files, verbose),
        Command::Schema => {
            println!(
                "{}",
                serde_json::to_string_pretty(&fedsim::scenario::json_schema()).expect("JSON")
            );
            ExitCode::SUCCESS
        }
        Command::Plot { dir } => plot(&dir),
        Command::Compare { dirs, out } => compare(&dirs, &out),
    }
}

fn load(path: Option<&Path>) -> Result<Scenario, ExitCode> {
    let loaded = match path {
        Some(p) => Scenario::load(p),
        None => Scenario::from_str(QUICKSTART, "scenarios/quickstart.yaml (built in)"),
    };
    loaded.map_err(|e| {
        eprintln!("{e}");
        ExitCode::from(exit::USAGE)
    })
}

fn run(args: RunArgs) -> ExitCode {
    let mut scenario = match load(args.scenario.as_deref()) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let cfg = &mut scenario.config;
    if let Some(seed) = args.seed {
        cfg.seed = seed;
    }
    if let Some(n) = args.rounds {
        let max = fedsim::scenario::MAX_ROUNDS;
        match cfg.server.start_round.checked_add(n) {
            Some(end) if n > 0 && end <= max => cfg.server.num_rounds = end,
            _ => {
                let start = cfg.server.start_round;
                eprintln!(
                    "error: --rounds {n}: expected 1 to {} rounds after start_round {start} (runs end by round {max})",
                    max.saturating_sub(start),
                );
                return ExitCode::from(exit::USAGE);
            }
        }
    }
    cfg.threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1);
    let limit = args
        .memory_limit
        .or_else(fedsim::scenario::estimate::available)
        .unwrap_or(u64::MAX);
    if let Err(e) = scenario.check_memory(limit) {
        eprintln!("error: {e}");
        return ExitCode::from(exit::USAGE);
    }
    let cfg = &scenario.config;
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| Path::new("results").join(&cfg.name));
    match execute(&scenario, &out, &args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(exit::FAILED)
        }
    }
}

fn execute(
    scenario: &Scenario,
    out: &Path,
    args: &RunArgs,
) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let cfg = scenario.config.clone();
    std::fs::create_dir_all(out).map_err(|e| report::atomic::at(out, e))?;
    // A directory never holds files of two runs: the last run's go before this one starts.
    report::clear_run(out)?;
    let (events_file, writer) = AtomicFile::create(&out.join("events.jsonl"))?;
    let signals = stop_on_signals();
    let mut sim = Simulation::new(cfg.clone())
        .event_sink(Box::new(writer))
        .interrupt_on(signals.stop.clone());
    let progress = (!args.quiet)
        .then(|| Progress::new(u64::from(cfg.server.num_rounds - cfg.server.start_round)));
    let bar = progress.as_ref().map(Progress::bar);
    if let Some(p) = progress {
        sim = sim.handler(Box::new(p));
    }
    let result = sim.run();
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let result = match result {
        Ok(r) => r,
        Err(fedsim::sim::SimError::Failed { failure, partial }) => {
            // What the run produced up to the panic is kept, marked as failed.
            events_file.commit()?;
            report::write_run(out, &partial)?;
            eprintln!("error: {failure}; partial results in {}", out.display());
            return Ok(ExitCode::from(exit::FAILED));
        }
        Err(e) => {
            events_file.abandon();
            return Err(e.into());
        }
    };
    events_file.commit()?;
    report::write_run(out, &result)?;
    if result.interrupted {
        eprintln!(
            "interrupted after {} rounds; partial results in {}",
            result.rounds.len(),
            out.display()
        );
        return Ok(ExitCode::from(signals.exit_code()));
    }
    let outcomes = expect::check(&scenario.file, &result);
    let mut failed = print_expectations(&outcomes, args.verbose);
    if let Some(golden) = &args.golden {
        failed += usize::from(!check_golden(golden, &out.join("events.jsonl"), args)?);
    }
    println!(
        "{}: {} rounds, test_accuracy {:.4}, test_loss {:.4}, {} events, {} updates in {:.2}s wall ({:.0} updates/s), {:.1}s virtual, expectations {}/{} passed; results in {}",
        result.name,
        result.rounds.len(),
        result.metrics.accuracy,
        result.metrics.loss,
        result.event_counts.values().sum::<u64>(),
        result.client_updates,
        result.wall_s,
        result.updates_per_s(),
        result.virtual_us as f64 / 1e6,
        outcomes.len() - failed,
        outcomes.len(),
        out.display()
    );
    Ok(if failed > 0 {
        ExitCode::from(exit::EXPECTATION)
    } else if !result.completed {
        eprintln!(
            "error: the run did not complete: {} of {} rounds ({})",
            result.rounds.len(),
            scenario.config.server.num_rounds - scenario.config.server.start_round,
            end_reason(&result)
        );
        ExitCode::from(exit::INCOMPLETE)
    } else {
        ExitCode::SUCCESS
    })
}

/// Ctrl-C (SIGINT) and SIGTERM, which stop a run cleanly at the end of a step.
struct Signals {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    term: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Signals {
    /// 128 + the signal's number, as a shell reports a process the signal ended.
    fn exit_code(&self) -> u8 {
        if self.term.load(std::sync::atomic::Ordering::Relaxed) {
            143
        } else {
            130
        }
    }
}

/// Registers the handlers: the first SIGINT or SIGTERM asks the run to stop; a second, once
/// that is under way, ends the process at once, as it would have without them.
fn stop_on_signals() -> Signals {
    let signals = Signals {
        stop: Default::default(),
        term: Default::default(),
    };
    #[cfg(unix)]
    {
        use signal_hook::consts::{SIGINT, SIGTERM};
        for sig in [SIGINT, SIGTERM] {
            let _ = signal_hook::flag::register_conditional_default(sig, signals.stop.clone());
            let _ = signal_hook::flag::register(sig, signals.stop.clone());
        }
        let _ = signal_hook::flag::register(SIGTERM, signals.term.clone());
    }
    signals
}

/// Why the run ended, as its `run_end` says (or, if it says completed, why it is not).
fn end_reason(r: &fedsim::RunResult) -> String {
    match r.events.last().and_then(|e| e.detail_str("reason")) {
        Some("completed") | None => "no contribution was aggregated".to_string(),
        Some(reason) => reason.to_string(),
    }
}

/// Prints failed expectations (and passed ones with `verbose`) to stderr; returns the failures.
fn print_expectations(outcomes: &[expect::Outcome], verbose: bool) -> usize {
    let mut failed = 0;
    for o in outcomes {
        if o.passed {
            if verbose {
                eprintln!("pass: expect[{}] {}", o.index, o.what);
            }
            continue;
        }
        failed += 1;
        eprintln!("FAIL: expect[{}] {}: {}", o.index, o.what, o.actual);
        if !o.closest.is_empty() {
            eprintln!("  closest events:");
        }
        for e in &o.closest {
            let round = e.round.map_or("-".to_string(), |r| r.to_string());
            let client = e.client.map_or(String::new(), |c| {
                format!(" client={}", fedsim::sim::client_name(c))
            });
            eprintln!(
                "    seq={} t_us={} round={} actor={} {}{}",
                e.seq, e.t_us, round, e.actor, e.event, client
            );
        }
    }
    failed
}

/// Compares (or with --update, records) the golden trace; false if it diverged.
fn check_golden(
    golden: &Path,
    log: &Path,
    args: &RunArgs,
) -> Result<bool, Box<dyn std::error::Error>> {
    let actual = std::fs::read_to_string(log).map_err(|e| report::atomic::at(log, e))?;
    if args.update {
        if let Some(dir) = golden.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| report::atomic::at(dir, e))?;
        }
        report::atomic::write(golden, actual.as_bytes())?;
        eprintln!("recorded the golden trace {}", golden.display());
        return Ok(true);
    }
    if !golden.exists() {
        return Err(format!(
            "{}: no such file (record it with --update)",
            golden.display()
        )
        .into());
    }
    let expected = report::input::read_text(golden, report::input::MAX_LOG_BYTES)?;
    report::golden::check_trace(&expected)
        .map_err(|reason| report::ReportError::invalid(golden, reason))?;
    match report::golden::compare(&expected, &actual, &args.ignore_detail) {
        Ok(()) => {
            if args.verbose {
                eprintln!("pass: the event log matches {}", golden.display());
            }
            Ok(true)
        }
        Err(d) => {
            eprintln!("FAIL: {}: {d}", golden.display());
            Ok(false)
        }
    }
}

fn check(files: &[PathBuf], verbose: bool) -> ExitCode {
    let mut bad = 0;
    for f in files {
        match Scenario::load(f) {
            Ok(s) => {
                println!("ok: {}", f.display());
                if verbose {
                    print_estimate(&s);
                }
            }
            Err(e) => {
                bad += 1;
                eprintln!("{e}");
            }
        }
    }
    if bad == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(exit::USAGE)
    }
}

/// The run's estimated memory, part by part.
fn print_estimate(s: &Scenario) {
    use fedsim::scenario::estimate::{estimate, human};
    let e = estimate(&s.config);
    println!("  estimated memory: {}", human(e.total()));
    for p in &e.parts {
        println!(
            "    {:<18} {:>10}  (sized by {})",
            p.what,
            human(p.bytes),
            p.key
        );
    }
}

fn plot(dir: &Path) -> ExitCode {
    let data = match RunData::read(dir) {
        Ok(d) => d,
        Err(e) => return fail(exit::USAGE, e),
    };
    match chart::write_charts(dir, &data) {
        Ok(()) => {
            println!("redrew the charts in {}", dir.display());
            ExitCode::SUCCESS
        }
        Err(e) => fail(exit::FAILED, e),
    }
}

fn compare(dirs: &[PathBuf], out: &Path) -> ExitCode {
    if out
        .extension()
        .is_none_or(|e| !e.eq_ignore_ascii_case("png"))
    {
        let why = "expected a .png path (an .svg of the same chart is written beside it)";
        return fail(exit::USAGE, format!("--out {}: {why}", out.display()));
    }
    let runs: Result<Vec<RunData>, _> = dirs.iter().map(|d| RunData::read(d)).collect();
    let runs = match runs {
        Ok(r) => r,
        Err(e) => return fail(exit::USAGE, e),
    };
    match chart::render(out, chart::SIZE, &chart::Compare(&runs)) {
        Ok(()) => {
            println!(
                "wrote {} and {}",
                out.display(),
                out.with_extension("svg").display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => fail(exit::FAILED, e),
    }
}

/// Prints `e` as the one-line error and gives the exit code.
fn fail(code: u8, e: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {e}");
    ExitCode::from(code)
}
