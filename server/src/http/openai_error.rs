//! OpenAI's error body, `{"error": {"message", "type", "param", "code"}}`, for the OpenAI
//! routes (the openai client reads `message` and `code` from it), with the status of
//! [`ApiError::status`].

use axum::Json;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::error::ApiError;

#[derive(Serialize)]
pub struct Detail {
    pub message: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub param: Option<&'static str>,
    pub code: Option<&'static str>,
}

#[derive(Serialize)]
pub struct Body {
    pub error: Detail,
}

/// An [`ApiError`] answered in OpenAI's shape; `param` names the offending request field.
#[derive(Debug)]
pub struct OpenAiError {
    pub error: ApiError,
    pub param: Option<&'static str>,
}

impl From<ApiError> for OpenAiError {
    fn from(error: ApiError) -> Self {
        OpenAiError { error, param: None }
    }
}

impl OpenAiError {
    pub fn param(error: ApiError, param: &'static str) -> Self {
        OpenAiError {
            error,
            param: Some(param),
        }
    }

    pub fn body(&self) -> Body {
        let (kind, code) = match &self.error {
            ApiError::BadRequest(_) | ApiError::PayloadTooLarge(_) | ApiError::BodyTimeout(_) => {
                ("invalid_request_error", None)
            }
            ApiError::NotFound(_) => ("invalid_request_error", Some("model_not_found")),
            ApiError::MethodNotAllowed => ("invalid_request_error", None),
            ApiError::Unauthorized => ("invalid_request_error", Some("invalid_api_key")),
            ApiError::Overloaded(_) => ("rate_limit_error", Some("rate_limit_exceeded")),
            ApiError::NotReady(_) | ApiError::Inference(_) => ("server_error", None),
        };
        Body {
            error: Detail {
                message: self.error.to_string(),
                kind,
                param: self.param,
                code,
            },
        }
    }
}

impl IntoResponse for OpenAiError {
    fn into_response(self) -> Response {
        let status = self.error.status();
        if status.is_server_error() {
            tracing::warn!(error = %self.error, "request failed");
        }
        (status, Json(self.body())).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shape_and_types() {
        let e = OpenAiError::param(ApiError::bad("max_tokens must be at least 1"), "max_tokens");
        let v = serde_json::to_value(e.body()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"error": {"message": "max_tokens must be at least 1",
                "type": "invalid_request_error", "param": "max_tokens", "code": null}})
        );
        let v =
            serde_json::to_value(OpenAiError::from(ApiError::Overloaded("full")).body()).unwrap();
        assert_eq!(v["error"]["code"], "rate_limit_exceeded");
        let v =
            serde_json::to_value(OpenAiError::from(ApiError::NotFound("m".into())).body()).unwrap();
        assert_eq!(v["error"]["code"], "model_not_found");
    }
}
