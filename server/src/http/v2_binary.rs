//! The binary tensor data extension: `Inference-Header-Content-Length` splits a body into a
//! JSON header and raw tensor bytes; binary outputs are appended after the JSON header.

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::Response;

use crate::error::ApiError;

pub const HEADER: &str = "inference-header-content-length";

/// Splits a request body into its JSON header and the binary rest.
pub fn split_body<'a>(
    headers: &HeaderMap,
    raw: &'a [u8],
) -> Result<(&'a [u8], &'a [u8]), ApiError> {
    let Some(v) = headers.get(HEADER) else {
        return Ok((raw, &[]));
    };
    let n: usize = v
        .to_str()
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .ok_or_else(|| ApiError::bad("Inference-Header-Content-Length must be an integer"))?;
    if n > raw.len() {
        return Err(ApiError::bad(format!(
            "Inference-Header-Content-Length {n} exceeds the body's {} bytes",
            raw.len()
        )));
    }
    Ok(raw.split_at(n))
}

/// Binary output tensors, in order.
#[derive(Default)]
pub struct BinaryOut {
    bytes: Vec<u8>,
}

impl BinaryOut {
    /// Appends an FP32 tensor; returns its byte size.
    pub fn push_f32(&mut self, data: &[f32]) -> usize {
        let start = self.bytes.len();
        self.bytes.reserve(data.len() * 4);
        for v in data {
            self.bytes.extend_from_slice(&v.to_le_bytes());
        }
        self.bytes.len() - start
    }

    /// The response: plain JSON when no output is binary, else header + blobs.
    pub fn into_response(self, json_header: Vec<u8>) -> Response {
        let mut resp = if self.bytes.is_empty() {
            let mut r = Response::new(Body::from(json_header));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            r
        } else {
            let header_len = json_header.len();
            let mut body = json_header;
            body.extend_from_slice(&self.bytes);
            let mut r = Response::new(Body::from(body));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            );
            r.headers_mut()
                .insert(HEADER, HeaderValue::from(header_len));
            r
        };
        *resp.status_mut() = axum::http::StatusCode::OK;
        resp
    }
}
