//! HTTP: routes, request/response types and the admission layers.

mod auth;
pub(crate) mod generate;
mod json_numbers;
mod openai;
mod openai_chat;
mod openai_error;
mod rows;
pub mod tensor;
mod v1;
mod v2;
mod v2_binary;
mod v2_generate;
mod v2_splice;
mod v2_types;

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http_body_util::BodyExt;
use tokio::sync::Semaphore;

use crate::engine::Engine;
use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::model::ModelInfo;

/// The loaded model: set once, when loading finishes.
pub struct Loaded {
    pub info: ModelInfo,
    pub engine: Engine,
}

/// State shared by every handler.
pub struct AppState {
    /// Name the model is served under (known before it loads).
    pub model_name: String,
    pub loaded: OnceLock<Loaded>,
    pub metrics: Metrics,
    pub limiter: Arc<Semaphore>,
    pub api_key: Option<String>,
    pub max_body_bytes: usize,
    pub body_timeout: Duration,
}

pub type SharedState = Arc<AppState>;

impl AppState {
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
        .route_layer(middleware::from_fn_with_state(state.clone(), track_v2));
    let v1_predict = Router::new()
        .route("/v1/models/{name}", post(v1::predict))
        .route(
            "/v1/models/{name}/versions/{version}",
            post(v1::predict_version),
        )
        .route_layer(middleware::from_fn_with_state(state.clone(), track_v1));
    let openai = Router::new()
        .route("/v1/embeddings", post(openai::embeddings))
        .route_layer(middleware::from_fn_with_state(state.clone(), track_openai));
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
        .route("/v1/models/{name}", get(v1::status))
        .route(
            "/v1/models/{name}/versions/{version}",
            get(v1::status_version),
        )
        .merge(v2_infer)
        .merge(v1_predict)
        .route("/v1/models", get(openai_chat::models))
        .merge(openai)
        .merge(generation)
        .route_layer(middleware::from_fn_with_state(state.clone(), auth::require));
    let open = Router::new()
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

async fn not_found() -> ApiError {
    ApiError::NotFound("no such route".into())
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

async fn live() -> Response {
    axum::Json(serde_json::json!({"live": true})).into_response()
}

async fn ready(State(state): State<SharedState>) -> Response {
    if state.loaded.get().is_some() {
        axum::Json(serde_json::json!({"ready": true})).into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(serde_json::json!({"ready": false, "error": "model is loading"})),
        )
            .into_response()
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

/// Reads the whole body within `--body-timeout-ms` and `--max-body-bytes`.
async fn read_body(state: &AppState, req: Request) -> Result<Request, ApiError> {
    let (parts, body) = req.into_parts();
    let limited = http_body_util::Limited::new(body, state.max_body_bytes);
    let collected = tokio::time::timeout(state.body_timeout, limited.collect())
        .await
        .map_err(|_| ApiError::BodyTimeout(state.body_timeout.as_millis() as u64))?;
    match collected {
        Ok(c) => Ok(Request::from_parts(parts, Body::from(c.to_bytes()))),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            Err(ApiError::PayloadTooLarge(state.max_body_bytes))
        }
        Err(e) => Err(ApiError::bad(format!("reading body: {e}"))),
    }
}

async fn track_v2(State(s): State<SharedState>, req: Request, next: Next) -> Response {
    track(&s, "v2", req, next).await
}

async fn track_v1(State(s): State<SharedState>, req: Request, next: Next) -> Response {
    track(&s, "v1", req, next).await
}

async fn track_openai(State(s): State<SharedState>, req: Request, next: Next) -> Response {
    track(&s, "openai", req, next).await
}

/// Admission (429 over `--max-concurrency`), the body deadline (408) and request metrics for
/// inference routes.
async fn track(state: &AppState, protocol: &'static str, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let response = match state.limiter.clone().try_acquire_owned() {
        Ok(_permit) => {
            let gauge = state.metrics.in_flight();
            gauge.inc();
            let r = match read_body(state, req).await {
                Ok(req) => next.run(req).await,
                Err(e) => e.into_response(),
            };
            gauge.dec();
            r
        }
        Err(_) => ApiError::Overloaded("too many concurrent requests").into_response(),
    };
    state.metrics.record_request(
        protocol,
        response.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    response
}
