//! A scenario's `expect:` block: validated when the file loads, checked against a finished
//! run afterwards. Every scenario is a test.

use super::compile::Checker;
use super::error::did_you_mean;
use super::schema::{Bound, ClientRef, ExpectSpec, ScenarioFile};
use crate::sim::{client_id, Actor, EventName, EventRecord, Reason, RunResult};

/// The verdict on one assertion.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Its index in `expect:`.
    pub index: usize,
    /// The assertion in words.
    pub what: String,
    /// Whether it held.
    pub passed: bool,
    /// What the run showed.
    pub actual: String,
    /// For a failed event assertion, the events closest to what was expected.
    pub closest: Vec<EventRecord>,
}

/// Checks every assertion of `file` against `run`, which must have kept its events.
pub fn check(file: &ScenarioFile, run: &RunResult) -> Vec<Outcome> {
    file.expect
        .iter()
        .enumerate()
        .map(|(i, x)| check_one(i, x, run))
        .collect()
}

fn check_one(index: usize, x: &ExpectSpec, run: &RunResult) -> Outcome {
    let out = |what: String, passed: bool, actual: String, closest: Vec<EventRecord>| Outcome {
        index,
        what,
        passed,
        actual,
        closest,
    };
    if let (Some(first), Some(then)) = (&x.first, &x.then) {
        let a = run.events.iter().find(|e| matches(first, e));
        let b = run.events.iter().find(|e| matches(then, e));
        let what = format!("{} before {}", describe(first), describe(then));
        return match (a, b) {
            (Some(a), Some(b)) => out(
                what,
                a.seq < b.seq,
                format!("first at seq {}, then at seq {}", a.seq, b.seq),
                vec![a.clone(), b.clone()],
            ),
            (a, _) => {
                let missing = if a.is_none() {
                    describe(first)
                } else {
                    describe(then)
                };
                let near = closest(if a.is_none() { first } else { then }, &run.events);
                out(what, false, format!("no {missing} in the log"), near)
            }
        };
    }
    if x.event.is_some() {
        let n = run.events.iter().filter(|e| matches(x, e)).count() as f64;
        let bound = x.count.unwrap_or(Bound::Range {
            min: Some(1.0),
            max: None,
        });
        let ok = within(bound, n);
        let what = format!("{} count {}", describe(x), show(bound));
        return out(
            what,
            ok,
            format!("{n} matching events"),
            if ok { vec![] } else { closest(x, &run.events) },
        );
    }
    if let Some(b) = x.rounds_completed {
        let n = run.rounds.len() as f64;
        return out(
            format!("rounds completed {}", show(b)),
            within(b, n),
            format!("{n} rounds"),
            vec![],
        );
    }
    if let Some(f) = &x.final_ {
        let metrics = [
            ("test_accuracy", f.test_accuracy, run.metrics.accuracy),
            ("test_loss", f.test_loss, run.metrics.loss),
        ];
        let checked: Vec<(bool, String)> = metrics
            .into_iter()
            .filter_map(|(name, bound, value)| {
                bound.map(|b| {
                    (
                        within(b, value),
                        format!("{name} {} (was {value:.4})", show(b)),
                    )
                })
            })
            .collect();
        let ok = checked.iter().all(|(passed, _)| *passed);
        let parts: Vec<String> = checked.into_iter().map(|(_, text)| text).collect();
        return out(
            format!("final {}", parts.join(", ")),
            ok,
            parts.join(", "),
            vec![],
        );
    }
    let r = x.round.unwrap_or(0);
    let Some(stats) = run.rounds.iter().find(|s| s.round == r) else {
        return out(
            format!("round {r}"),
            false,
            format!("round {r} never aggregated"),
            vec![],
        );
    };
    let mut ok = true;
    let mut what = format!("round {r}");
    if let Some(b) = x.aggregated {
        ok &= within(b, stats.aggregated as f64);
        what.push_str(&format!(" aggregated {}", show(b)));
    }
    if let Some(t) = x.timed_out {
        ok &= stats.timed_out == t;
        what.push_str(&format!(" timed_out = {t}"));
    }
    out(
        what,
        ok,
        format!(
            "aggregated {}, timed_out = {}",
            stats.aggregated, stats.timed_out
        ),
        vec![],
    )
}

fn within(b: Bound, v: f64) -> bool {
    match b {
        Bound::Exact(x) => (v - x).abs() < 1e-9,
        Bound::Range { min, max } => min.is_none_or(|m| v >= m) && max.is_none_or(|m| v <= m),
    }
}

fn show(b: Bound) -> String {
    match b {
        Bound::Exact(x) => format!("= {x}"),
        Bound::Range {
            min: Some(a),
            max: Some(b),
        } => format!("in [{a}, {b}]"),
        Bound::Range { min: Some(a), .. } => format!(">= {a}"),
        Bound::Range { max: Some(b), .. } => format!("<= {b}"),
        Bound::Range { .. } => "any".into(),
    }
}

fn client_of(c: &ClientRef) -> Option<Actor> {
    match c {
        ClientRef::Id(id) => Some(Actor::Client(*id)),
        ClientRef::Name(n) if n == "server" => Some(Actor::Server),
        ClientRef::Name(n) => client_id(n).map(Actor::Client),
    }
}

/// How many of the matcher's conditions `e` fails (0 is a match).
fn misses(x: &ExpectSpec, e: &EventRecord) -> usize {
    let mut m = 0;
    if let Some(name) = &x.event {
        m += usize::from(EventName::parse(name) != Some(e.event)) * 10;
    }
    if let Some(c) = &x.client {
        m += usize::from(client_of(c) != e.client.map(Actor::Client));
    }
    if let Some(a) = &x.actor {
        m += usize::from(client_of(a) != Some(e.actor));
    }
    if let Some(r) = x.round {
        m += usize::from(e.round != Some(r));
    }
    if let Some(reason) = &x.reason {
        m += usize::from(e.detail_str("reason") != Some(reason.as_str()));
    }
    m
}

fn matches(x: &ExpectSpec, e: &EventRecord) -> bool {
    misses(x, e) == 0
}

/// Up to five events nearest to the matcher: same name first, then fewest other differences.
fn closest(x: &ExpectSpec, events: &[EventRecord]) -> Vec<EventRecord> {
    let mut scored: Vec<(usize, &EventRecord)> = events
        .iter()
        .map(|e| (misses(x, e), e))
        .filter(|(m, _)| *m < 10)
        .collect();
    scored.sort_by_key(|(m, e)| (*m, e.seq));
    scored.into_iter().take(5).map(|(_, e)| e.clone()).collect()
}

/// The matcher in words: `contribution_rejected{client: 7, reason: late}`.
pub fn describe(x: &ExpectSpec) -> String {
    let mut parts = Vec::new();
    if let Some(c) = &x.client {
        parts.push(format!("client: {}", show_ref(c)));
    }
    if let Some(a) = &x.actor {
        parts.push(format!("actor: {}", show_ref(a)));
    }
    if let Some(r) = x.round {
        parts.push(format!("round: {r}"));
    }
    if let Some(reason) = &x.reason {
        parts.push(format!("reason: {reason}"));
    }
    let name = x.event.as_deref().unwrap_or("event");
    if parts.is_empty() {
        name.to_string()
    } else {
        format!("{name}{{{}}}", parts.join(", "))
    }
}

fn show_ref(c: &ClientRef) -> String {
    match c {
        ClientRef::Id(id) => crate::sim::client_name(*id),
        ClientRef::Name(n) => n.clone(),
    }
}

/// Checks the `expect:` block: known event names, clients that exist, sensible bounds.
pub(crate) fn validate(f: &ScenarioFile, ck: &mut Checker) {
    // Past u32's ids the scenario is refused anyway (see `compile`); saturate until then.
    let total = u32::try_from(f.total_clients()).unwrap_or(u32::MAX);
    for (i, x) in f.expect.iter().enumerate() {
        let at = format!("expect[{i}]");
        let kinds = [
            x.event.is_some(),
            x.first.is_some() || x.then.is_some(),
            x.aggregated.is_some() || x.timed_out.is_some() || x.rounds_completed.is_some(),
            x.final_.is_some(),
        ];
        if kinds.iter().filter(|k| **k).count() != 1 {
            ck.err(&at, "expected one kind of assertion: `event`, `first`/`then`, `aggregated`/`timed_out`/`rounds_completed`, or `final`", None);
            continue;
        }
        check_matcher(x, &at, ck, total, f.server.rounds);
        if x.first.is_some() != x.then.is_some() {
            ck.err(
                &at,
                "an order assertion needs both `first` and `then`",
                None,
            );
        }
        for (key, m) in [("first", &x.first), ("then", &x.then)] {
            if let Some(m) = m {
                if m.event.is_none() {
                    ck.err(
                        &format!("{at}.{key}"),
                        "expected `event:` in an order matcher",
                        None,
                    );
                }
                check_matcher(m, &format!("{at}.{key}"), ck, total, f.server.rounds);
            }
        }
        if (x.aggregated.is_some() || x.timed_out.is_some()) && x.round.is_none() {
            ck.err(&at, "`aggregated` and `timed_out` need `round:`", None);
        }
        if x.count.is_some() && x.event.is_none() {
            ck.err(
                &format!("{at}.count"),
                "`count` counts events: it needs `event:`",
                None,
            );
        }
        let rounds = f.server.rounds.saturating_sub(f.server.start_round);
        let limits = [
            ("count", x.count, 0.0, 1e15),
            ("aggregated", x.aggregated, 0.0, f64::from(total)),
            (
                "rounds_completed",
                x.rounds_completed,
                0.0,
                f64::from(rounds),
            ),
        ];
        for (key, b, lo, hi) in limits {
            if let Some(b) = b {
                check_bound(ck, &format!("{at}.{key}"), b, lo, hi, true);
            }
        }
        if let Some(fin) = &x.final_ {
            if fin.test_accuracy.is_none() && fin.test_loss.is_none() {
                ck.err(
                    &format!("{at}.final"),
                    "expected `test_accuracy` or `test_loss`",
                    None,
                );
            }
            if let Some(b) = fin.test_accuracy {
                // Accuracy, or R² for regression: at most 1, and R² may be negative.
                check_bound(
                    ck,
                    &format!("{at}.final.test_accuracy"),
                    b,
                    f64::MIN,
                    1.0,
                    false,
                );
            }
            if let Some(b) = fin.test_loss {
                check_bound(
                    ck,
                    &format!("{at}.final.test_loss"),
                    b,
                    0.0,
                    f64::MAX,
                    false,
                );
            }
        }
    }
}

/// A bound that some value in `[lo, hi]` (an integer, for counts) can meet, with at least one
/// end given: any other can never pass, or always does, which is a mistake either way.
fn check_bound(ck: &mut Checker, at: &str, b: Bound, lo: f64, hi: f64, integer: bool) {
    let (min, max) = match b {
        Bound::Exact(v) => (Some(v), Some(v)),
        Bound::Range { min, max } => (min, max),
    };
    if min.is_none() && max.is_none() {
        return ck.err(at, "expected `min`, `max` or both", None);
    }
    let kind = if integer {
        "a whole number"
    } else {
        "a number"
    };
    for v in [min, max].into_iter().flatten() {
        if v < lo || v > hi || (integer && v.fract() != 0.0) {
            let range = if hi == f64::MAX {
                format!("at least {lo}")
            } else if lo == f64::MIN {
                format!("at most {hi}")
            } else {
                format!("from {lo} to {hi}")
            };
            return ck.err(at, format!("expected {kind} {range}, found {v}"), None);
        }
    }
}

fn check_matcher(x: &ExpectSpec, at: &str, ck: &mut Checker, total: u32, rounds: u32) {
    if let Some(name) = &x.event {
        if EventName::parse(name).is_none() {
            let all = crate::fed_learn::EventType::ALL
                .iter()
                .map(|e| e.as_str())
                .chain(crate::sim::SimEvent::ALL.iter().map(|e| e.as_str()));
            let hint = did_you_mean(name, all);
            ck.err(
                &format!("{at}.event"),
                format!("unknown event `{name}`"),
                hint,
            );
        }
    }
    for (key, c) in [("client", &x.client), ("actor", &x.actor)] {
        match c {
            Some(ClientRef::Id(id)) if *id >= total => ck.err(
                &format!("{at}.{key}"),
                format!("client {id} does not exist"),
                None,
            ),
            Some(ClientRef::Name(n))
                if n != "server" && client_id(n).is_none_or(|id| id >= total) =>
            {
                ck.err(
                    &format!("{at}.{key}"),
                    format!(
                        "`{n}` is not a client of this scenario (expected `client-0007` or an id)"
                    ),
                    None,
                )
            }
            _ => {}
        }
    }
    let rejected = crate::sim::SimEvent::ContributionRejected.as_str();
    if let (Some(reason), Some(event)) = (&x.reason, &x.event) {
        let reasons = Reason::ALL.iter().map(|r| r.as_str());
        if event == rejected && !reasons.clone().any(|r| r == reason) {
            let all = reasons.clone().collect::<Vec<_>>().join(", ");
            let hint = did_you_mean(reason, reasons);
            ck.err(
                &format!("{at}.reason"),
                format!("unknown reason `{reason}`: a contribution is rejected as one of {all}"),
                hint,
            );
        }
    }
    if let Some(r) = x.round {
        if r >= rounds {
            ck.err(
                &format!("{at}.round"),
                format!(
                    "round {r} is past the last round ({})",
                    rounds.saturating_sub(1)
                ),
                None,
            );
        }
    }
}
