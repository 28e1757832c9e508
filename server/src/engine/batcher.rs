//! The loop on the model thread.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::{Duration, Instant};

use prometheus_client::metrics::histogram::Histogram;

use super::queue::JobQueue;
use super::{BatchConfig, Input, Job, Output};
use crate::model::Model;
use crate::stats::{BatchTimes, InferenceStats};

pub(super) struct Batcher {
    pub model: Model,
    pub cfg: BatchConfig,
    pub queue: Arc<JobQueue>,
    pub batch_size: Histogram,
    pub batch_duration: Histogram,
    pub stats: Arc<InferenceStats>,
}

impl Batcher {
    pub fn run(self) {
        while let Some((batch, rows)) = self
            .queue
            .next_batch(self.cfg.max_batch_size, self.cfg.max_batch_delay)
        {
            self.batch_size.observe(rows as f64);
            let started = Instant::now();
            let queued: Duration = batch
                .iter()
                .map(|j| started.saturating_duration_since(j.queued))
                .sum();
            self.run_batch(batch, rows, started, queued);
            self.batch_duration.observe(started.elapsed().as_secs_f64());
        }
        tracing::debug!("model thread stopped");
    }

    /// Runs one batch, begun at `started`, and answers its jobs. `queued`: their total time in
    /// the queue.
    fn run_batch(&self, batch: Vec<Job>, rows: usize, started: Instant, queued: Duration) {
        let mut jobs = Vec::with_capacity(batch.len());
        let result = catch_unwind(AssertUnwindSafe(|| {
            self.compute(batch, rows, started, &mut jobs)
        }));
        let (outputs, times) = match result {
            Ok(Ok(done)) => done,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "batch failed");
                for reply in jobs {
                    let _ = reply.send(Err(e.to_string()));
                }
                return;
            }
            Err(_) => {
                tracing::error!("model panicked on a batch");
                for reply in jobs {
                    let _ = reply.send(Err("model panicked".to_string()));
                }
                return;
            }
        };
        // Before the answers: a client reading the statistics after its answer sees its batch.
        self.stats
            .batch(jobs.len() as u64, rows as u64, started, queued, times);
        for (reply, out) in jobs.into_iter().zip(outputs) {
            let _ = reply.send(out);
        }
    }

    /// Runs the batch (begun at `t0`); moves the reply channels into `replies` in job order.
    /// Returns the outputs and how long merging, the forward pass and splitting took.
    #[allow(clippy::type_complexity)]
    fn compute(
        &self,
        batch: Vec<Job>,
        rows: usize,
        t0: Instant,
        replies: &mut Vec<tokio::sync::oneshot::Sender<Result<Output, String>>>,
    ) -> anyhow::Result<(Vec<Result<Output, String>>, BatchTimes)> {
        let mut inputs = Vec::with_capacity(batch.len());
        for job in batch {
            replies.push(job.reply);
            inputs.push(job.input);
        }
        match &self.model {
            Model::Sequential(m) => {
                let width = m.input_size();
                let cols = m.output_size();
                let mut counts = Vec::with_capacity(inputs.len());
                let merged = if inputs.len() == 1 {
                    match inputs.pop() {
                        Some(Input::Dense { data, rows }) => {
                            counts.push(rows);
                            data
                        }
                        _ => anyhow::bail!("this model takes numeric input"),
                    }
                } else {
                    let mut merged = Vec::with_capacity(rows * width);
                    for input in inputs {
                        let Input::Dense { data, rows } = input else {
                            anyhow::bail!("this model takes numeric input");
                        };
                        counts.push(rows);
                        merged.extend_from_slice(&data);
                    }
                    merged
                };
                anyhow::ensure!(merged.len() == rows * width, "batch has the wrong size");
                let t1 = Instant::now();
                let out = m.forward(merged, rows)?;
                let t2 = Instant::now();
                let mut results = Vec::with_capacity(counts.len());
                let mut offset = 0;
                for n in counts {
                    let data = out[offset * cols..(offset + n) * cols].to_vec();
                    offset += n;
                    results.push(Ok(Output::Dense { data, cols }));
                }
                Ok((results, times(t0, t1, t2)))
            }
            Model::Bert(m) => {
                let dim = m.hidden_size();
                let mut counts = Vec::with_capacity(inputs.len());
                let mut texts: Vec<&str> = Vec::with_capacity(rows);
                for input in &inputs {
                    let Input::Text(t) = input else {
                        anyhow::bail!("this model takes text input");
                    };
                    counts.push(t.len());
                    texts.extend(t.iter().map(String::as_str));
                }
                let t1 = Instant::now();
                let emb = m.embed(&texts)?;
                let t2 = Instant::now();
                let mut results = Vec::with_capacity(counts.len());
                let mut offset = 0;
                for n in counts {
                    let data = emb.data[offset * dim..(offset + n) * dim].to_vec();
                    let tokens = emb.tokens[offset..offset + n].to_vec();
                    offset += n;
                    results.push(Ok(Output::Embeddings { data, dim, tokens }));
                }
                Ok((results, times(t0, t1, t2)))
            }
            Model::Gguf(_) => anyhow::bail!("text generation models run on the generate engine"),
        }
    }
}

/// Merge (`t0..t1`), forward pass (`t1..t2`) and split (`t2..now`).
fn times(t0: Instant, t1: Instant, t2: Instant) -> BatchTimes {
    BatchTimes {
        input: t1 - t0,
        infer: t2 - t1,
        output: t2.elapsed(),
    }
}
