//! The bounded queue between HTTP tasks and the model thread.
//!
//! Unlike a channel, a push does not wake a sleeping model thread by itself: the pusher learns it
//! owes the wake-up ([`Pushed::MustWake`]) and can first let the other requests its HTTP thread
//! already holds queue up, so the model thread wakes once per batch instead of once per request
//! and finds them all (see `Engine::infer`). Exactly one pusher owes the wake-up at a time, and
//! [`WakeOnDrop`] guarantees it is paid even if that request is cancelled.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use prometheus_client::metrics::gauge::Gauge;

use super::Job;

struct State {
    jobs: VecDeque<Job>,
    closed: bool,
    /// The model thread is waiting on the condvar.
    sleeping: bool,
    /// A pusher has been told to wake the model thread and has not done it yet.
    wake_owed: bool,
}

pub(super) struct JobQueue {
    state: Mutex<State>,
    ready: Condvar,
    capacity: usize,
    depth: Gauge,
}

pub(super) enum Pushed {
    /// The model thread is awake or someone else will wake it.
    Queued,
    /// The caller must call [`JobQueue::wake`] (after a yield, through [`WakeOnDrop`]).
    MustWake,
}

pub(super) enum PushError {
    Full,
    Closed,
}

impl JobQueue {
    pub fn new(capacity: usize, depth: Gauge) -> Self {
        JobQueue {
            state: Mutex::new(State {
                jobs: VecDeque::new(),
                closed: false,
                sleeping: false,
                wake_owed: false,
            }),
            ready: Condvar::new(),
            capacity: capacity.max(1),
            depth,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state stays consistent across a panic (every update is one assignment), so a
        // poisoned lock is still usable.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn push(&self, job: Job) -> Result<Pushed, PushError> {
        let mut s = self.lock();
        if s.closed {
            return Err(PushError::Closed);
        }
        if s.jobs.len() >= self.capacity {
            return Err(PushError::Full);
        }
        s.jobs.push_back(job);
        self.depth.inc();
        if s.sleeping && !s.wake_owed {
            s.wake_owed = true;
            return Ok(Pushed::MustWake);
        }
        Ok(Pushed::Queued)
    }

    /// Pays the wake-up a [`Pushed::MustWake`] push owes.
    pub fn wake(&self) {
        let mut s = self.lock();
        s.wake_owed = false;
        self.ready.notify_one();
    }

    /// Stops the model thread once the queue is drained; later pushes fail.
    pub fn close(&self) {
        self.lock().closed = true;
        self.ready.notify_one();
    }

    fn wait<'a>(
        &self,
        mut s: MutexGuard<'a, State>,
        timeout: Option<Duration>,
    ) -> MutexGuard<'a, State> {
        s.sleeping = true;
        let mut s = match timeout {
            None => self.ready.wait(s).unwrap_or_else(PoisonError::into_inner),
            Some(t) => {
                self.ready
                    .wait_timeout(s, t)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0
            }
        };
        s.sleeping = false;
        s
    }

    /// The next batch, in arrival order: jobs totalling at most `max_rows` rows (or one larger
    /// job alone), waiting up to `delay` after the first for more. `None` once closed and drained.
    pub fn next_batch(&self, max_rows: usize, delay: Duration) -> Option<(Vec<Job>, usize)> {
        let mut s = self.lock();
        while s.jobs.is_empty() {
            if s.closed {
                return None;
            }
            s = self.wait(s, None);
        }
        let deadline = Instant::now() + delay;
        let mut batch = Vec::new();
        let mut rows = 0;
        loop {
            while let Some(n) = s.jobs.front().map(|j| j.input.rows()) {
                if !batch.is_empty() && rows + n > max_rows {
                    return Some((batch, rows));
                }
                if let Some(job) = s.jobs.pop_front() {
                    self.depth.dec();
                    batch.push(job);
                    rows += n;
                }
                if rows >= max_rows {
                    return Some((batch, rows));
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || s.closed {
                return Some((batch, rows));
            }
            s = self.wait(s, Some(left));
        }
    }
}

/// Pays an owed wake-up when dropped, so a cancelled request cannot leave the model asleep.
pub(super) struct WakeOnDrop<'a>(pub &'a JobQueue);

impl Drop for WakeOnDrop<'_> {
    fn drop(&mut self) {
        self.0.wake();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tokio::sync::oneshot;

    use super::*;
    use crate::engine::{Input, Output};

    type Reply = oneshot::Receiver<Result<Output, String>>;

    fn job(rows: usize) -> (Job, Reply) {
        let (reply, rx) = oneshot::channel();
        let input = Input::Dense {
            data: vec![0.0; rows],
            rows,
        };
        let queued = Instant::now();
        (
            Job {
                input,
                reply,
                queued,
            },
            rx,
        )
    }

    fn sizes(batch: &[Job]) -> Vec<usize> {
        batch.iter().map(|j| j.input.rows()).collect()
    }

    #[test]
    fn batches_respect_max_rows_and_order() {
        let q = JobQueue::new(10, Gauge::default());
        for rows in [2, 3, 4, 9, 1] {
            assert!(matches!(q.push(job(rows).0), Ok(Pushed::Queued)));
        }
        let take = || q.next_batch(5, Duration::ZERO).map(|(b, r)| (sizes(&b), r));
        assert_eq!(take(), Some((vec![2, 3], 5)));
        assert_eq!(take(), Some((vec![4], 4)));
        // Larger than a batch: runs alone.
        assert_eq!(take(), Some((vec![9], 9)));
        assert_eq!(take(), Some((vec![1], 1)));
        assert_eq!(q.depth.get(), 0);
        q.close();
        assert!(q.next_batch(5, Duration::ZERO).is_none());
        assert!(matches!(q.push(job(1).0), Err(PushError::Closed)));
    }

    #[test]
    fn full_queue_refuses() {
        let q = JobQueue::new(2, Gauge::default());
        assert!(q.push(job(1).0).is_ok());
        assert!(q.push(job(1).0).is_ok());
        assert!(matches!(q.push(job(1).0), Err(PushError::Full)));
        assert_eq!(q.depth.get(), 2);
    }

    /// While the model sleeps, exactly one pusher owes the wake-up; the model sleeps on until it
    /// is paid, then takes everything queued meanwhile as one batch.
    #[test]
    fn one_owed_wake_up_per_sleep() {
        let q = Arc::new(JobQueue::new(10, Gauge::default()));
        let model = {
            let q = q.clone();
            std::thread::spawn(move || q.next_batch(32, Duration::ZERO).map(|(b, r)| (b.len(), r)))
        };
        while !q.lock().sleeping {
            std::thread::yield_now();
        }
        let mut owed = 0;
        for _ in 0..3 {
            if let Ok(Pushed::MustWake) = q.push(job(1).0) {
                owed += 1;
            }
        }
        assert_eq!(owed, 1);
        std::thread::sleep(Duration::from_millis(50));
        assert!(
            !model.is_finished(),
            "the model woke before the wake-up was paid"
        );
        drop(WakeOnDrop(&q));
        assert_eq!(model.join().unwrap(), Some((3, 3)));
    }
}
