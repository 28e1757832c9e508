//! Command-line flags. Every flag is also read from `SCONCE_<FLAG>`.

use std::path::PathBuf;

use clap::{Parser, ValueEnum};

/// The model formats described in `docs/model-format.md`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// A dense feed-forward network (`config.json` + `model.safetensors`).
    Sequential,
    /// A sentence-transformers BERT directory.
    Bert,
    /// A quantized decoder-only language model: one llama.cpp `.gguf` file.
    Gguf,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Sequential => "sequential",
            Format::Bert => "bert",
            Format::Gguf => "gguf",
        }
    }
}

#[derive(Debug, Clone, Parser)]
#[command(
    name = "sconce-server",
    version,
    about = "Sconce's candle inference server"
)]
pub struct Args {
    /// Directory holding the model (see docs/model-format.md).
    #[arg(
        long,
        env = "SCONCE_MODEL_DIR",
        conflicts_with = "model_uri",
        required_unless_present = "model_uri"
    )]
    pub model_dir: Option<PathBuf>,

    /// Where to fetch the model directory from: file://, http(s):// or s3:// (a directory prefix).
    #[arg(long, env = "SCONCE_MODEL_URI")]
    pub model_uri: Option<String>,

    /// Expected sha256 (hex) of the fetched `model.safetensors`; a mismatch refuses to start.
    #[arg(long, env = "SCONCE_MODEL_SHA256", requires = "model_uri")]
    pub model_sha256: Option<String>,

    /// Cache directory for fetched models.
    #[arg(long, env = "SCONCE_CACHE_DIR", default_value = "/tmp/sconce-cache")]
    pub cache_dir: PathBuf,

    /// Model format.
    #[arg(long, env = "SCONCE_FORMAT", value_enum)]
    pub format: Format,

    /// Name the model is served under.
    #[arg(long, env = "SCONCE_MODEL_NAME")]
    pub model_name: String,

    /// Version reported for the model (default: config.json `version`, else "1").
    #[arg(long, env = "SCONCE_MODEL_VERSION")]
    pub model_version: Option<String>,

    /// Address to bind.
    #[arg(long, env = "SCONCE_HOST", default_value = "0.0.0.0")]
    pub host: String,

    /// Port to bind (0 picks a free one; the `listening on` log line tells which).
    #[arg(long, env = "SCONCE_PORT", default_value_t = 8080)]
    pub port: u16,

    /// Most examples (rows / sentences) the model thread runs in one batch; for `gguf`, most
    /// sequences generating together.
    #[arg(long, env = "SCONCE_MAX_BATCH_SIZE", default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_batch_size: u32,

    /// How long the model thread waits for more requests to fill a batch.
    #[arg(long, env = "SCONCE_MAX_BATCH_DELAY_MS", default_value_t = 0)]
    pub max_batch_delay_ms: u64,

    /// Inference requests admitted at once; more get 429.
    #[arg(long, env = "SCONCE_MAX_CONCURRENCY", default_value_t = 512, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_concurrency: u32,

    /// Threads that serve HTTP (parse requests, write answers). With 1, HTTP runs on a single
    /// current-thread runtime: the cheapest per request, because the model runs on its own
    /// thread anyway. Raise it when request parsing, not the model, saturates a core.
    #[arg(long, env = "SCONCE_HTTP_THREADS", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub http_threads: u32,

    /// Largest accepted request body; larger gets 413.
    #[arg(long, env = "SCONCE_MAX_BODY_BYTES", default_value_t = 16 * 1024 * 1024)]
    pub max_body_bytes: usize,

    /// How long an inference request's body may take to arrive once its headers have; slower
    /// gets 408, so slow or stalled clients cannot hold `--max-concurrency` slots.
    #[arg(long, env = "SCONCE_BODY_TIMEOUT_MS", default_value_t = 30_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub body_timeout_ms: u64,

    /// How long a client may take to send a request's headers (also how long an idle
    /// keep-alive connection stays open); slower connections are closed.
    #[arg(long, env = "SCONCE_HEADER_TIMEOUT_MS", default_value_t = 30_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub header_timeout_ms: u64,

    /// `gguf`: KV cache budget in bytes. Each sequence reserves its prompt plus `max_tokens`;
    /// requests that do not fit wait (see --queue-timeout-ms).
    #[arg(long, env = "SCONCE_KV_CACHE_BYTES", default_value_t = 1 << 30, value_parser = clap::value_parser!(u64).range(1..))]
    pub kv_cache_bytes: u64,

    /// `gguf`: most tokens per model step — one per generating sequence, the rest chunks of
    /// prompts being read, so a long prompt does not stall running streams.
    #[arg(long, env = "SCONCE_MAX_BATCH_TOKENS", default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_batch_tokens: u32,

    /// `gguf`: how long a generation request may wait for KV cache space or a batch slot
    /// before it gets 429.
    #[arg(long, env = "SCONCE_QUEUE_TIMEOUT_MS", default_value_t = 30_000)]
    pub queue_timeout_ms: u64,

    /// On SIGTERM / SIGINT: how long to keep serving before closing, with readiness failing
    /// (503) and every answer carrying `Connection: close`, so that clients still sending here
    /// while load balancers catch up are answered (fractions allowed; 0 stops at once). The
    /// operator sets it from the pod's termination grace period. A second signal ends it early.
    #[arg(long, env = "SCONCE_DRAIN_SECONDS", default_value_t = 5.0, value_parser = parse_seconds)]
    pub drain_seconds: f64,

    /// File holding a bearer token; when set, every route but health and metrics needs it.
    #[arg(long, env = "SCONCE_API_KEY_FILE")]
    pub api_key_file: Option<PathBuf>,
}

/// A non-negative, finite number of seconds.
fn parse_seconds(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if (0.0..1e9).contains(&v) => Ok(v),
        _ => Err(format!("{s:?} is not a number of seconds (0 or more)")),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn seconds() {
        assert_eq!(super::parse_seconds("2.5"), Ok(2.5));
        assert_eq!(super::parse_seconds("0"), Ok(0.0));
        for bad in ["-1", "inf", "NaN", "x", ""] {
            assert!(super::parse_seconds(bad).is_err(), "{bad}");
        }
    }
}
