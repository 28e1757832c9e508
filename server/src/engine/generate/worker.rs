//! The generation loop on the model thread: take new requests, expire the ones that waited too
//! long, admit what fits, run one step for every running sequence, hand out the tokens, retire
//! the finished and the cancelled.

use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::time::{Duration, Instant};

use super::plan::{self, KvBudget};
use super::sampler::Sampler;
use super::{Event, Finish, GenerateConfig, GenerationMetrics, Submitted};
use crate::model::gguf::{KvCache, Llama, SeqStep};

struct Running {
    job: Submitted,
    cache: KvCache,
    sampler: Sampler,
    /// Tokens reserved in the KV budget.
    reserved: usize,
    generated: usize,
    /// The token to feed next once the prompt is read.
    next: Option<u32>,
    last_token_at: Option<Instant>,
}

impl Running {
    fn prompt_left(&self) -> usize {
        self.job
            .request
            .prompt
            .len()
            .saturating_sub(self.cache.len())
    }

    fn cancelled(&self) -> bool {
        self.job.events.is_closed()
    }
}

fn reservation(s: &Submitted) -> usize {
    s.request.prompt.len() + s.request.max_tokens
}

pub(super) struct Worker<F> {
    llama: Llama,
    cfg: GenerateConfig,
    kv: KvBudget,
    metrics: GenerationMetrics,
    rx: Receiver<Submitted>,
    is_eog: F,
    waiting: VecDeque<Submitted>,
    running: Vec<Running>,
    seeds: u64,
}

impl<F: Fn(u32) -> bool> Worker<F> {
    pub fn new(
        llama: Llama,
        cfg: GenerateConfig,
        kv_capacity_tokens: usize,
        metrics: GenerationMetrics,
        rx: Receiver<Submitted>,
        is_eog: F,
    ) -> Self {
        Worker {
            llama,
            cfg,
            kv: KvBudget {
                capacity: kv_capacity_tokens,
                reserved: 0,
            },
            metrics,
            rx,
            is_eog,
            waiting: VecDeque::new(),
            running: Vec::new(),
            // Requests without a seed still differ from each other and between restarts.
            seeds: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0x5EED),
        }
    }

    pub fn run(mut self) {
        while self.receive() {
            self.expire_waiting();
            self.admit();
            self.drop_cancelled();
            self.publish_gauges();
            if !self.running.is_empty() {
                self.step();
                self.publish_gauges();
            }
        }
        for r in self.running.drain(..) {
            let _ = r
                .job
                .events
                .send(Event::Failed("the server is stopping".into()));
        }
        tracing::debug!("generation thread stopped");
    }

    /// Moves new requests into the queue, sleeping when there is nothing to run. False once the
    /// handle is dropped and nothing is left.
    fn receive(&mut self) -> bool {
        if self.running.is_empty() {
            let got = match self.waiting.front() {
                None => self.rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
                Some(first) => {
                    // Sleep until a new request or the oldest waiting one's deadline.
                    let deadline = first.arrived + self.cfg.queue_timeout;
                    let left = deadline.saturating_duration_since(Instant::now());
                    self.rx.recv_timeout(left.max(Duration::from_millis(1)))
                }
            };
            match got {
                Ok(s) => self.enqueue(s),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    if self.waiting.is_empty() {
                        return false;
                    }
                }
            }
        }
        loop {
            match self.rx.try_recv() {
                Ok(s) => self.enqueue(s),
                Err(TryRecvError::Empty) => return true,
                Err(TryRecvError::Disconnected) => {
                    return !(self.running.is_empty() && self.waiting.is_empty());
                }
            }
        }
    }

    fn enqueue(&mut self, s: Submitted) {
        if s.request.prompt.is_empty() || s.request.max_tokens == 0 {
            let _ = s
                .events
                .send(Event::Failed("empty prompt or max_tokens 0".into()));
            return;
        }
        if self.waiting.len() >= self.cfg.queue_capacity {
            let _ = s.events.send(Event::Overloaded);
            return;
        }
        self.waiting.push_back(s);
    }

    /// Requests that waited `--queue-timeout-ms` get 429; those whose client left are dropped.
    fn expire_waiting(&mut self) {
        let now = Instant::now();
        let timeout = self.cfg.queue_timeout;
        self.waiting.retain(|s| {
            if s.events.is_closed() {
                return false;
            }
            if now.duration_since(s.arrived) >= timeout {
                let _ = s.events.send(Event::Overloaded);
                return false;
            }
            true
        });
    }

    fn admit(&mut self) {
        let sizes: Vec<usize> = self.waiting.iter().map(reservation).collect();
        let n = plan::admit(&sizes, self.running.len(), self.cfg.max_running, self.kv);
        for job in self.waiting.drain(..n) {
            let reserved = reservation(&job);
            self.kv.reserved += reserved;
            self.seeds = self.seeds.wrapping_add(0x9E37_79B9_7F4A_7C15);
            self.running.push(Running {
                cache: KvCache::new(&self.llama.cfg, job.request.prompt.len(), reserved),
                sampler: Sampler::new(job.request.sampling, self.seeds),
                reserved,
                generated: 0,
                next: None,
                last_token_at: None,
                job,
            });
        }
    }

    /// Frees the sequences whose client went away (their receiver was dropped).
    fn drop_cancelled(&mut self) {
        let kv = &mut self.kv;
        self.running.retain(|r| {
            if r.cancelled() {
                kv.reserved -= r.reserved;
                return false;
            }
            true
        });
    }

    fn publish_gauges(&self) {
        self.metrics.running.set(self.running.len() as i64);
        self.metrics.waiting.set(self.waiting.len() as i64);
        self.metrics.set_kv_usage(self.kv.usage());
    }

    fn step(&mut self) {
        let left: Vec<usize> = self.running.iter().map(Running::prompt_left).collect();
        let take = plan::step_tokens(&left, self.cfg.max_step_tokens);
        let mut prompt_tokens = 0;
        let mut steps = Vec::with_capacity(self.running.len());
        // Indexes into `running` of the sequences in this step, and whether they sample.
        let mut members = Vec::with_capacity(self.running.len());
        for (i, (r, &n)) in self.running.iter_mut().zip(&take).enumerate() {
            if n == 0 {
                continue;
            }
            let done = r.cache.len();
            let prompt = &r.job.request.prompt;
            let (tokens, samples) = match r.next.as_ref() {
                Some(t) if done >= prompt.len() => (std::slice::from_ref(t), true),
                _ => {
                    prompt_tokens += n;
                    (&prompt[done..done + n], done + n == prompt.len())
                }
            };
            steps.push(SeqStep {
                tokens,
                cache: &mut r.cache,
                logits: samples,
            });
            members.push((i, samples));
        }
        let rows: usize = steps.iter().map(|s| s.tokens.len()).sum();
        let llama = &self.llama;
        let result = catch_unwind(AssertUnwindSafe(|| llama.step(&mut steps)));
        drop(steps);
        self.metrics.step_tokens.observe(rows as f64);
        self.metrics.prompt_tokens.inc_by(prompt_tokens as u64);
        let logits = match result {
            Ok(Ok(l)) => l,
            Ok(Err(e)) => return self.fail(&members, &format!("{e:#}")),
            Err(_) => return self.fail(&members, "the model panicked"),
        };
        let now = Instant::now();
        let mut finished = Vec::new();
        let sampling = members.iter().filter(|(_, s)| *s).map(|(i, _)| *i);
        for (i, row) in sampling.zip(&logits) {
            let r = &mut self.running[i];
            let token = r.sampler.sample(row);
            r.generated += 1;
            r.next = Some(token);
            match r.last_token_at {
                None => self
                    .metrics
                    .time_to_first_token
                    .observe(now.duration_since(r.job.arrived).as_secs_f64()),
                Some(t) => self
                    .metrics
                    .inter_token_latency
                    .observe(now.duration_since(t).as_secs_f64()),
            }
            r.last_token_at = Some(now);
            self.metrics.generation_tokens.inc();
            let _ = r.job.events.send(Event::Token(token));
            let finish = if (self.is_eog)(token) {
                Some(Finish::EndOfSequence)
            } else if r.generated >= r.job.request.max_tokens {
                Some(Finish::Length)
            } else {
                None
            };
            if let Some(f) = finish {
                finished.push((i, f));
            }
        }
        // Gauges first: a client that got its last event sees itself gone from them.
        let done = self.retire(finished.iter().map(|(i, _)| *i).collect());
        self.publish_gauges();
        for (r, (_, f)) in done.into_iter().zip(finished) {
            let _ = r.job.events.send(Event::Finished(f));
        }
    }

    /// A failed step leaves its sequences' caches half-written: they all end with the error.
    fn fail(&mut self, members: &[(usize, bool)], error: &str) {
        tracing::warn!(error, "generation step failed");
        for (i, _) in members {
            let _ = self.running[*i]
                .job
                .events
                .send(Event::Failed(error.to_string()));
        }
        self.retire(members.iter().map(|(i, _)| *i).collect());
        self.publish_gauges();
    }

    /// Removes the sequences at `done` (ascending) and frees their reservations; returns them
    /// in the same order.
    fn retire(&mut self, done: Vec<usize>) -> Vec<Running> {
        let mut out = Vec::with_capacity(done.len());
        for i in done.into_iter().rev() {
            let r = self.running.remove(i);
            self.kv.reserved -= r.reserved;
            out.push(r);
        }
        out.reverse();
        out
    }
}
