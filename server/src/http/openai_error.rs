//! OpenAI's error body, `{"error": {"message", "type", "param", "code"}}`, for the OpenAI
//! routes (the openai client reads `message` and `code` from it): an [`ApiError`] with the
//! request field it is about. The shape and the type/code mapping are `ApiError`'s own.

use axum::response::{IntoResponse, Response};

use crate::error::{ApiError, OpenAiBody};

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

    pub fn body(&self) -> OpenAiBody {
        self.error.openai_body(self.param)
    }
}

impl IntoResponse for OpenAiError {
    fn into_response(self) -> Response {
        self.error.into_openai_response(self.param)
    }
}

/// Attaches the request field an error is about.
pub trait AboutParam<T> {
    fn param(self, param: &'static str) -> Result<T, OpenAiError>;
}

impl<T> AboutParam<T> for Result<T, ApiError> {
    fn param(self, param: &'static str) -> Result<T, OpenAiError> {
        self.map_err(|error| OpenAiError::param(error, param))
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
