//! Scripted faults in the scenario format: the `events:` list and the availability trace, and
//! how they compile into the engine's [`Fault`]s.
//!
//! Every fault kind is one arm of the [`fault_kinds!`] list below: its key, its settings type
//! and how those become an engine [`Action`]. The `EventSpec` struct, its JSON Schema, the
//! "exactly one action" check and its message all come from that list.

use std::path::Path;

use schemars::JsonSchema;
use serde::Deserialize;

use super::compile::{Checker, MAX_CLIENTS};
use super::error::did_you_mean;
use super::schema::ScenarioFile;
use super::trace;
use super::units::{map_enum, Time, Q};
use crate::rng::{self, NONE};
use crate::sim::{Action, Clients, Direction, Fault, Span, Trigger, SECOND};

/// Generates `EventSpec` from the list of fault kinds: `key: Settings => conversion`, where
/// the conversion is `fn(&Settings, &mut Checker, at: &str) -> Action` and `at` is the key's
/// path (`events[3].slow`) for positioned errors.
macro_rules! fault_kinds {
    ($( $(#[$doc:meta])* $key:ident: $spec:ty => $convert:expr ),+ $(,)?) => {
        /// A scripted fault: when, whom, what. Exactly one action key.
        #[derive(Debug, Clone, Deserialize, JsonSchema)]
        #[serde(deny_unknown_fields)]
        pub struct EventSpec {
            /// `{round: N}` or `{time: 20m}`.
            #[serde(deserialize_with = "map_enum")]
            pub at: TriggerSpec,
            /// Which clients; not used by `join`.
            #[serde(default)]
            pub clients: Option<TargetSpec>,
            $(
                $(#[$doc])*
                #[serde(default)]
                pub $key: Option<$spec>,
            )+
        }

        impl EventSpec {
            /// Every fault kind's key, in the list's order.
            pub const KINDS: &'static [&'static str] = &[$(stringify!($key)),+];

            /// The action keys this event has (one, if it is well formed).
            pub fn actions(&self) -> Vec<&'static str> {
                let mut out = Vec::new();
                $(if self.$key.is_some() {
                    out.push(stringify!($key));
                })+
                out
            }

            /// The engine action of the event's (first) action key; errors go to `ck`.
            fn action(&self, ck: &mut Checker, at: &str) -> Option<Action> {
                $(if let Some(spec) = &self.$key {
                    let convert: fn(&$spec, &mut Checker, &str) -> Action = $convert;
                    return Some(convert(spec, ck, &format!("{at}.{}", stringify!($key))));
                })+
                None
            }
        }
    };
}

fault_kinds! {
    /// Stop answering for a while.
    dropout: ForSpec => |d, ck, at| Action::Dropout(span(ck, &format!("{at}.for"), &d.span)),
    /// Leave on purpose.
    quit: Empty => |_, _, _| Action::Quit,
    /// New clients join: `join: 10` or `join: {count: 10}`.
    join: JoinSpec => |_, _, _| Action::Join,
    /// Hold the next contribution back.
    late: LateSpec => |l, _, _| Action::Late {
        delay: l.delay.value.round() as u64,
    },
    /// Run slower for a while.
    slow: SlowSpec => slow,
    /// The client's task panics.
    crash: Empty => |_, _, _| Action::Crash,
    /// The client's next messages arrive damaged.
    corrupt: CorruptSpec => |c, _, _| Action::Corrupt {
        messages: c.messages,
        direction: match c.direction {
            DirectionSpec::Up => Direction::Up,
            DirectionSpec::Down => Direction::Down,
        },
    },
}

fn slow(s: &SlowSpec, ck: &mut Checker, at: &str) -> Action {
    if !(s.factor.is_finite() && s.factor > 0.0 && s.factor <= 1e6) {
        let found = s.factor;
        let message = format!("expected a finite factor > 0 (at most 1e6), found {found}");
        ck.err(&format!("{at}.factor"), message, None);
    }
    Action::Slow {
        factor: s.factor,
        span: span(ck, &format!("{at}.for"), &s.span),
        device: s.what != SlowWhat::Link,
        link: s.what != SlowWhat::Device,
    }
}

/// An availability trace.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AvailabilitySpec {
    /// CSV `client,active_from,active_until` (durations or seconds), relative to the scenario
    /// file.
    pub trace: String,
}

/// An empty mapping, `{}`.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Empty {}

/// When a fault fires.
#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum TriggerSpec {
    /// When this round starts.
    Round(u32),
    /// At this virtual time.
    Time(Q<Time>),
}

/// Which clients a fault hits.
#[derive(Debug, Clone, JsonSchema)]
#[serde(untagged)]
pub enum TargetSpec {
    /// Client ids.
    Ids(Vec<u32>),
    /// `{range: [first, last]}` (inclusive), `{group: name}` or `{random: fraction}`.
    Pick(PickSpec),
}

/// Read by hand, not as an untagged enum, so that a misspelt pick (`{rnage: [0, 3]}`) is
/// named in the error.
impl<'de> Deserialize<'de> for TargetSpec {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::{value, MapAccess, SeqAccess, Visitor};
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = TargetSpec;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a list of client ids, or `{range: [first, last]}`, `{group: name}` or `{random: fraction}`")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<TargetSpec, A::Error> {
                Vec::deserialize(value::SeqAccessDeserializer::new(seq)).map(TargetSpec::Ids)
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<TargetSpec, A::Error> {
                PickSpec::deserialize(value::MapAccessDeserializer::new(map)).map(TargetSpec::Pick)
            }
        }
        d.deserialize_any(V)
    }
}

/// A computed set of clients.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum PickSpec {
    /// Ids `first..=last`.
    Range([u32; 2]),
    /// Every client of the named group.
    Group(String),
    /// This fraction of the initial clients, drawn from the seed.
    Random(f64),
}

/// How long a fault lasts.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ForSpec {
    /// A duration (`90s`) or a number of rounds (`2 rounds`).
    #[serde(rename = "for")]
    pub span: String,
}

/// A join. Read by hand, not as an untagged enum, so that `{count: 10, cuont: 3}` is an error
/// (untagged enums ignore unknown keys).
#[derive(Debug, Clone, Copy, JsonSchema)]
#[serde(untagged, deny_unknown_fields)]
pub enum JoinSpec {
    /// `join: 10`.
    Count(u32),
    /// `join: {count: 10}`.
    Map {
        /// How many new clients.
        count: u32,
    },
}

impl<'de> Deserialize<'de> for JoinSpec {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct JoinMap {
            count: u32,
        }
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = JoinSpec;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a count of clients, or `{count: N}`")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<JoinSpec, E> {
                u32::try_from(v)
                    .map(JoinSpec::Count)
                    .map_err(|_| E::custom(format!("expected at most {} clients", u32::MAX)))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<JoinSpec, E> {
                Err(E::custom(format!("expected a count of clients, found {v}")))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<JoinSpec, A::Error> {
                let m = JoinMap::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
                Ok(JoinSpec::Map { count: m.count })
            }
        }
        d.deserialize_any(V)
    }
}

/// Lateness.
#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LateSpec {
    /// Extra delay before the contribution leaves.
    pub delay: Q<Time>,
}

/// A slowdown.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SlowSpec {
    /// How many times slower.
    pub factor: f64,
    /// A duration or `N rounds`.
    #[serde(rename = "for")]
    pub span: String,
    /// What slows down: `device`, `link` or `both` (default).
    #[serde(default)]
    pub what: SlowWhat,
}

/// What a slowdown affects.
#[derive(Debug, Clone, Copy, Default, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum SlowWhat {
    /// Training time.
    Device,
    /// Latency and transfer time.
    Link,
    /// Both.
    #[default]
    Both,
}

/// Message damage.
#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CorruptSpec {
    /// How many of the next messages on the client's link.
    pub messages: u32,
    /// `up`: what the client sends (default); `down`: what the server sends it.
    #[serde(default)]
    pub direction: DirectionSpec,
}

/// Which way across a client's link.
#[derive(Debug, Clone, Copy, Default, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum DirectionSpec {
    /// Client to server.
    #[default]
    Up,
    /// Server to client.
    Down,
}

fn span(ck: &mut Checker, at: &str, s: &str) -> Span {
    let t = s.trim();
    let rounds = t
        .strip_suffix("rounds")
        .or_else(|| t.strip_suffix("round"))
        .map(str::trim);
    if let Some(n) = rounds.and_then(|n| n.parse::<u32>().ok()) {
        return Span::Rounds(n);
    }
    use super::units::{Time, Unit};
    match Time::parse(t).and_then(Time::check) {
        Ok(us) => Span::Time(us.round() as u64),
        Err(m) => {
            ck.err(
                at,
                format!("expected a duration like `90s` or a round count like `2 rounds`: {m}"),
                None,
            );
            Span::Time(0)
        }
    }
}

pub(super) fn events(
    f: &ScenarioFile,
    ck: &mut Checker,
    blocks: &[(u32, u32)],
    count: u32,
    total: u32,
) -> Vec<Fault> {
    let mut faults = Vec::new();
    let mut targeted: u64 = 0;
    let mut next_join = count;
    let last_round = f.server.rounds.saturating_sub(1);
    for (i, e) in f.events.iter().enumerate() {
        let at = format!("events[{i}]");
        let trigger = match e.at {
            TriggerSpec::Round(r) => {
                if r > last_round || r < f.server.start_round {
                    ck.err(
                        &format!("{at}.at.round"),
                        format!(
                            "round {r} is outside the run (rounds {}..={last_round})",
                            f.server.start_round
                        ),
                        None,
                    );
                }
                Trigger::Round(r)
            }
            TriggerSpec::Time(t) => Trigger::Time(t.value.round() as u64),
        };
        let actions = e.actions();
        if actions.len() != 1 {
            let kinds = EventSpec::KINDS.join(", ");
            let found = actions.len();
            ck.err(
                &at,
                format!("expected exactly one action ({kinds}), found {found}"),
                None,
            );
            continue;
        }
        if let Some(j) = e.join {
            let n = match j {
                JoinSpec::Count(n) | JoinSpec::Map { count: n } => n,
            };
            if e.clients.is_some() {
                ck.err(
                    &format!("{at}.clients"),
                    "a join makes new clients: leave `clients` out",
                    None,
                );
            }
            faults.push(Fault {
                at: trigger,
                clients: (next_join..next_join + n).into(),
                action: Action::Join,
            });
            next_join += n;
            continue;
        }
        if e.dropout.is_some() && f.availability.is_some() {
            ck.err(&format!("{at}.dropout"), "clients follow the availability trace: scripted dropouts are not allowed with `availability`", None);
        }
        let Some(target) = &e.clients else {
            ck.err(&at, "expected `clients:` naming whom the event hits", None);
            continue;
        };
        // Each event's targets are listed, so their sum is bounded as the clients are.
        let listed = match target {
            TargetSpec::Ids(ids) => ids.len() as u64,
            TargetSpec::Pick(PickSpec::Range([a, b])) => u64::from(b.saturating_sub(*a)) + 1,
            TargetSpec::Pick(_) => u64::from(count),
        };
        targeted += listed;
        if targeted > MAX_CLIENTS {
            ck.err(
                &format!("{at}.clients"),
                format!("the events target {targeted} clients in all; scenarios are limited to {MAX_CLIENTS}"),
                None,
            );
            return faults;
        }
        let clients = targets(
            f,
            ck,
            &format!("{at}.clients"),
            target,
            blocks,
            i,
            count,
            total,
        );
        let Some(action) = e.action(ck, &at) else {
            continue;
        };
        faults.push(Fault {
            at: trigger,
            clients,
            action,
        });
    }
    faults
}

#[allow(clippy::too_many_arguments)]
fn targets(
    f: &ScenarioFile,
    ck: &mut Checker,
    at: &str,
    t: &TargetSpec,
    blocks: &[(u32, u32)],
    index: usize,
    count: u32,
    total: u32,
) -> Clients {
    let check = |ck: &mut Checker, ids: Clients| {
        if let Some(bad) = ids.max().filter(|&c| c >= total) {
            ck.err(
                at,
                format!(
                    "client {bad} does not exist: ids run from 0 to {}",
                    total.saturating_sub(1)
                ),
                None,
            );
        }
        ids
    };
    match t {
        TargetSpec::Ids(ids) if ids.is_empty() => {
            ck.err(
                at,
                "the list names no clients: the event would do nothing",
                None,
            );
            Clients::default()
        }
        TargetSpec::Ids(ids) => check(ck, ids.iter().copied().collect()),
        // The bounds are checked before the ids are listed: `[0, 4294967295]` lists none.
        TargetSpec::Pick(PickSpec::Range([a, b])) if a <= b && *b < total => (*a..*b + 1).into(),
        TargetSpec::Pick(PickSpec::Range([a, b])) if a <= b => check(ck, vec![*b].into()),
        TargetSpec::Pick(PickSpec::Range([a, b])) => {
            ck.err(
                at,
                format!("range [{a}, {b}] is empty: the first id must not exceed the last"),
                None,
            );
            Clients::default()
        }
        TargetSpec::Pick(PickSpec::Group(name)) => {
            let names = f.clients.groups.iter().filter_map(|g| g.name.as_deref());
            match f
                .clients
                .groups
                .iter()
                .position(|g| g.name.as_deref() == Some(name))
            {
                Some(g) => (blocks[g].0..blocks[g].1).into(),
                None => {
                    let hint = did_you_mean(name, names);
                    ck.err(at, format!("no client group is named `{name}`"), hint);
                    Clients::default()
                }
            }
        }
        TargetSpec::Pick(PickSpec::Random(frac)) if *frac > 0.0 && *frac <= 1.0 => {
            let k = ((f64::from(count) * frac).round() as usize).max(1);
            let mut ids: Vec<u32> = (0..count).collect();
            let mut r = rng::stream(f.seed, "targets", index as u64, NONE);
            for i in 0..k.min(ids.len()) {
                let j = rand::Rng::random_range(&mut r, i..ids.len());
                ids.swap(i, j);
            }
            ids.truncate(k);
            ids.sort_unstable();
            ids.into()
        }
        TargetSpec::Pick(PickSpec::Random(frac)) => {
            ck.err(
                at,
                format!("expected a fraction in (0, 1], found {frac}"),
                None,
            );
            Clients::default()
        }
    }
}

/// Faults that make traced clients follow their windows: offline before the first, between
/// windows and after the last.
pub(super) fn availability(
    f: &ScenarioFile,
    a: &AvailabilitySpec,
    ck: &mut Checker,
    total: u32,
) -> Vec<Fault> {
    let path = ck.file.parent().unwrap_or(Path::new(".")).join(&a.trace);
    if !path.exists() {
        ck.err(
            "availability.trace",
            format!("trace file `{}` does not exist", path.display()),
            None,
        );
        return vec![];
    }
    // Only a regular file of bounded size: a device or a FIFO could be read for ever.
    let meta = std::fs::metadata(&path);
    if !meta
        .as_ref()
        .is_ok_and(|m| m.is_file() && m.len() <= super::limits::MAX_BYTES)
    {
        ck.err(
            "availability.trace",
            format!(
                "trace file `{}` is not a regular file of at most 16 MiB",
                path.display()
            ),
            None,
        );
        return vec![];
    }
    let windows = match trace::read(&path) {
        Ok(w) => w,
        Err(errs) => {
            ck.errors.extend(errs);
            return vec![];
        }
    };
    let forever = 100 * 365 * 24 * 3600 * SECOND;
    let mut faults = Vec::new();
    for (client, ws) in windows {
        if client >= total {
            ck.err(
                "availability.trace",
                format!(
                    "the trace names client {client}, but ids run from 0 to {}",
                    total.saturating_sub(1)
                ),
                None,
            );
            continue;
        }
        let mut off = |at: u64, until: u64| {
            faults.push(Fault {
                at: Trigger::Time(at),
                clients: vec![client].into(),
                action: Action::Dropout(Span::Time(until - at)),
            });
        };
        if ws[0].0 > 0 {
            off(0, ws[0].0);
        }
        for (i, w) in ws.iter().enumerate() {
            let next = ws.get(i + 1).map_or(w.1 + forever, |n| n.0.max(w.1));
            off(w.1, next);
        }
    }
    let _ = f;
    faults
}
