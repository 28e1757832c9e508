// kube's printcolumn(...) arguments repeat `type_ = "string"`; clippy mistakes them for attributes.
#![allow(clippy::duplicated_attributes)]

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{EnvVar, ResourceRequirements, Toleration};
use k8s_openapi::api::networking::v1::NetworkPolicyPeer;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;

pub use super::rollout::{
    AnalysisSpec, AnalysisStatus, HistoryEntry, PauseStep, RolloutPhase, RolloutSpec,
    RolloutStatus, RolloutStep, RolloutStrategy, TrafficSpec, VersionFigures,
};
pub use super::scaling::{ScalingMetric, ScalingSpec, ScalingStatus};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A machine-learning model served over HTTP by Sconce's inference server.
///
/// The operator turns it into one Deployment per model version (`<name>-<version>`) and a Service
/// `<name>` that routes to the serving pods.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "sconce.dev",
    version = "v1alpha1",
    kind = "ModelDeployment",
    plural = "modeldeployments",
    shortname = "mdep",
    category = "sconce",
    namespaced,
    status = "ModelDeploymentStatus",
    derive = "PartialEq",
    doc = "A machine-learning model served over HTTP by Sconce's inference server.",
    scale(
        spec_replicas_path = ".spec.replicas",
        status_replicas_path = ".status.replicas",
        label_selector_path = ".status.selector"
    ),
    printcolumn(name = "Model", type_ = "string", json_path = ".status.model"),
    printcolumn(name = "Version", type_ = "string", json_path = ".spec.model.version"),
    printcolumn(name = "Stable", type_ = "string", json_path = ".status.stableVersion"),
    printcolumn(name = "Canary", type_ = "string", json_path = ".status.canaryVersion"),
    printcolumn(name = "Weight", type_ = "integer", json_path = ".status.canaryWeight"),
    printcolumn(
        name = "Desired",
        type_ = "integer",
        json_path = ".status.desiredReplicas"
    ),
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.readyText"),
    printcolumn(name = "Status", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Rollout", type_ = "string", json_path = ".status.rolloutPhase"),
    printcolumn(
        name = "URL",
        type_ = "string",
        json_path = ".status.url",
        priority = "1"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct ModelDeploymentSpec {
    /// Which model to serve: where it lives, its format and version.
    pub model: ModelSpec,

    /// Number of serving pods for the current version.
    #[serde(default = "default_replicas")]
    #[schemars(range(min = 0, max = 1000))]
    pub replicas: i32,

    /// How the serving pods run: image, resources, scheduling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime: Option<RuntimeSpec>,

    /// How a new `spec.model.version` reaches users: at once (the default) or as a canary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<RolloutSpec>,

    /// Where traffic is split between versions during a rollout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traffic: Option<TrafficSpec>,

    /// Autoscaling on live load (requests in flight or per second); without it `replicas` rules.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scaling: Option<ScalingSpec>,
    /// Who may call the model's API: clients must present an API key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<AuthSpec>,

    /// Which pods may reach the serving pods: a NetworkPolicy `<name>` allowing only these
    /// clients and the operator (it reads the pods' `/metrics`). Without it, nothing is restricted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_policy: Option<NetworkPolicySpec>,
}

fn default_replicas() -> i32 {
    1
}

/// The model to serve.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ModelSpec {
    /// Name the model is served under (`/v2/models/<name>`). Defaults to the ModelDeployment's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    )]
    pub name: Option<String>,

    /// Version label of the model, e.g. `"3"`, `"1.2.0"` or `"2024-06-01"`. Changing it rolls out
    /// a new Deployment `<name>-<version>`. Lower-case letters, digits, `.`, `-` and `_`, starting
    /// and ending with a letter or digit; `.` and `_` become `-` in object names, so `1.0` and
    /// `1-0` name the same Deployment.
    #[schemars(
        length(min = 1, max = 40),
        regex(pattern = r"^[a-z0-9]([a-z0-9._-]*[a-z0-9])?$")
    )]
    pub version: String,

    /// Where the model directory lives: `file:///abs/path` (a directory on the node),
    /// `pvc://<claim>/<path>` (a PersistentVolumeClaim), `http(s)://...` or `s3://bucket/prefix`
    /// (downloaded by the server at start-up).
    #[schemars(length(min = 1, max = 2048))]
    pub uri: String,

    /// Model format, see docs/model-format.md: `sequential` (dense network, config.json +
    /// model.safetensors) or `bert` (a sentence-transformers directory).
    pub format: ModelFormat,

    /// Expected SHA-256 (64 hex digits) of the downloaded `model.safetensors`; the server refuses
    /// to start on a mismatch. Only for `http(s)://` and `s3://` URIs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9a-fA-F]{64}$"))]
    pub sha256: Option<String>,
}

/// Supported model formats.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ModelFormat {
    /// A dense feed-forward network: config.json + model.safetensors.
    Sequential,
    /// A sentence-transformers BERT encoder producing embeddings.
    Bert,
    /// A quantized decoder-only language model: one llama.cpp GGUF file (Llama architecture),
    /// served with OpenAI chat/completions and KServe generate.
    Gguf,
}

impl ModelFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            ModelFormat::Sequential => "sequential",
            ModelFormat::Bert => "bert",
            ModelFormat::Gguf => "gguf",
        }
    }
}

/// How the serving pods run.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RuntimeSpec {
    /// Container image of the inference server. Defaults to the operator's `--server-image`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub image: Option<String>,

    /// When the node pulls the image: `IfNotPresent` (the default), `Always` or `Never` (the
    /// image must already be on the node).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<ImagePullPolicy>,

    /// CPU/memory requests and limits of the server container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,

    /// Extra environment variables for the server container (e.g. `SCONCE_MAX_BATCH_SIZE`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,

    /// Node labels the serving pods must be scheduled on.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,

    /// Tolerations of the serving pods.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,

    /// Service account of the serving pods (e.g. one with access to the model bucket).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_name: Option<String>,

    /// Port the server listens on inside the pod. Defaults to 8080.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: Option<i32>,
}

/// API key authentication: every route except `/v2/health/*` and `/metrics` then needs
/// `Authorization: Bearer <key>` (OpenAI clients send their `api_key` so).
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuthSpec {
    /// The Secret holding the key. It is mounted into the serving pods as a read-only file and
    /// passed to the server as `--api-key-file`: never put in environment variables, arguments,
    /// logs or events. The server reads it at start-up: after changing the key, restart the
    /// pods (`kubectl rollout restart deployment/<name>-<version>`).
    pub api_key_secret: ApiKeySecret,
}

/// A key of a Secret in the ModelDeployment's namespace.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApiKeySecret {
    /// Name of the Secret.
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
    )]
    pub name: String,

    /// Key in the Secret whose value is the API key (default `api-key`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253), regex(pattern = r"^[-._a-zA-Z0-9]+$"))]
    pub key: Option<String>,
}

impl ApiKeySecret {
    pub fn key_or_default(&self) -> &str {
        self.key.as_deref().unwrap_or("api-key")
    }
}

/// The NetworkPolicy of the serving pods.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NetworkPolicySpec {
    /// Clients allowed to reach the server's port, as NetworkPolicy peers (`podSelector`,
    /// `namespaceSelector`, `ipBlock`). Empty: no client, only the operator. The cluster's
    /// network plugin must enforce NetworkPolicies for this to take effect.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_from: Vec<NetworkPolicyPeer>,
}

/// Kubernetes' image pull policies.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum ImagePullPolicy {
    Always,
    IfNotPresent,
    Never,
}

impl ImagePullPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            ImagePullPolicy::Always => "Always",
            ImagePullPolicy::IfNotPresent => "IfNotPresent",
            ImagePullPolicy::Never => "Never",
        }
    }
}

/// Observed state, written by the operator only.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ModelDeploymentStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// `Ready`, `Progressing` and `Degraded`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,

    /// Pods of the current version's Deployment.
    #[serde(default)]
    pub replicas: i32,

    /// Ready pods of the current version's Deployment.
    #[serde(default)]
    pub ready_replicas: i32,

    /// `ready/desired`, for `kubectl get`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_text: Option<String>,

    /// One word summary for `kubectl get`: `Ready`, `Progressing`, `Degraded` or `Pending`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,

    /// Name the model is served under.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,

    /// The model version that last became fully ready (the same as `stableVersion`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_version: Option<String>,

    /// The version serving users; during a rollout, the one being replaced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stable_version: Option<String>,

    /// The version being rolled out, while a rollout runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary_version: Option<String>,

    /// The canary's traffic weight (percent) in the current step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary_weight: Option<i32>,

    /// `Progressing`, `Paused`, `Promoting` while a rollout runs; `Succeeded`, `RolledBack` or
    /// `Failed` for the last one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout_phase: Option<RolloutPhase>,

    /// The current rollout's step and timing (the operator resumes from it after a restart).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<RolloutStatus>,

    /// The last analysis interval of the current rollout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<AnalysisStatus>,

    /// The replica count the autoscaler decided (with `spec.scaling`), else `spec.replicas`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired_replicas: Option<i32>,

    /// The autoscaler's last look, with `spec.scaling`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scaling: Option<ScalingStatus>,

    /// Finished rollouts, newest first, at most `spec.rollout.revisionHistoryLimit`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<HistoryEntry>,

    /// In-cluster base URL of the model's Service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,

    /// Label selector of the serving pods (for the scale subresource and autoscalers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
}

impl ModelDeployment {
    /// The name the model is served under.
    pub fn served_name(&self) -> String {
        self.spec
            .model
            .name
            .clone()
            .or_else(|| self.metadata.name.clone())
            .unwrap_or_default()
    }
}
