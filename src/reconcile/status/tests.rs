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

/// What the reconcile saw: the Deployment, and `serving` ready endpoints of the version.
fn seen(d: &Deployment, serving: i32) -> Observation<'_> {
    Observation {
        deployment: Some(d),
        serving_endpoints: serving,
        ..Default::default()
    }
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
    let s = valid_status(&m, &model, &seen(&d, 2), &t(100));
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
    let s = valid_status(&m, &model, &seen(&d, 2), &t(100));
    assert_eq!(cond(&s, READY).status, "False");
    assert_eq!(cond(&s, READY).reason, "RollingOut");
    assert_eq!(cond(&s, READY).message, "1/2 replicas ready");
    assert_eq!(cond(&s, PROGRESSING).reason, "RollingOut");
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
    let s = valid_status(&m, &model, &seen(&d, 2), &t(1));
    assert_eq!(cond(&s, READY).status, "False");
    // Surplus pods still terminating after a scale-down are not complete either.
    let d = deployment(
        "{observedGeneration: 2, replicas: 3, updatedReplicas: 3, readyReplicas: 3}",
        2,
    );
    assert_eq!(
        cond(&valid_status(&m, &model, &seen(&d, 2), &t(1)), READY).status,
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
    let s = valid_status(&m, &model, &seen(&d, 2), &t(1));
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
    let first = valid_status(&m, &model, &seen(&up, 2), &t(10));
    let mut again = m.clone();
    again.status = Some(first.clone());
    let second = valid_status(&again, &model, &seen(&up, 2), &t(20));
    assert_eq!(
        first, second,
        "same observation, same status: nothing to write"
    );

    let down = deployment(
        "{observedGeneration: 1, replicas: 1, updatedReplicas: 1, readyReplicas: 0}",
        1,
    );
    let third = valid_status(&again, &model, &seen(&down, 2), &t(30));
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
    let good = valid_status(&good_md, &model, &seen(&up, 2), &t(2));
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

fn complete(replicas: i32, ready: i32) -> Deployment {
    deployment(
        &format!(
            "{{observedGeneration: 1, replicas: {replicas}, updatedReplicas: {replicas}, \
             readyReplicas: {ready}}}"
        ),
        1,
    )
}

fn serving(m: &ModelDeployment) -> ModelDeployment {
    let model = validate(m).expect("valid");
    let mut m = m.clone();
    let d = complete(m.spec.replicas, m.spec.replicas);
    m.status = Some(valid_status(&m, &model, &seen(&d, m.spec.replicas), &t(1)));
    assert!(is_ready(m.status.as_ref().expect("status")));
    m
}

#[test]
fn pods_that_cannot_start_are_degraded_and_not_progressing() {
    let m = md(2, 1);
    let model = validate(&m).expect("valid");
    let d = complete(2, 0);
    let problem = Problem::new(
        "CrashLoopBackOff",
        "pod mnist-1-a container server: CrashLoopBackOff",
    );
    let s = valid_status(
        &m,
        &model,
        &Observation {
            pod_problem: Some(&problem),
            ..seen(&d, 0)
        },
        &t(1),
    );
    assert_eq!(cond(&s, DEGRADED).status, "True");
    assert_eq!(cond(&s, DEGRADED).reason, "CrashLoopBackOff");
    assert_eq!(cond(&s, DEGRADED).message, problem.message);
    assert_eq!(cond(&s, PROGRESSING).status, "False");
    assert_eq!(cond(&s, PROGRESSING).reason, "CrashLoopBackOff");
    assert_eq!(cond(&s, READY).status, "False");
    assert_eq!(cond(&s, READY).reason, "CrashLoopBackOff");
    assert_eq!(s.phase.as_deref(), Some("Degraded"));
    let events = transitions(&[], &s.conditions);
    assert_eq!(
        events,
        [Transition::warning("CrashLoopBackOff", &problem.message)],
        "one warning, no NotReady"
    );
}

#[test]
fn a_refused_child_wins_over_everything_else() {
    let m = md(1, 3);
    let model = validate(&m).expect("valid");
    let d = complete(1, 1);
    let refused = Problem::new("ServiceRejected", "the apiserver refused Service x: bad");
    let pod = Problem::new("CrashLoopBackOff", "crash");
    let s = valid_status(
        &m,
        &model,
        &Observation {
            apply_problem: Some(&refused),
            pod_problem: Some(&pod),
            ..seen(&d, 1)
        },
        &t(1),
    );
    assert_eq!(cond(&s, DEGRADED).reason, "ServiceRejected");
    assert_eq!(cond(&s, READY).status, "False");
    assert_eq!(s.observed_generation, Some(3));
}

#[test]
fn ready_needs_the_services_endpoints() {
    let m = serving(&md(2, 1));
    let model = validate(&m).expect("valid");
    let d = complete(2, 2);
    let s = valid_status(&m, &model, &seen(&d, 0), &t(5));
    assert_eq!(cond(&s, READY).status, "False");
    assert_eq!(cond(&s, READY).reason, "NoEndpoints");
    assert_eq!(
        cond(&s, READY).message,
        "Service mnist has 0 of 2 ready endpoints for version 1"
    );
    assert_eq!(cond(&s, DEGRADED).status, "False");
    assert_eq!(cond(&s, PROGRESSING).status, "False");
    let old = &m.status.as_ref().expect("status").conditions;
    let events = transitions(old, &s.conditions);
    assert_eq!(events.len(), 1, "{events:?}");
    assert!(events[0].warning && events[0].reason == "NoEndpoints");
}

#[test]
fn a_scale_up_is_normal_progress_not_a_warning() {
    let mut m = serving(&md(2, 1));
    m.spec.replicas = 3;
    m.metadata.generation = Some(2);
    let model = validate(&m).expect("valid");
    let d = deployment(
        "{observedGeneration: 2, replicas: 3, updatedReplicas: 3, readyReplicas: 2}",
        2,
    );
    let s = valid_status(&m, &model, &seen(&d, 2), &t(5));
    assert_eq!(cond(&s, READY).status, "False");
    assert_eq!(cond(&s, READY).reason, "ScalingUp");
    assert_eq!(cond(&s, PROGRESSING).status, "True");
    assert_eq!(cond(&s, PROGRESSING).reason, "ScalingUp");
    assert_eq!(s.current_version.as_deref(), Some("1"));
    let old = &m.status.as_ref().expect("status").conditions;
    let events = transitions(old, &s.conditions);
    assert_eq!(events.len(), 1, "{events:?}");
    assert!(!events[0].warning);
    assert_eq!(events[0].reason, "ScalingUp");
}

#[test]
fn a_new_version_is_rolling_out_and_then_ready_with_its_own_message() {
    let mut m = serving(&md(2, 1));
    m.spec.model.version = "3".into();
    let model = validate(&m).expect("valid");
    let starting = deployment(
        "{observedGeneration: 1, replicas: 2, updatedReplicas: 2}",
        1,
    );
    let rolling = valid_status(&m, &model, &seen(&starting, 0), &t(5));
    assert_eq!(cond(&rolling, PROGRESSING).reason, "RollingOut");
    let old = m.status.clone().expect("status").conditions;
    let events = transitions(&old, &rolling.conditions);
    assert_eq!(events.len(), 1);
    assert_eq!(
        (events[0].warning, events[0].reason.as_str()),
        (false, "RollingOut")
    );

    let done = valid_status(&m, &model, &seen(&complete(2, 2), 2), &t(6));
    let events = transitions(&rolling.conditions, &done.conditions);
    assert_eq!(
        events,
        [Transition::normal(
            "Ready",
            "version 3 serving: 2/2 replicas ready"
        )]
    );
    assert_eq!(done.current_version.as_deref(), Some("3"));
}

#[test]
fn a_changed_degraded_message_is_news() {
    let m = md(1, 1);
    let model = validate(&m).expect("valid");
    let d = complete(1, 0);
    let first = Problem::new("CrashLoopBackOff", "last exit code 1: a");
    let second = Problem::new("CrashLoopBackOff", "last exit code 2: b");
    let with = |p| Observation {
        pod_problem: Some(p),
        ..seen(&d, 0)
    };
    let a = valid_status(&m, &model, &with(&first), &t(1));
    let b = valid_status(&m, &model, &with(&second), &t(2));
    assert_eq!(transitions(&a.conditions, &a.conditions), []);
    assert_eq!(
        transitions(&a.conditions, &b.conditions),
        [Transition::warning(
            "CrashLoopBackOff",
            "last exit code 2: b"
        )]
    );
}

#[test]
fn endpoints_catching_up_with_fresh_pods_are_progress_not_a_fault() {
    let mut m = serving(&md(2, 1));
    m.spec.replicas = 3;
    let model = validate(&m).expect("valid");
    let d = complete(3, 3);
    let lagging = Observation {
        endpoints_may_lag: true,
        ..seen(&d, 2)
    };
    let s = valid_status(&m, &model, &lagging, &t(5));
    assert_eq!(cond(&s, READY).status, "False");
    assert_eq!(cond(&s, READY).reason, "ScalingUp");
    assert_eq!(cond(&s, PROGRESSING).status, "True");
    let old = &m.status.as_ref().expect("status").conditions;
    assert!(transitions(old, &s.conditions).iter().all(|e| !e.warning));
    let caught_up = valid_status(&m, &model, &seen(&d, 3), &t(6));
    assert_eq!(cond(&caught_up, READY).status, "True");
}
