//! Pod status as data: computed from container snapshots, compared with what was last written,
//! and only then sent. Condition `lastTransitionTime` moves only when a condition's status flips.

use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting,
    ContainerStatus, PodCondition, PodIP, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use super::container_state::{ContainerSnapshot, RunState, Terminated};
use super::launch::HOST_IP;

/// Everything the status depends on besides the containers.
pub struct PodFacts<'a> {
    pub pod_ip: Option<Ipv4Addr>,
    /// False when the pod has init containers, which the agent does not run.
    pub initialized: bool,
    pub start_time: Timestamp,
    pub restart_policy: &'a str,
    /// Status currently stored (or last written): source of unchanged `lastTransitionTime`s.
    pub previous: Option<&'a PodStatus>,
    pub now: Timestamp,
}

pub fn compute_status(facts: &PodFacts<'_>, containers: &[ContainerSnapshot]) -> PodStatus {
    let all_ready = !containers.is_empty() && containers.iter().all(|c| c.ready);
    let ready_reason = (!all_ready).then(|| {
        let not_ready: Vec<&str> = containers
            .iter()
            .filter(|c| !c.ready)
            .map(|c| c.name.as_str())
            .collect();
        (
            "ContainersNotReady",
            format!("containers with unready status: [{}]", not_ready.join(" ")),
        )
    });
    let conditions = vec![
        condition(facts, "PodScheduled", true, None),
        condition(
            facts,
            "Initialized",
            facts.initialized,
            (!facts.initialized).then(|| {
                (
                    "InitContainersNotSupportedLocally",
                    "the local node agent does not run init containers".into(),
                )
            }),
        ),
        condition(facts, "ContainersReady", all_ready, ready_reason.clone()),
        condition(facts, "Ready", all_ready, ready_reason),
    ];
    PodStatus {
        phase: Some(phase(facts.restart_policy, containers).into()),
        host_ip: Some(HOST_IP.into()),
        pod_ip: facts.pod_ip.map(|ip| ip.to_string()),
        pod_ips: facts.pod_ip.map(|ip| vec![PodIP { ip: ip.to_string() }]),
        start_time: Some(Time(facts.start_time)),
        conditions: Some(conditions),
        container_statuses: Some(containers.iter().map(container_status).collect()),
        qos_class: facts.previous.and_then(|p| p.qos_class.clone()),
        ..PodStatus::default()
    }
}

fn condition(
    facts: &PodFacts<'_>,
    type_: &str,
    ok: bool,
    why: Option<(&str, String)>,
) -> PodCondition {
    let status = if ok { "True" } else { "False" };
    let since = facts
        .previous
        .and_then(|p| p.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == type_))
        .filter(|c| c.status == status)
        .and_then(|c| c.last_transition_time.clone())
        .unwrap_or(Time(facts.now));
    let (reason, message) = why
        .map(|(r, m)| (Some(r.to_string()), Some(m)))
        .unwrap_or_default();
    PodCondition {
        type_: type_.into(),
        status: status.into(),
        last_transition_time: Some(since),
        reason,
        message,
        ..PodCondition::default()
    }
}

/// The kubelet's phase rules: any container not yet started keeps the pod Pending; a running
/// or restarting container makes it Running; otherwise all exited and nothing restarts.
pub fn phase(restart_policy: &str, containers: &[ContainerSnapshot]) -> &'static str {
    let mut waiting_first_start = 0;
    let mut running = 0;
    let mut stopped = 0;
    let mut succeeded = 0;
    for c in containers {
        match &c.state {
            RunState::Running { .. } => running += 1,
            RunState::Terminated(t) => {
                stopped += 1;
                if t.exit_code == 0 {
                    succeeded += 1;
                }
            }
            RunState::Waiting { .. } if c.last_terminated.is_some() => stopped += 1,
            RunState::Waiting { .. } => waiting_first_start += 1,
        }
    }
    if waiting_first_start > 0 || containers.is_empty() {
        "Pending"
    } else if running > 0 || restart_policy == "Always" {
        "Running"
    } else if stopped == succeeded {
        "Succeeded"
    } else if restart_policy == "OnFailure" {
        "Running"
    } else {
        "Failed"
    }
}

fn terminated_state(t: &Terminated) -> ContainerStateTerminated {
    ContainerStateTerminated {
        exit_code: t.exit_code,
        signal: t.signal,
        reason: Some(t.reason.clone()),
        message: t.message.clone(),
        started_at: Some(Time(t.started_at)),
        finished_at: Some(Time(t.finished_at)),
        ..ContainerStateTerminated::default()
    }
}

pub fn container_status(c: &ContainerSnapshot) -> ContainerStatus {
    let state = match &c.state {
        RunState::Waiting { reason, message } => ContainerState {
            waiting: Some(ContainerStateWaiting {
                reason: Some(reason.clone()),
                message: message.clone(),
            }),
            ..ContainerState::default()
        },
        RunState::Running { started_at } => ContainerState {
            running: Some(ContainerStateRunning {
                started_at: Some(Time(*started_at)),
            }),
            ..ContainerState::default()
        },
        RunState::Terminated(t) => ContainerState {
            terminated: Some(terminated_state(t)),
            ..ContainerState::default()
        },
    };
    let last_state = c.last_terminated.as_ref().map(|t| ContainerState {
        terminated: Some(terminated_state(t)),
        ..ContainerState::default()
    });
    ContainerStatus {
        name: c.name.clone(),
        image: c.image.clone(),
        // no image is pulled; the ID says where the process came from
        image_id: String::new(),
        ready: c.ready,
        started: Some(c.started),
        restart_count: c.restart_count,
        state: Some(state),
        last_state,
        ..ContainerStatus::default()
    }
}

#[cfg(test)]
mod tests;
