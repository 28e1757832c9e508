use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use super::*;
use crate::crd::ModelDeployment;
use crate::reconcile::validate::validate;

fn md(replicas: i32, generation: i64) -> ModelDeployment {
    serde_yaml::from_str(&format!(
        "apiVersion: sconce.dev/v1alpha1\nkind: ModelDeployment\n\
         metadata: {{name: mnist, namespace: ml, uid: u, generation: {generation}}}\n\
         spec: {{replicas: {replicas}, model: {{version: '1', uri: 'file:///m', format: sequential}}}}\n"
    ))
    .expect("fixture")
}

fn deployment(yaml_status: &str, generation: i64) -> Deployment {
    serde_yaml::from_str(&format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: mnist-1, generation: {generation}}}\n\
         spec: {{selector: {{}}, template: {{}}}}\nstatus: {yaml_status}\n"
    ))
    .expect("deployment fixture")
}

fn t(secs: i64) -> Time {
    Time(Timestamp::from_second(secs).expect("timestamp"))
}

fn cond<'a>(s: &'a crate::crd::ModelDeploymentStatus, type_: &str) -> &'a Condition {
    s.conditions
        .iter()
        .find(|c| c.type_ == type_)
        .expect("condition present")
}

#[test]
fn ready_when_every_replica_is_ready() {
    let m = md(2, 4);
    let model = validate(&m).expect("valid");
    let d = deployment(
        "{observedGeneration: 1, replicas: 2, updatedReplicas: 2, readyReplicas: 2}",
        1,
    );
    let s = valid_status(&m, &model, Some(&d), &t(100));
    assert_eq!(s.observed_generation, Some(4));
    assert_eq!((s.replicas, s.ready_replicas), (2, 2));
    assert_eq!(s.ready_text.as_deref(), Some("2/2"));
    assert_eq!(s.phase.as_deref(), Some("Ready"));
    assert_eq!(s.current_version.as_deref(), Some("1"));
    assert_eq!(s.url.as_deref(), Some("http://mnist.ml.svc.cluster.local"));
    assert_eq!(s.model.as_deref(), Some("mnist"));
    assert_eq!(cond(&s, READY).status, "True");
    assert_eq!(cond(&s, READY).observed_generation, Some(4));
    assert_eq!(cond(&s, PROGRESSING).status, "False");
    assert_eq!(cond(&s, DEGRADED).status, "False");
}

#[test]
fn not_ready_while_pods_start_and_version_is_kept() {
    let mut m = md(2, 2);
    m.status = Some(crate::crd::ModelDeploymentStatus {
        current_version: Some("0".into()),
        ..Default::default()
    });
    let model = validate(&m).expect("valid");
    let d = deployment(
        "{observedGeneration: 1, replicas: 2, updatedReplicas: 2, readyReplicas: 1}",
        1,
    );
    let s = valid_status(&m, &model, Some(&d), &t(100));
    assert_eq!(cond(&s, READY).status, "False");
    assert_eq!(cond(&s, READY).reason, "ReplicasNotReady");
    assert_eq!(cond(&s, READY).message, "1/2 replicas ready");
    assert_eq!(cond(&s, PROGRESSING).status, "True");
    assert_eq!(s.phase.as_deref(), Some("Progressing"));
    assert_eq!(
        s.current_version.as_deref(),
        Some("0"),
        "not rolled out yet"
    );
}

#[test]
fn stale_deployment_status_is_not_complete() {
    let m = md(2, 1);
    let model = validate(&m).expect("valid");
    // The Deployment controller has not seen generation 2 yet.
    let d = deployment(
        "{observedGeneration: 1, replicas: 2, updatedReplicas: 2, readyReplicas: 2}",
        2,
    );
    let s = valid_status(&m, &model, Some(&d), &t(1));
    assert_eq!(cond(&s, READY).status, "False");
    // Surplus pods still terminating after a scale-down are not complete either.
    let d = deployment(
        "{observedGeneration: 2, replicas: 3, updatedReplicas: 3, readyReplicas: 3}",
        2,
    );
    assert_eq!(
        cond(&valid_status(&m, &model, Some(&d), &t(1)), READY).status,
        "False"
    );
}

#[test]
fn deadline_exceeded_is_degraded() {
    let m = md(1, 1);
    let model = validate(&m).expect("valid");
    let d = deployment(
        "{observedGeneration: 1, replicas: 1, updatedReplicas: 1, readyReplicas: 0, conditions: \
         [{type: Progressing, status: 'False', reason: ProgressDeadlineExceeded, message: 'too slow'}]}",
        1,
    );
    let s = valid_status(&m, &model, Some(&d), &t(1));
    assert_eq!(cond(&s, DEGRADED).status, "True");
    assert_eq!(cond(&s, DEGRADED).reason, "ProgressDeadlineExceeded");
    assert_eq!(cond(&s, PROGRESSING).status, "False");
    assert_eq!(s.phase.as_deref(), Some("Degraded"));
}

#[test]
fn transition_time_moves_only_when_status_flips() {
    let m = md(1, 1);
    let model = validate(&m).expect("valid");
    let up = deployment(
        "{observedGeneration: 1, replicas: 1, updatedReplicas: 1, readyReplicas: 1}",
        1,
    );
    let first = valid_status(&m, &model, Some(&up), &t(10));
    let mut again = m.clone();
    again.status = Some(first.clone());
    let second = valid_status(&again, &model, Some(&up), &t(20));
    assert_eq!(
        first, second,
        "same observation, same status: nothing to write"
    );

    let down = deployment(
        "{observedGeneration: 1, replicas: 1, updatedReplicas: 1, readyReplicas: 0}",
        1,
    );
    let third = valid_status(&again, &model, Some(&down), &t(30));
    assert_eq!(cond(&third, READY).last_transition_time, t(30));
    assert_eq!(
        cond(&third, DEGRADED).last_transition_time,
        t(10),
        "Degraded did not flip"
    );
}

#[test]
fn invalid_spec_keeps_counts_and_reports_reason() {
    let mut m = md(1, 5);
    m.spec.model.uri = "ftp://nope/m".into();
    m.status = Some(crate::crd::ModelDeploymentStatus {
        replicas: 1,
        ready_replicas: 1,
        current_version: Some("1".into()),
        ..Default::default()
    });
    let err = validate(&m).expect_err("invalid");
    let s = invalid_status(&m, &err, &t(5));
    assert_eq!(s.observed_generation, Some(5));
    assert_eq!((s.replicas, s.ready_replicas), (1, 1));
    assert_eq!(cond(&s, DEGRADED).status, "True");
    assert_eq!(cond(&s, DEGRADED).reason, "UnsupportedUriScheme");
    assert!(cond(&s, DEGRADED).message.contains("ftp://nope/m"));
    assert_eq!(cond(&s, READY).reason, "InvalidSpec");
    assert_eq!(s.phase.as_deref(), Some("Degraded"));
}

#[test]
fn transitions_fire_once() {
    let mut m = md(1, 1);
    m.spec.model.uri = "ftp://x/m".into();
    let err = validate(&m).expect_err("invalid");
    let bad = invalid_status(&m, &err, &t(1));
    let events = transitions(&[], &bad.conditions);
    assert_eq!(events.len(), 1, "{events:?}");
    assert!(events[0].warning);
    assert_eq!(events[0].reason, "UnsupportedUriScheme");
    assert!(
        transitions(&bad.conditions, &bad.conditions).is_empty(),
        "no change, no event"
    );

    let good_md = md(1, 2);
    let model = validate(&good_md).expect("valid");
    let up = deployment(
        "{observedGeneration: 1, replicas: 1, updatedReplicas: 1, readyReplicas: 1}",
        1,
    );
    let good = valid_status(&good_md, &model, Some(&up), &t(2));
    let events = transitions(&bad.conditions, &good.conditions);
    let reasons: Vec<_> = events.iter().map(|e| e.reason.as_str()).collect();
    assert_eq!(reasons, ["Recovered", "Ready"]);
    assert!(events.iter().all(|e| !e.warning));
}

#[test]
fn merge_adds_missing_conditions() {
    let mut list = Vec::new();
    merge_condition(
        &mut list,
        Condition {
            type_: "Ready".into(),
            status: "True".into(),
            reason: "Available".into(),
            message: String::new(),
            observed_generation: None,
            last_transition_time: t(1),
        },
    );
    assert_eq!(list.len(), 1);
}
