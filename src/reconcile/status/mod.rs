//! Pure status computation: observed children -> `ModelDeploymentStatus`, conditions merged so
//! `lastTransitionTime` only moves when a condition's status flips.
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use super::build::{pod_selector, selector_string};
use super::validate::{ValidModel, ValidationError};
use crate::crd::{ModelDeployment, ModelDeploymentStatus};

mod transitions;
pub use transitions::{Transition, transitions};

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

/// Something that keeps the spec from being served, in words a user can act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// CamelCase, the Degraded condition's reason and the Warning event's reason.
    pub reason: String,
    pub message: String,
}

impl Problem {
    pub fn new(reason: impl Into<String>, message: impl Into<String>) -> Self {
        Problem {
            reason: reason.into(),
            message: message.into(),
        }
    }
}

/// What a reconcile saw of the current version.
#[derive(Debug, Default, Clone, Copy)]
pub struct Observation<'a> {
    /// The current version's Deployment as the apiserver returned it.
    pub deployment: Option<&'a Deployment>,
    /// Replicas it should have (default `spec.replicas`; the autoscaler's or a rollout's count).
    pub replicas: Option<i32>,
    /// Ready addresses of the model's Service that are pods of the current version.
    pub serving_endpoints: i32,
    /// A pod became ready moments ago, so the endpoints may still be catching up.
    pub endpoints_may_lag: bool,
    /// Why pods of the current version cannot start, if they cannot.
    pub pod_problem: Option<&'a Problem>,
    /// The apiserver refused a child, or a child's name belongs to someone else.
    pub apply_problem: Option<&'a Problem>,
}

/// A failure the Deployment reports about itself (from its own conditions).
fn deployment_failure(deployment: Option<&Deployment>) -> Option<Problem> {
    let conditions = deployment?.status.as_ref()?.conditions.as_ref()?;
    conditions.iter().find_map(|c| {
        let (type_, status) = (c.type_.as_deref()?, c.status.as_deref()?);
        let failed = (type_ == "Progressing"
            && status == "False"
            && c.reason.as_deref() == Some("ProgressDeadlineExceeded"))
            || (type_ == "ReplicaFailure" && status == "True");
        failed.then(|| {
            Problem::new(
                c.reason.clone().unwrap_or_else(|| type_.to_string()),
                c.message.clone().unwrap_or_default(),
            )
        })
    })
}

pub fn condition(
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
    let mut set = |type_, value, reason: &str, message: String| {
        merge_condition(
            &mut status.conditions,
            condition(type_, value, reason, message, generation, now),
        )
    };
    set(DEGRADED, true, error.reason(), message.clone());
    set(
        READY,
        false,
        "InvalidSpec",
        format!("the spec cannot be served: {message}"),
    );
    set(
        PROGRESSING,
        false,
        "InvalidSpec",
        "waiting for a spec change".into(),
    );
    status
}

/// Why the current version is not (yet) fully rolled out, when nothing is wrong.
/// `previous` is the last status: its version and ready count tell a new version from a scale.
fn progress_reason(
    previous: &ModelDeploymentStatus,
    version: &str,
    p: &RolloutProgress,
) -> &'static str {
    if previous.current_version.as_deref() != Some(version) {
        "RollingOut"
    } else if p.updated < p.replicas {
        "Updating"
    } else if p.ready < p.desired || previous.ready_replicas < p.desired {
        "ScalingUp"
    } else if p.replicas > p.desired || previous.ready_replicas > p.desired {
        "ScalingDown"
    } else {
        "Updating"
    }
}

/// Status for a valid spec, from what the reconcile observed.
pub fn valid_status(
    md: &ModelDeployment,
    model: &ValidModel,
    seen: &Observation,
    now: &Time,
) -> ModelDeploymentStatus {
    let generation = md.metadata.generation;
    let previous = md.status.clone().unwrap_or_default();
    let desired_pods = seen.replicas.unwrap_or(md.spec.replicas);
    let progress = RolloutProgress::from_deployment(desired_pods, seen.deployment);
    let problem = seen
        .apply_problem
        .or(seen.pod_problem)
        .cloned()
        .or_else(|| deployment_failure(seen.deployment));
    // Endpoints that lag pods just made ready are part of the rollout, not a fault.
    let endpoints_ok = progress.desired == 0 || seen.serving_endpoints >= progress.desired;
    let complete = progress.complete() && (endpoints_ok || !seen.endpoints_may_lag);
    let ready = complete && endpoints_ok && problem.is_none();
    let version = &model.version;
    let counts = format!("{}/{} replicas ready", progress.ready, progress.desired);
    let rolling = progress_reason(&previous, version, &progress);

    let (ready_reason, ready_message) = match &problem {
        _ if ready && progress.desired == 0 => ("ScaledToZero", "spec.replicas is 0".to_string()),
        _ if ready => ("Available", format!("version {version} serving: {counts}")),
        Some(p) => (p.reason.as_str(), counts),
        None if complete => (
            "NoEndpoints",
            format!(
                "Service {} has {} of {} ready endpoints for version {version}",
                model.instance, seen.serving_endpoints, progress.desired
            ),
        ),
        None => (rolling, counts),
    };
    let (progressing, progress_reason, progress_message) = match &problem {
        Some(p) => (
            false,
            p.reason.as_str(),
            format!("version {version} is not progressing: see the Degraded condition"),
        ),
        None if complete => (
            false,
            "RolloutComplete",
            format!("version {version} is rolled out"),
        ),
        None => (
            true,
            rolling,
            format!(
                "version {version}: {} updated, {} ready of {} desired",
                progress.updated, progress.ready, progress.desired
            ),
        ),
    };
    let mut conditions = previous.conditions.clone();
    let mut set = |type_, value, reason: &str, message: String| {
        merge_condition(
            &mut conditions,
            condition(type_, value, reason, message, generation, now),
        )
    };
    set(READY, ready, ready_reason, ready_message);
    set(PROGRESSING, progressing, progress_reason, progress_message);
    match &problem {
        Some(p) => set(DEGRADED, true, &p.reason, p.message.clone()),
        None => set(DEGRADED, false, "AsExpected", "no problems detected".into()),
    }

    let phase = if problem.is_some() {
        DEGRADED
    } else if ready {
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
        current_version: if ready {
            Some(version.clone())
        } else {
            previous.current_version.clone()
        },
        url: Some(format!(
            "http://{}.{}.svc.cluster.local",
            model.instance, model.namespace
        )),
        selector: Some(selector_string(&pod_selector(model))),
        ..previous
    }
}

/// `Ready=True`: for a valid spec, the current version is fully rolled out and serving.
pub fn is_ready(status: &ModelDeploymentStatus) -> bool {
    status
        .conditions
        .iter()
        .any(|c| c.type_ == READY && c.status == "True")
}

#[cfg(test)]
mod tests;
