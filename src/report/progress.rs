//! The live progress bar: rounds done, virtual time, last accuracy, and how many clients are
//! live, dropped out or gone. It is an event handler like any other, and indicatif hides it
//! when stderr is not a terminal.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::fed_learn::{EventType, FLContext};
use crate::sim::{EventHandler, EventName, EventRecord, SimEvent};

/// Feeds a progress bar from the event bus.
pub struct Progress {
    bar: ProgressBar,
    live: i64,
    dropped: i64,
    gone: i64,
    accuracy: f64,
}

impl Progress {
    /// A bar over `rounds` rounds on stderr.
    pub fn new(rounds: u64) -> Self {
        let bar = ProgressBar::with_draw_target(Some(rounds), ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template("{bar:30} {pos}/{len} rounds  {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        Progress {
            bar,
            live: 0,
            dropped: 0,
            gone: 0,
            accuracy: f64::NAN,
        }
    }

    /// The bar, to finish it after the run.
    pub fn bar(&self) -> ProgressBar {
        self.bar.clone()
    }
}

impl EventHandler for Progress {
    fn handle_event(&mut self, e: &EventRecord, ctx: &FLContext) {
        match e.event {
            EventName::Protocol(EventType::ClientRegister) => self.live += 1,
            EventName::Protocol(EventType::ClientQuit)
            | EventName::Sim(SimEvent::ClientRemoved) => {
                self.live -= 1;
                self.gone += 1;
            }
            EventName::Sim(SimEvent::DropoutStart) => self.dropped += 1,
            EventName::Sim(SimEvent::DropoutEnd) => self.dropped -= 1,
            EventName::Protocol(EventType::EndRound) => {
                self.accuracy = ctx.props.get_float("test_accuracy").unwrap_or(f64::NAN);
                self.bar.inc(1);
            }
            _ => return,
        }
        let t = e.t_us / 1_000_000;
        self.bar.set_message(format!(
            "t={}h{:02}m{:02}s  acc={:.3}  live={} dropped={} gone={}",
            t / 3600,
            t / 60 % 60,
            t % 60,
            self.accuracy,
            self.live,
            self.dropped,
            self.gone
        ));
    }
}
