//! The model thread: a bounded queue feeds one OS thread that merges queued jobs into batches
//! (`gguf` models run the continuous-batching loop of `generate/` instead).
//! Model compute never runs on tokio workers.

mod batcher;
pub mod generate;
mod queue;

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use queue::{JobQueue, PushError, Pushed, WakeOnDrop};

use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::model::Model;
use crate::stats::InferenceStats;

/// Work for the model.
#[derive(Debug)]
pub enum Input {
    /// `rows` examples, row-major.
    Dense { data: Vec<f32>, rows: usize },
    /// Sentences to embed.
    Text(Vec<String>),
}

impl Input {
    fn rows(&self) -> usize {
        match self {
            Input::Dense { rows, .. } => *rows,
            Input::Text(t) => t.len(),
        }
    }
}

/// The model's answer to one job.
#[derive(Debug)]
pub enum Output {
    /// `rows * cols` values, row-major.
    Dense { data: Vec<f32>, cols: usize },
    /// One embedding of `dim` values per sentence, and its token count.
    Embeddings {
        data: Vec<f32>,
        dim: usize,
        tokens: Vec<usize>,
    },
}

struct Job {
    input: Input,
    reply: oneshot::Sender<Result<Output, String>>,
    /// When it was queued (for the queue time in the statistics).
    queued: Instant,
}

/// Batching limits.
#[derive(Debug, Clone, Copy)]
pub struct BatchConfig {
    pub max_batch_size: usize,
    pub max_batch_delay: Duration,
    pub queue_capacity: usize,
}

/// Handle to the model thread. Dropping it stops the thread once the queue is drained.
pub struct Engine {
    /// The batch queue; `None` for text generation models, which take no tensor input.
    queue: Option<Arc<JobQueue>>,
    generator: Option<generate::Generator>,
}

impl Drop for Engine {
    fn drop(&mut self) {
        if let Some(q) = &self.queue {
            q.close();
        }
    }
}

impl Engine {
    pub fn start(
        model: Model,
        cfg: BatchConfig,
        generate: generate::GenerateConfig,
        metrics: &Metrics,
        stats: Arc<InferenceStats>,
    ) -> std::io::Result<Self> {
        if let Model::Gguf(m) = model {
            let generator = generate::Generator::start(*m, generate, metrics.generation())?;
            return Ok(Engine {
                queue: None,
                generator: Some(generator),
            });
        }
        let queue = Arc::new(JobQueue::new(cfg.queue_capacity, metrics.queue_depth()));
        let worker = batcher::Batcher {
            model,
            cfg,
            queue: queue.clone(),
            batch_size: metrics.batch_size(),
            batch_duration: metrics.batch_duration(),
            stats,
        };
        let threads = candle_core::utils::get_num_threads();
        std::thread::Builder::new()
            .name("sconce-model".into())
            .spawn(move || {
                // The model thread is worker 0 of its own rayon pool: gemm and the BERT encoder's
                // parallel loops then run inline on it instead of being handed to another thread
                // and waited for, which cost more than the work itself on small models.
                match rayon_core::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .thread_name(|i| format!("sconce-model-{i}"))
                    .use_current_thread()
                    .build()
                {
                    Ok(pool) => pool.install(|| worker.run()),
                    Err(e) => {
                        tracing::warn!(error = %e, "no model thread pool; the global rayon pool is used");
                        worker.run()
                    }
                }
            })?;
        Ok(Engine {
            queue: Some(queue),
            generator: None,
        })
    }

    /// The text generation engine, for `gguf` models.
    pub fn generator(&self) -> Option<&generate::Generator> {
        self.generator.as_ref()
    }

    /// Queues `input` and waits for the model's answer without blocking the runtime.
    pub async fn infer(&self, input: Input) -> Result<Output, ApiError> {
        let Some(queue) = &self.queue else {
            return Err(ApiError::bad(crate::http::generate::USE_GENERATE));
        };
        let (reply, answer) = oneshot::channel();
        let job = Job {
            input,
            reply,
            queued: Instant::now(),
        };
        match queue.push(job) {
            Ok(Pushed::Queued) => {}
            Ok(Pushed::MustWake) => {
                // The model thread sleeps. Yield first: the requests this HTTP thread already
                // has in hand queue up meanwhile, and the model wakes once and takes them all as
                // one batch (one wake-up per request made batches of ~2 rows under load).
                let wake = WakeOnDrop(queue);
                tokio::task::yield_now().await;
                drop(wake);
            }
            Err(PushError::Full) => return Err(ApiError::Overloaded("model queue is full")),
            Err(PushError::Closed) => {
                return Err(ApiError::Inference("model thread has stopped".into()));
            }
        }
        match answer.await {
            Ok(Ok(out)) => Ok(out),
            Ok(Err(e)) => Err(ApiError::Inference(e)),
            Err(_) => Err(ApiError::Inference(
                "model thread dropped the request".into(),
            )),
        }
    }
}
