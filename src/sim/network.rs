//! The in-memory network: each client has a link to the server with a latency and a bandwidth.
//! A message occupies its link for `size / bandwidth` (messages on one link queue behind each
//! other, so a link is FIFO like a TCP stream) and arrives `latency` after it is through.
//! The network can also lose a message or damage one byte of it.

use rand::Rng;

use super::config::{Profile, TransportConfig};
use super::port::Micros;
use crate::rng::{self, Stream, NONE};

/// One client's link, both directions.
#[derive(Debug)]
struct Link {
    latency_us: f64,
    /// Bytes per microsecond; infinite means no transfer time.
    bytes_per_us: f64,
    drawn_for: Option<u32>,
    up_free_at: Micros,
    down_free_at: Micros,
    slow: f64,
    corrupt_next: u32,
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
    profiles: Vec<Profile>,
    links: Vec<Option<Link>>,
    faults: Stream,
}

impl Network {
    pub fn new(seed: u64, transport: TransportConfig, profiles: Vec<Profile>) -> Self {
        let n = profiles.len();
        Network {
            seed,
            transport,
            profiles,
            links: (0..n).map(|_| None).collect(),
            faults: rng::stream(seed, "network-faults", NONE, NONE),
        }
    }

    fn link(&mut self, client: u32, round: Option<u32>) -> &mut Link {
        let profile = &self.profiles[client as usize];
        let redraw_for = if profile.per_round { round } else { None };
        let slot = &mut self.links[client as usize];
        let stale = slot
            .as_ref()
            .is_none_or(|l| profile.per_round && l.drawn_for != redraw_for);
        if stale {
            let mut r = rng::stream(
                self.seed,
                "link",
                u64::from(client),
                redraw_for.map_or(NONE, u64::from),
            );
            let latency_us = profile.latency_us.sample(&mut r).max(0.0);
            let bw = profile.bandwidth.sample(&mut r);
            let bytes_per_us = if bw > 0.0 { bw / 1e6 } else { f64::INFINITY };
            let old = slot.take();
            *slot = Some(Link {
                latency_us,
                bytes_per_us,
                drawn_for: redraw_for,
                up_free_at: old.as_ref().map_or(0, |l| l.up_free_at),
                down_free_at: old.as_ref().map_or(0, |l| l.down_free_at),
                slow: old.as_ref().map_or(1.0, |l| l.slow),
                corrupt_next: old.as_ref().map_or(0, |l| l.corrupt_next),
            });
        }
        slot.as_mut().expect("just filled")
    }

    /// Sends `size` bytes over `client`'s link at `at`, upward (client to server) or down.
    pub fn send(
        &mut self,
        client: u32,
        up: bool,
        at: Micros,
        size: usize,
        round: Option<u32>,
    ) -> Fate {
        let (loss, corruption) = (self.transport.loss_rate, self.transport.corruption_rate);
        let link = self.link(client, round);
        let tx = (size as f64 / link.bytes_per_us * link.slow).round() as Micros;
        let free_at = if up {
            &mut link.up_free_at
        } else {
            &mut link.down_free_at
        };
        let start = at.max(*free_at);
        *free_at = start + tx;
        let arrive = start + tx + (link.latency_us * link.slow).round() as Micros;
        let scripted = up && link.corrupt_next > 0;
        if scripted {
            link.corrupt_next -= 1;
        }
        if loss > 0.0 && self.faults.random_bool(loss.min(1.0)) {
            return Fate::Lost;
        }
        if scripted || (corruption > 0.0 && self.faults.random_bool(corruption.min(1.0))) {
            return Fate::Corrupted(arrive, self.faults.random_range(0..size.max(1)));
        }
        Fate::Delivered(arrive)
    }

    /// Slows `client`'s link by `factor` (1 restores it).
    pub fn set_slow(&mut self, client: u32, factor: f64) {
        self.link(client, None).slow = factor;
    }

    /// Damages the next `n` messages `client` sends.
    pub fn corrupt_next(&mut self, client: u32, n: u32) {
        self.link(client, None).corrupt_next += n;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dist::Dist;

    fn net(latency: f64, bw: f64) -> Network {
        let p = Profile {
            latency_us: Dist::Fixed(latency),
            bandwidth: Dist::Fixed(bw),
            ..Profile::default()
        };
        Network::new(1, TransportConfig::default(), vec![p])
    }

    #[test]
    fn delay_is_latency_plus_size_over_bandwidth_and_links_queue() {
        let mut n = net(40_000.0, 1e6);
        // 1 MB at 1 MB/s: 1 s on the link, then 40 ms of latency.
        assert_eq!(
            n.send(0, true, 0, 1_000_000, None),
            Fate::Delivered(1_040_000)
        );
        // The next upload waits for the link; a download does not.
        assert_eq!(n.send(0, true, 0, 1_000, None), Fate::Delivered(1_041_000));
        assert_eq!(n.send(0, false, 0, 1_000, None), Fate::Delivered(41_000));
    }

    #[test]
    fn slow_links_and_scripted_corruption() {
        let mut n = net(1_000.0, f64::INFINITY);
        n.set_slow(0, 3.0);
        assert_eq!(n.send(0, false, 0, 10, None), Fate::Delivered(3_000));
        n.corrupt_next(0, 1);
        assert!(matches!(
            n.send(0, true, 0, 10, None),
            Fate::Corrupted(3_000, _)
        ));
        assert_eq!(n.send(0, true, 0, 10, None), Fate::Delivered(3_000));
    }
}
