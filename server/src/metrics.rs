//! Prometheus metrics, owned by the server state (no globals). Names are documented in README.md.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::engine::generate::GenerationMetrics;
use crate::serve::Rejection;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub model: String,
    pub protocol: &'static str,
    pub code: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProtocolLabels {
    pub model: String,
    pub protocol: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RejectionLabels {
    pub model: String,
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ModelLabels {
    pub model: String,
}

fn latency_histogram() -> Histogram {
    // 100 µs .. ~13 s
    Histogram::new(exponential_buckets(0.0001, 2.0, 18))
}

fn batch_histogram() -> Histogram {
    // 1, 2, 4, ... 1024
    Histogram::new(exponential_buckets(1.0, 2.0, 11))
}

/// Every metric the server exports.
pub struct Metrics {
    pub registry: Registry,
    model: String,
    requests: Family<RequestLabels, Counter>,
    duration: Family<ProtocolLabels, Histogram>,
    in_flight: Family<ModelLabels, Gauge>,
    queue_depth: Family<ModelLabels, Gauge>,
    batch_size: Family<ModelLabels, Histogram>,
    batch_duration: Family<ModelLabels, Histogram>,
    ready: Family<ModelLabels, Gauge>,
    generation: GenerationMetrics,
    rejections: Family<RejectionLabels, Counter>,
}

impl Metrics {
    pub fn new(model: &str) -> Self {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        let duration = Family::<ProtocolLabels, Histogram>::new_with_constructor(
            latency_histogram as fn() -> _,
        );
        let in_flight = Family::<ModelLabels, Gauge>::default();
        let queue_depth = Family::<ModelLabels, Gauge>::default();
        let batch_size =
            Family::<ModelLabels, Histogram>::new_with_constructor(batch_histogram as fn() -> _);
        let batch_duration =
            Family::<ModelLabels, Histogram>::new_with_constructor(latency_histogram as fn() -> _);
        let ready = Family::<ModelLabels, Gauge>::default();
        let rejections = Family::<RejectionLabels, Counter>::default();
        registry.register(
            "sconce_requests",
            "Inference requests answered, by model, protocol (v2, v1, openai) and HTTP status code",
            requests.clone(),
        );
        registry.register(
            "sconce_request_duration_seconds",
            "Inference request latency from admission to response, by model and protocol",
            duration.clone(),
        );
        registry.register(
            "sconce_requests_in_flight",
            "Inference requests admitted and not yet answered",
            in_flight.clone(),
        );
        registry.register(
            "sconce_queue_depth",
            "Jobs waiting in the model queue",
            queue_depth.clone(),
        );
        registry.register(
            "sconce_batch_size",
            "Examples (rows or sentences) per batch run by the model thread",
            batch_size.clone(),
        );
        registry.register(
            "sconce_batch_duration_seconds",
            "Model compute time per batch",
            batch_duration.clone(),
        );
        registry.register(
            "sconce_model_ready",
            "1 once the model is loaded and serving",
            ready.clone(),
        );
        let generation = GenerationMetrics::register(&mut registry, model);
        registry.register(
            "sconce_http_rejections",
            "Requests refused before reaching a route, by reason (malformed_request, \
             uri_too_long, headers_too_large, bad_path_encoding)",
            rejections.clone(),
        );
        let m = Metrics {
            registry,
            generation,
            model: model.to_string(),
            requests,
            duration,
            in_flight,
            queue_depth,
            batch_size,
            batch_duration,
            ready,
            rejections,
        };
        // Make the series visible (at zero) from the first scrape.
        m.in_flight().set(0);
        m.queue_depth().set(0);
        m.ready.get_or_create(&m.model_labels()).set(0);
        for why in Rejection::ALL {
            let _ = m.rejections.get_or_create(&m.rejection_labels(why));
        }
        m
    }

    fn model_labels(&self) -> ModelLabels {
        ModelLabels {
            model: self.model.clone(),
        }
    }

    pub fn record_request(&self, protocol: &'static str, code: u16, seconds: f64) {
        self.requests
            .get_or_create(&RequestLabels {
                model: self.model.clone(),
                protocol,
                code,
            })
            .inc();
        self.duration
            .get_or_create(&ProtocolLabels {
                model: self.model.clone(),
                protocol,
            })
            .observe(seconds);
    }

    fn rejection_labels(&self, why: Rejection) -> RejectionLabels {
        RejectionLabels {
            model: self.model.clone(),
            reason: why.reason(),
        }
    }

    /// A request refused before routing.
    pub fn record_rejection(&self, why: Rejection) {
        self.rejections
            .get_or_create(&self.rejection_labels(why))
            .inc();
    }

    pub fn in_flight(&self) -> Gauge {
        self.in_flight.get_or_create(&self.model_labels()).clone()
    }

    pub fn queue_depth(&self) -> Gauge {
        self.queue_depth.get_or_create(&self.model_labels()).clone()
    }

    pub fn batch_size(&self) -> Histogram {
        self.batch_size.get_or_create(&self.model_labels()).clone()
    }

    pub fn batch_duration(&self) -> Histogram {
        self.batch_duration
            .get_or_create(&self.model_labels())
            .clone()
    }

    /// Text generation series (`gguf` models).
    pub fn generation(&self) -> GenerationMetrics {
        self.generation.clone()
    }

    pub fn set_ready(&self) {
        self.ready.get_or_create(&self.model_labels()).set(1);
    }

    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_exported() {
        let m = Metrics::new("mlp");
        m.record_request("v2", 200, 0.01);
        m.batch_size().observe(4.0);
        let text = m.encode().unwrap();
        for name in [
            "sconce_requests_total{model=\"mlp\",protocol=\"v2\",code=\"200\"} 1",
            "sconce_request_duration_seconds_bucket",
            "sconce_requests_in_flight{model=\"mlp\"} 0",
            "sconce_queue_depth{model=\"mlp\"} 0",
            "sconce_batch_size_bucket",
            "sconce_model_ready{model=\"mlp\"} 0",
            "sconce_http_rejections_total{model=\"mlp\",reason=\"headers_too_large\"} 0",
        ] {
            assert!(text.contains(name), "missing {name} in\n{text}");
        }
    }
}
