//! `spec.scaling` turned into the autoscaler's plan. 1.20 ignores CEL, so `minReplicas <=
//! maxReplicas` and the windows are checked here, naming the field.
use std::time::Duration;

use super::ValidationError;
use super::duration;
use crate::crd::{ScalingMetric, ScalingSpec};

#[derive(Debug, Clone, PartialEq)]
pub struct ScalingPlan {
    pub min: i32,
    pub max: i32,
    pub metric: ScalingMetric,
    pub target: f64,
    pub stable_window: Duration,
    pub panic_window: Duration,
    pub panic_threshold: f64,
    pub max_scale_up_rate: f64,
    pub scale_down_delay: Duration,
}

fn invalid(field: &str, value: impl ToString, why: impl Into<String>) -> ValidationError {
    ValidationError::Field {
        reason: "InvalidScaling",
        field: format!("spec.scaling.{field}"),
        value: value.to_string(),
        why: why.into(),
    }
}

fn window(field: &str, text: Option<&str>, default: Duration) -> Result<Duration, ValidationError> {
    match text {
        None => Ok(default),
        Some(t) => duration::parse(t).map_err(|why| invalid(field, t, why)),
    }
}

pub fn plan(spec: &ScalingSpec) -> Result<ScalingPlan, ValidationError> {
    let min = spec.min_replicas.unwrap_or(1);
    let max = spec.max_replicas.unwrap_or(10);
    if !(1..=1000).contains(&min) {
        return Err(invalid("minReplicas", min, "must be between 1 and 1000"));
    }
    if !(1..=1000).contains(&max) {
        return Err(invalid("maxReplicas", max, "must be between 1 and 1000"));
    }
    if min > max {
        return Err(invalid(
            "minReplicas",
            min,
            format!("must not be more than maxReplicas ({max})"),
        ));
    }
    let metric = spec.metric.unwrap_or(ScalingMetric::Concurrency);
    let target = spec.target.unwrap_or(match metric {
        ScalingMetric::Concurrency => 10.0,
        ScalingMetric::Rps => 100.0,
    });
    if !(target > 0.0 && target.is_finite()) {
        return Err(invalid("target", target, "must be greater than 0"));
    }
    let stable_window = window(
        "stableWindow",
        spec.stable_window.as_deref(),
        Duration::from_secs(60),
    )?;
    let panic_window = window(
        "panicWindow",
        spec.panic_window.as_deref(),
        Duration::from_secs(6),
    )?;
    let scale_down_delay = window(
        "scaleDownDelay",
        spec.scale_down_delay.as_deref(),
        Duration::from_secs(30),
    )?;
    if stable_window < Duration::from_secs(2) {
        return Err(invalid(
            "stableWindow",
            duration::format(stable_window),
            "must be at least 2s",
        ));
    }
    if panic_window.is_zero() || panic_window > stable_window {
        return Err(invalid(
            "panicWindow",
            duration::format(panic_window),
            "must be longer than 0 and at most stableWindow",
        ));
    }
    let panic_threshold = spec.panic_threshold.unwrap_or(2.0);
    if !(panic_threshold >= 1.0 && panic_threshold.is_finite()) {
        return Err(invalid(
            "panicThreshold",
            panic_threshold,
            "must be at least 1",
        ));
    }
    let max_scale_up_rate = spec.max_scale_up_rate.unwrap_or(1000.0);
    if !(max_scale_up_rate > 1.0 && max_scale_up_rate.is_finite()) {
        return Err(invalid(
            "maxScaleUpRate",
            max_scale_up_rate,
            "must be greater than 1",
        ));
    }
    Ok(ScalingPlan {
        min,
        max,
        metric,
        target,
        stable_window,
        panic_window,
        panic_threshold,
        max_scale_up_rate,
        scale_down_delay,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(spec: ScalingSpec) -> (String, String) {
        match plan(&spec) {
            Err(ValidationError::Field { field, value, .. }) => (field, value),
            other => panic!("expected a field error, got {other:?}"),
        }
    }

    #[test]
    fn defaults_follow_knative() {
        let p = plan(&ScalingSpec::default()).expect("valid");
        assert_eq!((p.min, p.max), (1, 10));
        assert_eq!(p.metric, ScalingMetric::Concurrency);
        assert_eq!(p.target, 10.0);
        assert_eq!(p.stable_window, Duration::from_secs(60));
        assert_eq!(p.panic_window, Duration::from_secs(6));
        assert_eq!(p.panic_threshold, 2.0);
        assert_eq!(p.scale_down_delay, Duration::from_secs(30));
        let rps = plan(&ScalingSpec {
            metric: Some(ScalingMetric::Rps),
            ..Default::default()
        })
        .expect("valid");
        assert_eq!(rps.target, 100.0);
    }

    #[test]
    fn every_bad_value_names_its_field() {
        let cases: Vec<(ScalingSpec, &str, &str)> = vec![
            (
                ScalingSpec {
                    min_replicas: Some(0),
                    ..Default::default()
                },
                "minReplicas",
                "0",
            ),
            (
                ScalingSpec {
                    max_replicas: Some(1001),
                    ..Default::default()
                },
                "maxReplicas",
                "1001",
            ),
            (
                ScalingSpec {
                    min_replicas: Some(5),
                    max_replicas: Some(3),
                    ..Default::default()
                },
                "minReplicas",
                "5",
            ),
            (
                ScalingSpec {
                    target: Some(0.0),
                    ..Default::default()
                },
                "target",
                "0",
            ),
            (
                ScalingSpec {
                    target: Some(f64::NAN),
                    ..Default::default()
                },
                "target",
                "NaN",
            ),
            (
                ScalingSpec {
                    stable_window: Some("soon".into()),
                    ..Default::default()
                },
                "stableWindow",
                "soon",
            ),
            (
                ScalingSpec {
                    stable_window: Some("1s".into()),
                    ..Default::default()
                },
                "stableWindow",
                "1s",
            ),
            (
                ScalingSpec {
                    panic_window: Some("2m".into()),
                    ..Default::default()
                },
                "panicWindow",
                "2m",
            ),
            (
                ScalingSpec {
                    scale_down_delay: Some("-1s".into()),
                    ..Default::default()
                },
                "scaleDownDelay",
                "-1s",
            ),
            (
                ScalingSpec {
                    panic_threshold: Some(0.5),
                    ..Default::default()
                },
                "panicThreshold",
                "0.5",
            ),
            (
                ScalingSpec {
                    max_scale_up_rate: Some(1.0),
                    ..Default::default()
                },
                "maxScaleUpRate",
                "1",
            ),
        ];
        for (spec, field, value) in cases {
            let (got_field, got_value) = field_of(spec);
            assert_eq!(got_field, format!("spec.scaling.{field}"));
            assert_eq!(got_value, value, "{field}");
        }
    }
}
