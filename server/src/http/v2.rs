//! Open Inference Protocol (KServe V2) REST.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::HeaderMap;
use axum::response::Response;
use serde_json::{Value, json};

use super::json_numbers::parse_data;
use super::path::Params;
use super::ranges;
use super::tensor::TensorData;
use super::tensor::{Values, decode_binary, is_known_datatype};
use super::v2_binary::{BinaryOut, split_body};
use super::v2_splice::splice;
use super::v2_types::{InferRequest, InferResponse, RequestInput, ResponseOutput};
use super::{SharedState, body, parse_json};
use crate::cli::Format;
use crate::engine::{Input, Output};
use crate::error::ApiError;
use crate::model::ModelInfo;

/// Input and output tensor names, datatypes and shapes of the served model.
pub fn io_spec(info: &ModelInfo) -> (Value, Value) {
    match info.format {
        Format::Sequential => (
            json!({"name": "input", "datatype": "FP32", "shape": [-1, info.input_size]}),
            json!({"name": "output", "datatype": "FP32", "shape": [-1, info.output_size]}),
        ),
        Format::Bert => (
            json!({"name": "text", "datatype": "BYTES", "shape": [-1]}),
            json!({"name": "embedding", "datatype": "FP32", "shape": [-1, info.output_size]}),
        ),
        // The KServe generate extension's fields.
        Format::Gguf => (
            json!({"name": "text_input", "datatype": "BYTES", "shape": [1]}),
            json!({"name": "text_output", "datatype": "BYTES", "shape": [1]}),
        ),
    }
}

fn output_name(format: Format) -> &'static str {
    match format {
        Format::Sequential => "output",
        Format::Bert => "embedding",
        Format::Gguf => "text_output",
    }
}

pub async fn server_metadata() -> Json<Value> {
    Json(json!({
        "name": "sconce-server",
        "version": env!("CARGO_PKG_VERSION"),
        "extensions": ["binary_tensor_data"],
    }))
}

fn metadata(
    state: &SharedState,
    name: &str,
    version: Option<&str>,
) -> Result<Json<Value>, ApiError> {
    let info = &state.model(name, version)?.info;
    let (input, output) = io_spec(info);
    Ok(Json(json!({
        "name": info.name,
        "versions": [info.version],
        "platform": format!("sconce-candle-{}", info.format.as_str()),
        "inputs": [input],
        "outputs": [output],
    })))
}

pub async fn model_metadata(
    State(s): State<SharedState>,
    Params(name): Params<String>,
) -> Result<Json<Value>, ApiError> {
    metadata(&s, &name, None)
}

pub async fn model_metadata_version(
    State(s): State<SharedState>,
    Params((name, version)): Params<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    metadata(&s, &name, Some(&version))
}

fn ready(state: &SharedState, name: &str, version: Option<&str>) -> Result<Json<Value>, ApiError> {
    let info = &state.model(name, version)?.info;
    Ok(Json(json!({"name": info.name, "ready": true})))
}

pub async fn model_ready(
    State(s): State<SharedState>,
    Params(name): Params<String>,
) -> Result<Json<Value>, ApiError> {
    ready(&s, &name, None)
}

pub async fn model_ready_version(
    State(s): State<SharedState>,
    Params((name, version)): Params<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    ready(&s, &name, Some(&version))
}

pub async fn infer(
    State(s): State<SharedState>,
    Params(name): Params<String>,
    headers: HeaderMap,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let raw = body(raw)?;
    run_infer(&s, &name, None, &headers, raw).await
}

pub async fn infer_version(
    State(s): State<SharedState>,
    Params((name, version)): Params<(String, String)>,
    headers: HeaderMap,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let raw = body(raw)?;
    run_infer(&s, &name, Some(&version), &headers, raw).await
}

async fn run_infer(
    state: &SharedState,
    name: &str,
    version: Option<&str>,
    headers: &HeaderMap,
    raw: Bytes,
) -> Result<Response, ApiError> {
    let loaded = state.model(name, version)?;
    let info = &loaded.info;
    let (json_part, binary_part) = split_body(headers, &raw)?;
    let (spliced_json, spliced_data) = match splice(json_part) {
        Some(s) => (Some(s.json), s.data),
        None => (None, Vec::new()),
    };
    let req: InferRequest = parse_json(spliced_json.as_deref().unwrap_or(json_part))?;
    let outputs = requested_outputs(&req, info.format)?;
    let input = to_engine_input(req.inputs, spliced_data, binary_part, info)?;
    let result = loaded.engine.infer(input).await?;
    let (data, cols) = match result {
        Output::Dense { data, cols } => (data, cols),
        Output::Embeddings { data, dim, .. } => (data, dim),
    };
    let rows = data.len().checked_div(cols).unwrap_or(0);
    let mut response = InferResponse {
        model_name: &info.name,
        model_version: &info.version,
        id: req.id,
        outputs: Vec::new(),
    };
    let mut blobs = BinaryOut::default();
    if outputs.include {
        let mut out = ResponseOutput {
            name: output_name(info.format),
            datatype: "FP32",
            shape: [rows, cols],
            parameters: None,
            data: None,
        };
        if outputs.binary {
            let size = blobs.push_f32(&data);
            out.parameters = Some(json!({"binary_data_size": size}));
        } else {
            out.data = Some(data);
        }
        response.outputs.push(out);
    }
    let header = serde_json::to_vec(&response)
        .map_err(|e| ApiError::Inference(format!("encoding response: {e}")))?;
    Ok(blobs.into_response(header))
}

struct OutputChoice {
    include: bool,
    binary: bool,
}

/// A boolean parameter `key` (its value from `Parameters`), if given.
fn flag(value: Option<&Value>, key: &str) -> Result<Option<bool>, ApiError> {
    match value {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(other) => Err(ApiError::bad(format!(
            "parameter {key} must be a boolean, got {other}"
        ))),
    }
}

fn requested_outputs(req: &InferRequest, format: Format) -> Result<OutputChoice, ApiError> {
    let default_binary = flag(
        req.parameters
            .as_ref()
            .and_then(|p| p.binary_data_output.as_ref()),
        "binary_data_output",
    )?
    .unwrap_or(false);
    let name = output_name(format);
    match &req.outputs {
        None => Ok(OutputChoice {
            include: true,
            binary: default_binary,
        }),
        Some(list) if list.is_empty() => Ok(OutputChoice {
            include: true,
            binary: default_binary,
        }),
        Some(list) => {
            let mut choice = OutputChoice {
                include: false,
                binary: default_binary,
            };
            for o in list {
                if o.name != name {
                    return Err(ApiError::bad(format!(
                        "unknown output {:?}; this model has output {name:?}",
                        o.name
                    )));
                }
                choice.include = true;
                if let Some(b) = flag(
                    o.parameters.as_ref().and_then(|p| p.binary_data.as_ref()),
                    "binary_data",
                )? {
                    choice.binary = b;
                }
            }
            Ok(choice)
        }
    }
}

/// Checks one input tensor against its declared shape and datatype and returns its values.
/// `spliced` is its `data` if `v2_splice` already took it out of the body.
fn decode_input(
    input: RequestInput<'_>,
    spliced: Option<TensorData>,
    binary: &mut &[u8],
) -> Result<(Vec<usize>, Values), ApiError> {
    let RequestInput {
        name,
        shape,
        datatype,
        parameters,
        data,
    } = input;
    if !is_known_datatype(&datatype) {
        return Err(ApiError::bad(format!(
            "input {name}: unknown datatype {datatype}"
        )));
    }
    let mut dims = Vec::with_capacity(shape.len());
    for d in &shape {
        let d = usize::try_from(*d).map_err(|_| {
            ApiError::bad(format!(
                "input {name}: negative dimension in shape {shape:?}"
            ))
        })?;
        dims.push(d);
    }
    let expected = dims
        .iter()
        .try_fold(1usize, |acc, d| acc.checked_mul(*d))
        .ok_or_else(|| ApiError::bad(format!("input {name}: shape {shape:?} is too large")))?;
    let binary_size = match parameters
        .as_ref()
        .and_then(|p| p.binary_data_size.as_ref())
    {
        None => None,
        Some(v) => Some(v.as_u64().ok_or_else(|| {
            ApiError::bad(format!(
                "input {name}: binary_data_size must be a non-negative integer"
            ))
        })? as usize),
    };
    let data = match (spliced, data) {
        (Some(t), _) => Some(t),
        (None, Some(raw)) => {
            Some(parse_data(raw).map_err(|e| ApiError::bad(format!("input {name}: {e}")))?)
        }
        (None, None) => None,
    };
    let values = match (binary_size, data) {
        (Some(_), Some(_)) => {
            return Err(ApiError::bad(format!(
                "input {name} has both data and binary_data_size"
            )));
        }
        (None, None) => return Err(ApiError::bad(format!("input {name} has no data"))),
        (Some(size), None) => {
            if binary.len() < size {
                return Err(ApiError::bad(format!(
                    "input {name}: binary_data_size {size} exceeds the {} binary bytes left",
                    binary.len()
                )));
            }
            let (mine, rest) = binary.split_at(size);
            *binary = rest;
            decode_binary(&datatype, mine, &dims)
                .map_err(|e| ApiError::bad(format!("input {name}: {e}")))?
        }
        (None, Some(t)) => {
            let is_bytes = datatype == "BYTES";
            match &t.values {
                Values::Bytes(_) if !is_bytes => {
                    return Err(ApiError::bad(format!(
                        "input {name}: datatype {datatype} needs numbers, got strings"
                    )));
                }
                Values::Num(v) if is_bytes && !v.is_empty() => {
                    return Err(ApiError::bad(format!(
                        "input {name}: datatype BYTES needs strings, got numbers"
                    )));
                }
                _ => {}
            }
            let integral =
                datatype.starts_with("INT") || datatype.starts_with("UINT") || datatype == "BOOL";
            if integral && t.saw_float {
                return Err(ApiError::bad(format!(
                    "input {name}: datatype {datatype} needs integers"
                )));
            }
            if t.saw_bool && datatype != "BOOL" {
                return Err(ApiError::bad(format!(
                    "input {name}: booleans need datatype BOOL, not {datatype}"
                )));
            }
            if let Values::Num(nums) = &t.values {
                ranges::check(&datatype, &dims, &t.extremes, nums)
                    .map_err(|e| ApiError::bad(format!("input {name}: {e}")))?;
            }
            if is_bytes && let Values::Num(_) = t.values {
                Values::Bytes(Vec::new())
            } else {
                t.values
            }
        }
    };
    if values.len() != expected {
        return Err(ApiError::bad(format!(
            "input {name}: shape {shape:?} needs {expected} elements, got {}",
            values.len()
        )));
    }
    Ok((dims, values))
}

fn to_engine_input(
    inputs: Vec<RequestInput<'_>>,
    spliced: Vec<Option<TensorData>>,
    mut binary: &[u8],
    info: &ModelInfo,
) -> Result<Input, ApiError> {
    let (want, _) = io_spec(info);
    let want_name = want["name"].as_str().unwrap_or_default().to_string();
    if inputs.len() != 1 {
        return Err(ApiError::bad(format!(
            "expected exactly one input named {want_name:?}, got {}",
            inputs.len()
        )));
    }
    let mut inputs = inputs;
    let Some(input) = inputs.pop() else {
        return Err(ApiError::bad("no inputs"));
    };
    if input.name != want_name {
        return Err(ApiError::bad(format!(
            "unknown input {:?}; this model takes {want_name:?}",
            input.name
        )));
    }
    let (dims, values) = decode_input(input, spliced.into_iter().next().flatten(), &mut binary)?;
    if !binary.is_empty() {
        return Err(ApiError::bad(format!(
            "{} bytes of binary data are not claimed by any input",
            binary.len()
        )));
    }
    match (info.format, values) {
        (Format::Sequential, Values::Num(data)) => {
            if dims.len() != 2 || dims[1] != info.input_size {
                return Err(ApiError::bad(format!(
                    "input shape {dims:?} does not match [-1, {}]",
                    info.input_size
                )));
            }
            if dims[0] == 0 {
                return Err(ApiError::bad("input has no rows"));
            }
            Ok(Input::Dense {
                data,
                rows: dims[0],
            })
        }
        (Format::Bert, Values::Bytes(items)) => {
            if dims.len() != 1 {
                return Err(ApiError::bad(format!(
                    "input shape {dims:?} does not match [-1]"
                )));
            }
            texts(items).map(Input::Text)
        }
        (Format::Sequential, Values::Bytes(_)) => Err(ApiError::bad(
            "input datatype must be numeric (FP32, FP64, INT*, ...)",
        )),
        (Format::Bert, Values::Num(_)) => Err(ApiError::bad("input datatype must be BYTES")),
        (Format::Gguf, _) => Err(ApiError::bad(super::generate::USE_GENERATE)),
    }
}

/// Most texts one request may carry (each is a full BERT forward pass on the model thread).
pub const MAX_TEXTS: usize = 2048;

/// BYTES elements as UTF-8 strings.
pub fn texts(items: Vec<Vec<u8>>) -> Result<Vec<String>, ApiError> {
    if items.is_empty() {
        return Err(ApiError::bad("input has no texts"));
    }
    if items.len() > MAX_TEXTS {
        return Err(ApiError::bad(format!(
            "{} texts in one request; the limit is {MAX_TEXTS}",
            items.len()
        )));
    }
    items
        .into_iter()
        .map(|b| String::from_utf8(b).map_err(|_| ApiError::bad("BYTES element is not UTF-8")))
        .collect()
}
