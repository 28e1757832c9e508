//! OpenAI-compatible `POST /v1/embeddings` for `bert` models and `GET /v1/models`, with errors
//! in OpenAI's shape (`{"error": {"message", "type", "param", "code"}}`), which OpenAI clients
//! show; they showed only "Error code: 400" for this server's plain `{"error": "..."}`.

use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;

use serde::{Deserialize, Serialize};

use super::openai_error::{AboutParam, OpenAiError};
use super::{SharedState, body, parse_json};
use crate::cli::Format;
use crate::engine::{Input, Output};
use crate::error::ApiError;

#[derive(Deserialize)]
#[serde(untagged)]
enum EmbeddingInput {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
struct EmbeddingRequest {
    input: EmbeddingInput,
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    encoding_format: Option<String>,
    #[serde(default)]
    dimensions: Option<usize>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum Vector {
    Float(Vec<f32>),
    Base64(String),
}

#[derive(Serialize)]
struct EmbeddingItem {
    object: &'static str,
    index: usize,
    embedding: Vector,
}

#[derive(Serialize)]
struct Usage {
    prompt_tokens: usize,
    total_tokens: usize,
}

#[derive(Serialize)]
pub struct EmbeddingResponse {
    object: &'static str,
    data: Vec<EmbeddingItem>,
    model: String,
    usage: Usage,
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding (what OpenAI clients decode for `encoding_format=base64`).
fn base64(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(B64[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Paths OpenAI clients call: `/v1/embeddings`, `/v1/models`, and any other `/v1/...` except
/// the KServe V1 model routes (`/v1/models/{name}...`), so that a client calling an endpoint
/// this server lacks gets an error it can show.
pub fn is_openai_path(path: &str) -> bool {
    path.starts_with("/v1/") && !path.starts_with("/v1/models/")
}

/// OpenAI's `created` for the served model: when this process first listed it (seconds since
/// the epoch; stable for the process).
fn created() -> u64 {
    static STARTED: OnceLock<u64> = OnceLock::new();
    *STARTED.get_or_init(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    })
}

/// The served model as an OpenAI model object (also part of the KServe V1 status answer).
pub fn model_object(name: &str) -> serde_json::Value {
    serde_json::json!({"id": name, "object": "model", "created": created(), "owned_by": "sconce"})
}

/// `GET /v1/models`: OpenAI's model list, plus KServe V1's `models` (names).
pub async fn models(State(s): State<SharedState>) -> Json<serde_json::Value> {
    Json(serde_json::json!({
        "object": "list",
        "data": [model_object(&s.model_name)],
        "models": [s.model_name],
    }))
}

pub async fn embeddings(
    State(s): State<SharedState>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Json<EmbeddingResponse>, OpenAiError> {
    let raw = body(raw)?;
    let name = s.model_name.clone();
    let req: EmbeddingRequest = parse_json(&raw)?;
    let requested = req.model.as_deref().unwrap_or(&name);
    let loaded = s.model(requested, None).param("model")?;
    if loaded.info.format != Format::Bert {
        return Err(ApiError::bad(format!(
            "model {name} is not an embedding model (format {})",
            loaded.info.format.as_str()
        )))
        .param("model");
    }
    let texts = match req.input {
        EmbeddingInput::One(t) => vec![t],
        EmbeddingInput::Many(v) => v,
    };
    if texts.is_empty() {
        return Err(ApiError::bad("input must not be empty")).param("input");
    }
    if texts.len() > super::v2::MAX_TEXTS {
        return Err(ApiError::bad(format!(
            "{} texts in one request; the limit is {}",
            texts.len(),
            super::v2::MAX_TEXTS
        )))
        .param("input");
    }
    if let Some(d) = req.dimensions
        && d != loaded.info.output_size
    {
        return Err(ApiError::bad(format!(
            "dimensions {d} is not supported; this model has {}",
            loaded.info.output_size
        )))
        .param("dimensions");
    }
    let b64 = match req.encoding_format.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => {
            return Err(ApiError::bad(format!("unknown encoding_format {other:?}")))
                .param("encoding_format");
        }
    };
    let Output::Embeddings { data, dim, tokens } = loaded.engine.infer(Input::Text(texts)).await?
    else {
        return Err(ApiError::Inference("model returned no embeddings".into()).into());
    };
    let prompt_tokens = tokens.iter().sum();
    let data = data
        .chunks(dim.max(1))
        .enumerate()
        .map(|(index, row)| EmbeddingItem {
            object: "embedding",
            index,
            embedding: if b64 {
                let bytes: Vec<u8> = row.iter().flat_map(|v| v.to_le_bytes()).collect();
                Vector::Base64(base64(&bytes))
            } else {
                Vector::Float(row.to_vec())
            },
        })
        .collect();
    Ok(Json(EmbeddingResponse {
        object: "list",
        data,
        model: name,
        usage: Usage {
            prompt_tokens,
            total_tokens: prompt_tokens,
        },
    }))
}

#[cfg(test)]
mod tests {
    #[test]
    fn base64_matches_rfc4648() {
        assert_eq!(super::base64(b""), "");
        assert_eq!(super::base64(b"f"), "Zg==");
        assert_eq!(super::base64(b"fo"), "Zm8=");
        assert_eq!(super::base64(b"foo"), "Zm9v");
        assert_eq!(super::base64(b"foobar"), "Zm9vYmFy");
    }
}
