//! The Open Inference Protocol (KServe V2) request and response bodies, as this server reads and
//! writes them.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;

/// The `parameters` this server reads; others are accepted and ignored. Values stay JSON so a
/// wrong type gets this server's own error message.
#[derive(Debug, Default, Deserialize)]
pub struct Parameters {
    #[serde(default)]
    pub binary_data_size: Option<Value>,
    #[serde(default)]
    pub binary_data: Option<Value>,
    #[serde(default)]
    pub binary_data_output: Option<Value>,
}

#[derive(Debug, Deserialize)]
pub struct InferRequest<'a> {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub parameters: Option<Parameters>,
    #[serde(borrow)]
    pub inputs: Vec<RequestInput<'a>>,
    #[serde(default)]
    pub outputs: Option<Vec<RequestOutput>>,
}

#[derive(Debug, Deserialize)]
pub struct RequestInput<'a> {
    pub name: String,
    pub shape: Vec<i64>,
    pub datatype: String,
    #[serde(default)]
    pub parameters: Option<Parameters>,
    /// Kept as text and flattened by `json_numbers` (much faster than a serde visitor).
    #[serde(default, borrow)]
    pub data: Option<&'a RawValue>,
}

#[derive(Debug, Deserialize)]
pub struct RequestOutput {
    pub name: String,
    #[serde(default)]
    pub parameters: Option<Parameters>,
}

#[derive(Serialize)]
pub struct InferResponse<'a> {
    pub model_name: &'a str,
    pub model_version: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub outputs: Vec<ResponseOutput>,
}

#[derive(Serialize)]
pub struct ResponseOutput {
    pub name: &'static str,
    pub datatype: &'static str,
    pub shape: [usize; 2],
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<Vec<f32>>,
}
