//! `spec.rollout` and `spec.traffic` turned into a plan the rollout state machine follows. The
//! schema cannot say "weights must increase" or "one of setWeight and pause" (1.20 has no CEL),
//! so it is checked here and reported with the field to fix.
use std::time::Duration;

use super::ValidationError;
use super::duration;
use super::k8s_rules::dns1123_subdomain;
use crate::crd::{AnalysisSpec, ModelDeploymentSpec, RolloutStrategy};

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Step {
    /// Percentage of traffic for the canary.
    SetWeight(i32),
    /// Wait this long, or (None) until promoted.
    Pause(Option<Duration>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct AnalysisPlan {
    pub interval: Duration,
    pub min_requests: i64,
    pub max_error_rate: Option<f64>,
    pub max_latency_p99: Option<Duration>,
    pub failure_limit: i32,
    pub max_error_rate_increase: Option<f64>,
    pub max_latency_ratio: Option<f64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RolloutPlan {
    /// Canary steps; empty for the `Immediate` strategy.
    pub steps: Vec<Step>,
    pub analysis: Option<AnalysisPlan>,
    pub progress_deadline: Duration,
    pub history_limit: usize,
    /// The HTTPRoute whose backendRefs carry the weights; None: the replica ratio does.
    pub http_route: Option<String>,
}

impl RolloutPlan {
    pub fn is_canary(&self) -> bool {
        !self.steps.is_empty()
    }
}

pub const DEFAULT_PROGRESS_DEADLINE: Duration = Duration::from_secs(600);
pub const DEFAULT_HISTORY_LIMIT: usize = 10;
const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);
const DEFAULT_MIN_REQUESTS: i64 = 10;
const DEFAULT_FAILURE_LIMIT: i32 = 2;

fn invalid(
    field: impl Into<String>,
    value: impl ToString,
    why: impl Into<String>,
) -> ValidationError {
    ValidationError::Field {
        reason: "InvalidRollout",
        field: field.into(),
        value: value.to_string(),
        why: why.into(),
    }
}

fn parse_duration(field: &str, text: &str) -> Result<Duration, ValidationError> {
    duration::parse(text).map_err(|why| invalid(field, text, why))
}

pub fn plan(spec: &ModelDeploymentSpec) -> Result<RolloutPlan, ValidationError> {
    let rollout = spec.rollout.clone().unwrap_or_default();
    let http_route = spec.traffic.as_ref().and_then(|t| t.http_route.clone());
    if let Some(route) = &http_route {
        dns1123_subdomain(route).map_err(|why| invalid("spec.traffic.httpRoute", route, why))?;
    }
    let strategy = rollout.strategy.unwrap_or(if rollout.steps.is_empty() {
        RolloutStrategy::Immediate
    } else {
        RolloutStrategy::Canary
    });
    let steps = match strategy {
        RolloutStrategy::Immediate if !rollout.steps.is_empty() => {
            return Err(invalid(
                "spec.rollout.steps",
                format!("{} steps", rollout.steps.len()),
                "steps only apply to the Canary strategy: remove them or set strategy: Canary",
            ));
        }
        RolloutStrategy::Immediate => Vec::new(),
        RolloutStrategy::Canary if rollout.steps.is_empty() => {
            return Err(invalid(
                "spec.rollout.steps",
                "[]",
                "the Canary strategy needs steps, e.g. [{setWeight: 20}, {pause: {duration: 1m}}]",
            ));
        }
        RolloutStrategy::Canary => steps(&rollout.steps)?,
    };
    let analysis = match &rollout.analysis {
        Some(_) if steps.is_empty() => {
            return Err(invalid(
                "spec.rollout.analysis",
                "set",
                "analysis judges canary steps: it needs the Canary strategy",
            ));
        }
        Some(a) => Some(analysis(a)?),
        None => None,
    };
    let progress_deadline = match &rollout.progress_deadline {
        Some(text) => parse_duration("spec.rollout.progressDeadline", text)?,
        None => DEFAULT_PROGRESS_DEADLINE,
    };
    if progress_deadline.is_zero() {
        return Err(invalid(
            "spec.rollout.progressDeadline",
            "0",
            "must be longer than 0",
        ));
    }
    Ok(RolloutPlan {
        steps,
        analysis,
        progress_deadline,
        history_limit: rollout
            .revision_history_limit
            .and_then(|n| usize::try_from(n).ok())
            .filter(|n| *n > 0)
            .unwrap_or(DEFAULT_HISTORY_LIMIT),
        http_route,
    })
}

fn steps(specs: &[crate::crd::RolloutStep]) -> Result<Vec<Step>, ValidationError> {
    let mut steps = Vec::with_capacity(specs.len());
    let mut last_weight: Option<i32> = None;
    for (i, s) in specs.iter().enumerate() {
        let field = |f: &str| format!("spec.rollout.steps[{i}]{f}");
        let step = match (s.set_weight, &s.pause) {
            (Some(w), None) => {
                if !(0..=100).contains(&w) {
                    return Err(invalid(field(".setWeight"), w, "must be between 0 and 100"));
                }
                if let Some(previous) = last_weight
                    && w <= previous
                {
                    return Err(invalid(
                        field(".setWeight"),
                        w,
                        format!("weights must increase: the step before sets {previous}"),
                    ));
                }
                last_weight = Some(w);
                Step::SetWeight(w)
            }
            (None, Some(p)) => Step::Pause(match &p.duration {
                Some(text) => Some(parse_duration(&field(".pause.duration"), text)?),
                None => None,
            }),
            _ => {
                return Err(invalid(
                    field(""),
                    "a step",
                    "each step has exactly one of setWeight and pause",
                ));
            }
        };
        steps.push(step);
    }
    Ok(steps)
}

fn analysis(a: &AnalysisSpec) -> Result<AnalysisPlan, ValidationError> {
    let interval = match &a.interval {
        Some(text) => parse_duration("spec.rollout.analysis.interval", text)?,
        None => DEFAULT_INTERVAL,
    };
    if interval < Duration::from_secs(1) {
        return Err(invalid(
            "spec.rollout.analysis.interval",
            duration::format(interval),
            "must be at least 1s",
        ));
    }
    let max_latency_p99 = match &a.max_latency_p99 {
        Some(text) => Some(parse_duration("spec.rollout.analysis.maxLatencyP99", text)?),
        None => None,
    };
    for (name, value) in [
        ("maxErrorRate", a.max_error_rate),
        ("maxErrorRateIncrease", a.max_error_rate_increase),
    ] {
        if let Some(v) = value
            && !(0.0..=1.0).contains(&v)
        {
            return Err(invalid(
                format!("spec.rollout.analysis.{name}"),
                v,
                "a share between 0 and 1 (0.01 is 1%)",
            ));
        }
    }
    if let Some(r) = a.max_latency_ratio
        && !(r >= 1.0 && r.is_finite())
    {
        return Err(invalid(
            "spec.rollout.analysis.maxLatencyRatio",
            r,
            "must be at least 1",
        ));
    }
    let plan = AnalysisPlan {
        interval,
        min_requests: a.min_requests.unwrap_or(DEFAULT_MIN_REQUESTS).max(1),
        max_error_rate: a.max_error_rate,
        max_latency_p99,
        failure_limit: a.failure_limit.unwrap_or(DEFAULT_FAILURE_LIMIT).max(1),
        max_error_rate_increase: a.max_error_rate_increase,
        max_latency_ratio: a.max_latency_ratio,
    };
    let judges_something = plan.max_error_rate.is_some()
        || plan.max_latency_p99.is_some()
        || plan.max_error_rate_increase.is_some()
        || plan.max_latency_ratio.is_some();
    if !judges_something {
        return Err(invalid(
            "spec.rollout.analysis",
            "set",
            "give at least one of maxErrorRate, maxLatencyP99, maxErrorRateIncrease, maxLatencyRatio",
        ));
    }
    Ok(plan)
}
