//! TF-Serving / KServe V1: `POST /v1/models/{name}[/versions/{v}]:predict`,
//! `GET /v1/models/{name}` (model status in both TF-Serving's and KServe's shape) and `GET /`
//! (KServe V1 liveness).

use std::collections::HashMap;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::json;
use serde_json::value::RawValue;

use super::json_numbers::parse_data;
use super::path::Params;
use super::ranges;
use super::rows::Rows;
use super::tensor::{TensorData, Values};
use super::v2::texts;
use super::{SharedState, body, parse_json};
use crate::cli::Format;
use crate::engine::{Input, Output};
use crate::error::ApiError;
use crate::model::ModelInfo;

/// Tensors stay raw JSON text until `json_numbers` flattens them (see `v2.rs`).
#[derive(Deserialize)]
struct PredictRequest<'a> {
    #[serde(default, borrow)]
    instances: Option<&'a RawValue>,
    /// One tensor, or an object of named tensors.
    #[serde(default, borrow)]
    inputs: Option<&'a RawValue>,
}

enum Columnar<'a> {
    Named(HashMap<String, &'a RawValue>),
    Tensor(TensorData),
}

fn columnar(raw: &RawValue) -> Result<Columnar<'_>, ApiError> {
    if raw.get().starts_with('{') {
        serde_json::from_str(raw.get())
            .map(Columnar::Named)
            .map_err(|e| ApiError::bad(format!("invalid inputs: {e}")))
    } else {
        parse_data(raw).map(Columnar::Tensor)
    }
}

#[derive(Serialize)]
struct Predictions<'a> {
    predictions: Rows<'a>,
}

#[derive(Serialize)]
struct Outputs<'a> {
    outputs: Rows<'a>,
}

fn strip_verb(segment: &str) -> Result<&str, ApiError> {
    match segment.rsplit_once(':') {
        Some((name, "predict")) => Ok(name),
        Some((_, verb)) => Err(ApiError::NotFound(format!("unsupported verb :{verb}"))),
        None => Err(ApiError::MethodNotAllowed),
    }
}

pub async fn predict(
    State(s): State<SharedState>,
    Params(segment): Params<String>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let name = strip_verb(&segment)?;
    let raw = body(raw)?;
    run_predict(&s, name, None, &raw).await
}

pub async fn predict_version(
    State(s): State<SharedState>,
    Params((name, segment)): Params<(String, String)>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let version = strip_verb(&segment)?;
    let raw = body(raw)?;
    run_predict(&s, &name, Some(version), &raw).await
}

fn to_input(t: TensorData, info: &ModelInfo, key: &str) -> Result<Input, ApiError> {
    match (info.format, t.values) {
        (Format::Sequential, Values::Num(data)) => {
            // V1 has no datatypes: numbers are what the model computes in, FP32.
            ranges::check("FP32", &t.shape, &t.extremes, &data)
                .map_err(|e| ApiError::bad(format!("{key}: {e}")))?;
            if t.shape.len() != 2 || t.shape[1] != info.input_size {
                return Err(ApiError::bad(format!(
                    "{key} must be a list of examples of {} numbers each (got shape {:?})",
                    info.input_size, t.shape
                )));
            }
            if t.shape[0] == 0 {
                return Err(ApiError::bad(format!("{key} is empty")));
            }
            Ok(Input::Dense {
                data,
                rows: t.shape[0],
            })
        }
        (Format::Bert, Values::Bytes(items)) if t.shape.len() == 1 => texts(items).map(Input::Text),
        (Format::Sequential, _) => Err(ApiError::bad(format!("{key} must hold numbers"))),
        (Format::Bert, _) => Err(ApiError::bad(format!("{key} must be a list of strings"))),
        (Format::Gguf, _) => Err(ApiError::bad(super::generate::USE_GENERATE)),
    }
}

async fn run_predict(
    state: &SharedState,
    name: &str,
    version: Option<&str>,
    raw: &[u8],
) -> Result<Response, ApiError> {
    let loaded = state.model(name, version)?;
    let info = &loaded.info;
    let req: PredictRequest = parse_json(raw)?;
    let inputs = req.inputs.map(columnar).transpose()?;
    let (input, columnar) = match (req.instances, inputs) {
        (Some(raw), None) => (to_input(parse_data(raw)?, info, "instances")?, false),
        (None, Some(Columnar::Tensor(t))) => (to_input(t, info, "inputs")?, true),
        (None, Some(Columnar::Named(mut map))) => {
            let key = match info.format {
                Format::Sequential => "input",
                Format::Bert => "text",
                Format::Gguf => "text_input",
            };
            if map.len() != 1 {
                return Err(ApiError::bad(format!(
                    "inputs must have exactly one key, {key:?}"
                )));
            }
            let raw = map
                .remove(key)
                .ok_or_else(|| ApiError::bad(format!("inputs must have the key {key:?}")))?;
            (to_input(parse_data(raw)?, info, "inputs")?, true)
        }
        (Some(_), Some(_)) => {
            return Err(ApiError::bad("give either instances or inputs, not both"));
        }
        (None, None) => return Err(ApiError::bad("body needs instances or inputs")),
    };
    let (data, cols) = match loaded.engine.infer(input).await? {
        Output::Dense { data, cols } => (data, cols),
        Output::Embeddings { data, dim, .. } => (data, dim),
    };
    let rows = Rows { data: &data, cols };
    Ok(if columnar {
        Json(Outputs { outputs: rows }).into_response()
    } else {
        Json(Predictions { predictions: rows }).into_response()
    })
}

/// KServe V1 liveness, `GET /`.
pub async fn live() -> Json<serde_json::Value> {
    Json(json!({"status": "alive"}))
}

/// The model's status in the shapes V1 clients read: KServe's `{"name", "ready"}`, TF-Serving's
/// `model_version_status`, and OpenAI's model object (`GET /v1/models/{id}` is also OpenAI's
/// model retrieval). 200 while loading too, with `ready: false` and state `LOADING`.
fn status_body(
    state: &SharedState,
    name: &str,
    version: Option<&str>,
) -> Result<Response, ApiError> {
    if name != state.model_name {
        return Err(ApiError::NotFound(format!("unknown model {name}")));
    }
    let (ready, version_status) = match state.loaded.get() {
        None => (
            false,
            json!({"version": version.unwrap_or(""), "state": "LOADING",
                   "status": {"error_code": "UNAVAILABLE", "error_message": "model is loading"}}),
        ),
        Some(loaded) => {
            let loaded_version = loaded.info.version.as_str();
            if let Some(v) = version
                && v != loaded_version
            {
                return Err(ApiError::NotFound(format!(
                    "model {name} has no version {v}"
                )));
            }
            (
                true,
                json!({"version": loaded_version, "state": "AVAILABLE",
                       "status": {"error_code": "OK", "error_message": ""}}),
            )
        }
    };
    let mut body = super::openai::model_object(name);
    body["name"] = json!(name);
    body["ready"] = json!(ready);
    body["model_version_status"] = json!([version_status]);
    Ok(Json(body).into_response())
}

pub async fn status(
    State(s): State<SharedState>,
    Params(name): Params<String>,
) -> Result<Response, ApiError> {
    status_body(&s, &name, None)
}

pub async fn status_version(
    State(s): State<SharedState>,
    Params((name, version)): Params<(String, String)>,
) -> Result<Response, ApiError> {
    status_body(&s, &name, Some(&version))
}
