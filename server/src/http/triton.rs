//! Triton's model configuration and statistics extensions, asked for by common V2 tooling
//! (tritonclient's `get_model_config` / `get_inference_statistics`, perf_analyzer):
//! `GET /v2/models/{name}[/versions/{v}]/config` and `.../stats`.

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use super::path::Params;
use super::{Loaded, SharedState};
use crate::cli::Format;
use crate::error::ApiError;

/// The model configuration, as Triton's `ModelConfig` in JSON. Shapes leave out the batch
/// dimension, as Triton does when `max_batch_size` > 0.
pub fn model_config(loaded: &Loaded) -> Value {
    let info = &loaded.info;
    let (input, output) = match info.format {
        Format::Sequential => (
            json!({"name": "input", "data_type": "TYPE_FP32", "format": "FORMAT_NONE",
                   "dims": [info.input_size]}),
            json!({"name": "output", "data_type": "TYPE_FP32", "dims": [info.output_size]}),
        ),
        Format::Bert => (
            // One string per example: [-1] once the batch dimension is added.
            json!({"name": "text", "data_type": "TYPE_STRING", "format": "FORMAT_NONE",
                   "dims": [1], "reshape": {"shape": []}}),
            json!({"name": "embedding", "data_type": "TYPE_FP32", "dims": [info.output_size]}),
        ),
        Format::Gguf => (
            // Text in, text out (the KServe generate extension's shape).
            json!({"name": "text_input", "data_type": "TYPE_STRING", "format": "FORMAT_NONE",
                   "dims": [1], "reshape": {"shape": []}}),
            json!({"name": "text_output", "data_type": "TYPE_STRING", "dims": [1]}),
        ),
    };
    json!({
        "name": info.name,
        "platform": format!("sconce-candle-{}", info.format.as_str()),
        "backend": "sconce",
        "version_policy": {"specific": {"versions": [info.version]}},
        "max_batch_size": loaded.batch.max_batch_size,
        "input": [input],
        "output": [output],
        "dynamic_batching": {
            "max_queue_delay_microseconds": loaded.batch.max_batch_delay.as_micros() as u64,
        },
        "instance_group": [{"name": info.name, "kind": "KIND_CPU", "count": 1}],
    })
}

fn config_of(s: &SharedState, name: &str, version: Option<&str>) -> Result<Json<Value>, ApiError> {
    Ok(Json(model_config(s.model(name, version)?)))
}

pub async fn config(
    State(s): State<SharedState>,
    Params(name): Params<String>,
) -> Result<Json<Value>, ApiError> {
    config_of(&s, &name, None)
}

pub async fn config_version(
    State(s): State<SharedState>,
    Params((name, version)): Params<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    config_of(&s, &name, Some(&version))
}

fn stats_of(s: &SharedState, name: &str, version: Option<&str>) -> Result<Json<Value>, ApiError> {
    let info = &s.model(name, version)?.info;
    Ok(Json(
        json!({"model_stats": [s.stats.to_json(&info.name, &info.version)]}),
    ))
}

pub async fn stats(
    State(s): State<SharedState>,
    Params(name): Params<String>,
) -> Result<Json<Value>, ApiError> {
    stats_of(&s, &name, None)
}

pub async fn stats_version(
    State(s): State<SharedState>,
    Params((name, version)): Params<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    stats_of(&s, &name, Some(&version))
}
