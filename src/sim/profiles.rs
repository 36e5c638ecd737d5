//! Which device and link each client id has, stored per group rather than per client.
//!
//! A scenario names a handful of groups for up to ten million clients, so the configuration
//! holds the groups' profiles and the id runs they cover: compiling and checking a scenario
//! costs the same for ten clients and for ten million. Clients that join later take the
//! groups in turn.

use std::ops::{Index, IndexMut};

use super::config::Profile;

/// Every client id's [`Profile`]: a few distinct profiles, and which ids have each.
///
/// Ids `0..` are covered by consecutive runs; ids past the last run cycle through `cycle` (a
/// list of profile indices), so that joiners spread over the groups as the scenario format
/// promises.
#[derive(Debug, Clone, PartialEq)]
pub struct Profiles {
    /// The distinct profiles.
    kinds: Vec<Profile>,
    /// `(end, kind)`: ids from the previous run's end up to `end` (exclusive) have `kind`.
    runs: Vec<(u32, usize)>,
    /// The kinds that ids past the last run take in turn.
    cycle: Vec<usize>,
    /// How many ids there are.
    total: u32,
}

impl Profiles {
    /// `total` clients with the same profile.
    pub fn uniform(total: u32, profile: Profile) -> Self {
        Profiles {
            kinds: vec![profile],
            runs: vec![(total, 0)],
            cycle: Vec::new(),
            total,
        }
    }

    /// Clients in groups: group `g` has ids `blocks[g]` (consecutive, from 0) and profile
    /// `profiles[g]`; the `total - last block's end` ids after them take the groups that have
    /// any ids in turn.
    pub fn groups(blocks: &[(u32, u32)], profiles: Vec<Profile>, total: u32) -> Self {
        let runs: Vec<(u32, usize)> = blocks
            .iter()
            .enumerate()
            .filter(|(_, (s, e))| e > s)
            .map(|(g, &(_, e))| (e, g))
            .collect();
        let cycle: Vec<usize> = runs.iter().map(|&(_, g)| g).collect();
        if cycle.is_empty() {
            return Profiles::uniform(total, Profile::default());
        }
        Profiles {
            kinds: profiles,
            runs,
            cycle,
            total,
        }
    }

    /// How many client ids there are.
    pub fn len(&self) -> u32 {
        self.total
    }

    /// Whether there are no clients.
    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    /// Client `id`'s profile.
    ///
    /// # Panics
    /// If `id` is not below [`len`](Self::len).
    pub fn get(&self, id: u32) -> &Profile {
        assert!(id < self.total, "client {id} of {}", self.total);
        &self.kinds[self.kind_of(id)]
    }

    /// Changes every client's profile the same way.
    pub fn edit_all(&mut self, edit: impl FnMut(&mut Profile)) {
        self.kinds.iter_mut().for_each(edit);
    }

    /// Adds one client id, with `profile`.
    pub fn push(&mut self, profile: Profile) {
        self.materialize(self.total);
        self.kinds.push(profile);
        self.total += 1;
        self.runs.push((self.total, self.kinds.len() - 1));
    }

    fn runs_end(&self) -> u32 {
        self.runs.last().map_or(0, |&(e, _)| e)
    }

    fn kind_of(&self, id: u32) -> usize {
        let end = self.runs_end();
        if id < end {
            let i = self.runs.partition_point(|&(e, _)| e <= id);
            return self.runs[i].1;
        }
        self.cycle[(id - end) as usize % self.cycle.len()]
    }

    /// Writes the cycled ids below `upto` out as runs, so that they can be changed one by one.
    fn materialize(&mut self, upto: u32) {
        let end = self.runs_end();
        if upto <= end || self.cycle.is_empty() {
            return;
        }
        let len = self.cycle.len();
        for id in end..upto {
            let kind = self.cycle[(id - end) as usize % len];
            self.runs.push((id + 1, kind));
        }
        let shift = (upto - end) as usize % len;
        self.cycle.rotate_left(shift);
    }

    /// Gives `id` a profile of its own (a copy of its current one) and returns its index.
    fn isolate(&mut self, id: u32) -> usize {
        self.materialize(id + 1);
        let i = self.runs.partition_point(|&(e, _)| e <= id);
        let (end, kind) = self.runs[i];
        let start = if i == 0 { 0 } else { self.runs[i - 1].0 };
        let shared = end - start > 1
            || self.cycle.contains(&kind)
            || self.runs.iter().filter(|r| r.1 == kind).count() > 1;
        if !shared {
            return kind;
        }
        self.kinds.push(self.kinds[kind].clone());
        let own = self.kinds.len() - 1;
        let mut split = Vec::with_capacity(3);
        if id > start {
            split.push((id, kind));
        }
        split.push((id + 1, own));
        if end > id + 1 {
            split.push((end, kind));
        }
        self.runs.splice(i..=i, split);
        own
    }
}

impl Index<usize> for Profiles {
    type Output = Profile;

    /// Client `id`'s profile, as [`Profiles::get`].
    fn index(&self, id: usize) -> &Profile {
        self.get(u32::try_from(id).unwrap_or(u32::MAX))
    }
}

impl IndexMut<usize> for Profiles {
    /// Client `id`'s profile, to change for that client alone.
    fn index_mut(&mut self, id: usize) -> &mut Profile {
        let id = u32::try_from(id).unwrap_or(u32::MAX);
        assert!(id < self.total, "client {id} of {}", self.total);
        let kind = self.isolate(id);
        &mut self.kinds[kind]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dist::Dist;

    fn p(x: f64) -> Profile {
        Profile {
            per_sample_us: Dist::Fixed(x),
            ..Profile::default()
        }
    }

    fn per_sample(ps: &Profiles) -> Vec<f64> {
        (0..ps.len())
            .map(|id| match ps.get(id).per_sample_us {
                Dist::Fixed(x) => x,
                _ => unreachable!(),
            })
            .collect()
    }

    #[test]
    fn groups_cover_their_blocks_and_joiners_take_the_nonempty_groups_in_turn() {
        let ps = Profiles::groups(&[(0, 2), (2, 2), (2, 3)], vec![p(1.0), p(2.0), p(3.0)], 8);
        assert_eq!(per_sample(&ps), [1.0, 1.0, 3.0, 1.0, 3.0, 1.0, 3.0, 1.0]);
    }

    #[test]
    fn one_client_can_be_changed_alone_even_among_joiners() {
        let mut ps = Profiles::groups(&[(0, 2), (2, 3)], vec![p(1.0), p(3.0)], 7);
        ps[1].per_sample_us = Dist::Fixed(9.0);
        ps[5].per_sample_us = Dist::Fixed(8.0);
        ps[5].per_sample_us = Dist::Fixed(7.0);
        assert_eq!(per_sample(&ps), [1.0, 9.0, 3.0, 1.0, 3.0, 7.0, 3.0]);
        ps.push(p(4.0));
        assert_eq!(per_sample(&ps), [1.0, 9.0, 3.0, 1.0, 3.0, 7.0, 3.0, 4.0]);
    }

    #[test]
    fn ten_million_clients_cost_a_few_runs() {
        let ps = Profiles::groups(
            &[(0, 5_000_000), (5_000_000, 10_000_000)],
            vec![p(1.0), p(2.0)],
            10_000_000,
        );
        assert_eq!((ps.runs.len(), ps.kinds.len()), (2, 2));
        assert_eq!(ps.get(4_999_999), &p(1.0));
        assert_eq!(ps.get(5_000_000), &p(2.0));
    }
}
