//! Path parameters with this server's error: axum's own `Path` rejection (a path segment that is
//! not UTF-8 once percent-decoded, say) is a text/plain answer; here it is the usual JSON 400,
//! counted in `sconce_http_rejections_total`.

use axum::extract::{FromRequestParts, Path};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use super::SharedState;
use crate::error::ApiError;
use crate::serve::{Rejection, ServeEvents};

/// `Path<T>` whose rejection is an [`ApiError`].
pub struct Params<T>(pub T);

impl<T: DeserializeOwned + Send> FromRequestParts<SharedState> for Params<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &SharedState) -> Result<Self, ApiError> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(v)) => Ok(Params(v)),
            Err(e) => {
                state.rejected(Rejection::BadPathEncoding);
                Err(ApiError::bad(format!("invalid percent-encoded path: {e}")))
            }
        }
    }
}
