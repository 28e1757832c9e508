//! The inference routes' middleware: read (and decode) the body, then admission, request
//! metrics and statistics, and the answer's compression.
//!
//! The body is read before admission: a client that sends its body slowly (or stalls) holds only
//! its own connection, bounded by `--body-timeout-ms` and `--max-body-bytes`, never one of the
//! `--max-concurrency` inference slots.

use std::time::Instant;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;

use super::encoding::{self, Coding};
use super::{AppState, SharedState};
use crate::error::ApiError;

/// Which protocol's route a request came in on: its metric label and its error shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    V2,
    V1,
    OpenAi,
}

impl Protocol {
    pub fn label(self) -> &'static str {
        match self {
            Protocol::V2 => "v2",
            Protocol::V1 => "v1",
            Protocol::OpenAi => "openai",
        }
    }

    /// The error answer in this protocol's shape.
    pub fn error(self, e: ApiError) -> Response {
        match self {
            Protocol::OpenAi => e.into_openai_response(None),
            Protocol::V2 | Protocol::V1 => e.into_response(),
        }
    }
}

/// Reads the whole body within `--body-timeout-ms` and `--max-body-bytes`, and decodes its
/// `Content-Encoding` (the limit applies to the decoded size too).
pub(super) async fn read_body(state: &AppState, req: Request) -> Result<Request, ApiError> {
    let coding = encoding::request_coding(req.headers().get(header::CONTENT_ENCODING))?;
    let (mut parts, body) = req.into_parts();
    let limited = http_body_util::Limited::new(body, state.max_body_bytes);
    let collected = tokio::time::timeout(state.body_timeout, limited.collect())
        .await
        .map_err(|_| ApiError::BodyTimeout(state.body_timeout.as_millis() as u64))?;
    let bytes = match collected {
        Ok(c) => c.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            return Err(ApiError::PayloadTooLarge(state.max_body_bytes));
        }
        Err(e) => return Err(ApiError::bad(format!("reading body: {e}"))),
    };
    let bytes = match coding {
        None => bytes,
        Some(coding) => {
            parts.headers.remove(header::CONTENT_ENCODING);
            encoding::decode(coding, &bytes, state.max_body_bytes)?.into()
        }
    };
    Ok(Request::from_parts(parts, Body::from(bytes)))
}

pub async fn v2(State(s): State<SharedState>, req: Request, next: Next) -> Response {
    track(&s, Protocol::V2, req, next).await
}

pub async fn v1(State(s): State<SharedState>, req: Request, next: Next) -> Response {
    track(&s, Protocol::V1, req, next).await
}

pub async fn openai(State(s): State<SharedState>, req: Request, next: Next) -> Response {
    track(&s, Protocol::OpenAi, req, next).await
}

/// Body, admission (429 over `--max-concurrency`), metrics, statistics and compression for the
/// inference routes.
async fn track(state: &AppState, protocol: Protocol, req: Request, next: Next) -> Response {
    let answer_in = req
        .headers()
        .get(header::ACCEPT_ENCODING)
        .and_then(encoding::response_coding);
    let (response, started) = match read_body(state, req).await {
        Err(e) => (protocol.error(e), Instant::now()),
        Ok(req) => {
            let started = Instant::now();
            let response = match state.limiter.try_acquire() {
                Ok(_permit) => {
                    let gauge = state.metrics.in_flight();
                    gauge.inc();
                    let r = next.run(req).await;
                    gauge.dec();
                    r
                }
                Err(_) => protocol.error(ApiError::Overloaded("too many concurrent requests")),
            };
            (response, started)
        }
    };
    let elapsed = started.elapsed();
    let status = response.status();
    state
        .metrics
        .record_request(protocol.label(), status.as_u16(), elapsed.as_secs_f64());
    state.stats.request(status.is_success(), elapsed);
    match answer_in {
        Some(coding) => compress(response, coding).await,
        None => response,
    }
}

/// The answer compressed with `coding`, unless it is small or already encoded.
async fn compress(response: Response, coding: Coding) -> Response {
    if response.headers().contains_key(header::CONTENT_ENCODING) {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    // Every answer here is one buffer already; collecting it does not wait.
    let bytes = match body.collect().await {
        Ok(c) => c.to_bytes(),
        Err(e) => {
            return ApiError::Inference(format!("encoding the answer: {e}")).into_response();
        }
    };
    parts
        .headers
        .append(header::VARY, HeaderValue::from_static("accept-encoding"));
    if bytes.len() < encoding::MIN_COMPRESSED_LEN {
        return Response::from_parts(parts, Body::from(bytes));
    }
    let packed = encoding::encode(coding, &bytes);
    parts.headers.insert(
        header::CONTENT_ENCODING,
        HeaderValue::from_static(coding.name()),
    );
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(packed))
}
