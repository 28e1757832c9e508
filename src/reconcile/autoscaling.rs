//! The reconcile's part of autoscaling: read the serving pods, add a sample to this
//! ModelDeployment's history, let the pure autoscaler decide.
use std::collections::HashMap;
use std::sync::Mutex;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;

use super::Context;
use super::build::{DEFAULT_PORT, INSTANCE_LABEL};
use super::scrape::{self, Baseline};
use super::status::Transition;
use super::validate::ValidModel;
use crate::autoscale::{self, History, Sample};
use crate::crd::{ModelDeployment, ScalingMetric, ScalingStatus};

/// Per ModelDeployment: its metric history and, for rps, the counters last seen per pod.
#[derive(Default)]
pub struct Histories {
    map: Mutex<HashMap<String, (History, Baseline)>>,
}

/// The replica count to run, and what to tell about it.
pub struct Scaled {
    pub replicas: i32,
    pub status: Option<ScalingStatus>,
    pub event: Option<Transition>,
    pub metric: Option<f64>,
}

/// `spec.replicas` without `spec.scaling`; else the autoscaler's decision from a fresh sample.
pub async fn replicas(
    ctx: &Context,
    md: &ModelDeployment,
    model: &ValidModel,
    now: &Time,
) -> Scaled {
    let Some(plan) = &model.scaling else {
        return Scaled {
            replicas: md.spec.replicas,
            status: None,
            event: None,
            metric: None,
        };
    };
    let previous = md.status.clone().unwrap_or_default();
    let current = previous
        .desired_replicas
        .unwrap_or(md.spec.replicas)
        .clamp(plan.min, plan.max);
    let port = md
        .spec
        .runtime
        .as_ref()
        .and_then(|r| r.port)
        .unwrap_or(DEFAULT_PORT);
    // Every version's pods serve the model's traffic.
    let pods: Vec<std::sync::Arc<Pod>> = ctx.stores.pods.state_filter(|p| {
        p.namespace().as_deref() == Some(model.namespace.as_str())
            && p.labels().get(INSTANCE_LABEL) == Some(&model.instance)
    });
    let refs: Vec<&Pod> = pods.iter().map(|p| p.as_ref()).collect();
    let ready = refs.iter().filter(|p| scrape::is_ready(p)).count();
    let readings = ctx.scraper.read(&refs, port).await;
    let key = format!("{}/{}", model.namespace, model.instance);
    let at = now.0.as_millisecond() as f64 / 1000.0;
    let mut map = ctx.scaling.map.lock().unwrap_or_else(|p| p.into_inner());
    let (history, baseline) = map.entry(key).or_default();
    let per_pod: Vec<f64> = match plan.metric {
        ScalingMetric::Concurrency => readings.iter().map(|r| r.counters.in_flight).collect(),
        ScalingMetric::Rps => baseline
            .deltas(&readings)
            .iter()
            .filter(|d| d.seconds > 0.0)
            .map(|d| d.counters.total() / d.seconds)
            .collect(),
    };
    if let Some(value) = autoscale::extrapolate(&per_pod, ready) {
        history.record(Sample { at, value });
    }
    let ready_i = i32::try_from(ready).unwrap_or(i32::MAX);
    let d = autoscale::decide(plan, history, at, current, ready_i);
    drop(map);
    let changed = d.desired != current;
    let event = changed.then(|| {
        Transition::normal(
            if d.desired > current {
                "ScaledUp"
            } else {
                "ScaledDown"
            },
            format!("{current} -> {} replicas: {}", d.desired, d.reason),
        )
    });
    let last_change = if changed {
        Some(now.clone())
    } else {
        previous
            .scaling
            .as_ref()
            .and_then(|s| s.last_change.clone())
    };
    let fmt = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.2}"));
    // The status is a summary, not a time series (the operator's metrics have every sample):
    // it is rewritten when the decision or panic changes, or the average moved by half a
    // replica's worth, so a steady load does not cost a status write every tick.
    let still_true = previous.scaling.as_ref().filter(|p| {
        !changed
            && p.panic == d.panic
            && p.metric == plan.metric.as_str()
            && match (p.stable_average.parse::<f64>().ok(), d.stable_average) {
                (Some(reported), Some(now)) => (reported - now).abs() < plan.target / 2.0,
                (None, None) => true,
                _ => false,
            }
    });
    let status = match still_true {
        Some(reported) => reported.clone(),
        None => ScalingStatus {
            metric: plan.metric.as_str().into(),
            stable_average: fmt(d.stable_average),
            panic_average: fmt(d.panic_average),
            panic: d.panic,
            last_change,
            reason: d.reason,
        },
    };
    Scaled {
        replicas: d.desired,
        status: Some(status),
        event,
        metric: d.stable_average,
    }
}
