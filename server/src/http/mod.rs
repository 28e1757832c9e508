//! HTTP: routes, request/response types and the admission layers.

mod auth;
mod encoding;
pub(crate) mod generate;
mod json_numbers;
mod openai;
mod openai_chat;
mod openai_error;
mod path;
pub mod ranges;
mod rows;
pub mod tensor;
mod track;
mod triton;
mod v1;
mod v2;
mod v2_binary;
mod v2_generate;
mod v2_splice;
mod v2_types;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{StatusCode, Uri, header};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tokio::sync::Semaphore;

use crate::engine::{BatchConfig, Engine};
use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::model::ModelInfo;
use crate::serve::{Rejection, ServeEvents};
use crate::stats::InferenceStats;

/// The loaded model: set once, when loading finishes.
pub struct Loaded {
    pub info: ModelInfo,
    pub engine: Engine,
    /// How the model thread batches (shown by the Triton-style `/config`).
    pub batch: BatchConfig,
}

/// State shared by every handler.
pub struct AppState {
    /// Name the model is served under (known before it loads).
    pub model_name: String,
    pub loaded: OnceLock<Loaded>,
    pub metrics: Metrics,
    pub stats: Arc<InferenceStats>,
    /// `--max-concurrency` slots; shared (`Arc`) so a text stream can hold its slot until it ends.
    pub limiter: Arc<Semaphore>,
    pub api_key: Option<String>,
    pub max_body_bytes: usize,
    pub body_timeout: Duration,
    /// Shutting down: readiness fails while the server drains.
    pub draining: AtomicBool,
}

pub type SharedState = Arc<AppState>;

impl AppState {
    pub fn new(
        model_name: String,
        max_concurrency: usize,
        max_body_bytes: usize,
        body_timeout: Duration,
        api_key: Option<String>,
    ) -> Self {
        AppState {
            metrics: Metrics::new(&model_name),
            model_name,
            loaded: OnceLock::new(),
            stats: Arc::default(),
            limiter: Arc::new(Semaphore::new(max_concurrency)),
            api_key,
            max_body_bytes,
            body_timeout,
            draining: AtomicBool::new(false),
        }
    }

    /// The loaded model, if `name` (and `version`, if given) names it.
    pub fn model(&self, name: &str, version: Option<&str>) -> Result<&Loaded, ApiError> {
        if name != self.model_name {
            return Err(ApiError::NotFound(format!("unknown model {name}")));
        }
        let loaded = self
            .loaded
            .get()
            .ok_or_else(|| ApiError::NotReady(name.to_string()))?;
        if let Some(v) = version
            && v != loaded.info.version
        {
            return Err(ApiError::NotFound(format!(
                "model {name} has no version {v} (serving {})",
                loaded.info.version
            )));
        }
        Ok(loaded)
    }
}

impl ServeEvents for AppState {
    fn draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    fn rejected(&self, why: Rejection) {
        self.metrics.record_rejection(why);
    }
}

/// Turns the body extractor's result into our error type. The body was already read, within
/// `--max-body-bytes` and `--body-timeout-ms`, by `track`.
pub fn body(body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    body.map_err(|e| ApiError::bad(format!("reading body: {e}")))
}

/// Parses a JSON body with a useful error message.
pub fn parse_json<'a, T: serde::Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| ApiError::bad(format!("invalid JSON: {e}")))
}

pub fn router(state: SharedState) -> Router {
    let v2_infer = Router::new()
        .route("/v2/models/{name}/infer", post(v2::infer))
        .route(
            "/v2/models/{name}/versions/{version}/infer",
            post(v2::infer_version),
        )
        .route_layer(middleware::from_fn_with_state(state.clone(), track::v2));
    let v1_predict = Router::new()
        .route("/v1/models/{name}", post(v1::predict))
        .route(
            "/v1/models/{name}/versions/{version}",
            post(v1::predict_version),
        )
        .route_layer(middleware::from_fn_with_state(state.clone(), track::v1));
    let openai = Router::new()
        .route("/v1/embeddings", post(openai::embeddings))
        .route_layer(middleware::from_fn_with_state(state.clone(), track::openai));
    // Text generation: admission held for the whole stream (`generate::track_*`).
    let generation = Router::new()
        .route("/v1/chat/completions", post(openai_chat::chat_completions))
        .route("/v1/completions", post(openai_chat::completions))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            generate::track_openai,
        ))
        .merge(
            Router::new()
                .route("/v2/models/{name}/generate", post(v2_generate::generate))
                .route(
                    "/v2/models/{name}/generate_stream",
                    post(v2_generate::generate_stream),
                )
                .route_layer(middleware::from_fn_with_state(
                    state.clone(),
                    generate::track_v2,
                )),
        );
    let protected = Router::new()
        .route("/v2", get(v2::server_metadata))
        .route("/v2/models/{name}", get(v2::model_metadata))
        .route(
            "/v2/models/{name}/versions/{version}",
            get(v2::model_metadata_version),
        )
        .route("/v2/models/{name}/ready", get(v2::model_ready))
        .route(
            "/v2/models/{name}/versions/{version}/ready",
            get(v2::model_ready_version),
        )
        .route("/v2/models/{name}/config", get(triton::config))
        .route(
            "/v2/models/{name}/versions/{version}/config",
            get(triton::config_version),
        )
        .route("/v2/models/{name}/stats", get(triton::stats))
        .route(
            "/v2/models/{name}/versions/{version}/stats",
            get(triton::stats_version),
        )
        .route("/v1/models", get(openai::models))
        .route("/v1/models/{name}", get(v1::status))
        .route(
            "/v1/models/{name}/versions/{version}",
            get(v1::status_version),
        )
        .merge(v2_infer)
        .merge(v1_predict)
        .merge(openai)
        .merge(generation)
        .route_layer(middleware::from_fn_with_state(state.clone(), auth::require));
    let open = Router::new()
        .route("/", get(v1::live))
        .route("/v2/health/live", get(live))
        .route("/v2/health/ready", get(ready))
        .route("/metrics", get(metrics));
    Router::new()
        .merge(protected)
        .merge(open)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        // `track` enforces --max-body-bytes while it reads the body; the extractor's own
        // (2 MB) default would refuse what that allows.
        .layer(DefaultBodyLimit::disable())
        .with_state(state)
}

/// An error in the shape clients of `uri`'s protocol read.
fn error_for(uri: &Uri, e: ApiError) -> Response {
    if openai::is_openai_path(uri.path()) {
        e.into_openai_response(None)
    } else {
        e.into_response()
    }
}

async fn not_found(uri: Uri) -> Response {
    error_for(&uri, ApiError::NoRoute)
}

async fn method_not_allowed(uri: Uri) -> Response {
    error_for(&uri, ApiError::MethodNotAllowed)
}

async fn live() -> Response {
    axum::Json(serde_json::json!({"live": true})).into_response()
}

async fn ready(State(state): State<SharedState>) -> Response {
    let not_ready = |why: &str| {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(serde_json::json!({"ready": false, "error": why})),
        )
            .into_response()
    };
    if state.draining.load(Ordering::SeqCst) {
        not_ready("shutting down")
    } else if state.loaded.get().is_some() {
        axum::Json(serde_json::json!({"ready": true})).into_response()
    } else {
        not_ready("model is loading")
    }
}

async fn metrics(State(state): State<SharedState>) -> Result<Response, ApiError> {
    let text = state
        .metrics
        .encode()
        .map_err(|e| ApiError::Inference(format!("encoding metrics: {e}")))?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response())
}
