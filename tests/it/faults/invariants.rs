//! What must hold of any run, however its faults fall: checked over its event log and the
//! record of what crossed the network (`Simulation::record_wire`).

use std::collections::BTreeMap;

use fedsim::fed_learn::EventType;
use fedsim::sim::{
    Action, Actor, Direction, EventName, EventRecord, SimEvent, Span, Trigger, WireRecord,
};
use fedsim::{RunResult, SimConfig};

/// Every invariant, the first broken one as an error.
pub fn check(cfg: &SimConfig, r: &RunResult) -> Result<(), String> {
    run_ends_last(r)?;
    links_are_fifo(&r.wire)?;
    dropped_clients_are_silent(r)?;
    lost_calls_are_sent_again(cfg, r)?;
    slowdowns_pair_up(cfg, r)?;
    no_fault_before_join(cfg, r)?;
    nothing_overtakes_a_quit(r)
}

fn is(e: &EventRecord, name: impl Into<EventName>) -> bool {
    e.event == name.into()
}

fn about(e: &EventRecord, c: u32) -> bool {
    e.client == Some(c) || e.actor == Actor::Client(c)
}

fn run_end(r: &RunResult) -> &EventRecord {
    r.events.last().expect("a run logs something")
}

/// `run_end` is the log's one last line, with a documented reason; seq has no gaps and time
/// never goes back.
pub fn run_ends_last(r: &RunResult) -> Result<(), String> {
    let ends: Vec<_> = r
        .events
        .iter()
        .filter(|e| is(e, SimEvent::RunEnd))
        .collect();
    if ends.len() != 1 {
        return Err(format!("{} run_end lines", ends.len()));
    }
    let last = run_end(r);
    if !is(last, SimEvent::RunEnd) {
        return Err(format!("after run_end: {last:?}"));
    }
    let reason = last.detail_str("reason").unwrap_or_default();
    if !["completed", "not_enough_clients", "stalled"].contains(&reason) {
        return Err(format!("run_end for an undocumented reason {reason:?}"));
    }
    for (i, w) in r.events.windows(2).enumerate() {
        if w[1].seq != i as u64 + 1 || w[1].t_us < w[0].t_us {
            return Err(format!("out of order: {:?} then {:?}", w[0], w[1]));
        }
    }
    Ok(())
}

/// Each direction of each link delivers messages in the order they were sent.
pub fn links_are_fifo(wire: &[WireRecord]) -> Result<(), String> {
    let mut last: BTreeMap<(u32, Direction), &WireRecord> = BTreeMap::new();
    for w in wire {
        let Some(at) = w.arrived_us else { continue };
        if let Some(prev) = last.get(&(w.client, w.direction)) {
            if at < prev.arrived_us.unwrap_or(0) {
                return Err(format!(
                    "overtaken on the link: {prev:?} arrives after {w:?}"
                ));
            }
        }
        last.insert((w.client, w.direction), w);
    }
    Ok(())
}

/// The spans during which each client was out (any dropout in force), from its
/// `dropout_start` and `dropout_end` events; one still open at the end runs to the end.
pub fn dropout_spans(r: &RunResult) -> BTreeMap<u32, Vec<(u64, u64)>> {
    let mut spans: BTreeMap<u32, Vec<(u64, u64)>> = BTreeMap::new();
    let mut open: BTreeMap<u32, (u64, usize)> = BTreeMap::new();
    for e in r.events.iter() {
        let Some(c) = e.client else { continue };
        if is(e, SimEvent::DropoutStart) {
            open.entry(c).or_insert((e.t_us, 0)).1 += 1;
        } else if is(e, SimEvent::DropoutEnd) {
            if let Some((from, n)) = open.get_mut(&c) {
                *n -= 1;
                if *n == 0 {
                    spans.entry(c).or_default().push((*from, e.t_us));
                    open.remove(&c);
                }
            }
        }
    }
    let end = run_end(r).t_us;
    for (c, (from, _)) in open {
        spans.entry(c).or_default().push((from, end));
    }
    spans
}

/// A client that is out sends nothing.
pub fn dropped_clients_are_silent(r: &RunResult) -> Result<(), String> {
    let spans = dropout_spans(r);
    for w in r.wire.iter().filter(|w| w.direction == Direction::Up) {
        let out = spans.get(&w.client).into_iter().flatten();
        if let Some(s) = out
            .into_iter()
            .find(|(a, b)| *a < w.sent_us && w.sent_us < *b)
        {
            return Err(format!("sent while out during {s:?}: {w:?}"));
        }
    }
    Ok(())
}

/// No lost message silences a client: after a login, task request or contribution is lost
/// or damaged, or a task meant for it, the client sends that call again (or a newer call of
/// the same kind, which replaces it) within its deadline and the longest backoff, unless an
/// answer to any attempt reached it by then, or it dropped out, quit, crashed or was
/// refused, or the run ended first. (A client the server forgot logs in again instead.)
pub fn lost_calls_are_sent_again(cfg: &SimConfig, r: &RunResult) -> Result<(), String> {
    let retry = cfg.retry;
    let bound = retry.deadline + (retry.max as f64 * (1.0 + retry.jitter)).ceil() as u64 + 1_000;
    let end = run_end(r).t_us;
    let spans = dropout_spans(r);
    // Out at any time since the call was made (at most a bound before) forgives it.
    let excused = |c: u32, from: u64, to: u64| {
        let since = from.saturating_sub(bound);
        spans
            .get(&c)
            .is_some_and(|s| s.iter().any(|(a, b)| *a <= to && *b >= since))
            || r.events.iter().any(|e| {
                e.client == Some(c)
                    && (since..=to).contains(&e.t_us)
                    && (is(e, SimEvent::ClientCrashed) || is(e, SimEvent::LoginRefused))
            })
            || cfg.faults.iter().any(|f| {
                // A quit leaves silently when the client has no token to quit with.
                matches!(f.action, Action::Quit | Action::Crash)
                    && f.clients.contains(c)
                    && match f.at {
                        Trigger::Round(_) => true,
                        Trigger::Time(t) => t <= to,
                    }
            })
    };
    for w in &r.wire {
        let failed = w.arrived_us.is_none() || w.damaged;
        let (call, method) = match (w.direction, w.method, w.task) {
            (Direction::Up, m @ ("Register" | "GetTask" | "SubmitUpdate"), _) => (w.id.as_str(), m),
            (Direction::Down, _, true) => (w.ref_id.as_deref().unwrap_or_default(), "GetTask"),
            _ => continue,
        };
        if !failed || w.sent_us + bound > end || excused(w.client, w.sent_us, w.sent_us + bound) {
            continue;
        }
        let within = |v: &WireRecord| v.client == w.client && v.sent_us > w.sent_us;
        let again = r.wire.iter().any(|v| {
            within(v)
                && v.direction == Direction::Up
                && (v.method == method || v.method == "Register")
                && v.sent_us <= w.sent_us + bound
        });
        let answered = r.wire.iter().any(|v| {
            v.client == w.client
                && v.direction == Direction::Down
                && !v.damaged
                && v.ref_id.as_deref() == Some(call)
                // Answered before, or by the bound: the client had its answer.
                && v.arrived_us.is_some_and(|a| a <= w.sent_us + bound)
        });
        if !(again || answered) {
            return Err(format!(
                "call {call} not sent again within {bound} us after {w:?}"
            ));
        }
    }
    Ok(())
}

/// Every slowdown that starts ends exactly once, and an end never comes without a start in
/// force. One may still be in force when the run ends if its end is not due by then (or, on
/// the device, if the client is gone).
pub fn slowdowns_pair_up(cfg: &SimConfig, r: &RunResult) -> Result<(), String> {
    let end = run_end(r);
    // A client that quit (with or without a word) or crashed ends no device slowdown.
    let gone = |c: u32| {
        cfg.faults
            .iter()
            .any(|f| matches!(f.action, Action::Quit | Action::Crash) && f.clients.contains(c))
    };
    let mut open: BTreeMap<(u32, String), Vec<&EventRecord>> = BTreeMap::new();
    for e in r.events.iter() {
        let (Some(c), Some(what)) = (e.client, e.detail_str("what")) else {
            continue;
        };
        let key = (c, what.to_string());
        if is(e, SimEvent::SlowStart) {
            open.entry(key).or_default().push(e);
        } else if is(e, SimEvent::SlowEnd) {
            let starts = open.entry(key).or_default();
            let factor = e.detail("factor");
            let Some(i) = starts.iter().position(|s| s.detail("factor") == factor) else {
                return Err(format!("slow_end with no such slowdown in force: {e:?}"));
            };
            starts.remove(i);
        }
    }
    for ((c, what), starts) in open {
        for s in starts {
            if what == "device" && gone(c) {
                continue;
            }
            if !may_outlast_the_run(cfg, r, c, s, end) {
                return Err(format!("slow_start never ended: {s:?}"));
            }
        }
    }
    Ok(())
}

/// Whether a slowdown that started with `s` may rightly still be in force at the run's end:
/// some slow fault on client `c` with its factor ends after the end, or in a round that never
/// started.
fn may_outlast_the_run(
    cfg: &SimConfig,
    r: &RunResult,
    c: u32,
    s: &EventRecord,
    end: &EventRecord,
) -> bool {
    let factor = match s.detail("factor") {
        Some(fedsim::sim::Val::F(f)) => *f,
        _ => return true,
    };
    let round_at_start = r
        .events
        .iter()
        .rev()
        .find(|e| is(e, EventType::StartRound) && e.seq < s.seq)
        .and_then(|e| e.round)
        .unwrap_or(0);
    cfg.faults.iter().any(|f| match f.action {
        Action::Slow {
            factor: g, span, ..
        } if g == factor && f.clients.contains(c) => match span {
            Span::Time(d) => s.t_us + d >= end.t_us,
            // An end due when a round starts comes in the step after that start; the last
            // round to start may have started in the run's final step, after which nothing
            // happens.
            Span::Rounds(n) => {
                let due = round_at_start + n;
                let last = r
                    .events
                    .iter()
                    .rev()
                    .find(|e| is(e, EventType::StartRound))
                    .and_then(|e| e.round);
                last.is_none_or(|l| l <= due)
            }
        },
        _ => false,
    })
}

/// Nothing happens to or by a client that joins later before it has joined.
pub fn no_fault_before_join(cfg: &SimConfig, r: &RunResult) -> Result<(), String> {
    for c in cfg.initial_clients..cfg.total_clients() {
        let join = r
            .events
            .iter()
            .find(|e| is(e, SimEvent::ClientJoin) && e.client == Some(c))
            .map_or(u64::MAX, |e| e.seq);
        if let Some(e) = r.events.iter().find(|e| about(e, c) && e.seq < join) {
            return Err(format!("before client {c} joined: {e:?}"));
        }
    }
    Ok(())
}

/// A client that quit sent nothing after its quit, so no contribution of its can reach the
/// server after the quit did.
pub fn nothing_overtakes_a_quit(r: &RunResult) -> Result<(), String> {
    for q in r.events.iter().filter(|e| is(e, EventType::ClientQuit)) {
        let late = r.events.iter().find(|e| {
            e.seq > q.seq
                && e.client == q.client
                && is(e, SimEvent::ContributionRejected)
                && e.detail_str("reason") == Some("unknown_token")
        });
        if let Some(e) = late {
            return Err(format!(
                "a contribution arrived after its client's quit: {e:?}"
            ));
        }
    }
    Ok(())
}
