//! A work-sharing pool for the simulation's heavy, independent jobs: local training, data
//! generation, evaluation.
//!
//! Jobs wait in two FIFO queues: *urgent* jobs, whose results a task is waiting for or soon
//! will be ([`Pool::run`], [`Pool::start_all`]), and *background* jobs nobody waits for yet
//! ([`Pool::spawn`]: preparing the next round's data; [`Pool::start_background`]: the test
//! set). Up to `threads - 1` workers on tokio's blocking pool take urgent jobs first, then
//! background ones. The runtime thread, whenever a task of its waits for a result, runs queued
//! urgent jobs itself instead of idling; it leaves background jobs to the workers, so that
//! they have work while the runtime thread does what only it can (the protocol). So both cores
//! stay busy whichever side of a round has more to do. Results of jobs started together come
//! back in order as they finish ([`Ordered`]), so the runtime thread can work through the
//! first while the others are still being made.
//!
//! This keeps DESIGN.md §2: work leaves the runtime thread only through `spawn_blocking`, which
//! holds the paused clock still while it runs, or runs on the runtime thread while it blocks.
//! A job's result never depends on which thread ran it, only on its inputs, so results are the
//! same for any number of threads.

use std::any::Any;
use std::collections::VecDeque;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};

use tokio::sync::oneshot;

type Job = Box<dyn FnOnce() + Send>;

/// What a job that panicked left: the panic's payload, raised again in its owner.
type Panic = Box<dyn Any + Send>;

/// The queues and how many workers are working through them.
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

    /// Queues a job, waking a worker if one is free. The jobs this pool makes catch their own
    /// panics and hand them to their owner; this catch only keeps a worker alive.
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
            drop(tokio::task::spawn_blocking(move || pool.work()));
        }
    }

    /// A worker's life: it runs queued jobs of both kinds until there are none, lingers a
    /// little for more, and then retires (under the same lock a push takes, so no job is left
    /// without a worker that would have taken it).
    fn work(&self) {
        let mut lingered = false;
        loop {
            let job = {
                let mut q = self.queue.lock().expect("pool lock");
                match self.take(&mut q, true) {
                    Some(job) => {
                        lingered = false;
                        job
                    }
                    None if !lingered => {
                        drop(q);
                        self.linger();
                        lingered = true;
                        continue;
                    }
                    None => {
                        q.active -= 1;
                        return;
                    }
                }
            };
            job();
        }
    }

    /// Runs one queued urgent job (or, if `background`, any job) on this thread; false if
    /// there was none.
    fn run_queued(&self, background: bool) -> bool {
        let job = self.take(&mut self.queue.lock().expect("pool lock"), background);
        job.map(|job| job()).is_some()
    }

    /// The next queued job: urgent first, then (if `background`) background; the one place
    /// that takes jobs off the queues, so `queued` always counts what is left.
    fn take(&self, q: &mut Queue, background: bool) -> Option<Job> {
        let job = match q.urgent.pop_front() {
            None if background => q.background.pop_front(),
            job => job,
        };
        if job.is_some() {
            self.queued.fetch_sub(1, Ordering::Relaxed);
        }
        job
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
            let _ = tx.send(catch_unwind(AssertUnwindSafe(f)));
        });
        tokio::task::yield_now().await;
        while self.run_queued(false) {}
        match rx.await.expect("a pool job always sends its result") {
            Ok(v) => v,
            // The job's panic, with its own message, becomes its owner's.
            Err(panic) => resume_unwind(panic),
        }
    }

    /// Queues every job of `jobs` (with 1 thread, runs them now) and hands back their results
    /// in order as they finish: the caller can work through the first while other threads
    /// still run the rest. Taking a result that is not ready runs queued urgent jobs on this
    /// thread meanwhile, and then blocks the runtime thread until it is.
    pub fn start_all<T: Send + 'static>(
        self: &Arc<Self>,
        jobs: Vec<impl FnOnce() -> T + Send + 'static>,
    ) -> Ordered<T> {
        self.start(true, jobs)
    }

    /// [`Pool::start_all`] as background work, which only workers take until somebody waits
    /// for a result: for results needed well after they are asked for.
    pub fn start_background<T: Send + 'static>(
        self: &Arc<Self>,
        jobs: Vec<impl FnOnce() -> T + Send + 'static>,
    ) -> Ordered<T> {
        self.start(false, jobs)
    }

    fn start<T: Send + 'static>(
        self: &Arc<Self>,
        urgent: bool,
        jobs: Vec<impl FnOnce() -> T + Send + 'static>,
    ) -> Ordered<T> {
        if !self.is_parallel() {
            return Ordered::ready(jobs.into_iter().map(|f| f()).collect());
        }
        let (tx, rx) = mpsc::channel();
        let slots = (0..jobs.len()).map(|_| None).collect();
        for (i, f) in jobs.into_iter().enumerate() {
            let tx = tx.clone();
            self.push(urgent, move || {
                let _ = tx.send((i, catch_unwind(AssertUnwindSafe(f))));
            });
        }
        Ordered {
            pending: Some((self.clone(), rx)),
            urgent,
            slots,
            next: 0,
        }
    }

    /// `f` of every item, in order, as they are done: in the pool, `per_job` items a job,
    /// when there are at least `min` items and another thread to share them; otherwise here,
    /// at once. For a step's worth of small pure jobs (decoding messages), where a job per
    /// item would cost more in queueing than the work; see [`Pool::start_all`] for taking the
    /// first results while the rest are still being worked on.
    pub fn map<T, U, F>(
        self: &Arc<Self>,
        items: Vec<T>,
        min: usize,
        per_job: usize,
        f: F,
    ) -> std::iter::Flatten<Ordered<Vec<U>>>
    where
        T: Send + 'static,
        U: Send + 'static,
        F: Fn(T) -> U + Clone + Send + 'static,
    {
        if !self.is_parallel() || items.len() < min.max(1) {
            return Ordered::ready(vec![items.into_iter().map(f).collect()]).flatten();
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
        self.start_all(jobs).flatten()
    }
}

/// Where jobs started together send `(index, result)`.
type Results<T> = mpsc::Receiver<(usize, Result<T, Panic>)>;

/// Results of jobs queued together by [`Pool::start_all`], taken in queue order.
pub(crate) struct Ordered<T> {
    /// The pool and where its jobs send their results; `None` when all are in `slots`.
    pending: Option<(Arc<Pool>, Results<T>)>,
    /// Whether the jobs are urgent ones: waiting for background ones helps with those too.
    urgent: bool,
    slots: Vec<Option<T>>,
    next: usize,
}

impl<T> Ordered<T> {
    fn ready(results: Vec<T>) -> Self {
        Ordered {
            pending: None,
            urgent: true,
            slots: results.into_iter().map(Some).collect(),
            next: 0,
        }
    }
}

impl<T> Iterator for Ordered<T> {
    type Item = T;

    /// The next job's result, waiting for it (and helping with urgent jobs) if need be. A job
    /// that panicked panics here, as its owner's.
    fn next(&mut self) -> Option<T> {
        let at = self.next;
        let slot = self.slots.get_mut(at)?;
        self.next += 1;
        if let Some(v) = slot.take() {
            return Some(v);
        }
        let (pool, rx) = self
            .pending
            .as_ref()
            .expect("unfinished results come from the pool");
        loop {
            let (i, v) = match rx.try_recv() {
                Ok(got) => got,
                Err(mpsc::TryRecvError::Empty) if pool.run_queued(!self.urgent) => continue,
                Err(_) => rx.recv().expect("a pool job always sends its result"),
            };
            let v = v.unwrap_or_else(|panic| resume_unwind(panic));
            if i == at {
                return Some(v);
            }
            self.slots[i] = Some(v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn results_come_back_in_order_whoever_runs_the_jobs() {
        for threads in [1, 2, 4] {
            let pool = Pool::new(threads);
            let jobs = (0..50u64).map(|i| move || i * i).collect();
            let squares: Vec<u64> = pool.start_all(jobs).collect();
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
                let got: Vec<_> = pool.map((0..n).collect(), min, 7, |i: u64| i * 3).collect();
                assert_eq!(got, (0..n).map(|i| i * 3).collect::<Vec<_>>());
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn started_jobs_are_taken_in_queue_order_one_by_one_urgent_or_background() {
        for threads in [1, 2, 4] {
            let pool = Pool::new(threads);
            let urgent = pool.start_all((0..30u64).map(|i| move || i + 100).collect());
            let background = pool.start_background((0..30u64).map(|i| move || i * 2).collect());
            // Taken one at a time, interleaved with other work: each comes in its place.
            for (i, (u, b)) in urgent.zip(background).enumerate() {
                assert_eq!((u, b), (i as u64 + 100, 2 * i as u64));
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
        assert_eq!(
            pool.start_all(vec![|| 1, || 2]).collect::<Vec<_>>(),
            vec![1, 2]
        );
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
        let panic = bad.await.unwrap_err().into_panic();
        assert_eq!(
            panic.downcast_ref::<&str>(),
            Some(&"boom"),
            "the job's own message"
        );
        assert_eq!(good.await.unwrap(), 7);
        assert_eq!(pool.run(|| 8u32).await, 8);
    }
}
