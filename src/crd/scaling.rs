//! `spec.scaling` and `status.scaling`: replicas decided from the load the serving pods see.
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Autoscaling on live load, Knative-KPA style: the operator reads each ready pod's
/// `/metrics`, averages over a stable window (and a short panic window for spikes) and sets the
/// replica count between `minReplicas` and `maxReplicas`. `spec.replicas` is then only the
/// starting point; decisions go to `status.desiredReplicas`, never to `spec`.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScalingSpec {
    /// Fewest replicas (at least 1; the default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000))]
    pub min_replicas: Option<i32>,

    /// Most replicas (at most 1000; default 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000))]
    pub max_replicas: Option<i32>,

    /// What to scale on: `concurrency` (requests in flight, the default) or `rps` (requests
    /// answered per second).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric: Option<ScalingMetric>,

    /// The metric's value one replica should carry (default 10 for concurrency, 100 for rps).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<f64>,

    /// The window the metric is averaged over (default `60s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stable_window: Option<String>,

    /// The short window that detects spikes (default `6s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub panic_window: Option<String>,

    /// Panic when the panic window's average asks for this many times the ready replicas
    /// (default 2.0); in panic the replica count only goes up, until a stable window without it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub panic_threshold: Option<f64>,

    /// At most this many times the ready replicas in one decision (default 1000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_scale_up_rate: Option<f64>,

    /// A lower replica count applies only once it has been asked for this long (default `30s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_down_delay: Option<String>,
}

#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ScalingMetric {
    Concurrency,
    Rps,
}

impl ScalingMetric {
    pub fn as_str(self) -> &'static str {
        match self {
            ScalingMetric::Concurrency => "concurrency",
            ScalingMetric::Rps => "rps",
        }
    }
}

/// The autoscaler's last look.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScalingStatus {
    /// `concurrency` or `rps`.
    pub metric: String,
    /// The metric over all ready pods, averaged over the stable window, e.g. `12.5`.
    pub stable_average: String,
    /// The same over the panic window.
    pub panic_average: String,
    /// Whether the autoscaler is in panic mode (only scaling up).
    pub panic: bool,
    /// When the replica count last changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_change: Option<Time>,
    /// Why the current count.
    pub reason: String,
}
