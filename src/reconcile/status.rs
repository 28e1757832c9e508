//! Pure status computation: observed children -> `ModelDeploymentStatus`, conditions merged so
//! `lastTransitionTime` only moves when a condition's status flips.
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use super::build::{pod_selector, selector_string};
use super::validate::{ValidModel, ValidationError};
use crate::crd::{ModelDeployment, ModelDeploymentStatus};

pub const READY: &str = "Ready";
pub const PROGRESSING: &str = "Progressing";
pub const DEGRADED: &str = "Degraded";

/// How far the current version's Deployment has got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RolloutProgress {
    pub desired: i32,
    pub replicas: i32,
    pub updated: i32,
    pub ready: i32,
    /// The Deployment controller has seen the latest Deployment spec.
    pub observed: bool,
}

impl RolloutProgress {
    pub fn from_deployment(desired: i32, deployment: Option<&Deployment>) -> Self {
        let Some(deployment) = deployment else {
            return RolloutProgress {
                desired,
                ..Default::default()
            };
        };
        let status = deployment.status.clone().unwrap_or_default();
        let generation = deployment.metadata.generation.unwrap_or(0);
        RolloutProgress {
            desired,
            replicas: status.replicas.unwrap_or(0),
            updated: status.updated_replicas.unwrap_or(0),
            ready: status.ready_replicas.unwrap_or(0),
            observed: status.observed_generation.unwrap_or(0) >= generation,
        }
    }

    /// Every desired pod runs the latest template and is ready; no surplus pods remain.
    pub fn complete(&self) -> bool {
        self.observed
            && self.updated >= self.desired
            && self.ready >= self.desired
            && self.replicas == self.desired
    }
}

/// A failure the Deployment reports about itself (from its own conditions).
fn deployment_failure(deployment: Option<&Deployment>) -> Option<(String, String)> {
    let conditions = deployment?.status.as_ref()?.conditions.as_ref()?;
    conditions.iter().find_map(|c| {
        let (type_, status) = (c.type_.as_deref()?, c.status.as_deref()?);
        let failed = (type_ == "Progressing"
            && status == "False"
            && c.reason.as_deref() == Some("ProgressDeadlineExceeded"))
            || (type_ == "ReplicaFailure" && status == "True");
        failed.then(|| {
            (
                c.reason.clone().unwrap_or_else(|| type_.to_string()),
                c.message.clone().unwrap_or_default(),
            )
        })
    })
}

fn condition(
    type_: &str,
    status: bool,
    reason: &str,
    message: String,
    generation: Option<i64>,
    now: &Time,
) -> Condition {
    Condition {
        type_: type_.into(),
        status: if status { "True" } else { "False" }.into(),
        reason: reason.into(),
        message,
        observed_generation: generation,
        last_transition_time: now.clone(),
    }
}

/// Replace or add `new` in `conditions`, keeping the old `lastTransitionTime` when the status
/// did not flip.
pub fn merge_condition(conditions: &mut Vec<Condition>, mut new: Condition) {
    match conditions.iter_mut().find(|c| c.type_ == new.type_) {
        Some(old) => {
            if old.status == new.status {
                new.last_transition_time = old.last_transition_time.clone();
            }
            *old = new;
        }
        None => conditions.push(new),
    }
}

/// Status for a spec that failed validation: children are left untouched, so the replica
/// counts from the last good reconcile stay.
pub fn invalid_status(
    md: &ModelDeployment,
    error: &ValidationError,
    now: &Time,
) -> ModelDeploymentStatus {
    let generation = md.metadata.generation;
    let mut status = md.status.clone().unwrap_or_default();
    status.observed_generation = generation;
    status.phase = Some(DEGRADED.into());
    let message = error.to_string();
    merge_condition(
        &mut status.conditions,
        condition(
            DEGRADED,
            true,
            error.reason(),
            message.clone(),
            generation,
            now,
        ),
    );
    merge_condition(
        &mut status.conditions,
        condition(
            READY,
            false,
            "InvalidSpec",
            format!("the spec cannot be served: {message}"),
            generation,
            now,
        ),
    );
    merge_condition(
        &mut status.conditions,
        condition(
            PROGRESSING,
            false,
            "InvalidSpec",
            "waiting for a spec change".into(),
            generation,
            now,
        ),
    );
    status
}

/// Status for a valid spec, from the current version's Deployment as the API server returned it.
pub fn valid_status(
    md: &ModelDeployment,
    model: &ValidModel,
    deployment: Option<&Deployment>,
    now: &Time,
) -> ModelDeploymentStatus {
    let generation = md.metadata.generation;
    let previous = md.status.clone().unwrap_or_default();
    let progress = RolloutProgress::from_deployment(md.spec.replicas, deployment);
    let failure = deployment_failure(deployment);
    let complete = progress.complete();

    let mut conditions = previous.conditions.clone();
    let ready_message = format!("{}/{} replicas ready", progress.ready, progress.desired);
    let (ready_reason, ready_message) = match (complete, progress.desired) {
        (true, 0) => ("ScaledToZero", "spec.replicas is 0".to_string()),
        (true, _) => (
            "Available",
            format!("version {} serving: {ready_message}", model.version),
        ),
        (false, _) => ("ReplicasNotReady", ready_message),
    };
    merge_condition(
        &mut conditions,
        condition(
            READY,
            complete,
            ready_reason,
            ready_message,
            generation,
            now,
        ),
    );
    let (progress_reason, progress_message) = if complete {
        (
            "RolloutComplete",
            format!("version {} is rolled out", model.version),
        )
    } else {
        (
            "RollingOut",
            format!(
                "version {}: {} updated, {} ready of {} desired",
                model.version, progress.updated, progress.ready, progress.desired
            ),
        )
    };
    merge_condition(
        &mut conditions,
        condition(
            PROGRESSING,
            !complete && failure.is_none(),
            progress_reason,
            progress_message,
            generation,
            now,
        ),
    );
    let degraded = match &failure {
        Some((reason, message)) => {
            condition(DEGRADED, true, reason, message.clone(), generation, now)
        }
        None => condition(
            DEGRADED,
            false,
            "AsExpected",
            "no problems detected".into(),
            generation,
            now,
        ),
    };
    merge_condition(&mut conditions, degraded);

    let phase = if failure.is_some() {
        DEGRADED
    } else if complete {
        READY
    } else {
        PROGRESSING
    };
    ModelDeploymentStatus {
        observed_generation: generation,
        conditions,
        replicas: progress.replicas,
        ready_replicas: progress.ready,
        ready_text: Some(format!("{}/{}", progress.ready, progress.desired)),
        phase: Some(phase.into()),
        model: Some(model.served_name.clone()),
        current_version: if complete {
            Some(model.version.clone())
        } else {
            previous.current_version
        },
        url: Some(format!(
            "http://{}.{}.svc.cluster.local",
            model.instance, model.namespace
        )),
        selector: Some(selector_string(&pod_selector(model))),
    }
}

/// `Ready=True`: for a valid spec, the current version is fully rolled out.
pub fn is_ready(status: &ModelDeploymentStatus) -> bool {
    status
        .conditions
        .iter()
        .any(|c| c.type_ == READY && c.status == "True")
}

/// An event worth publishing because a condition flipped (or Degraded changed its reason).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    pub warning: bool,
    pub reason: String,
    pub note: String,
}

pub fn transitions(old: &[Condition], new: &[Condition]) -> Vec<Transition> {
    let find = |list: &[Condition], t: &str| list.iter().find(|c| c.type_ == t).cloned();
    let mut events = Vec::new();
    if let Some(degraded) = find(new, DEGRADED) {
        let before = find(old, DEGRADED);
        let changed = before
            .as_ref()
            .is_none_or(|b| b.status != degraded.status || b.reason != degraded.reason);
        if degraded.status == "True" && changed {
            events.push(Transition {
                warning: true,
                reason: degraded.reason.clone(),
                note: degraded.message.clone(),
            });
        } else if degraded.status == "False" && before.is_some_and(|b| b.status == "True") {
            events.push(Transition {
                warning: false,
                reason: "Recovered".into(),
                note: "the ModelDeployment is no longer degraded".into(),
            });
        }
    }
    if let Some(ready) = find(new, READY) {
        let before = find(old, READY);
        let flipped = before.as_ref().is_none_or(|b| b.status != ready.status);
        if flipped && ready.status == "True" {
            events.push(Transition {
                warning: false,
                reason: "Ready".into(),
                note: ready.message.clone(),
            });
        } else if flipped && before.is_some() && ready.reason != "InvalidSpec" {
            events.push(Transition {
                warning: true,
                reason: "NotReady".into(),
                note: ready.message.clone(),
            });
        }
    }
    events
}

#[cfg(test)]
#[path = "status_tests.rs"]
mod tests;
