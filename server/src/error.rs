//! One error type for everything a request can hit, and its one mapping to an HTTP status.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// What went wrong while serving a request.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request is malformed: bad JSON, wrong shape or datatype, unknown output...
    #[error("{0}")]
    BadRequest(String),
    /// No such model or version.
    #[error("{0}")]
    NotFound(String),
    /// No such route.
    #[error("no such route")]
    NoRoute,
    /// Method not allowed on this route.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// Missing or wrong bearer token.
    #[error("missing or invalid bearer token")]
    Unauthorized,
    /// A `Content-Encoding` this server cannot decode.
    #[error("unsupported {0}; this server reads gzip and deflate")]
    UnsupportedEncoding(String),
    /// The body is over `--max-body-bytes`.
    #[error("request body is larger than {0} bytes")]
    PayloadTooLarge(usize),
    /// The body did not arrive within `--body-timeout-ms`.
    #[error("request body not received within {0} ms")]
    BodyTimeout(u64),
    /// The concurrency limit or the model queue is full.
    #[error("server is at capacity: {0}")]
    Overloaded(&'static str),
    /// The model is not loaded yet (or is shutting down).
    #[error("model {0} is not ready")]
    NotReady(String),
    /// The model failed while computing.
    #[error("inference failed: {0}")]
    Inference(String),
}

#[derive(Serialize)]
struct ErrorBody {
    error: String,
}

/// The error object OpenAI clients read: `{"error": {"message", "type", "param", "code"}}`.
#[derive(Serialize)]
pub struct OpenAiBody {
    pub error: OpenAiDetail,
}

#[derive(Serialize)]
pub struct OpenAiDetail {
    pub message: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub param: Option<&'static str>,
    pub code: Option<&'static str>,
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) | ApiError::NoRoute => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::UnsupportedEncoding(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::Overloaded(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::NotReady(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Inference(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn bad(msg: impl Into<String>) -> Self {
        ApiError::BadRequest(msg.into())
    }

    /// OpenAI's error `type` and `code` for this error.
    fn openai_kind(&self) -> (&'static str, Option<&'static str>) {
        match self {
            ApiError::BadRequest(_) => ("invalid_request_error", None),
            ApiError::NotFound(_) => ("invalid_request_error", Some("model_not_found")),
            ApiError::NoRoute => ("invalid_request_error", Some("unknown_url")),
            ApiError::MethodNotAllowed => ("invalid_request_error", Some("method_not_allowed")),
            ApiError::Unauthorized => ("invalid_request_error", Some("invalid_api_key")),
            ApiError::UnsupportedEncoding(_) => {
                ("invalid_request_error", Some("unsupported_encoding"))
            }
            ApiError::PayloadTooLarge(_) => ("invalid_request_error", Some("request_too_large")),
            ApiError::BodyTimeout(_) => ("invalid_request_error", Some("timeout")),
            ApiError::Overloaded(_) => ("rate_limit_error", Some("rate_limit_exceeded")),
            ApiError::NotReady(_) => ("server_error", Some("model_not_ready")),
            ApiError::Inference(_) => ("server_error", None),
        }
    }

    /// This error in OpenAI's shape (also sent as a stream's error event); `param` names the
    /// request field at fault.
    pub fn openai_body(&self, param: Option<&'static str>) -> OpenAiBody {
        let (kind, code) = self.openai_kind();
        OpenAiBody {
            error: OpenAiDetail {
                message: self.to_string(),
                kind,
                param,
                code,
            },
        }
    }

    /// The answer in OpenAI's error shape; `param` names the request field at fault.
    pub fn into_openai_response(self, param: Option<&'static str>) -> Response {
        let status = self.status();
        let body = self.openai_body(param);
        finish(status, &self, Json(body).into_response())
    }
}

/// Logs server errors and adds the headers an error status needs.
fn finish(status: StatusCode, e: &ApiError, body: Response) -> Response {
    if status.is_server_error() {
        tracing::warn!(error = %e, "request failed");
    }
    let mut resp = (status, body).into_response();
    if status == StatusCode::UNAUTHORIZED {
        resp.headers_mut().insert(
            axum::http::header::WWW_AUTHENTICATE,
            axum::http::HeaderValue::from_static("Bearer"),
        );
    }
    resp
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = Json(ErrorBody {
            error: self.to_string(),
        })
        .into_response();
        finish(status, &self, body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses() {
        assert_eq!(ApiError::bad("x").status(), StatusCode::BAD_REQUEST);
        assert_eq!(
            ApiError::NotFound("x".into()).status(),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            ApiError::PayloadTooLarge(1).status(),
            StatusCode::PAYLOAD_TOO_LARGE
        );
        assert_eq!(
            ApiError::BodyTimeout(1).status(),
            StatusCode::REQUEST_TIMEOUT
        );
        assert_eq!(
            ApiError::Overloaded("queue").status(),
            StatusCode::TOO_MANY_REQUESTS
        );
        assert_eq!(
            ApiError::NotReady("m".into()).status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(
            ApiError::UnsupportedEncoding("br".into()).status(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE
        );
    }

    #[tokio::test]
    async fn openai_shape() {
        use http_body_util::BodyExt;
        let r = ApiError::NotFound("unknown model x".into()).into_openai_response(Some("model"));
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
        let body = r.into_body().collect().await.unwrap().to_bytes();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"error": {"message": "unknown model x",
                "type": "invalid_request_error", "param": "model", "code": "model_not_found"}})
        );
        let r = ApiError::Unauthorized.into_openai_response(None);
        assert_eq!(r.headers()["www-authenticate"], "Bearer");
    }
}
