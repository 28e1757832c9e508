//! Judging a canary from its pods' own counters: per-pod deltas between two scrapes (a counter
//! that went down means the server restarted: the new value is the delta), summed per version,
//! turned into an error rate and a p99 latency, and compared with the plan's thresholds.
use std::collections::BTreeMap;
use std::time::Duration;

use super::Verdict;
use super::metrics_text;
use crate::crd::VersionFigures;
use crate::reconcile::validate::duration;
use crate::reconcile::validate::rollout::AnalysisPlan;

pub const REQUESTS: &str = "sconce_requests_total";
pub const DURATION_BUCKETS: &str = "sconce_request_duration_seconds_bucket";
pub const IN_FLIGHT: &str = "sconce_requests_in_flight";

/// One pod's counters at one scrape.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Counters {
    /// Requests answered, by HTTP status code.
    pub by_code: BTreeMap<u16, f64>,
    /// Cumulative latency histogram: upper bound (seconds) -> count.
    pub buckets: Vec<(f64, f64)>,
    /// Requests being served at the scrape (a gauge).
    pub in_flight: f64,
}

impl Counters {
    pub fn from_text(text: &str) -> Counters {
        let samples = metrics_text::parse(text, &[REQUESTS, DURATION_BUCKETS, IN_FLIGHT]);
        let mut c = Counters::default();
        let mut buckets: BTreeMap<u64, (f64, f64)> = BTreeMap::new();
        for s in samples {
            match s.name.as_str() {
                REQUESTS => {
                    if let Some(code) = s.label("code").and_then(|c| c.parse().ok()) {
                        *c.by_code.entry(code).or_default() += s.value;
                    }
                }
                DURATION_BUCKETS => {
                    let le = match s.label("le") {
                        Some("+Inf") => f64::INFINITY,
                        Some(v) => v.parse().unwrap_or(f64::NAN),
                        None => f64::NAN,
                    };
                    if !le.is_nan() {
                        let entry = buckets.entry(le.to_bits()).or_insert((le, 0.0));
                        entry.1 += s.value;
                    }
                }
                IN_FLIGHT => c.in_flight += s.value,
                _ => {}
            }
        }
        c.buckets = buckets.into_values().collect();
        c.buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        c
    }

    fn total(&self) -> f64 {
        // an empty float sum is -0.0; + 0.0 makes it print as 0
        self.by_code.values().sum::<f64>() + 0.0
    }

    /// What happened between `before` and `self`. A counter that went down means the server
    /// restarted in between: everything it counted since is the delta.
    pub fn since(&self, before: &Counters) -> Counters {
        let restarted = self.total() < before.total()
            || self
                .by_code
                .iter()
                .any(|(code, v)| *v < before.by_code.get(code).copied().unwrap_or(0.0));
        if restarted {
            return self.clone();
        }
        let by_code = self
            .by_code
            .iter()
            .map(|(code, v)| (*code, v - before.by_code.get(code).copied().unwrap_or(0.0)))
            .collect();
        let buckets = self
            .buckets
            .iter()
            .map(|(le, v)| {
                let old = before
                    .buckets
                    .iter()
                    .find(|(l, _)| l == le)
                    .map_or(0.0, |(_, o)| *o);
                (*le, (v - old).max(0.0))
            })
            .collect();
        Counters {
            by_code,
            buckets,
            in_flight: self.in_flight,
        }
    }

    /// Add another pod's delta (same bucket bounds: same server).
    pub fn add(&mut self, other: &Counters) {
        for (code, v) in &other.by_code {
            *self.by_code.entry(*code).or_default() += v;
        }
        for (le, v) in &other.buckets {
            match self.buckets.iter_mut().find(|(l, _)| l == le) {
                Some((_, mine)) => *mine += v,
                None => self.buckets.push((*le, *v)),
            }
        }
        self.buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        self.in_flight += other.in_flight;
    }
}

/// A version's traffic in one interval.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Traffic {
    pub version: String,
    pub counters: Counters,
    /// Pods whose delta is in `counters`, and the version's ready pods.
    pub pods_scraped: usize,
    pub pods_ready: usize,
}

impl Traffic {
    pub fn requests(&self) -> f64 {
        self.counters.total()
    }

    /// Errors: 5xx, and 4xx other than 429 (load shedding is the autoscaler's business).
    pub fn error_rate(&self) -> f64 {
        let total = self.requests();
        if total <= 0.0 {
            return 0.0;
        }
        let errors: f64 = self
            .counters
            .by_code
            .iter()
            .filter(|(code, _)| **code >= 500 || (**code >= 400 && **code != 429))
            .map(|(_, v)| v)
            .sum::<f64>()
            + 0.0;
        errors / total
    }

    pub fn p99(&self) -> Option<Duration> {
        quantile(0.99, &self.counters.buckets)
    }

    pub fn figures(&self) -> VersionFigures {
        VersionFigures {
            version: self.version.clone(),
            requests: self.requests().round() as i64,
            error_rate: format!("{:.4}", self.error_rate()),
            latency_p99: self.p99().map(duration::format),
            pods: format!("{}/{}", self.pods_scraped, self.pods_ready),
        }
    }
}

/// Prometheus' `histogram_quantile`: the bucket holding the q-th observation, linearly
/// interpolated; observations beyond the last finite bound report that bound.
pub fn quantile(q: f64, buckets: &[(f64, f64)]) -> Option<Duration> {
    let total = buckets.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let mut lower = (0.0, 0.0);
    for &(le, count) in buckets {
        if count >= rank {
            if le.is_infinite() {
                return Some(Duration::from_secs_f64(lower.0));
            }
            let in_bucket = count - lower.1;
            let fraction = if in_bucket > 0.0 {
                (rank - lower.1) / in_bucket
            } else {
                1.0
            };
            return Some(Duration::from_secs_f64(lower.0 + (le - lower.0) * fraction));
        }
        lower = (le, count);
    }
    Some(Duration::from_secs_f64(lower.0))
}

fn percent(x: f64) -> String {
    format!("{:.1}%", x * 100.0)
}

/// The verdict on one interval.
pub fn judge(plan: &AnalysisPlan, canary: &Traffic, stable: Option<&Traffic>) -> Verdict {
    if canary.pods_scraped == 0 {
        return Verdict::Inconclusive(format!(
            "none of the canary's {} ready pods answered a scrape",
            canary.pods_ready
        ));
    }
    let requests = canary.requests();
    if requests < plan.min_requests as f64 {
        return Verdict::Inconclusive(format!(
            "{requests:.0} canary requests, fewer than minRequests {}",
            plan.min_requests
        ));
    }
    let rate = canary.error_rate();
    let p99 = canary.p99();
    let mut failures = Vec::new();
    if let Some(max) = plan.max_error_rate
        && rate > max
    {
        failures.push(format!(
            "canary error rate {} > {}",
            percent(rate),
            percent(max)
        ));
    }
    if let (Some(max), Some(p99)) = (plan.max_latency_p99, p99)
        && p99 > max
    {
        failures.push(format!(
            "canary p99 latency {} > {}",
            duration::format(p99),
            duration::format(max)
        ));
    }
    // Comparisons with stable need stable traffic in the same interval.
    let stable = stable.filter(|s| s.requests() >= plan.min_requests as f64);
    if let (Some(max), Some(stable)) = (plan.max_error_rate_increase, stable) {
        let increase = rate - stable.error_rate();
        if increase > max {
            failures.push(format!(
                "canary error rate {} exceeds stable's {} by more than {}",
                percent(rate),
                percent(stable.error_rate()),
                percent(max)
            ));
        }
    }
    if let (Some(max), Some(stable), Some(p99)) = (plan.max_latency_ratio, stable, p99)
        && let Some(base) = stable.p99()
        && base > Duration::ZERO
        && p99.as_secs_f64() / base.as_secs_f64() > max
    {
        failures.push(format!(
            "canary p99 {} is more than {max}x stable's {}",
            duration::format(p99),
            duration::format(base)
        ));
    }
    if failures.is_empty() {
        Verdict::Pass(format!(
            "{requests:.0} requests, error rate {}, p99 {}",
            percent(rate),
            p99.map_or("-".into(), duration::format)
        ))
    } else {
        Verdict::Fail(failures.join("; "))
    }
}

#[cfg(test)]
#[path = "analysis_tests.rs"]
mod tests;
