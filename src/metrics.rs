//! Operator metrics, owned by the controller's context (no globals).
use std::sync::Mutex;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

use crate::api_requests::ApiRequestLabels;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub category: String,
}

/// One ModelDeployment.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ModelLabels {
    pub namespace: String,
    pub name: String,
}

pub struct Metrics {
    registry: Mutex<Registry>,
    pub reconciliations: Counter,
    pub errors: Family<ErrorLabels, Counter>,
    pub duration: Histogram,
    /// Per ModelDeployment: replicas asked for, ready pods, and the autoscaler's metric.
    pub desired_replicas: Family<ModelLabels, Gauge>,
    pub ready_replicas: Family<ModelLabels, Gauge>,
    pub scaling_metric: Family<ModelLabels, Gauge<f64, AtomicU64>>,
    /// 1 while this replica holds the leader Lease (or runs without leader election).
    pub leader: Gauge,
    /// The operator's requests to the apiserver.
    pub api_requests: Family<ApiRequestLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("sconce_operator");
        let reconciliations = Counter::default();
        let errors = Family::<ErrorLabels, Counter>::default();
        let duration = Histogram::new(exponential_buckets(0.005, 2.0, 12));
        registry.register(
            "reconciliations",
            "Reconciliations started",
            reconciliations.clone(),
        );
        registry.register(
            "reconcile_errors",
            "Failed reconciliations by error category",
            errors.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Time spent in one reconciliation",
            duration.clone(),
        );
        let desired_replicas = Family::<ModelLabels, Gauge>::default();
        let ready_replicas = Family::<ModelLabels, Gauge>::default();
        let scaling_metric = Family::<ModelLabels, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "desired_replicas",
            "Replicas a ModelDeployment asks for (spec.replicas or the autoscaler's decision)",
            desired_replicas.clone(),
        );
        registry.register(
            "ready_replicas",
            "Ready pods of a ModelDeployment's stable version",
            ready_replicas.clone(),
        );
        registry.register(
            "scaling_metric",
            "The autoscaler's metric (concurrency or rps over all ready pods), stable-window average",
            scaling_metric.clone(),
        );
        let leader = Gauge::default();
        registry.register(
            "leader",
            "1 while this replica reconciles (holds the leader Lease)",
            leader.clone(),
        );
        let api_requests = Family::<ApiRequestLabels, Counter>::default();
        registry.register(
            "apiserver_requests",
            "Requests the operator sent to the apiserver, by verb and resource",
            api_requests.clone(),
        );
        Metrics {
            registry: Mutex::new(registry),
            reconciliations,
            errors,
            duration,
            desired_replicas,
            ready_replicas,
            scaling_metric,
            leader,
            api_requests,
        }
    }
}

impl Metrics {
    pub fn observe(&self, elapsed: Duration) {
        self.duration.observe(elapsed.as_secs_f64());
    }

    pub fn api_request(&self, labels: ApiRequestLabels) {
        self.api_requests.get_or_create(&labels).inc();
    }

    pub fn error(&self, category: &str) {
        self.errors
            .get_or_create(&ErrorLabels {
                category: category.to_string(),
            })
            .inc();
    }

    /// OpenMetrics text.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let registry = match self.registry.lock() {
            Ok(r) => r,
            Err(poisoned) => poisoned.into_inner(),
        };
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
        out
    }
}
