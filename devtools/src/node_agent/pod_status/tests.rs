use super::*;

fn ts(secs: i64) -> Timestamp {
    Timestamp::from_second(1_700_000_000 + secs).expect("valid timestamp")
}

fn running(name: &str, ready: bool) -> ContainerSnapshot {
    ContainerSnapshot {
        name: name.into(),
        image: "sconce-server:dev".into(),
        state: RunState::Running { started_at: ts(1) },
        last_terminated: None,
        restart_count: 0,
        ready,
        started: true,
    }
}

fn facts<'a>(previous: Option<&'a PodStatus>, now: i64) -> PodFacts<'a> {
    PodFacts {
        pod_ip: Some(Ipv4Addr::new(127, 0, 1, 2)),
        initialized: true,
        start_time: ts(0),
        restart_policy: "Always",
        previous,
        now: ts(now),
    }
}

fn cond<'a>(status: &'a PodStatus, type_: &str) -> &'a PodCondition {
    status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == type_)
        .expect("condition present")
}

#[test]
fn ready_pod_reports_ips_phase_and_conditions() {
    let status = compute_status(&facts(None, 5), &[running("server", true)]);
    assert_eq!(status.phase.as_deref(), Some("Running"));
    assert_eq!(status.pod_ip.as_deref(), Some("127.0.1.2"));
    assert_eq!(
        status.pod_ips,
        Some(vec![PodIP {
            ip: "127.0.1.2".into()
        }])
    );
    assert_eq!(status.host_ip.as_deref(), Some("127.0.0.1"));
    for t in ["PodScheduled", "Initialized", "ContainersReady", "Ready"] {
        assert_eq!(cond(&status, t).status, "True", "{t}");
        assert_eq!(cond(&status, t).last_transition_time, Some(Time(ts(5))));
    }
    let cs = &status
        .container_statuses
        .as_ref()
        .expect("container statuses")[0];
    assert!(cs.ready);
    assert_eq!(cs.started, Some(true));
    assert_eq!(
        cs.state
            .as_ref()
            .and_then(|s| s.running.as_ref())
            .and_then(|r| r.started_at.clone()),
        Some(Time(ts(1)))
    );
}

#[test]
fn unchanged_state_gives_an_identical_status_so_nothing_is_written() {
    let first = compute_status(&facts(None, 5), &[running("server", true)]);
    let again = compute_status(&facts(Some(&first), 50), &[running("server", true)]);
    assert_eq!(first, again);
}

#[test]
fn transition_time_moves_only_for_flipped_conditions() {
    let first = compute_status(&facts(None, 5), &[running("server", true)]);
    let down = compute_status(&facts(Some(&first), 9), &[running("server", false)]);
    assert_eq!(cond(&down, "Ready").status, "False");
    assert_eq!(cond(&down, "Ready").last_transition_time, Some(Time(ts(9))));
    assert_eq!(
        cond(&down, "Ready").reason.as_deref(),
        Some("ContainersNotReady")
    );
    assert_eq!(
        cond(&down, "PodScheduled").last_transition_time,
        Some(Time(ts(5)))
    );
}

#[test]
fn restarting_container_keeps_pod_running_with_last_state() {
    let crashed = Terminated::from_code(1, None, ts(1), ts(3));
    let c = ContainerSnapshot {
        state: RunState::Waiting {
            reason: "CrashLoopBackOff".into(),
            message: None,
        },
        last_terminated: Some(crashed),
        restart_count: 2,
        ready: false,
        started: false,
        ..running("server", false)
    };
    let status = compute_status(&facts(None, 5), &[c]);
    assert_eq!(status.phase.as_deref(), Some("Running"));
    let cs = &status
        .container_statuses
        .as_ref()
        .expect("container statuses")[0];
    assert_eq!(cs.restart_count, 2);
    let last = cs
        .last_state
        .as_ref()
        .and_then(|s| s.terminated.as_ref())
        .expect("lastState.terminated");
    assert_eq!((last.exit_code, last.reason.as_deref()), (1, Some("Error")));
    assert_eq!(
        cs.state
            .as_ref()
            .and_then(|s| s.waiting.as_ref())
            .and_then(|w| w.reason.as_deref()),
        Some("CrashLoopBackOff")
    );
}

#[test]
fn phase_rules() {
    let waiting = ContainerSnapshot::waiting("c", "nginx", "ImageNotSupportedLocally", None);
    let done = |code| ContainerSnapshot {
        state: RunState::Terminated(Terminated::from_code(code, None, ts(0), ts(1))),
        ..running("c", false)
    };
    assert_eq!(
        phase("Always", &[waiting.clone(), running("s", true)]),
        "Pending"
    );
    assert_eq!(phase("Always", &[]), "Pending");
    assert_eq!(phase("Never", &[done(0)]), "Succeeded");
    assert_eq!(phase("Never", &[done(0), done(2)]), "Failed");
    assert_eq!(phase("OnFailure", &[done(2)]), "Running");
    assert_eq!(phase("Always", &[done(0)]), "Running");
}

#[test]
fn exit_reasons_follow_the_kubelet() {
    assert_eq!(
        Terminated::from_code(0, None, ts(0), ts(1)).reason,
        "Completed"
    );
    assert_eq!(
        Terminated::from_code(137, Some(9), ts(0), ts(1)).reason,
        "Error"
    );
    use std::os::unix::process::ExitStatusExt;
    let killed = Terminated::from_exit(std::process::ExitStatus::from_raw(15), ts(0), ts(1));
    assert_eq!((killed.exit_code, killed.signal), (143, Some(15)));
}

#[test]
fn init_containers_are_reported_not_faked() {
    let facts = PodFacts {
        initialized: false,
        ..facts(None, 5)
    };
    let waiting = ContainerSnapshot::waiting(
        "c",
        "sconce-server:dev",
        "InitContainersNotSupportedLocally",
        None,
    );
    let status = compute_status(&facts, &[waiting]);
    assert_eq!(cond(&status, "Initialized").status, "False");
    assert_eq!(
        cond(&status, "Initialized").reason.as_deref(),
        Some("InitContainersNotSupportedLocally")
    );
    assert_eq!(status.phase.as_deref(), Some("Pending"));
}
