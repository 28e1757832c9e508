//! One container as a supervised local process: start, probe, restart with back-off, stop.
//! Each runner is its own task and publishes snapshots; the pod worker turns them into status.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use tokio::process::{Child, Command};
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{info, warn};

use super::backoff::RestartBackoff;
use super::container_state::{ContainerSnapshot, RunState, Terminated};
use super::launch::{LaunchRefusal, LaunchSpec};
use super::probe::{ProbePlan, ProbeTracker, run_check};

pub struct RunnerConfig {
    /// `namespace/pod/container`, for logs.
    pub label: String,
    pub name: String,
    pub image: String,
    pub launch: Result<LaunchSpec, LaunchRefusal>,
    pub readiness: Option<ProbePlan>,
    pub liveness: Option<ProbePlan>,
    pub startup: Option<ProbePlan>,
    pub restart_policy: String,
    pub backoff: RestartBackoff,
    /// Grace for a liveness/startup-probe kill.
    pub termination_grace: Duration,
    pub log_file: Option<PathBuf>,
    pub pod_ip: Ipv4Addr,
    pub initial_restart_count: i32,
    pub http: reqwest::Client,
}

/// The pod worker's side of a runner: `stop` carries the grace period once the container should end.
pub struct RunnerHandle {
    pub snapshot: watch::Receiver<ContainerSnapshot>,
    pub stop: watch::Sender<Option<Duration>>,
    pub task: JoinHandle<()>,
}

pub fn spawn_runner(config: RunnerConfig, changed: Arc<Notify>) -> RunnerHandle {
    let initial = ContainerSnapshot {
        restart_count: config.initial_restart_count,
        ..ContainerSnapshot::waiting(&config.name, &config.image, "ContainerCreating", None)
    };
    let (snapshot_tx, snapshot) = watch::channel(initial);
    let (stop, stop_rx) = watch::channel(None);
    let runner = Runner {
        config,
        snapshot: snapshot_tx,
        changed,
        stop: stop_rx,
    };
    let task = tokio::spawn(runner.run());
    RunnerHandle {
        snapshot,
        stop,
        task,
    }
}

struct Runner {
    config: RunnerConfig,
    snapshot: watch::Sender<ContainerSnapshot>,
    changed: Arc<Notify>,
    stop: watch::Receiver<Option<Duration>>,
}

/// How one process run ended.
enum RunEnd {
    /// It exited (or a probe made us kill it): restart policy decides.
    Exited(Terminated),
    /// The pod is going away.
    Stopped(Terminated),
}

impl Runner {
    fn publish(&self, update: impl FnOnce(&mut ContainerSnapshot)) {
        self.snapshot.send_if_modified(|s| {
            let before = s.clone();
            update(s);
            *s != before
        });
        self.changed.notify_one();
    }

    /// The grace period once a stop was requested; a vanished pod worker means stop now.
    fn stop_requested(&self) -> Option<Duration> {
        if self.stop.has_changed().is_err() {
            return Some(Duration::ZERO);
        }
        *self.stop.borrow()
    }

    async fn wait_for_stop(&mut self) -> Duration {
        loop {
            if let Some(grace) = self.stop_requested() {
                return grace;
            }
            if self.stop.changed().await.is_err() {
                return Duration::ZERO;
            }
        }
    }

    async fn run(mut self) {
        let launch = match self.config.launch.clone() {
            Ok(launch) => launch,
            Err(refusal) => {
                warn!(container = %self.config.label, reason = refusal.reason, "{}", refusal.message);
                self.publish(|s| {
                    s.state = RunState::Waiting {
                        reason: refusal.reason.into(),
                        message: Some(refusal.message),
                    }
                });
                self.wait_for_stop().await;
                return;
            }
        };
        let mut crashes = 0u32;
        let mut first_run = true;
        loop {
            if self.stop_requested().is_some() {
                self.publish(|s| s.ready = false);
                return;
            }
            if !first_run {
                self.publish(|s| s.restart_count += 1);
            }
            first_run = false;
            let started = Instant::now();
            let end = match self.spawn(&launch) {
                Ok(child) => self.supervise(child).await,
                Err(e) => {
                    warn!(container = %self.config.label, "cannot start {}: {e}", launch.program.display());
                    let now = Timestamp::now();
                    RunEnd::Exited(Terminated {
                        reason: "StartError".into(),
                        ..Terminated::from_code(128, None, now, now).with_message(e.to_string())
                    })
                }
            };
            let terminated = match end {
                RunEnd::Stopped(t) => {
                    self.publish(|s| {
                        s.state = RunState::Terminated(t);
                        s.ready = false;
                    });
                    return;
                }
                RunEnd::Exited(t) => t,
            };
            info!(container = %self.config.label, exit_code = terminated.exit_code, "container exited");
            let restart = match self.config.restart_policy.as_str() {
                "Never" => false,
                "OnFailure" => terminated.exit_code != 0,
                _ => true,
            };
            if !restart {
                self.publish(|s| {
                    s.state = RunState::Terminated(terminated);
                    s.ready = false;
                });
                self.wait_for_stop().await;
                return;
            }
            crashes = self
                .config
                .backoff
                .next_crash_count(crashes, started.elapsed());
            let delay = self.config.backoff.delay(crashes);
            let message = format!("back-off {}s restarting failed container", delay.as_secs());
            self.publish(|s| {
                s.state = RunState::Waiting {
                    reason: "CrashLoopBackOff".into(),
                    message: Some(message),
                };
                s.last_terminated = Some(terminated);
                s.ready = false;
                s.started = false;
            });
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = self.wait_for_stop() => { return; }
            }
        }
    }

    fn spawn(&self, launch: &LaunchSpec) -> std::io::Result<Child> {
        let mut command = Command::new(&launch.program);
        command
            .args(&launch.args)
            .env_clear()
            .envs(launch.env.iter().map(|(k, v)| (k, v)))
            .current_dir(&launch.working_dir)
            .stdin(Stdio::null())
            .kill_on_drop(true);
        match &self.config.log_file {
            Some(path) => {
                let file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)?;
                command.stdout(file.try_clone()?).stderr(file);
            }
            None => {
                command.stdout(Stdio::null()).stderr(Stdio::null());
            }
        }
        // SAFETY: prctl is async-signal-safe; it only asks the kernel to SIGTERM the child if
        // the agent dies without cleaning up (e.g. SIGKILL), so no server outlives its agent.
        unsafe {
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                Ok(())
            });
        }
        let child = command.spawn()?;
        info!(container = %self.config.label, pid = child.id(), "started {}", launch.program.display());
        Ok(child)
    }

    async fn supervise(&mut self, mut child: Child) -> RunEnd {
        let started_at = Timestamp::now();
        let begin = Instant::now();
        let (readiness, liveness, startup) = (
            self.config.readiness.clone(),
            self.config.liveness.clone(),
            self.config.startup.clone(),
        );
        let mut ready = readiness.as_ref().map(|p| ProbeTracker::new(p, false));
        let mut live = liveness.as_ref().map(|p| ProbeTracker::new(p, true));
        let mut start = startup.as_ref().map(|p| ProbeTracker::new(p, false));
        let due = |plan: &Option<ProbePlan>| plan.as_ref().map(|p| begin + p.initial_delay);
        let (mut ready_due, mut live_due, mut start_due) =
            (due(&readiness), due(&liveness), due(&startup));
        self.publish(|s| {
            s.state = RunState::Running { started_at };
            s.started = startup.is_none();
            s.ready = startup.is_none() && readiness.is_none();
        });
        loop {
            // only probes that are active now: a finished startup probe must not wake the loop
            let next = [
                if start.is_some() { start_due } else { None },
                if start.is_none() { ready_due } else { None },
                if start.is_none() { live_due } else { None },
            ]
            .into_iter()
            .flatten()
            .min();
            let probe_wait = async {
                match next {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                exit = child.wait() => {
                    let finished = Timestamp::now();
                    return RunEnd::Exited(match exit {
                        Ok(status) => Terminated::from_exit(status, started_at, finished),
                        Err(e) => Terminated::from_code(128, None, started_at, finished).with_message(e.to_string()),
                    });
                }
                grace = self.wait_for_stop() => {
                    self.publish(|s| s.ready = false);
                    return RunEnd::Stopped(self.terminate(&mut child, grace, started_at).await);
                }
                _ = probe_wait => {}
            }
            let now = Instant::now();
            if let (Some(plan), Some(tracker), Some(at)) = (&startup, start.as_mut(), start_due)
                && at <= now
            {
                start_due = Some(now + plan.period);
                let ok = self.check(plan, "startup").await;
                if tracker.record(ok) {
                    start = None;
                    start_due = None;
                    let begin_others = Instant::now();
                    ready_due = readiness.as_ref().map(|_| begin_others);
                    live_due = liveness.as_ref().map(|_| begin_others);
                    self.publish(|s| {
                        s.started = true;
                        s.ready = readiness.is_none();
                    });
                } else if tracker.failure_threshold_reached() {
                    return self.kill_for_probe(&mut child, started_at, "startup").await;
                }
                continue;
            }
            if let (Some(plan), Some(tracker), Some(at)) = (&readiness, ready.as_mut(), ready_due)
                && at <= now
            {
                ready_due = Some(now + plan.period);
                let ok = self.check(plan, "readiness").await;
                let verdict = tracker.record(ok);
                self.publish(|s| s.ready = verdict);
            }
            if let (Some(plan), Some(tracker), Some(at)) = (&liveness, live.as_mut(), live_due)
                && at <= now
            {
                live_due = Some(now + plan.period);
                let ok = self.check(plan, "liveness").await;
                if !tracker.record(ok) {
                    return self
                        .kill_for_probe(&mut child, started_at, "liveness")
                        .await;
                }
            }
        }
    }

    async fn check(&self, plan: &ProbePlan, kind: &str) -> bool {
        match run_check(
            &plan.check,
            self.config.pod_ip,
            plan.timeout,
            &self.config.http,
        )
        .await
        {
            Ok(()) => true,
            Err(why) => {
                tracing::debug!(container = %self.config.label, "{kind} probe failed: {why}");
                false
            }
        }
    }

    async fn kill_for_probe(
        &mut self,
        child: &mut Child,
        started_at: Timestamp,
        kind: &str,
    ) -> RunEnd {
        warn!(container = %self.config.label, "{kind} probe failed; restarting the container");
        self.publish(|s| s.ready = false);
        let grace = self.config.termination_grace;
        let t = self.terminate(child, grace, started_at).await;
        RunEnd::Exited(t.with_message(format!(
            "container failed its {kind} probe and was restarted"
        )))
    }

    /// SIGTERM, up to `grace` to exit, then SIGKILL.
    async fn terminate(
        &self,
        child: &mut Child,
        grace: Duration,
        started_at: Timestamp,
    ) -> Terminated {
        if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) {
            // SAFETY: plain kill(2) on our own child's pid, which we have not reaped yet.
            unsafe {
                libc::kill(pid, libc::SIGTERM);
            }
        }
        let status = match tokio::time::timeout(grace, child.wait()).await {
            Ok(status) => status,
            Err(_) => {
                warn!(container = %self.config.label, "still running after {}s grace; SIGKILL", grace.as_secs());
                let _ = child.start_kill();
                child.wait().await
            }
        };
        let finished = Timestamp::now();
        match status {
            Ok(status) => Terminated::from_exit(status, started_at, finished),
            Err(e) => Terminated::from_code(137, Some(9), started_at, finished)
                .with_message(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests;
