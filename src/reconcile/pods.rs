//! Pure diagnosis of serving pods that cannot start: the first cause a user can act on, in the
//! kubelet's and scheduler's own words, so the ModelDeployment's status names it within seconds
//! instead of waiting for the Deployment's progress deadline.
use std::time::Duration;

use k8s_openapi::api::core::v1::{ContainerStatus, Event, Pod};
use k8s_openapi::jiff::Timestamp;

use super::status::Problem;

/// Container waiting reasons that mean "this will not start by itself".
const STUCK_WAITING_REASONS: &[&str] = &[
    "CrashLoopBackOff",
    "CreateContainerConfigError",
    "CreateContainerError",
    "ErrImagePull",
    "ImagePullBackOff",
    "ErrImageNeverPull",
    "InvalidImageName",
    "RunContainerError",
    "ContainerCannotRun",
    "PreCreateHookError",
    "PostStartHookError",
];

/// Waiting reasons that mean the image is not there.
const IMAGE_REASONS: &[&str] = &[
    "ErrImagePull",
    "ImagePullBackOff",
    "ErrImageNeverPull",
    "InvalidImageName",
];

/// Longest excerpt of a termination message (the server's last log lines) put in a condition.
const MAX_EXCERPT: usize = 400;

/// The first problem among `pods` (sorted by name, so the answer is stable), with a count of
/// the other pods that have one.
pub fn diagnose(pods: &[&Pod]) -> Option<Problem> {
    let mut sorted: Vec<&Pod> = pods
        .iter()
        .copied()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect();
    sorted.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    let mut problems = sorted.iter().filter_map(|p| pod_problem(p));
    let mut first = problems.next()?;
    let others = problems.count();
    if others > 0 {
        first.message.push_str(&format!(
            " (and {others} other pod{})",
            if others == 1 { "" } else { "s" }
        ));
    }
    Some(first)
}

fn pod_problem(pod: &Pod) -> Option<Problem> {
    let name = pod.metadata.name.as_deref().unwrap_or("?");
    let status = pod.status.as_ref()?;
    if let Some(c) = status.conditions.iter().flatten().find(|c| {
        c.type_ == "PodScheduled"
            && c.status == "False"
            && c.reason.as_deref() == Some("Unschedulable")
    }) {
        return Some(Problem {
            reason: "Unschedulable".into(),
            message: format!(
                "pod {name} cannot be scheduled: {}",
                c.message.as_deref().unwrap_or("no node fits")
            ),
        });
    }
    if status.phase.as_deref() == Some("Failed") {
        let reason = status.reason.clone().unwrap_or_else(|| "PodFailed".into());
        return Some(Problem {
            message: format!(
                "pod {name} failed: {}",
                status.message.as_deref().unwrap_or(&reason)
            ),
            reason,
        });
    }
    if let Some(problem) = node_stopped_reporting(name, pod) {
        return Some(problem);
    }
    let containers = status
        .init_container_statuses
        .iter()
        .flatten()
        .chain(status.container_statuses.iter().flatten());
    containers
        .into_iter()
        .find_map(|c| container_problem(name, c))
}

/// The node lifecycle controller marks a pod not ready when its node stops reporting, while
/// the last container statuses the kubelet wrote still say ready: only a node fault looks so.
fn node_stopped_reporting(name: &str, pod: &Pod) -> Option<Problem> {
    let status = pod.status.as_ref()?;
    let pod_ready = status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "Ready")?;
    let containers = status.container_statuses.as_deref().unwrap_or_default();
    let stale = pod_ready.status == "False"
        && status.phase.as_deref() == Some("Running")
        && !containers.is_empty()
        && containers.iter().all(|c| c.ready);
    stale.then(|| {
        let node = pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.as_deref())
            .unwrap_or("?");
        Problem {
            reason: "NodeNotReady".into(),
            message: format!(
                "pod {name} runs on node {node}, which is not ready (its kubelet stopped \
                 reporting); the pod cannot serve"
            ),
        }
    })
}

fn container_problem(pod: &str, c: &ContainerStatus) -> Option<Problem> {
    let state = c.state.as_ref()?;
    let exit_text = |t: &k8s_openapi::api::core::v1::ContainerStateTerminated| {
        let mut text = format!("last exit code {}", t.exit_code);
        if let Some(reason) = t.reason.as_deref().filter(|r| *r != "Error") {
            text.push_str(&format!(" ({reason})"));
        }
        if let Some(message) = t.message.as_deref().and_then(excerpt) {
            text.push_str(&format!(": {message}"));
        }
        text
    };
    let last_exit = c
        .last_state
        .as_ref()
        .and_then(|s| s.terminated.as_ref())
        .map(exit_text);
    if let Some(waiting) = &state.waiting {
        let reason = waiting.reason.as_deref()?;
        if !STUCK_WAITING_REASONS.contains(&reason) {
            return None;
        }
        let mut message = format!("pod {pod} container {}: {reason}", c.name);
        // The back-off's own message ("back-off 40s restarting failed container...") changes
        // with every restart and says nothing the reason does not; the last exit says why.
        if let Some(detail) = waiting
            .message
            .as_deref()
            .filter(|m| !m.is_empty() && reason != "CrashLoopBackOff")
        {
            message.push_str(&format!(": {detail}"));
        }
        if let Some(exit) = last_exit {
            message.push_str(&format!("; {exit}"));
        }
        if IMAGE_REASONS.contains(&reason) {
            message.push_str(&format!(
                " (the node does not have image {:?} and cannot pull it: check \
                 spec.runtime.image, or load the image onto the node)",
                c.image
            ));
        }
        return Some(Problem {
            reason: reason.into(),
            message,
        });
    }
    // Between a crash and the kubelet's back-off the container shows as terminated. A container
    // that was restarted before is crash-looping: said the same way as during the back-off, so
    // the condition does not flap with every restart.
    let terminated = state.terminated.as_ref()?;
    if terminated.exit_code == 0 {
        return None;
    }
    if c.restart_count >= 1 {
        return Some(Problem {
            reason: "CrashLoopBackOff".into(),
            message: format!(
                "pod {pod} container {}: CrashLoopBackOff; {}",
                c.name,
                exit_text(terminated)
            ),
        });
    }
    let reason = terminated
        .reason
        .clone()
        .filter(|r| r != "Error" && r != "Completed")
        .unwrap_or_else(|| "ContainerFailed".into());
    let mut message = format!(
        "pod {pod} container {} exited with code {}",
        c.name, terminated.exit_code
    );
    if let Some(text) = terminated.message.as_deref().and_then(excerpt) {
        message.push_str(&format!(": {text}"));
    }
    Some(Problem { reason, message })
}

/// Pods scheduled for longer than `after` whose containers are still being created: their cause
/// (a volume that cannot mount, a sandbox that cannot start) is only in the pod's Events.
pub fn stuck_creating<'a>(pods: &[&'a Pod], now: Timestamp, after: Duration) -> Vec<&'a Pod> {
    pods.iter()
        .copied()
        .filter(|pod| {
            let Some(status) = pod.status.as_ref() else {
                return false;
            };
            let scheduled_at = status.conditions.iter().flatten().find_map(|c| {
                (c.type_ == "PodScheduled" && c.status == "True")
                    .then(|| c.last_transition_time.as_ref().map(|t| t.0))
                    .flatten()
            });
            let creating = status.container_statuses.iter().flatten().all(|c| {
                c.state
                    .as_ref()
                    .and_then(|s| s.waiting.as_ref())
                    .is_some_and(|w| {
                        matches!(
                            w.reason.as_deref(),
                            Some("ContainerCreating" | "PodInitializing")
                        )
                    })
            });
            let waited = scheduled_at
                .is_some_and(|t| now.duration_since(t).as_secs_f64() >= after.as_secs_f64());
            pod.metadata.deletion_timestamp.is_none()
                && status.phase.as_deref() == Some("Pending")
                && creating
                && waited
        })
        .collect()
}

/// The newest Warning event about `pod` (kubelet events: `FailedMount`,
/// `FailedCreatePodSandBox`, ...), as a problem.
pub fn problem_from_events(pod: &str, events: &[Event]) -> Option<Problem> {
    let when = |e: &Event| {
        e.last_timestamp
            .as_ref()
            .map(|t| t.0)
            .or(e.event_time.as_ref().map(|t| t.0))
            .or(e.first_timestamp.as_ref().map(|t| t.0))
    };
    events
        .iter()
        .filter(|e| {
            e.type_.as_deref() == Some("Warning") && e.involved_object.name.as_deref() == Some(pod)
        })
        .max_by_key(|e| when(e))
        .map(|e| Problem {
            reason: e.reason.clone().unwrap_or_else(|| "PodWarning".into()),
            message: format!(
                "pod {pod}: {}",
                e.message.as_deref().unwrap_or("no message").trim()
            ),
        })
}

/// A log line without its leading RFC 3339 timestamp (`2026-12-01T00:55:35.661497Z `), so the
/// same failure reads the same on every restart.
fn without_timestamp(line: &str) -> &str {
    let b = line.as_bytes();
    let looks_like_time =
        b.len() > 20 && b[..4].iter().all(u8::is_ascii_digit) && b[4] == b'-' && b[10] == b'T';
    match (looks_like_time, line.find(' ')) {
        (true, Some(space)) => line[space..].trim_start(),
        _ => line,
    }
}

/// The end of a termination message (where the error is), on one line.
fn excerpt(message: &str) -> Option<String> {
    let lines: Vec<&str> = message
        .lines()
        .map(|l| without_timestamp(l.trim()))
        .filter(|l| !l.is_empty())
        .collect();
    let mut text = String::new();
    for line in lines.iter().rev() {
        if !text.is_empty() && text.len() + line.len() + 3 > MAX_EXCERPT {
            break;
        }
        text = if text.is_empty() {
            line.to_string()
        } else {
            format!("{line} | {text}")
        };
    }
    if text.is_empty() {
        return None;
    }
    if text.len() > MAX_EXCERPT {
        let mut start = text.len() - MAX_EXCERPT;
        while !text.is_char_boundary(start) {
            start += 1;
        }
        text = format!("...{}", &text[start..]);
    }
    Some(text)
}

#[cfg(test)]
#[path = "pods_tests.rs"]
mod tests;
