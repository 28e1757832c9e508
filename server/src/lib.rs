//! Sconce's inference server: candle models behind KServe V2, TF-Serving V1 and OpenAI
//! embeddings REST APIs.

pub mod cli;
pub mod engine;
pub mod error;
pub mod fetch;
pub mod http;
pub mod metrics;
pub mod model;
pub mod serve;
pub mod shutdown;
pub mod stats;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;

pub use cli::{Args, Format};

use crate::engine::generate::GenerateConfig;
use crate::engine::{BatchConfig, Engine};
use crate::http::{AppState, Loaded, SharedState};
use crate::model::Model;
use crate::serve::ServeConfig;

/// A bound, not yet serving server.
pub struct Server {
    listener: TcpListener,
    state: SharedState,
    args: Args,
}

/// Binds the socket (port 0 picks a free port) and logs `listening on http://HOST:PORT`.
pub async fn bind(args: Args) -> anyhow::Result<Server> {
    let api_key = match &args.api_key_file {
        Some(path) => {
            let key = std::fs::read_to_string(path)
                .with_context(|| format!("reading --api-key-file {}", path.display()))?
                .trim()
                .to_string();
            anyhow::ensure!(
                !key.is_empty(),
                "--api-key-file {} is empty",
                path.display()
            );
            Some(key)
        }
        None => None,
    };
    let listener = TcpListener::bind((args.host.as_str(), args.port))
        .await
        .with_context(|| format!("binding {}:{}", args.host, args.port))?;
    let addr = listener.local_addr()?;
    tracing::info!("listening on http://{addr}");
    let state = Arc::new(AppState::new(
        args.model_name.clone(),
        args.max_concurrency as usize,
        args.max_body_bytes,
        Duration::from_millis(args.body_timeout_ms),
        api_key,
    ));
    Ok(Server {
        listener,
        state,
        args,
    })
}

impl Server {
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Loads the model in the background and serves until `shutdown` resolves, then drains for
    /// `--drain-seconds` (not ready, still answering; `hurry` cuts it short) and finishes
    /// in-flight requests; or until loading fails (an error: the server refuses to start).
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
        hurry: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let Server {
            listener,
            state,
            args,
        } = self;
        let cfg = ServeConfig {
            header_timeout: Duration::from_millis(args.header_timeout_ms),
            drain: Duration::from_secs_f64(args.drain_seconds),
        };
        let failure: Arc<Mutex<Option<anyhow::Error>>> = Arc::default();
        let (fail_tx, fail_rx) = tokio::sync::oneshot::channel::<()>();
        let loader = {
            let state = state.clone();
            let failure = failure.clone();
            tokio::spawn(async move {
                if let Err(e) = load(&args, &state).await {
                    tracing::error!(error = format!("{e:#}"), "model failed to load");
                    if let Ok(mut slot) = failure.lock() {
                        *slot = Some(e);
                    }
                    let _ = fail_tx.send(());
                }
            })
        };
        // A model that fails to load stops the server at once, without a drain.
        let stop_now = async move {
            tokio::select! {
                Ok(()) = fail_rx => {}
                () = hurry => {}
            }
        };
        let router = http::router(state.clone());
        serve::serve(listener, router, cfg, state, shutdown, stop_now).await;
        loader.abort();
        if let Some(e) = failure.lock().ok().and_then(|mut s| s.take()) {
            return Err(e);
        }
        tracing::info!("shut down");
        Ok(())
    }
}

async fn load(args: &Args, state: &AppState) -> anyhow::Result<()> {
    let dir: PathBuf = match (&args.model_dir, &args.model_uri) {
        (Some(dir), _) => dir.clone(),
        (None, Some(uri)) => {
            fetch::fetch(
                uri,
                args.format,
                &args.cache_dir,
                args.model_sha256.as_deref(),
            )
            .await?
        }
        (None, None) => anyhow::bail!("give --model-dir or --model-uri"),
    };
    let format = args.format;
    let load_dir = dir.clone();
    let model = tokio::task::spawn_blocking(move || Model::load(&load_dir, format))
        .await
        .context("model loader panicked")?
        .with_context(|| format!("loading {} model from {}", format.as_str(), dir.display()))?;
    let info = model.info(&args.model_name, args.model_version.as_deref());
    let cfg = BatchConfig {
        max_batch_size: args.max_batch_size as usize,
        max_batch_delay: Duration::from_millis(args.max_batch_delay_ms),
        queue_capacity: args.max_concurrency as usize,
    };
    let generate = GenerateConfig {
        max_running: args.max_batch_size as usize,
        max_step_tokens: args.max_batch_tokens as usize,
        kv_cache_bytes: usize::try_from(args.kv_cache_bytes).unwrap_or(usize::MAX),
        queue_timeout: Duration::from_millis(args.queue_timeout_ms),
        queue_capacity: args.max_concurrency as usize,
    };
    let engine = Engine::start(model, cfg, generate, &state.metrics, state.stats.clone())
        .context("starting the model thread")?;
    tracing::info!(
        model = %info.name,
        version = %info.version,
        format = format.as_str(),
        "model ready"
    );
    let loaded = Loaded {
        info,
        engine,
        batch: cfg,
    };
    if state.loaded.set(loaded).is_err() {
        anyhow::bail!("model loaded twice");
    }
    state.metrics.set_ready();
    Ok(())
}

/// Binds, then serves until SIGTERM / SIGINT (a second one ends the drain early).
pub async fn run(args: Args) -> anyhow::Result<()> {
    let server = bind(args).await?;
    let (first_tx, first_rx) = tokio::sync::oneshot::channel::<()>();
    let shutdown = async move {
        shutdown::signal().await;
        let _ = first_tx.send(());
    };
    let hurry = async move {
        if first_rx.await.is_ok() {
            shutdown::signal().await;
            tracing::info!("second signal: ending the drain");
        } else {
            std::future::pending::<()>().await;
        }
    };
    server.run(shutdown, hurry).await
}

/// The tokio runtime for `threads` HTTP threads: current-thread for 1 (measured: fewer
/// cross-thread wake-ups per request than a one-worker multi-thread runtime), else multi-thread.
pub fn runtime(threads: u32) -> std::io::Result<tokio::runtime::Runtime> {
    let mut builder = if threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(threads as usize);
        b
    };
    builder.enable_all().build()
}

/// Logs to stderr; `RUST_LOG` filters (default `info`).
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

/// Picks the model's CPU thread count (`RAYON_NUM_THREADS`) unless the user set it: one thread for
/// `sequential` (small dense layers: waking a thread pool costs more than it saves, measured
/// ~2x CPU per request), all cores for `bert`.
///
/// Call it from `main` before any other thread starts.
pub fn tune_threads(format: Format) {
    if std::env::var_os("RAYON_NUM_THREADS").is_some() || format != Format::Sequential {
        return;
    }
    // SAFETY: called at the top of `main`, before the runtime or any other thread exists, so no
    // one can read the environment concurrently.
    unsafe { std::env::set_var("RAYON_NUM_THREADS", "1") };
}
