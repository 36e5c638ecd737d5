//! The in-memory network: each client has a link to the server with a latency and a bandwidth.
//! A message occupies its link for `size / bandwidth` (messages on one link queue behind each
//! other) and arrives `latency` after it is through. Each direction of a link is first in,
//! first out, like a TCP stream: a message never arrives before one sent earlier the same
//! way, whatever latency a per-round redraw or a slowdown gives it. The network can also lose a
//! message or damage one byte of it.

use rand::Rng;

use super::config::{Direction, TransportConfig};
use super::port::Micros;
use super::profiles::Profiles;
use crate::rng::{self, Stream, NONE};

/// One direction of a link.
#[derive(Debug, Default, Clone, Copy)]
struct Lane {
    /// When the link is free to start the next transmission.
    free_at: Micros,
    /// When the last message sent this way arrives: no later message arrives before it.
    last_arrival: Micros,
    /// Scripted damage: this many of the next messages arrive damaged.
    corrupt_next: u32,
}

/// A link's latency and bandwidth, as drawn for the client (or for one round).
#[derive(Debug, Clone, Copy)]
struct Drawn {
    latency_us: f64,
    /// Bytes per microsecond; infinite means no transfer time.
    bytes_per_us: f64,
    drawn_for: Option<u32>,
}

/// One client's link, both directions.
#[derive(Debug, Clone, Copy)]
struct Link {
    drawn: Option<Drawn>,
    up: Lane,
    down: Lane,
    /// Latency and transfer time are multiplied by this (slowdowns in force).
    slow: f64,
}

impl Default for Link {
    fn default() -> Self {
        Link {
            drawn: None,
            up: Lane::default(),
            down: Lane::default(),
            slow: 1.0,
        }
    }
}

impl Link {
    fn lane(&mut self, way: Direction) -> &mut Lane {
        match way {
            Direction::Up => &mut self.up,
            Direction::Down => &mut self.down,
        }
    }
}

/// What happened to a message on its way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fate {
    /// Arrives at this time.
    Delivered(Micros),
    /// Arrives at this time with one byte damaged (at this position).
    Corrupted(Micros, usize),
    /// Never arrives.
    Lost,
}

/// All clients' links.
pub(crate) struct Network {
    seed: u64,
    transport: TransportConfig,
    profiles: Profiles,
    links: Vec<Link>,
    faults: Stream,
}

impl Network {
    pub fn new(seed: u64, transport: TransportConfig, profiles: Profiles) -> Self {
        let n = profiles.len() as usize;
        Network {
            seed,
            transport,
            profiles,
            links: vec![Link::default(); n],
            faults: rng::stream(seed, "network-faults", NONE, NONE),
        }
    }

    /// `client`'s latency and bandwidth, drawn (again, for a per-round profile in a new
    /// round) if need be.
    fn drawn(&mut self, client: u32, round: Option<u32>) -> Drawn {
        let profile = self.profiles.get(client);
        let redraw_for = if profile.per_round { round } else { None };
        let link = &mut self.links[client as usize];
        match link.drawn {
            Some(d) if !profile.per_round || d.drawn_for == redraw_for => d,
            _ => {
                let mut r = rng::stream(
                    self.seed,
                    "link",
                    u64::from(client),
                    redraw_for.map_or(NONE, u64::from),
                );
                let latency_us = profile.latency_us.sample(&mut r).max(0.0);
                let bw = profile.bandwidth.sample(&mut r);
                let d = Drawn {
                    latency_us,
                    bytes_per_us: if bw > 0.0 { bw / 1e6 } else { f64::INFINITY },
                    drawn_for: redraw_for,
                };
                link.drawn = Some(d);
                d
            }
        }
    }

    /// Sends `size` bytes over `client`'s link at `at`, one way or the other.
    pub fn send(
        &mut self,
        client: u32,
        way: Direction,
        at: Micros,
        size: usize,
        round: Option<u32>,
    ) -> Fate {
        let (loss, corruption) = (self.transport.loss_rate, self.transport.corruption_rate);
        let drawn = self.drawn(client, round);
        let link = &mut self.links[client as usize];
        let slow = link.slow;
        let lane = link.lane(way);
        // Float-to-int casts saturate, and so do the sums: a heavy-tailed draw times a
        // slowdown may be past any time the run reaches, but never wraps around.
        let tx = (size as f64 / drawn.bytes_per_us * slow).round() as Micros;
        let start = at.max(lane.free_at);
        lane.free_at = start.saturating_add(tx);
        let latency = (drawn.latency_us * slow).round() as Micros;
        let arrive = lane.free_at.saturating_add(latency);
        let scripted = lane.corrupt_next > 0;
        if scripted {
            lane.corrupt_next -= 1;
        }
        if loss > 0.0 && self.faults.random_bool(loss.min(1.0)) {
            return Fate::Lost;
        }
        // First in, first out: never before the last message that went this way.
        let arrive = arrive.max(lane.last_arrival);
        lane.last_arrival = arrive;
        if scripted || (corruption > 0.0 && self.faults.random_bool(corruption.min(1.0))) {
            return Fate::Corrupted(arrive, self.faults.random_range(0..size.max(1)));
        }
        Fate::Delivered(arrive)
    }

    /// Multiplies `client`'s latency and transfer time by `factor` (1 restores them).
    pub fn set_slow(&mut self, client: u32, factor: f64) {
        self.links[client as usize].slow = factor;
    }

    /// Damages the next `n` messages sent over `client`'s link the `way` given.
    pub fn corrupt_next(&mut self, client: u32, way: Direction, n: u32) {
        let lane = self.links[client as usize].lane(way);
        lane.corrupt_next = lane.corrupt_next.saturating_add(n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dist::Dist;
    use crate::sim::Profile;
    use proptest::prelude::*;

    fn net(latency: f64, bw: f64) -> Network {
        let p = Profile {
            latency_us: Dist::Fixed(latency),
            bandwidth: Dist::Fixed(bw),
            ..Profile::default()
        };
        Network::new(1, TransportConfig::default(), Profiles::uniform(1, p))
    }

    #[test]
    fn delay_is_latency_plus_size_over_bandwidth_and_links_queue() {
        let mut n = net(40_000.0, 1e6);
        // 1 MB at 1 MB/s: 1 s on the link, then 40 ms of latency.
        assert_eq!(
            n.send(0, Direction::Up, 0, 1_000_000, None),
            Fate::Delivered(1_040_000)
        );
        // The next upload waits for the link; a download does not.
        assert_eq!(
            n.send(0, Direction::Up, 0, 1_000, None),
            Fate::Delivered(1_041_000)
        );
        assert_eq!(
            n.send(0, Direction::Down, 0, 1_000, None),
            Fate::Delivered(41_000)
        );
    }

    #[test]
    fn slow_links_and_scripted_corruption_each_way() {
        let mut n = net(1_000.0, f64::INFINITY);
        n.set_slow(0, 3.0);
        assert_eq!(
            n.send(0, Direction::Down, 0, 10, None),
            Fate::Delivered(3_000)
        );
        n.corrupt_next(0, Direction::Up, 1);
        n.corrupt_next(0, Direction::Down, 1);
        assert!(matches!(
            n.send(0, Direction::Up, 0, 10, None),
            Fate::Corrupted(3_000, _)
        ));
        assert_eq!(
            n.send(0, Direction::Up, 0, 10, None),
            Fate::Delivered(3_000)
        );
        assert!(matches!(
            n.send(0, Direction::Down, 0, 10, None),
            Fate::Corrupted(3_000, _)
        ));
    }

    #[test]
    fn a_message_sent_after_a_slowdown_ends_does_not_overtake_one_sent_during_it() {
        let mut n = net(1_000.0, f64::INFINITY);
        n.set_slow(0, 10.0);
        assert_eq!(
            n.send(0, Direction::Up, 0, 10, None),
            Fate::Delivered(10_000)
        );
        n.set_slow(0, 1.0);
        // Alone it would arrive at 1_100; it waits for the one ahead of it.
        assert_eq!(
            n.send(0, Direction::Up, 100, 10, None),
            Fate::Delivered(10_000)
        );
        assert_eq!(
            n.send(0, Direction::Up, 20_000, 10, None),
            Fate::Delivered(21_000)
        );
    }

    /// What one direction of a link does with a message, in a random history: which round it
    /// is sent in (a per-round link redraws its latency every round), a slowdown in force,
    /// its size and the time since the last send.
    fn sends() -> impl Strategy<Value = Vec<(u32, f64, usize, u64)>> {
        prop::collection::vec(
            (
                0u32..6,
                prop::sample::select(vec![1.0, 0.5, 3.0, 20.0]),
                1usize..50_000,
                0u64..200_000,
            ),
            1..40,
        )
    }

    proptest! {
        /// Whatever latencies the per-round redraws give and however slowdowns come and go,
        /// each direction of a link delivers in the order it was given messages.
        #[test]
        fn links_are_first_in_first_out_whatever_the_redraws(
            seed in any::<u64>(),
            history in sends(),
            loss in prop::sample::select(vec![0.0, 0.3]),
        ) {
            let p = Profile {
                latency_us: Dist::LogNormal { mu: 50_000f64.ln(), sigma: 1.5 },
                bandwidth: Dist::Uniform { low: 1e4, high: 1e7 },
                per_round: true,
                ..Profile::default()
            };
            let transport = TransportConfig { loss_rate: loss, corruption_rate: 0.1, ..TransportConfig::default() };
            let mut n = Network::new(seed, transport, Profiles::uniform(1, p));
            let mut now = 0;
            let mut last = [0; 2];
            let mut round = 0;
            for (i, (dr, slow, size, gap)) in history.into_iter().enumerate() {
                now += gap;
                round += dr / 4;
                n.set_slow(0, slow);
                let (way, k) = if i % 3 == 0 { (Direction::Down, 1) } else { (Direction::Up, 0) };
                let at = match n.send(0, way, now, size, Some(round)) {
                    Fate::Delivered(at) | Fate::Corrupted(at, _) => at,
                    Fate::Lost => continue,
                };
                prop_assert!(at >= now, "arrives before it is sent");
                prop_assert!(at >= last[k], "overtakes: {at} before {}", last[k]);
                last[k] = at;
            }
        }
    }
}
