//! Runner behaviour with real local processes (`/bin/sh`), no cluster needed.

use super::*;
use crate::node_agent::probe::ProbeCheck;

fn config(script: &str, restart_policy: &str) -> RunnerConfig {
    RunnerConfig {
        label: "test/pod/c".into(),
        name: "c".into(),
        image: "sconce-server:test".into(),
        launch: Ok(LaunchSpec {
            program: PathBuf::from("/bin/sh"),
            args: vec!["-c".into(), script.into()],
            env: vec![],
            working_dir: std::env::temp_dir(),
        }),
        readiness: None,
        liveness: None,
        startup: None,
        restart_policy: restart_policy.into(),
        backoff: RestartBackoff {
            initial: Duration::from_millis(50),
            cap: Duration::from_millis(200),
            reset_after: Duration::from_secs(60),
        },
        termination_grace: Duration::from_secs(2),
        log_file: None,
        pod_ip: Ipv4Addr::LOCALHOST,
        initial_restart_count: 0,
        http: reqwest::Client::new(),
    }
}

async fn wait_for(
    handle: &mut RunnerHandle,
    what: &str,
    pred: impl Fn(&ContainerSnapshot) -> bool,
) -> ContainerSnapshot {
    let result = tokio::time::timeout(
        Duration::from_secs(10),
        handle.snapshot.wait_for(|s| pred(s)),
    )
    .await
    .map(|r| r.map(|s| s.clone()));
    match result {
        Ok(Ok(s)) => s,
        _ => panic!(
            "timed out waiting for {what}; last snapshot {:?}",
            *handle.snapshot.borrow()
        ),
    }
}

#[tokio::test]
async fn crashing_container_restarts_with_last_state() {
    let mut handle = spawn_runner(config("exit 3", "Always"), Arc::new(Notify::new()));
    let snap = wait_for(&mut handle, "two restarts", |s| s.restart_count >= 2).await;
    let last = snap.last_terminated.expect("lastState.terminated");
    assert_eq!((last.exit_code, last.reason.as_str()), (3, "Error"));
    handle.stop.send_replace(Some(Duration::from_secs(1)));
    tokio::time::timeout(Duration::from_secs(5), handle.task)
        .await
        .expect("runner ends")
        .expect("no panic");
}

#[tokio::test]
async fn never_policy_leaves_the_container_terminated() {
    let mut handle = spawn_runner(config("exit 0", "Never"), Arc::new(Notify::new()));
    let snap = wait_for(&mut handle, "terminated", |s| {
        matches!(s.state, RunState::Terminated(_))
    })
    .await;
    assert_eq!(snap.restart_count, 0);
    let RunState::Terminated(t) = snap.state else {
        unreachable!()
    };
    assert_eq!((t.exit_code, t.reason.as_str()), (0, "Completed"));
}

#[tokio::test]
async fn stop_sends_sigterm_and_reports_the_exit() {
    let mut handle = spawn_runner(config("exec sleep 30", "Always"), Arc::new(Notify::new()));
    let snap = wait_for(&mut handle, "running and ready", |s| {
        matches!(s.state, RunState::Running { .. })
    })
    .await;
    assert!(
        snap.ready && snap.started,
        "no probes: ready as soon as it runs"
    );
    handle.stop.send_replace(Some(Duration::from_secs(5)));
    let snap = wait_for(&mut handle, "terminated", |s| {
        matches!(s.state, RunState::Terminated(_))
    })
    .await;
    let RunState::Terminated(t) = snap.state else {
        unreachable!()
    };
    assert_eq!((t.exit_code, t.signal), (143, Some(15)));
    assert!(!snap.ready);
}

#[tokio::test]
async fn sigkill_after_the_grace_period() {
    let mut handle = spawn_runner(
        config("trap '' TERM; while :; do sleep 0.1; done", "Always"),
        Arc::new(Notify::new()),
    );
    wait_for(&mut handle, "running", |s| {
        matches!(s.state, RunState::Running { .. })
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await; // let the shell install its trap
    handle.stop.send_replace(Some(Duration::from_millis(300)));
    let snap = wait_for(&mut handle, "terminated", |s| {
        matches!(s.state, RunState::Terminated(_))
    })
    .await;
    let RunState::Terminated(t) = snap.state else {
        unreachable!()
    };
    assert_eq!(t.exit_code, 137);
}

#[tokio::test]
async fn failing_liveness_probe_restarts_and_readiness_stays_false() {
    let mut cfg = config("exec sleep 30", "Always");
    let plan = |failure_threshold| ProbePlan {
        // port 1 on loopback: nothing listens, connection refused
        check: ProbeCheck::Tcp {
            host: None,
            port: 1,
        },
        initial_delay: Duration::ZERO,
        period: Duration::from_millis(100),
        timeout: Duration::from_millis(100),
        success_threshold: 1,
        failure_threshold,
    };
    cfg.readiness = Some(plan(1));
    cfg.liveness = Some(plan(2));
    let mut handle = spawn_runner(cfg, Arc::new(Notify::new()));
    let snap = wait_for(&mut handle, "a liveness restart", |s| s.restart_count >= 1).await;
    assert!(!snap.ready);
    let last = snap.last_terminated.expect("lastState.terminated");
    assert_eq!(last.exit_code, 143);
    assert!(last.message.unwrap_or_default().contains("liveness"));
}

#[tokio::test]
async fn refused_launch_waits_with_its_reason_until_stopped() {
    let mut cfg = config("true", "Always");
    cfg.launch = Err(LaunchRefusal {
        reason: "ImageNotSupportedLocally",
        message: "nginx".into(),
    });
    let mut handle = spawn_runner(cfg, Arc::new(Notify::new()));
    let snap = wait_for(&mut handle, "waiting", |s| {
        matches!(&s.state, RunState::Waiting { reason, .. } if reason == "ImageNotSupportedLocally")
    })
    .await;
    assert!(!snap.ready);
    handle.stop.send_replace(Some(Duration::ZERO));
    tokio::time::timeout(Duration::from_secs(5), handle.task)
        .await
        .expect("runner ends")
        .expect("no panic");
}

#[tokio::test]
async fn startup_probe_gates_readiness_and_probes_keep_their_period() {
    let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = accepted.clone();
    tokio::spawn(async move {
        while listener.accept().await.is_ok() {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    });
    let plan = ProbePlan {
        check: ProbeCheck::Tcp { host: None, port },
        initial_delay: Duration::ZERO,
        period: Duration::from_millis(200),
        timeout: Duration::from_millis(200),
        success_threshold: 1,
        failure_threshold: 3,
    };
    let mut cfg = config("exec sleep 30", "Always");
    cfg.startup = Some(plan.clone());
    cfg.readiness = Some(plan.clone());
    cfg.liveness = Some(plan);
    let mut handle = spawn_runner(cfg, Arc::new(Notify::new()));
    let snap = wait_for(&mut handle, "started and ready", |s| s.started && s.ready).await;
    assert_eq!(snap.restart_count, 0);
    let before = accepted.load(std::sync::atomic::Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let probes = accepted.load(std::sync::atomic::Ordering::SeqCst) - before;
    // readiness + liveness every 200 ms: about 10 in a second, and the startup probe has stopped
    assert!((4..=16).contains(&probes), "{probes} probes in 1 s");
    handle.stop.send_replace(Some(Duration::from_secs(1)));
}
