//! Text generation metrics (names after vLLM's, `sconce_` prefixed), registered with the
//! server's registry. Documented in server/README.md.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

use crate::metrics::ModelLabels;

type FloatGauge = Gauge<f64, AtomicU64>;

/// Handles the generation loop updates (cheap clones of the registered series).
#[derive(Clone)]
pub struct GenerationMetrics {
    pub time_to_first_token: Histogram,
    pub inter_token_latency: Histogram,
    pub prompt_tokens: Counter,
    pub generation_tokens: Counter,
    pub running: Gauge,
    pub waiting: Gauge,
    pub kv_usage: FloatGauge,
    pub step_tokens: Histogram,
}

impl GenerationMetrics {
    pub fn register(registry: &mut Registry, model: &str) -> Self {
        let labels = ModelLabels {
            model: model.to_string(),
        };
        let ttft = Family::<ModelLabels, Histogram>::new_with_constructor(
            // 10 ms .. ~80 s
            (|| Histogram::new(exponential_buckets(0.01, 2.0, 14))) as fn() -> _,
        );
        let itl = Family::<ModelLabels, Histogram>::new_with_constructor(
            // 1 ms .. ~8 s
            (|| Histogram::new(exponential_buckets(0.001, 2.0, 14))) as fn() -> _,
        );
        let step = Family::<ModelLabels, Histogram>::new_with_constructor(
            // 1 .. 4096 tokens
            (|| Histogram::new(exponential_buckets(1.0, 2.0, 13))) as fn() -> _,
        );
        let prompt = Family::<ModelLabels, Counter>::default();
        let generation = Family::<ModelLabels, Counter>::default();
        let running = Family::<ModelLabels, Gauge>::default();
        let waiting = Family::<ModelLabels, Gauge>::default();
        let kv = Family::<ModelLabels, FloatGauge>::default();
        registry.register(
            "sconce_time_to_first_token_seconds",
            "Time from a generation request reaching the model thread to its first generated token",
            ttft.clone(),
        );
        registry.register(
            "sconce_inter_token_latency_seconds",
            "Time between consecutive generated tokens of one sequence",
            itl.clone(),
        );
        registry.register(
            "sconce_prompt_tokens",
            "Prompt tokens read by the model (prefill)",
            prompt.clone(),
        );
        registry.register(
            "sconce_generation_tokens",
            "Tokens generated",
            generation.clone(),
        );
        registry.register(
            "sconce_sequences_running",
            "Sequences in the continuous batch (reading their prompt or generating)",
            running.clone(),
        );
        registry.register(
            "sconce_sequences_waiting",
            "Generation requests waiting for KV cache space or a batch slot",
            waiting.clone(),
        );
        registry.register(
            "sconce_kv_cache_usage_ratio",
            "Share of the KV cache budget (--kv-cache-bytes) reserved by running sequences, 0 to 1",
            kv.clone(),
        );
        registry.register(
            "sconce_step_tokens",
            "Tokens (prompt chunks and decoded tokens of all sequences) per model step",
            step.clone(),
        );
        GenerationMetrics {
            time_to_first_token: ttft.get_or_create(&labels).clone(),
            inter_token_latency: itl.get_or_create(&labels).clone(),
            prompt_tokens: prompt.get_or_create(&labels).clone(),
            generation_tokens: generation.get_or_create(&labels).clone(),
            running: running.get_or_create(&labels).clone(),
            waiting: waiting.get_or_create(&labels).clone(),
            kv_usage: kv.get_or_create(&labels).clone(),
            step_tokens: step.get_or_create(&labels).clone(),
        }
    }

    pub fn set_kv_usage(&self, ratio: f64) {
        self.kv_usage.set(ratio);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_are_exported_with_the_model_label() {
        let mut r = Registry::default();
        let m = GenerationMetrics::register(&mut r, "smol");
        m.prompt_tokens.inc_by(12);
        m.time_to_first_token.observe(0.05);
        m.set_kv_usage(0.25);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &r).unwrap();
        for want in [
            "sconce_prompt_tokens_total{model=\"smol\"} 12",
            "sconce_generation_tokens_total{model=\"smol\"} 0",
            "sconce_time_to_first_token_seconds_count{model=\"smol\"} 1",
            "sconce_inter_token_latency_seconds_bucket",
            "sconce_sequences_running{model=\"smol\"} 0",
            "sconce_sequences_waiting{model=\"smol\"} 0",
            "sconce_kv_cache_usage_ratio{model=\"smol\"} 0.25",
            "sconce_step_tokens_bucket",
        ] {
            assert!(text.contains(want), "missing {want} in\n{text}");
        }
    }
}
