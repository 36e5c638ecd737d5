//! A work-sharing pool for the simulation's heavy, independent jobs: local training, data
//! generation, evaluation.
//!
//! Jobs wait in two FIFO queues: *urgent* jobs, whose results a task is waiting for
//! ([`Pool::run`], [`Pool::run_all`]), and *background* jobs nobody waits for
//! ([`Pool::spawn`]: preparing the next round's data). Up to `threads - 1` workers on tokio's
//! blocking pool take urgent jobs first, then background ones. The runtime thread, whenever a
//! task of its waits for a result, runs queued urgent jobs itself instead of idling; it leaves
//! background jobs to the workers, so that they have work while the runtime thread does what
//! only it can (the protocol). So both cores stay busy whichever side of a round has more to do.
//!
//! This keeps DESIGN.md §2: work leaves the runtime thread only through `spawn_blocking`, which
//! holds the paused clock still while it runs, or runs on the runtime thread while it blocks.
//! A job's result never depends on which thread ran it, only on its inputs, so results are the
//! same for any number of threads.

use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};

use tokio::sync::oneshot;

type Job = Box<dyn FnOnce() + Send>;

/// The queues and how many workers are draining them.
#[derive(Default)]
struct Queue {
    urgent: VecDeque<Job>,
    background: VecDeque<Job>,
    active: usize,
}

/// How many times a worker looks for new jobs, with a spin-loop hint between looks, before it
/// retires (tens of µs, by the CPU's pause latency). Jobs come in bursts, and waking a retired
/// worker (a `spawn_blocking` and a futex wake) cost the runtime thread a few percent of a W1
/// run. While a worker lingers the paused clock waits for it, which delays nothing observable.
const LINGER: usize = 1000;

/// See the module docs.
pub(crate) struct Pool {
    queue: Mutex<Queue>,
    /// Jobs in either queue, readable without the lock, for lingering workers.
    queued: AtomicUsize,
    /// Most workers on the blocking pool at once: `threads - 1`.
    workers: usize,
}

impl Pool {
    /// A pool for `threads` threads in all, the runtime thread included. With 1 thread every
    /// job runs inline, at once.
    pub fn new(threads: usize) -> Arc<Pool> {
        Arc::new(Pool {
            queue: Mutex::default(),
            queued: AtomicUsize::new(0),
            workers: threads.saturating_sub(1),
        })
    }

    /// True when jobs can run on another thread.
    pub fn is_parallel(&self) -> bool {
        self.workers > 0
    }

    /// Queues a job, waking a worker if one is free. A job that panics is dropped with its
    /// result sender, so its owner sees the failure and nobody else does.
    fn push(self: &Arc<Self>, urgent: bool, job: impl FnOnce() + Send + 'static) {
        let job: Job = Box::new(move || {
            let _ = catch_unwind(AssertUnwindSafe(job));
        });
        let mut q = self.queue.lock().expect("pool lock");
        if urgent {
            q.urgent.push_back(job);
        } else {
            q.background.push_back(job);
        }
        self.queued.fetch_add(1, Ordering::Relaxed);
        if q.active < self.workers {
            q.active += 1;
            let pool = self.clone();
            drop(tokio::task::spawn_blocking(move || pool.drain(true)));
        }
    }

    /// Runs queued jobs until there are none: a worker takes both kinds, lingers a little for
    /// more, and then retires (under the same lock a push takes, so no job is left without a
    /// worker that would have taken it); the runtime thread takes urgent ones only.
    fn drain(&self, worker: bool) {
        let mut lingered = false;
        loop {
            let job = {
                let mut q = self.queue.lock().expect("pool lock");
                let next = match q.urgent.pop_front() {
                    Some(job) => Some(job),
                    None if worker => q.background.pop_front(),
                    None => None,
                };
                match next {
                    Some(job) => {
                        self.queued.fetch_sub(1, Ordering::Relaxed);
                        lingered = false;
                        job
                    }
                    None if worker && !lingered => {
                        drop(q);
                        self.linger();
                        lingered = true;
                        continue;
                    }
                    None => {
                        if worker {
                            q.active -= 1;
                        }
                        return;
                    }
                }
            };
            job();
        }
    }

    /// Spins, without the lock, until a job is queued or [`LINGER`] looks have found none.
    fn linger(&self) {
        for _ in 0..LINGER {
            if self.queued.load(Ordering::Relaxed) > 0 {
                return;
            }
            std::hint::spin_loop();
        }
    }

    /// Queues `f` as background work, which only workers run. With 1 thread it runs now.
    pub fn spawn(self: &Arc<Self>, f: impl FnOnce() + Send + 'static) {
        if self.is_parallel() {
            self.push(false, f);
        } else {
            f();
        }
    }

    /// Runs `f` in the pool and waits for its result. Before waiting, the task lets the other
    /// tasks of this step queue their jobs, then helps run the queue.
    pub async fn run<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> T {
        if !self.is_parallel() {
            return f();
        }
        let (tx, rx) = oneshot::channel();
        self.push(true, move || {
            let _ = tx.send(f());
        });
        tokio::task::yield_now().await;
        self.drain(false);
        rx.await.expect("a pool job panicked")
    }

    /// Runs every job of `jobs` in the pool, helping on this thread, and returns their results
    /// in order. Blocks the runtime thread until the last one is done.
    pub fn run_all<T: Send + 'static>(
        self: &Arc<Self>,
        jobs: Vec<impl FnOnce() -> T + Send + 'static>,
    ) -> Vec<T> {
        if !self.is_parallel() {
            return jobs.into_iter().map(|f| f()).collect();
        }
        let n = jobs.len();
        let (tx, rx) = mpsc::channel();
        for (i, f) in jobs.into_iter().enumerate() {
            let tx = tx.clone();
            self.push(true, move || {
                let _ = tx.send((i, f()));
            });
        }
        drop(tx);
        self.drain(false);
        let mut out: Vec<Option<T>> = (0..n).map(|_| None).collect();
        for (i, v) in rx.iter() {
            out[i] = Some(v);
        }
        out.into_iter()
            .map(|v| v.expect("a pool job panicked"))
            .collect()
    }
}

impl Pool {
    /// `f` of every item, in order: in the pool, `per_job` items a job, when there are at
    /// least `min` items and another thread to share them; otherwise here. For a step's worth
    /// of small pure jobs (decoding or framing messages), where a job per item would cost more
    /// in queueing than the work.
    pub fn map<T, U, F>(self: &Arc<Self>, items: Vec<T>, min: usize, per_job: usize, f: F) -> Vec<U>
    where
        T: Send + 'static,
        U: Send + 'static,
        F: Fn(T) -> U + Clone + Send + 'static,
    {
        if !self.is_parallel() || items.len() < min.max(1) {
            return items.into_iter().map(f).collect();
        }
        let per_job = per_job.max(1);
        let mut items = items.into_iter();
        let jobs: Vec<_> = (0..items.len().div_ceil(per_job))
            .map(|_| {
                let chunk: Vec<T> = items.by_ref().take(per_job).collect();
                let f = f.clone();
                move || chunk.into_iter().map(f).collect::<Vec<U>>()
            })
            .collect();
        self.run_all(jobs).into_iter().flatten().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn results_come_back_in_order_whoever_runs_the_jobs() {
        for threads in [1, 2, 4] {
            let pool = Pool::new(threads);
            let squares = pool.run_all((0..50u64).map(|i| move || i * i).collect());
            assert_eq!(squares, (0..50u64).map(|i| i * i).collect::<Vec<_>>());
            let tasks: Vec<_> = (0..20u64)
                .map(|i| {
                    let pool = pool.clone();
                    tokio::spawn(async move { pool.run(move || i + 1).await })
                })
                .collect();
            for (i, t) in tasks.into_iter().enumerate() {
                assert_eq!(t.await.unwrap(), i as u64 + 1);
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn map_keeps_the_order_in_chunks_or_inline() {
        for threads in [1, 2] {
            let pool = Pool::new(threads);
            for (n, min) in [(3, 16), (50, 16), (50, 1000)] {
                let got = pool.map((0..n).collect(), min, 7, |i: u64| i * 3);
                assert_eq!(got, (0..n).map(|i| i * 3).collect::<Vec<_>>());
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn background_jobs_run_on_workers_only() {
        let pool = Pool::new(2);
        let here = std::thread::current().id();
        let (tx, rx) = mpsc::channel();
        for _ in 0..8 {
            let tx = tx.clone();
            pool.spawn(move || tx.send(std::thread::current().id()).unwrap());
        }
        // Waiting on urgent work does not make this thread take the background jobs.
        assert_eq!(pool.run_all(vec![|| 1, || 2]), vec![1, 2]);
        for _ in 0..8 {
            assert_ne!(rx.recv().unwrap(), here);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_panicking_job_fails_only_its_owner() {
        let pool = Pool::new(2);
        let bad = {
            let pool = pool.clone();
            tokio::spawn(async move { pool.run(|| -> u32 { panic!("boom") }).await })
        };
        let good = {
            let pool = pool.clone();
            tokio::spawn(async move { pool.run(|| 7u32).await })
        };
        assert!(bad.await.is_err());
        assert_eq!(good.await.unwrap(), 7);
        assert_eq!(pool.run(|| 8u32).await, 8);
    }
}
