//! `spec.rollout`, `spec.traffic` and the rollout part of the status: how a new model version
//! reaches users (canary steps judged on live traffic) and what happened to earlier ones.
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// How a change of `spec.model.version` reaches users.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RolloutSpec {
    /// `Canary` (the default when `steps` is set): the new version gets traffic step by step and
    /// is judged on it. `Immediate`: the new version starts beside the old one, which goes once
    /// the new one is ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strategy: Option<RolloutStrategy>,

    /// Canary steps, in order, e.g. `[{setWeight: 10}, {pause: {duration: 60s}}, {setWeight: 50},
    /// {pause: {}}]`. Weights are percentages and must increase; a pause without a duration
    /// waits for `kubectl annotate mdep NAME sconce.dev/promote=<any new value>`. After the last
    /// step the new version is promoted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<RolloutStep>,

    /// Automated analysis of live traffic, judged every `interval` while a canary runs; failing
    /// it rolls the canary back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<AnalysisSpec>,

    /// How long a canary may take to become ready at each step before the rollout fails and
    /// rolls back, e.g. `10m` (the default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress_deadline: Option<String>,

    /// How many finished rollouts `status.history` keeps (default 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100))]
    pub revision_history_limit: Option<i32>,
}

/// Rollout strategies.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum RolloutStrategy {
    Canary,
    Immediate,
}

/// One canary step: exactly one of `setWeight` and `pause`.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RolloutStep {
    /// Percentage of traffic (0-100) for the new version. Without `spec.traffic.httpRoute` the
    /// new version gets `ceil(weight% x replicas)` pods beside the old version's `replicas`
    /// behind the shared Service, so its share of requests is canary/(canary+stable) pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub set_weight: Option<i32>,

    /// Wait: for `duration` (e.g. `60s`, `5m`), or until promoted when it has none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pause: Option<PauseStep>,
}

/// A pause step.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PauseStep {
    /// How long to wait, e.g. `30s`, `5m`, `1h`. Without it the rollout waits for a promote.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<String>,
}

/// Judging a canary on live traffic, from the serving pods' own `/metrics` (no Prometheus).
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisSpec {
    /// How often to judge, e.g. `30s` (the default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<String>,

    /// Requests the canary must answer in an interval before the interval counts (default 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub min_requests: Option<i64>,

    /// Highest acceptable share (0-1) of the canary's requests answered with an error: 5xx, and
    /// 4xx other than 429 (a version that refuses what clients send is broken for them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub max_error_rate: Option<f64>,

    /// Highest acceptable 99th-percentile latency of the canary, e.g. `500ms`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_latency_p99: Option<String>,

    /// Consecutive failed intervals before the canary is rolled back (default 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100))]
    pub failure_limit: Option<i32>,

    /// Compared with stable in the same interval: the canary's error rate may exceed stable's by
    /// at most this much (0-1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub max_error_rate_increase: Option<f64>,

    /// Compared with stable in the same interval: the canary's p99 latency may be at most this
    /// many times stable's, e.g. `1.5`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1.0))]
    pub max_latency_ratio: Option<f64>,
}

/// Where traffic is split between versions.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TrafficSpec {
    /// Name of a Gateway API `HTTPRoute` (gateway.networking.k8s.io/v1) in the same namespace,
    /// created by you with its parentRefs and matches. The operator owns the `backendRefs` of
    /// its rules: per-version Services `<name>-<version>` with the rollout's exact weights, a
    /// version getting weight only once it has ready endpoints.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_route: Option<String>,
}

/// Where a rollout stands.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum RolloutPhase {
    /// A canary step is in effect: the canary is scaling to its weight.
    Progressing,
    /// A pause step: timed, or waiting for a promote.
    Paused,
    /// All steps passed: the canary takes all traffic, then becomes stable.
    Promoting,
    /// The last rollout promoted its version.
    Succeeded,
    /// The last rollout was rolled back (analysis, an abort, or the version set back).
    RolledBack,
    /// The last rollout's canary did not become ready before `progressDeadline`; rolled back.
    Failed,
}

/// The rollout bookkeeping in `status` (the operator resumes from it after a restart).
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RolloutStatus {
    /// Index into `spec.rollout.steps` of the step in effect (equal to the number of steps
    /// while promoting).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_step: Option<i32>,
    /// When the current step started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_started: Option<Time>,
    /// When the canary started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started: Option<Time>,
    /// The `sconce.dev/promote` annotation value acted on last (each value acts once).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promoted_by: Option<String>,
    /// The `sconce.dev/abort` annotation value acted on last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aborted_by: Option<String>,
    /// Why the last rollout ended the way it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// `spec.model.uri` of the version being rolled out, for the history.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary_uri: Option<String>,
    /// The `metadata.generation` the last rollout ended at: a rolled-back version is not tried
    /// again until the spec changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_generation: Option<i64>,
}

/// The last analysis interval.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisStatus {
    /// When the interval ended.
    pub time: Time,
    /// `Pass`, `Fail` or `Inconclusive` (too few requests, or pods that did not answer).
    pub verdict: String,
    /// What decided the verdict.
    pub message: String,
    /// Failed intervals in a row (the canary is rolled back at `failureLimit`).
    #[serde(default)]
    pub consecutive_failures: i32,
    /// The canary's figures for the interval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<VersionFigures>,
    /// Stable's figures for the interval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stable: Option<VersionFigures>,
}

/// One version's traffic in an analysis interval.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VersionFigures {
    pub version: String,
    pub requests: i64,
    /// Share of errors (5xx, and 4xx other than 429), e.g. `0.0123`, as a string.
    pub error_rate: String,
    /// 99th-percentile latency estimated from the server's histogram, e.g. `12ms`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_p99: Option<String>,
    /// Pods scraped out of the version's ready pods.
    pub pods: String,
}

/// One finished (or superseded) rollout.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HistoryEntry {
    pub version: String,
    pub uri: String,
    pub started: Time,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished: Option<Time>,
    /// `Succeeded`, `RolledBack`, `Failed` or `Superseded` (another version was asked for).
    pub outcome: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}
