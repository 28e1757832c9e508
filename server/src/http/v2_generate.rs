//! KServe V2 generate extension: `POST /v2/models/{name}/generate` answers
//! `{"model_name", "model_version", "text_output", "finish_reason", "usage"}`;
//! `/generate_stream` sends one such event per piece of text. The prompt (`text_input`) is used
//! as is (no chat template); `parameters` take the OpenAI sampling fields.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::generate::{
    Generation, SamplingFields, engine_request, find_generator, options, sse_data, sse_response,
};
use super::{SharedState, body, parse_json};
use crate::error::ApiError;

#[derive(Deserialize)]
struct GenerateRequest {
    text_input: String,
    #[serde(default)]
    parameters: SamplingFields,
}

#[derive(Serialize)]
struct Usage {
    prompt_tokens: usize,
    completion_tokens: usize,
}

#[derive(Serialize)]
struct GenerateResponse<'a> {
    model_name: &'a str,
    model_version: &'a str,
    text_output: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    finish_reason: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<Usage>,
}

fn start(state: &SharedState, name: &str, raw: Bytes) -> Result<Generation, ApiError> {
    let req: GenerateRequest = parse_json(&raw)?;
    let generator = find_generator(state, name, None)?;
    let opts = options(&req.parameters).map_err(|e| e.error)?;
    let prompt = generator
        .model
        .vocab
        .encode(&req.text_input)
        .map_err(|e| ApiError::bad(format!("tokenizing text_input: {e}")))?;
    let request = engine_request(&generator.model, prompt, &opts).map_err(|e| e.error)?;
    Generation::start(generator, request, opts.stop)
}

pub async fn generate(
    State(s): State<SharedState>,
    Path(name): Path<String>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let g = start(&s, &name, body(raw)?)?;
    let (text, finish, g) = g.collect().await?;
    let version = &s.model(&name, None)?.info.version;
    Ok(Json(GenerateResponse {
        model_name: &name,
        model_version: version,
        text_output: text,
        finish_reason: Some(finish),
        usage: Some(Usage {
            prompt_tokens: g.prompt_tokens,
            completion_tokens: g.completion_tokens,
        }),
    })
    .into_response())
}

pub async fn generate_stream(
    State(s): State<SharedState>,
    Path(name): Path<String>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let mut g = start(&s, &name, body(raw)?)?;
    // The first piece before the headers: a request refused in the queue still gets its 429.
    let first = g.next().await.transpose()?;
    let version = s.model(&name, None)?.info.version.clone();
    let stream = futures::stream::unfold((g, first, false), move |(mut g, pending, ended)| {
        let (name, version) = (name.clone(), version.clone());
        async move {
            if ended {
                return None;
            }
            let piece = match pending {
                Some(p) => Ok(p),
                None => g.next().await?,
            };
            let event = match piece {
                Ok(p) => {
                    let last = p.finish.is_some();
                    let event = sse_data(&GenerateResponse {
                        model_name: &name,
                        model_version: &version,
                        text_output: p.text,
                        finish_reason: p.finish,
                        usage: last.then_some(Usage {
                            prompt_tokens: g.prompt_tokens,
                            completion_tokens: g.completion_tokens,
                        }),
                    });
                    return Some((event, (g, None, last)));
                }
                Err(e) => sse_data(&serde_json::json!({"error": e.to_string()})),
            };
            Some((event, (g, None, true)))
        }
    });
    Ok(sse_response(stream))
}
