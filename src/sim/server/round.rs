//! Closing a round: when a round may close, aggregation (with the check of the strategy's
//! output), the round's statistics and the evaluation of the new global model; and how a
//! round's clients are chosen.

use super::*;

impl Server {
    /// Closes the round or cross-site step if what it waits for is in.
    pub(super) fn check_progress(&mut self) {
        match &mut self.phase {
            Phase::Training(open) => {
                // Contributions arrive in client-id order, so the highest ids are the likeliest
                // to be missing: checking them first keeps this O(1) per contribution.
                let all_in = open
                    .selected
                    .iter()
                    .rev()
                    .filter(|c| self.clients.contains_key(c))
                    .all(|c| open.updates.contains_key(c));
                if all_in {
                    return self.aggregate(false);
                }
                if open.updates.len() >= self.cfg.min_num_clients.max(1) && !open.waiting_since_min
                {
                    open.waiting_since_min = true;
                    // Even with no wait, the timer lets contributions arriving at this same
                    // instant in before the round closes.
                    let r = open.r;
                    self.port
                        .timer(self.cfg.wait_after_min_clients, Timer::WaitAfterMin(r));
                }
            }
            Phase::CrossSite(_) => self.check_cross_site(),
            Phase::Waiting => self.maybe_schedule_start(),
            Phase::Done => {}
        }
    }

    pub(super) fn aggregate(&mut self, timed_out: bool) {
        let Phase::Training(open) = std::mem::replace(&mut self.phase, Phase::Waiting) else {
            return;
        };
        let r = open.r;
        let n = open.updates.len();
        self.port.emit(
            Some(r),
            EventType::BeforeAggregation,
            None,
            vec![("contributions", n.into())],
        );
        let updates: Vec<Update> = open
            .updates
            .iter()
            .map(|(c, a)| Update {
                client: *c,
                weight: a.weight,
                n_iter: a.n_iter,
                train_loss: a.train_loss,
                params: &a.params,
            })
            .collect();
        if !updates.is_empty() {
            let next = self.aggregator.aggregate(&self.global, &updates);
            if let Err(e) = next.fits(&self.global) {
                // A plug-in's bug, like a panic in it: the run fails, naming it.
                let name = self.aggregator.name();
                panic!("aggregator `{name}` returned a model that does not fit: {e}");
            }
            self.global = next;
            self.global_md = Arc::new(self.global.to_model_data());
        }
        let detail = vec![("aggregated", n.into())];
        self.port.emit_with_model(
            Some(r),
            EventType::EndAggregation,
            None,
            detail,
            Some(self.global_md.clone()),
        );
        let weight: f64 = open.updates.values().map(|a| a.weight).sum();
        let train_loss = if weight > 0.0 {
            open.updates
                .values()
                .map(|a| a.weight * a.train_loss)
                .sum::<f64>()
                / weight
        } else {
            f64::NAN
        };
        let stats = RoundStats {
            round: r,
            t_us: self.port.now(),
            selected: open.selected.len(),
            contributed: n,
            rejected: open.rejected,
            aggregated: n,
            train_loss,
            test_loss: f64::NAN,
            test_accuracy: f64::NAN,
            timed_out,
            bytes_up: 0,
            bytes_down: 0,
        };
        self.next_round += 1;
        self.last_progress = self.port.now();
        let next = if self.next_round >= self.cfg.num_rounds {
            AfterRound::Finish
        } else if self.clients.len() >= self.cfg.min_num_clients.max(1) {
            AfterRound::Start
        } else {
            AfterRound::Wait
        };
        // The next round starts (its clients served) while the pool scores the new model;
        // `_endRound`, which reports the scores, keeps its place before `_startRound`.
        let scores = self.start_evaluation();
        let end_round = self.port.reserve_event();
        if next == AfterRound::Start {
            self.start_round();
        }
        self.end_round(end_round, stats, scores.metrics());
        match next {
            AfterRound::Finish => self.after_training(),
            AfterRound::Wait => self.port.timer(self.give_up_after(), Timer::StartDeadline),
            AfterRound::Start => {}
        }
    }

    /// Records round `stats` with the global model's metrics `m` and logs `_endRound`.
    pub(super) fn end_round(&mut self, slot: EventSlot, mut stats: RoundStats, m: Metrics) {
        (stats.test_loss, stats.test_accuracy) = (m.loss, m.accuracy);
        let r = stats.round;
        self.rounds.push(stats);
        let detail = vec![
            ("test_accuracy", m.accuracy.into()),
            ("test_loss", m.loss.into()),
        ];
        self.port
            .emit_reserved(slot, Some(r), EventType::EndRound, None, detail);
    }

    /// The global model's metrics on the test set, its parts scored in the pool.
    pub(super) fn evaluate(&mut self) -> Metrics {
        self.start_evaluation().metrics()
    }

    /// Queues the scoring of the global model's test-set parts in the pool.
    pub(super) fn start_evaluation(&mut self) -> Scoring {
        let test = self.test.get();
        let e = Arc::new(Evaluator::new(&self.global));
        let jobs = Evaluator::parts(test.len())
            .map(|rows| {
                let (e, test) = (e.clone(), test.clone());
                move || e.score(&test, rows)
            })
            .collect();
        let scores = self.pool.start_all(jobs);
        Scoring { test, scores }
    }
}

/// Round `r`'s clients: `k` of `live` (in id order), drawn with the round's own stream, or all
/// of them when `k` is 0 or at least their number.
pub(super) fn select(
    how: &dyn Selection,
    seed: u64,
    k: usize,
    r: u32,
    live: &[u32],
) -> BTreeSet<u32> {
    if k == 0 || k >= live.len() {
        return live.iter().copied().collect();
    }
    let mut rng = rng::stream(seed, "sample", NONE, u64::from(r));
    let picked = how.select(r, live, k, &mut rng);
    // Only live clients, each once, however the plug-in answered.
    picked
        .into_iter()
        .filter(|c| live.binary_search(c).is_ok())
        .collect()
}
