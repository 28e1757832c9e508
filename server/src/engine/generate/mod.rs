//! Continuous batching for text generation: one OS thread owns the decoder and runs *steps*;
//! each step advances every running sequence by one token (or one chunk of its prompt) in one
//! pass over the weights. Requests join between steps when the KV cache budget allows, wait
//! (bounded) otherwise, and leave as soon as they finish or their client goes away.
//!
//! The HTTP layer tokenizes, renders chat templates, detokenizes and matches stop strings;
//! the model thread sees token ids only.

pub mod metrics;
pub mod plan;
pub mod sampler;
pub mod text;
mod worker;

use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc as tokio_mpsc;

pub use metrics::GenerationMetrics;
pub use sampler::SamplingParams;

use crate::model::GgufModel;
use crate::model::gguf::{ChatTemplate, Vocab};

/// Limits of the generation engine (from the command line).
#[derive(Debug, Clone, Copy)]
pub struct GenerateConfig {
    /// Sequences in the batch at once (`--max-batch-size`).
    pub max_running: usize,
    /// Tokens per step: one per decoding sequence, the rest prompt chunks (`--max-batch-tokens`).
    pub max_step_tokens: usize,
    /// KV cache budget (`--kv-cache-bytes`).
    pub kv_cache_bytes: usize,
    /// How long a request may wait for room before it gets 429 (`--queue-timeout-ms`).
    pub queue_timeout: Duration,
    /// Requests waiting at most (`--max-concurrency`).
    pub queue_capacity: usize,
}

/// Why a sequence stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    /// It generated an end-of-sequence / end-of-turn token.
    EndOfSequence,
    /// It reached `max_tokens`.
    Length,
}

/// What the model thread tells a request, in order: tokens, then one `Finished` or `Failed`.
#[derive(Debug)]
pub enum Event {
    Token(u32),
    Finished(Finish),
    /// Waited `--queue-timeout-ms` without room (HTTP 429).
    Overloaded,
    /// The model failed on a step (HTTP 500).
    Failed(String),
}

/// One generation request, tokenized and validated.
#[derive(Debug)]
pub struct Request {
    pub prompt: Vec<u32>,
    pub max_tokens: usize,
    pub sampling: SamplingParams,
}

struct Submitted {
    request: Request,
    events: tokio_mpsc::UnboundedSender<Event>,
    arrived: Instant,
}

#[derive(Debug, PartialEq, Eq)]
pub enum SubmitError {
    /// `--max-concurrency` requests are already waiting.
    QueueFull,
    Stopped,
}

/// What the HTTP layer needs to prepare requests.
pub struct TextModel {
    pub vocab: Vocab,
    pub template: Option<ChatTemplate>,
    pub context_length: usize,
    /// Most tokens (prompt + generated) one sequence can reserve: the KV cache budget.
    pub kv_capacity_tokens: usize,
}

/// Handle to the generation thread; dropping it stops the thread after the running sequences
/// are cancelled.
pub struct Generator {
    pub model: Arc<TextModel>,
    submit: mpsc::SyncSender<Submitted>,
}

impl Generator {
    pub fn start(
        model: GgufModel,
        cfg: GenerateConfig,
        metrics: GenerationMetrics,
    ) -> std::io::Result<Self> {
        let GgufModel {
            llama,
            vocab,
            template,
            ..
        } = model;
        let per_token = llama.cfg.kv_bytes_per_token().max(1);
        let kv_capacity_tokens = cfg.kv_cache_bytes / per_token;
        let text = Arc::new(TextModel {
            context_length: llama.cfg.context_length,
            kv_capacity_tokens,
            template,
            vocab,
        });
        let (submit, rx) = mpsc::sync_channel(cfg.queue_capacity.max(1));
        let eog = text.clone();
        let worker = worker::Worker::new(llama, cfg, kv_capacity_tokens, metrics, rx, move |t| {
            eog.vocab.is_eog(t)
        });
        std::thread::Builder::new()
            .name("sconce-generate".into())
            .spawn(move || worker.run())?;
        tracing::info!(
            kv_cache_tokens = kv_capacity_tokens,
            kv_bytes_per_token = per_token,
            max_batch = cfg.max_running,
            max_step_tokens = cfg.max_step_tokens,
            "generation engine started"
        );
        Ok(Generator {
            model: text,
            submit,
        })
    }

    /// Queues `request`; its events arrive on the returned channel. Dropping the receiver
    /// cancels the request at the model thread's next step.
    pub fn submit(
        &self,
        request: Request,
    ) -> Result<tokio_mpsc::UnboundedReceiver<Event>, SubmitError> {
        let (events, rx) = tokio_mpsc::unbounded_channel();
        let s = Submitted {
            request,
            events,
            arrived: Instant::now(),
        };
        match self.submit.try_send(s) {
            Ok(()) => Ok(rx),
            Err(mpsc::TrySendError::Full(_)) => Err(SubmitError::QueueFull),
            Err(mpsc::TrySendError::Disconnected(_)) => Err(SubmitError::Stopped),
        }
    }
}
