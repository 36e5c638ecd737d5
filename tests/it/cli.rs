//! End-to-end tests of the `fedsim` binary.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use fedsim::fed_learn::pb::ModelData;
use fedsim::learn::Params;
use fedsim::scenario::Scenario;
use prost::Message as _;

fn fedsim(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fedsim"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("the binary runs")
}

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("fedsim-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn png_size(path: &Path) -> (u32, u32) {
    let b = std::fs::read(path).unwrap();
    assert_eq!(
        &b[..8],
        b"\x89PNG\r\n\x1a\n",
        "{} is not a PNG",
        path.display()
    );
    let be = |i: usize| u32::from_be_bytes(b[i..i + 4].try_into().unwrap());
    (be(16), be(20))
}

#[test]
fn run_writes_every_file_and_they_agree() {
    let out = temp_dir("quickstart");
    let o = fedsim(&[
        "run",
        "scenarios/quickstart.yaml",
        "--quiet",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let stdout = String::from_utf8(o.stdout).unwrap();
    assert_eq!(
        stdout.lines().count(),
        1,
        "--quiet prints one line: {stdout}"
    );
    assert!(stdout.starts_with("quickstart: 15 rounds"), "{stdout}");
    for f in [
        "events.jsonl",
        "rounds.csv",
        "summary.json",
        "model.pb",
        "convergence.png",
        "convergence.svg",
    ] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    let leftovers: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().starts_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    let keys = ["seq", "t_us", "round", "actor", "event", "client", "detail"];
    let log = std::fs::read_to_string(out.join("events.jsonl")).unwrap();
    for (i, line) in log.lines().enumerate() {
        // Top-level keys are the only ones followed by these exact prefixes; their offsets
        // must increase, and `detail` (an object) comes last.
        let offsets: Vec<usize> = keys
            .iter()
            .enumerate()
            .map(|(k, key)| {
                line.find(&format!("{}\"{key}\":", if k == 0 { "{" } else { "," }))
                    .unwrap_or_else(|| panic!("line {i} lacks {key}: {line}"))
            })
            .collect();
        assert!(
            offsets.windows(2).all(|w| w[0] < w[1]),
            "line {i} keys out of order: {line}"
        );
        assert_eq!(offsets[0], 0);
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(v.as_object().unwrap().len(), 7);
        assert_eq!(v["seq"], i as u64);
    }

    let csv = std::fs::read_to_string(out.join("rounds.csv")).unwrap();
    assert_eq!(csv.lines().next().unwrap(), "round,t_us,selected,contributed,rejected,aggregated,train_loss,test_loss,test_accuracy,bytes_up,bytes_down");
    assert_eq!(csv.lines().count(), 1 + 15);

    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    for k in [
        "scenario",
        "seed",
        "rounds_completed",
        "final",
        "event_counts",
        "wall_s",
        "client_updates",
        "updates_per_s",
    ] {
        assert!(summary.get(k).is_some(), "summary.json lacks {k}");
    }
    assert_eq!(summary["rounds_completed"], 15);

    // model.pb is a plain ModelData; its accuracy on the global test set is summary.json's.
    let md = ModelData::decode(std::fs::read(out.join("model.pb")).unwrap().as_slice()).unwrap();
    let s = Scenario::load("scenarios/quickstart.yaml").unwrap();
    let cfg = &s.config;
    let classes = cfg.data.classes;
    let like = cfg.model.init(
        cfg.data.features,
        classes,
        &mut fedsim::rng::stream(0, "x", 0, 0),
    );
    let params = Params::from_model_data(md, &like).unwrap();
    let test = cfg
        .data
        .generator(cfg.seed)
        .global_test(u64::from(cfg.initial_clients));
    let acc = cfg.model.evaluate(&params, &test).accuracy;
    assert_eq!(summary["final"]["test_accuracy"].as_f64().unwrap(), acc);

    assert_eq!(png_size(&out.join("convergence.png")), (1600, 1100));
    let svg = std::fs::read_to_string(out.join("convergence.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("test accuracy"));

    // `plot` redraws the same chart from the files.
    let before = std::fs::read(out.join("convergence.png")).unwrap();
    std::fs::remove_file(out.join("convergence.png")).unwrap();
    assert!(fedsim(&["plot", out.to_str().unwrap()]).status.success());
    assert_eq!(std::fs::read(out.join("convergence.png")).unwrap(), before);
}

#[test]
fn a_bad_scenario_exits_2_with_the_positioned_error() {
    let dir = temp_dir("bad");
    let bad = dir.join("bad.yaml");
    std::fs::write(&bad, "name: t\ntask: { model: softmax, data: { generator: w1 } }\nserver: { rounds: 3 }\nclients: { count: 2 }\nevents:\n  - { at: { round: 1 }, clients: [0], dropuot: { for: 1 round } }\n").unwrap();
    let o = fedsim(&[
        "run",
        bad.to_str().unwrap(),
        "--out",
        dir.join("out").to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8(o.stderr).unwrap();
    assert!(
        err.contains("bad.yaml:6:39:") && err.contains("did you mean `dropout`?"),
        "{err}"
    );
    assert!(!dir.join("out").exists());
    let check = fedsim(&["check", "scenarios/quickstart.yaml", bad.to_str().unwrap()]);
    assert_eq!(check.status.code(), Some(2));
    assert_eq!(
        fedsim(&["check", "scenarios/quickstart.yaml"])
            .status
            .code(),
        Some(0)
    );
    assert_eq!(fedsim(&["run", "--no-such-flag"]).status.code(), Some(2));
}

#[test]
fn a_failed_expectation_exits_1_and_shows_the_closest_events() {
    let dir = temp_dir("expect");
    let text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/quits.yaml"))
            .unwrap();
    let text = text.replace(
        "  - { event: _clientQuit, count: 9 }",
        "  - { event: _clientQuit, client: 1, round: 4 }",
    );
    let f = dir.join("quits.yaml");
    std::fs::write(&f, text).unwrap();
    let o = fedsim(&[
        "run",
        f.to_str().unwrap(),
        "--quiet",
        "--out",
        dir.join("out").to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8(o.stderr).unwrap();
    assert!(
        err.contains("FAIL: expect[0] _clientQuit{client: client-0001, round: 4}"),
        "{err}"
    );
    assert!(
        err.contains("closest events:") && err.contains("_clientQuit client=client-0001"),
        "{err}"
    );
}

#[test]
fn run_without_a_file_runs_the_built_in_quickstart_and_compare_overlays_runs() {
    let dir = temp_dir("builtin");
    let a = dir.join("a");
    let o = fedsim(&["run", "--quiet", "--out", a.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8(o.stdout)
        .unwrap()
        .starts_with("quickstart: 15 rounds"));
    // Overriding the rounds cuts the run short, and quickstart's expectations then fail.
    let short = fedsim(&[
        "run",
        "--quiet",
        "--rounds",
        "3",
        "--out",
        dir.join("short").to_str().unwrap(),
    ]);
    assert_eq!(short.status.code(), Some(1));
    assert!(String::from_utf8(short.stdout)
        .unwrap()
        .starts_with("quickstart: 3 rounds"));
    let b = dir.join("b");
    assert!(fedsim(&[
        "run",
        "scenarios/quits.yaml",
        "--quiet",
        "--out",
        b.to_str().unwrap()
    ])
    .status
    .success());
    let png = dir.join("cmp.png");
    let o = fedsim(&[
        "compare",
        a.to_str().unwrap(),
        b.to_str().unwrap(),
        "--out",
        png.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(png_size(&png), (1600, 1100));
    assert!(std::fs::read_to_string(dir.join("cmp.svg"))
        .unwrap()
        .contains("quits"));
}

#[test]
fn schema_prints_json_schema() {
    let o = fedsim(&["schema"]);
    assert!(o.status.success());
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["title"], "ScenarioFile");
    assert!(v["properties"]["events"].is_object());
}

#[test]
fn cross_site_runs_draw_a_heatmap() {
    let out = temp_dir("xsite");
    let o = fedsim(&[
        "run",
        "scenarios/cross-site-validation.yaml",
        "--quiet",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(png_size(&out.join("cross_site.png")), (1200, 1000));
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["cross_site"]["models"].as_array().unwrap().len(), 7);
}

#[test]
fn exit_codes_tell_an_incomplete_run_and_bad_usage_apart() {
    let dir = temp_dir("exits");
    // Two of three clients quit: the server gives up for want of clients.
    let f = dir.join("gives-up.yaml");
    std::fs::write(
        &f,
        "name: gives-up\ntask: { model: softmax, data: { generator: w1 } }\nserver: { rounds: 8, min_num_clients: 2, round_timeout: 1m, heart_beat_timeout: 2m }\nclients: { count: 3 }\nevents:\n  - { at: { round: 2 }, clients: [0, 1], quit: {} }\n",
    )
    .unwrap();
    let out = dir.join("out");
    let o = fedsim(&[
        "run",
        f.to_str().unwrap(),
        "--quiet",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(
        o.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let err = String::from_utf8(o.stderr).unwrap();
    assert!(
        err.contains("did not complete") && err.contains("not_enough_clients"),
        "{err}"
    );
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["completed"], false);
    // Bad usage: no rounds, a chart that is not a PNG.
    let none = fedsim(&[
        "run",
        "--quiet",
        "--rounds",
        "0",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(none.status.code(), Some(2));
    let svg = dir.join("x.svg");
    let cmp = fedsim(&[
        "compare",
        out.to_str().unwrap(),
        "--out",
        svg.to_str().unwrap(),
    ]);
    assert_eq!(cmp.status.code(), Some(2));
    // A golden trace is never written over something that is not a regular file.
    let not_a_file = dir.join("golden-dir");
    std::fs::create_dir_all(&not_a_file).unwrap();
    let o = fedsim(&[
        "run",
        "--quiet",
        "--out",
        dir.join("q").to_str().unwrap(),
        "--golden",
        not_a_file.to_str().unwrap(),
        "--update",
    ]);
    assert_eq!(o.status.code(), Some(4));
    let err = String::from_utf8(o.stderr).unwrap();
    assert!(err.contains("golden-dir: a directory"), "{err}");
    assert!(not_a_file.is_dir());
}

/// A long run, started as a real child process and sent a real signal once it is under way.
fn interrupted(signal: &str) -> (std::process::ExitStatus, PathBuf) {
    let dir = temp_dir(&format!("signal-{signal}"));
    let f = dir.join("long.yaml");
    std::fs::write(
        &f,
        "name: long\ntask: { model: softmax, data: { generator: w1 } }\nserver: { rounds: 50000, clients_per_round: 5 }\nclients: { count: 20 }\n",
    )
    .unwrap();
    let out = dir.join("out");
    let mut child = Command::new(env!("CARGO_BIN_EXE_fedsim"))
        .args([
            "run",
            f.to_str().unwrap(),
            "--quiet",
            "--out",
            out.to_str().unwrap(),
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Waits (for the child process, not for the simulation) until its event log is growing.
    let tmp = out.join(format!(".tmp-{}-events.jsonl", child.id()));
    while std::fs::metadata(&tmp).map_or(0, |m| m.len()) < 100_000 {
        assert!(child.try_wait().unwrap().is_none(), "the run ended early");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let sent = Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    (child.wait().unwrap(), out)
}

#[test]
fn ctrl_c_and_sigterm_stop_a_run_cleanly_with_its_partial_results() {
    for (signal, code) in [("-INT", 130), ("-TERM", 143)] {
        let (status, out) = interrupted(signal);
        assert_eq!(status.code(), Some(code), "{signal}");
        let summary: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap())
                .unwrap();
        assert_eq!(summary["interrupted"], true);
        assert_eq!(summary["completed"], false);
        let log = std::fs::read_to_string(out.join("events.jsonl")).unwrap();
        let last: serde_json::Value = serde_json::from_str(log.lines().last().unwrap()).unwrap();
        assert_eq!(last["detail"]["reason"], "interrupted");
        let leftovers: Vec<_> = std::fs::read_dir(&out)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(".tmp-"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
        // The partial run is a consistent run directory: its charts can be redrawn.
        assert!(fedsim(&["plot", out.to_str().unwrap()]).status.success());
    }
}

#[test]
fn plot_refuses_a_directory_whose_files_come_from_two_runs() {
    let dir = temp_dir("mixed");
    let (a, b) = (dir.join("a"), dir.join("b"));
    assert!(fedsim(&["run", "--quiet", "--out", a.to_str().unwrap()])
        .status
        .success());
    let quits = [
        "run",
        "scenarios/quits.yaml",
        "--quiet",
        "--out",
        b.to_str().unwrap(),
    ];
    assert!(fedsim(&quits).status.success());
    std::fs::copy(b.join("events.jsonl"), a.join("events.jsonl")).unwrap();
    let o = fedsim(&["plot", a.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8(o.stderr).unwrap();
    assert!(err.contains("not of one run"), "{err}");
}

#[test]
fn a_run_too_large_for_memory_is_refused_at_the_key_that_makes_it_large() {
    let dir = temp_dir("memory");
    let f = dir.join("big.yaml");
    std::fs::write(
        &f,
        "name: big\ntask: { model: softmax, data: { generator: w1, samples_per_client: 1000000 } }\nserver: { rounds: 3 }\nclients: { count: 1000000 }\n",
    )
    .unwrap();
    let out = dir.join("out");
    let o = fedsim(&["run", f.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8(o.stderr).unwrap();
    assert!(
        err.contains("big.yaml:2:48: task.data.samples_per_client: the run needs an estimated"),
        "{err}"
    );
    assert!(!out.exists(), "nothing was allocated or written");
    // The limit can be set either way.
    let tiny = fedsim(&[
        "run",
        "--quiet",
        "--memory-limit",
        "1MB",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(tiny.status.code(), Some(2));
    let check = fedsim(&["check", "--verbose", "scenarios/quickstart.yaml"]);
    assert!(String::from_utf8(check.stdout)
        .unwrap()
        .contains("estimated memory"));
}

#[test]
fn out_of_range_command_line_values_are_usage_errors() {
    for args in [
        &["run", "scenarios/quickstart.yaml", "--threads", "0"][..],
        &[
            "run",
            "scenarios/quickstart.yaml",
            "--threads",
            "18446744073709551615",
        ],
        &[
            "run",
            "scenarios/quickstart.yaml",
            "--memory-limit",
            "16777216TiB",
        ],
        &["run", "scenarios/quickstart.yaml", "--rounds", "4294967295"],
        &["run", "scenarios/quickstart.yaml", "--rounds", "1000000001"],
    ] {
        let o = fedsim(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains("error"), "{args:?}: {err}");
    }
}

#[test]
fn files_read_back_must_be_regular_files() {
    let out = temp_dir("special-files");
    let run = out.join("run");
    let o = fedsim(&[
        "run",
        "scenarios/quits.yaml",
        "--quiet",
        "--out",
        run.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // A golden trace that is a device, or a FIFO (opening it would wait for a writer).
    let fifo = out.join("fifo");
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    for golden in [Path::new("/dev/zero"), fifo.as_path()] {
        let o = fedsim(&[
            "run",
            "scenarios/quits.yaml",
            "--quiet",
            "--out",
            out.join("again").to_str().unwrap(),
            "--golden",
            golden.to_str().unwrap(),
        ]);
        assert_eq!(o.status.code(), Some(4), "{}", golden.display());
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains(&format!("{}: not a regular file", golden.display())),
            "{err}"
        );
    }
    // A golden trace that is not an event log is a bad file, not a divergence.
    let garbage = out.join("garbage.jsonl");
    std::fs::write(&garbage, "not json\n").unwrap();
    let o = fedsim(&[
        "run",
        "scenarios/quits.yaml",
        "--quiet",
        "--out",
        out.join("again").to_str().unwrap(),
        "--golden",
        garbage.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(4));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("garbage.jsonl: line 1: not an event log line"),
        "{err}"
    );
    // A results directory whose rounds.csv is a device.
    std::fs::remove_file(run.join("rounds.csv")).unwrap();
    std::os::unix::fs::symlink("/dev/zero", run.join("rounds.csv")).unwrap();
    let o = fedsim(&["plot", run.to_str().unwrap()]);
    assert_ne!(o.status.code(), Some(0));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("rounds.csv: not a regular file"), "{err}");
}
