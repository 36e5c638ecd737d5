//! Events: what happened, when, by whom. Every protocol step and every fault becomes one
//! [`EventRecord`]; the event bus hands it to the subscribed handlers (Clara's
//! `handle_event(event, ctx)`) and to the event log, in one deterministic order.

use std::borrow::Cow;
use std::fmt::{self, Write as _};
use std::sync::Arc;

use crate::fed_learn::pb::ModelData;
use crate::fed_learn::{ApplicationContext, EventType, FLContext, Prop};

/// Who did something: the server or a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Actor {
    /// The FL server.
    Server,
    /// The client with this id.
    Client(u32),
}

impl Actor {
    /// Ordering rank for ties at one instant: the server first, then clients by id.
    pub(crate) fn rank(self) -> u64 {
        match self {
            Actor::Server => 1,
            Actor::Client(id) => 2 + u64::from(id),
        }
    }

    /// The actor of an ordering rank; `None` for the world's own rank 0.
    pub(crate) fn from_rank(rank: u64) -> Option<Actor> {
        match rank {
            0 => None,
            1 => Some(Actor::Server),
            r => u32::try_from(r - 2).ok().map(Actor::Client),
        }
    }
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Actor::Server => f.write_str("server"),
            Actor::Client(id) => write!(f, "{}", client_name(*id)),
        }
    }
}

/// The id in a client's name, `client-0007` (or `client-7`): [`client_name`]'s inverse.
pub fn client_id(name: &str) -> Option<u32> {
    name.strip_prefix("client-")?.parse().ok()
}

/// A client's name as the log writes it: `client-0007`.
pub fn client_name(id: u32) -> String {
    ClientName::new(id).as_str().to_owned()
}

/// Appends [`client_name`]`(id)`: straight from the digits, as every event line with a
/// client does (through [`ClientName`] it was a UTF-8 check per line).
fn push_client_name(out: &mut String, id: u32) {
    let mut digits = itoa::Buffer::new();
    let digits = digits.format(id);
    out.push_str("client-");
    for _ in digits.len()..4 {
        out.push('0');
    }
    out.push_str(digits);
}

/// [`client_name`] on the stack: `client-` and at least four digits, zero-padded. A client
/// writes its name into every message it sends, and a `String` each time was an allocation
/// per message.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ClientName {
    buf: [u8; 18],
    len: usize,
}

impl ClientName {
    pub fn new(id: u32) -> Self {
        let mut digits = itoa::Buffer::new();
        let digits = digits.format(id).as_bytes();
        // "client-", then zeros up to four digits (a u32 has at most ten: 17 bytes in all).
        let mut buf = [b'0'; 18];
        buf[..7].copy_from_slice(b"client-");
        let start = 7 + 4usize.saturating_sub(digits.len());
        let len = start + digits.len();
        buf[start..len].copy_from_slice(digits);
        ClientName { buf, len }
    }

    pub fn as_str(&self) -> &str {
        // ASCII only, so always UTF-8.
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or_default()
    }
}

/// Appends `v` in decimal, as `Display` writes it.
fn push_u64(out: &mut String, v: u64) {
    out.push_str(itoa::Buffer::new().format(v));
}

/// Generates [`SimEvent`], its log names and its list from one table, so that adding an event
/// is one line here.
macro_rules! sim_events {
    ($( $(#[$doc:meta])* $variant:ident => $name:literal, )+) => {
        /// The simulator's own events, beside the protocol's [`EventType`]s.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum SimEvent {
            $( $(#[$doc])* $variant, )+
        }

        impl SimEvent {
            /// The name in the event log.
            pub fn as_str(self) -> &'static str {
                match self {
                    $( SimEvent::$variant => $name, )+
                }
            }

            /// Every simulator event.
            pub const ALL: &'static [SimEvent] = &[$( SimEvent::$variant, )+];
        }
    };
}

sim_events! {
    /// A new client joined the federation (before it registers).
    ClientJoin => "client_join",
    /// A client stopped answering.
    DropoutStart => "dropout_start",
    /// A dropped-out client is back.
    DropoutEnd => "dropout_end",
    /// The server refused a contribution; `detail.reason` says why.
    ContributionRejected => "contribution_rejected",
    /// The server removed a client that was silent past `heart_beat_timeout`.
    ClientRemoved => "client_removed",
    /// A round closed because `round_timeout` fired.
    RoundTimeout => "round_timeout",
    /// The network lost a message.
    MessageLost => "message_lost",
    /// A message arrived damaged and did not decode.
    MessageCorrupted => "message_corrupted",
    /// The run is over; `detail.reason` says how it ended.
    RunEnd => "run_end",
    /// The server refused a login (past `max_num_clients`).
    LoginRefused => "login_refused",
    /// A client's task crashed (panicked); it is gone.
    ClientCrashed => "client_crashed",
    /// A client's device or link became slower.
    SlowStart => "slow_start",
    /// A slowdown is over (others may still be in force).
    SlowEnd => "slow_end",
    /// A client sent a call again: it got no answer by its deadline, or the answer came
    /// damaged. `detail.method` names the call, `detail.attempt` counts the retries.
    RequestRetry => "request_retry",
}

/// An event's name: a protocol event or one of the simulator's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EventName {
    /// One of Clara's 15 event types.
    Protocol(EventType),
    /// One of the simulator's events.
    Sim(SimEvent),
}

impl EventName {
    /// The name in the event log.
    pub fn as_str(self) -> &'static str {
        match self {
            EventName::Protocol(e) => e.as_str(),
            EventName::Sim(e) => e.as_str(),
        }
    }

    /// The name for a log string, if it is one.
    pub fn parse(s: &str) -> Option<EventName> {
        if let Ok(e) = s.parse::<EventType>() {
            return Some(EventName::Protocol(e));
        }
        SimEvent::ALL
            .iter()
            .copied()
            .find(|e| e.as_str() == s)
            .map(EventName::Sim)
    }
}

impl From<EventType> for EventName {
    fn from(e: EventType) -> Self {
        EventName::Protocol(e)
    }
}

impl From<SimEvent> for EventName {
    fn from(e: SimEvent) -> Self {
        EventName::Sim(e)
    }
}

impl fmt::Display for EventName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A value in an event's `detail` object.
#[derive(Debug, Clone, PartialEq)]
pub enum Val {
    /// A count or size.
    U(u64),
    /// A real number (metrics). NaN and infinities are written as `null`.
    F(f64),
    /// Text.
    S(Cow<'static, str>),
    /// A flag.
    B(bool),
}

impl From<u64> for Val {
    fn from(v: u64) -> Self {
        Val::U(v)
    }
}
impl From<u32> for Val {
    fn from(v: u32) -> Self {
        Val::U(u64::from(v))
    }
}
impl From<usize> for Val {
    fn from(v: usize) -> Self {
        Val::U(v as u64)
    }
}
impl From<f64> for Val {
    fn from(v: f64) -> Self {
        Val::F(v)
    }
}
impl From<&'static str> for Val {
    fn from(v: &'static str) -> Self {
        Val::S(Cow::Borrowed(v))
    }
}
impl From<String> for Val {
    fn from(v: String) -> Self {
        Val::S(Cow::Owned(v))
    }
}
impl From<bool> for Val {
    fn from(v: bool) -> Self {
        Val::B(v)
    }
}

/// An event's details, as key/value pairs in the order they were given.
pub type Detail = Vec<(&'static str, Val)>;

/// One line of the event log (DESIGN.md §5), keys in this order.
#[derive(Debug, Clone, PartialEq)]
pub struct EventRecord {
    /// 0, 1, 2, … with no gaps.
    pub seq: u64,
    /// Virtual microseconds since the start, never decreasing.
    pub t_us: u64,
    /// The round the event belongs to, if any.
    pub round: Option<u32>,
    /// Who did it.
    pub actor: Actor,
    /// What happened.
    pub event: EventName,
    /// The client the event is about, if any.
    pub client: Option<u32>,
    /// Reason, counts, sizes.
    pub detail: Detail,
}

impl EventRecord {
    /// The value of a detail key, if present.
    pub fn detail(&self, key: &str) -> Option<&Val> {
        self.detail.iter().find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    /// The detail key's text, if present and text.
    pub fn detail_str(&self, key: &str) -> Option<&str> {
        match self.detail(key) {
            Some(Val::S(s)) => Some(s),
            _ => None,
        }
    }

    /// Appends the record as one line of JSON (with the newline) to `out`.
    pub fn write_json(&self, out: &mut String) {
        // Hand-pushed rather than `write!`: the log has several lines per client update, and
        // formatting machinery cost more than the rest of the event's handling.
        out.push_str("{\"seq\":");
        push_u64(out, self.seq);
        out.push_str(",\"t_us\":");
        push_u64(out, self.t_us);
        out.push_str(",\"round\":");
        match self.round {
            Some(r) => push_u64(out, r.into()),
            None => out.push_str("null"),
        }
        out.push_str(",\"actor\":\"");
        match self.actor {
            Actor::Server => out.push_str("server"),
            Actor::Client(c) => push_client_name(out, c),
        }
        out.push_str("\",\"event\":\"");
        out.push_str(self.event.as_str());
        out.push_str("\",\"client\":");
        match self.client {
            Some(c) => {
                out.push('"');
                push_client_name(out, c);
                out.push('"');
            }
            None => out.push_str("null"),
        }
        out.push_str(",\"detail\":{");
        for (i, (k, v)) in self.detail.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push('"');
            out.push_str(k);
            out.push_str("\":");
            write_val(out, v);
        }
        out.push_str("}}\n");
    }

    /// The context a handler sees: the record's fields as props, plus the model if attached.
    fn context(&self, app: &Arc<ApplicationContext>, model: Option<&Arc<ModelData>>) -> FLContext {
        let mut ctx = FLContext::new(app.clone());
        ctx.props
            .set("event", Prop::Text(self.event.as_str().into()));
        ctx.props.set("actor", Prop::Text(self.actor.to_string()));
        ctx.props.set("t_us", Prop::Int(self.t_us as i64));
        if let Some(r) = self.round {
            ctx.props.set("round", Prop::Int(i64::from(r)));
        }
        if let Some(c) = self.client {
            ctx.props.set("client", Prop::Text(client_name(c)));
        }
        for (k, v) in &self.detail {
            let p = match v {
                Val::U(u) => Prop::Int(*u as i64),
                Val::F(f) => Prop::Float(*f),
                Val::S(s) => Prop::Text(s.to_string()),
                Val::B(b) => Prop::Bool(*b),
            };
            ctx.props.set(*k, p);
        }
        if let Some(m) = model {
            ctx.set_model(m.clone());
        }
        ctx
    }
}

fn write_val(out: &mut String, v: &Val) {
    match v {
        Val::U(u) => push_u64(out, *u),
        Val::F(f) if f.is_finite() => {
            let _ = write!(out, "{}", serde_json::Number::from_f64(*f).expect("finite"));
        }
        Val::F(_) => out.push_str("null"),
        Val::S(s) => out.push_str(&serde_json::to_string(s.as_ref()).expect("strings serialise")),
        Val::B(b) => out.push_str(if *b { "true" } else { "false" }),
    }
}

/// A subscriber to the event bus, in Clara's `handle_event(event, ctx)` style. Handlers see
/// events in log order, after the simulation step that produced them.
pub trait EventHandler: Send {
    /// Called once per event. `ctx.props` holds the record's fields (`event`, `actor`,
    /// `round`, `client`, `t_us` and every detail key); `ctx.model()` is the new global model
    /// on `_endAggregation`.
    fn handle_event(&mut self, event: &EventRecord, ctx: &FLContext);
}

/// An event not yet in the log: it gets its `seq` when its simulation step is flushed.
#[derive(Debug)]
pub(crate) struct PendingEvent {
    pub record: EventRecord,
    /// Tie-break within a step: (actor rank, actor's own counter).
    pub order: (u64, u64),
    pub model: Option<Arc<ModelData>>,
}

/// Puts each step's events in order, numbers them and hands them on.
pub(crate) struct EventBus {
    next_seq: u64,
    handlers: Vec<Box<dyn EventHandler>>,
    app: Arc<ApplicationContext>,
    sink: Option<Box<dyn std::io::Write + Send>>,
    line: String,
    pub kept: Vec<EventRecord>,
    keep: bool,
    pub sink_error: Option<std::io::Error>,
    /// Events logged so far, by name.
    pub counts: std::collections::BTreeMap<EventName, u64>,
    /// The message of the first panic in a handler: it fails the run.
    pub handler_panic: Option<String>,
}

impl EventBus {
    pub fn new(
        handlers: Vec<Box<dyn EventHandler>>,
        sink: Option<Box<dyn std::io::Write + Send>>,
        keep: bool,
        app: Arc<ApplicationContext>,
    ) -> Self {
        EventBus {
            next_seq: 0,
            handlers,
            app,
            sink,
            line: String::with_capacity(256),
            kept: Vec::new(),
            keep,
            sink_error: None,
            counts: Default::default(),
            handler_panic: None,
        }
    }

    /// Logs one step's events, sorted by actor then emission order, leaving `events` empty
    /// (its buffer is kept for the next step). Returns the rounds whose `_startRound` was among
    /// them, for faults that a round's start triggers.
    pub fn flush(&mut self, events: &mut Vec<PendingEvent>) -> Vec<Option<u32>> {
        events.sort_by_key(|e| e.order);
        let mut started = Vec::new();
        for mut e in events.drain(..) {
            e.record.seq = self.next_seq;
            self.next_seq += 1;
            *self.counts.entry(e.record.event).or_default() += 1;
            if !self.handlers.is_empty() && self.handler_panic.is_none() {
                let ctx = e.record.context(&self.app, e.model.as_ref());
                let handlers = &mut self.handlers;
                let handled = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    for h in handlers.iter_mut() {
                        h.handle_event(&e.record, &ctx);
                    }
                }));
                if let Err(panic) = handled {
                    self.handler_panic = Some(super::failure::message(&*panic));
                }
            }
            if let Some(sink) = self.sink.as_mut() {
                self.line.clear();
                e.record.write_json(&mut self.line);
                if let Err(err) = sink.write_all(self.line.as_bytes()) {
                    self.sink_error.get_or_insert(err);
                }
            }
            if e.record.event == EventName::Protocol(EventType::StartRound) {
                started.push(e.record.round);
            }
            if self.keep {
                self.kept.push(e.record);
            }
        }
        started
    }

    /// Flushes the sink at the end of the run.
    pub fn finish(&mut self) {
        if let Some(sink) = self.sink.as_mut() {
            if let Err(err) = sink.flush() {
                self.sink_error.get_or_insert(err);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_line_has_the_design_keys_in_order() {
        let r = EventRecord {
            seq: 4,
            t_us: 1500,
            round: Some(3),
            actor: Actor::Server,
            event: SimEvent::ContributionRejected.into(),
            client: Some(7),
            detail: vec![
                ("reason", "late".into()),
                ("loss", Val::F(0.5)),
                ("nan", Val::F(f64::NAN)),
            ],
        };
        let mut s = String::new();
        r.write_json(&mut s);
        assert_eq!(
            s,
            "{\"seq\":4,\"t_us\":1500,\"round\":3,\"actor\":\"server\",\"event\":\"contribution_rejected\",\"client\":\"client-0007\",\"detail\":{\"reason\":\"late\",\"loss\":0.5,\"nan\":null}}\n"
        );
        let v: serde_json::Value = serde_json::from_str(&s).unwrap();
        assert_eq!(v["detail"]["reason"], "late");
    }

    #[test]
    fn client_names_pad_to_four_digits_and_grow_past_them() {
        assert_eq!(client_name(0), "client-0000");
        assert_eq!(client_name(42), "client-0042");
        assert_eq!(client_name(1234), "client-1234");
        assert_eq!(client_name(123_456), "client-123456");
        assert_eq!(client_name(u32::MAX), "client-4294967295");
        for id in [0, 7, 42, 999, 1000, 9999, 10_000, 123_456, u32::MAX] {
            let mut pushed = String::new();
            push_client_name(&mut pushed, id);
            assert_eq!(pushed, client_name(id));
        }
        assert_eq!(Actor::Client(7).to_string(), "client-0007");
    }

    #[test]
    fn names_parse_back() {
        for &e in SimEvent::ALL {
            assert_eq!(EventName::parse(e.as_str()), Some(EventName::Sim(e)));
        }
        assert_eq!(
            EventName::parse("_startRound"),
            Some(EventName::Protocol(EventType::StartRound))
        );
        assert_eq!(EventName::parse("nope"), None);
    }
}
