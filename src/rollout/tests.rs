//! The rollout state machine, phase by phase and event by event, with a simulated clock.
use std::time::Duration;

use super::*;
use crate::reconcile::validate::rollout::AnalysisPlan;

fn t(secs: i64) -> Timestamp {
    Timestamp::from_second(1_000_000 + secs).expect("time")
}

fn plan(steps: Vec<Step>) -> RolloutPlan {
    RolloutPlan {
        steps,
        analysis: None,
        progress_deadline: Duration::from_secs(600),
        history_limit: 3,
        http_route: None,
    }
}

fn canary_plan() -> RolloutPlan {
    plan(vec![
        Step::SetWeight(10),
        Step::Pause(Some(Duration::from_secs(60))),
        Step::SetWeight(50),
        Step::Pause(None),
    ])
}

fn with_analysis(mut p: RolloutPlan) -> RolloutPlan {
    p.analysis = Some(AnalysisPlan {
        interval: Duration::from_secs(10),
        min_requests: 10,
        max_error_rate: Some(0.01),
        max_latency_p99: None,
        failure_limit: 2,
        max_error_rate_increase: None,
        max_latency_ratio: None,
    });
    p
}

/// A ModelDeployment's rollout, driven step by step like the reconcile would.
struct Sim {
    plan: RolloutPlan,
    status: ModelDeploymentStatus,
    target: String,
    generation: i64,
    replicas: i32,
    promote: Option<String>,
    abort: Option<String>,
}

impl Sim {
    fn serving(version: &str, plan: RolloutPlan) -> Sim {
        Sim {
            plan,
            status: ModelDeploymentStatus {
                stable_version: Some(version.into()),
                current_version: Some(version.into()),
                ..Default::default()
            },
            target: version.into(),
            generation: 1,
            replicas: 4,
            promote: None,
            abort: None,
        }
    }

    fn set_version(&mut self, v: &str) {
        self.target = v.into();
        self.generation += 1;
    }

    /// One reconcile at `now` with `canary_ready` ready canary pods.
    fn step(&mut self, now: i64, canary_ready: i32) -> Decision {
        self.step_with(now, canary_ready, None)
    }

    fn step_with(&mut self, now: i64, canary_ready: i32, verdict: Option<Verdict>) -> Decision {
        let verdict = verdict.map(|v| {
            (
                v,
                AnalysisStatus {
                    time: Time(t(now)),
                    verdict: String::new(),
                    message: String::new(),
                    consecutive_failures: 0,
                    canary: None,
                    stable: None,
                },
            )
        });
        let uri = format!("file:///models/{}", self.target);
        let input = Input {
            plan: &self.plan,
            target: &self.target,
            target_uri: &uri,
            replicas: self.replicas,
            generation: self.generation,
            previous: &self.status,
            promote: self.promote.as_deref(),
            abort: self.abort.as_deref(),
            canary_ready,
            verdict,
            now: t(now),
        };
        let d = decide(&input);
        self.status = d.status.clone();
        d
    }
}

fn reasons(d: &Decision) -> Vec<&str> {
    d.events.iter().map(|e| e.reason.as_str()).collect()
}

#[test]
fn the_first_version_is_stable_at_once() {
    let mut sim = Sim::serving("1", canary_plan());
    sim.status = ModelDeploymentStatus::default();
    let d = sim.step(0, 0);
    assert_eq!(
        d.stable,
        VersionPods {
            version: "1".into(),
            replicas: 4
        }
    );
    assert_eq!(d.canary, None);
    assert!(d.events.is_empty());
    assert_eq!(d.status.rollout_phase, None);
}

#[test]
fn status_from_before_rollouts_is_read_as_stable() {
    let mut sim = Sim::serving("1", plan(vec![]));
    sim.status.stable_version = None;
    let d = sim.step(0, 0);
    assert_eq!(d.stable.version, "1");
    assert_eq!(d.status.stable_version.as_deref(), Some("1"));
}

#[test]
fn a_canary_walks_its_steps_and_is_promoted() {
    let mut sim = Sim::serving("1", canary_plan());
    sim.set_version("2");
    let d = sim.step(0, 0);
    assert_eq!(reasons(&d), ["RolloutStarted"]);
    assert_eq!(
        d.canary,
        Some(VersionPods {
            version: "2".into(),
            replicas: 1
        })
    );
    assert_eq!(d.stable.replicas, 4, "stable keeps its replicas");
    assert_eq!(d.status.rollout_phase, Some(RolloutPhase::Progressing));
    assert_eq!(d.status.canary_weight, Some(10));
    assert_eq!(
        d.weights,
        (100, 0),
        "no weight before the canary has a ready pod"
    );
    assert_eq!(
        d.wake_in,
        Some(Duration::from_millis(600_100)),
        "the progress deadline"
    );

    // canary ready: step 1 (setWeight 10) done, step 2 (pause 60s) starts
    let d = sim.step(5, 1);
    assert_eq!(reasons(&d), ["CanaryStep"]);
    assert_eq!(d.status.rollout_phase, Some(RolloutPhase::Paused));
    assert_eq!(d.weights, (90, 10));
    assert_eq!(d.wake_in, Some(Duration::from_secs(60)));
    assert_eq!(
        d.status.rollout.as_ref().and_then(|r| r.current_step),
        Some(1)
    );

    // half way through the pause nothing changes
    let d = sim.step(35, 1);
    assert!(d.events.is_empty());
    assert_eq!(d.wake_in, Some(Duration::from_secs(30)));

    // pause over: setWeight 50 needs 2 pods
    let d = sim.step(65, 1);
    assert_eq!(reasons(&d), ["CanaryStep"]);
    assert_eq!(d.canary.as_ref().map(|c| c.replicas), Some(2));
    assert_eq!(d.status.rollout_phase, Some(RolloutPhase::Progressing));

    // ready at 50: the manual pause
    let d = sim.step(70, 2);
    assert_eq!(reasons(&d), ["CanaryStep"]);
    assert_eq!(d.status.rollout_phase, Some(RolloutPhase::Paused));
    assert_eq!(d.wake_in, None, "a manual pause has no timer");
    let d = sim.step(5000, 2);
    assert!(d.events.is_empty(), "a manual pause waits forever");

    // promoted by annotation: promoting scales the canary to all replicas
    sim.promote = Some("go".into());
    let d = sim.step(5001, 2);
    assert_eq!(reasons(&d), ["Promoted", "Promoting"]);
    assert_eq!(d.canary.as_ref().map(|c| c.replicas), Some(4));
    assert_eq!(d.status.rollout_phase, Some(RolloutPhase::Promoting));
    assert_eq!(
        d.weights,
        (50, 50),
        "stable keeps its share until the canary is complete"
    );
    assert_eq!(d.stable.replicas, 4);

    // the same annotation value does not act twice
    let d = sim.step(5002, 3);
    assert!(d.events.is_empty());

    // complete: version 2 is stable, history records it
    let d = sim.step(5003, 4);
    assert_eq!(reasons(&d), ["RolloutSucceeded"]);
    assert_eq!(d.stable.version, "2");
    assert_eq!(d.canary, None);
    assert_eq!(d.status.stable_version.as_deref(), Some("2"));
    assert_eq!(d.status.current_version.as_deref(), Some("2"));
    assert_eq!(d.status.rollout_phase, Some(RolloutPhase::Succeeded));
    assert_eq!(d.status.history.len(), 1);
    let h = &d.status.history[0];
    assert_eq!((h.version.as_str(), h.outcome.as_str()), ("2", "Succeeded"));
    assert_eq!(h.uri, "file:///models/2");
    assert_eq!(h.started, Time(t(0)));
    assert_eq!(h.finished, Some(Time(t(5003))));

    // and stays so
    let d = sim.step(6000, 4);
    assert!(d.events.is_empty());
    assert_eq!(d.canary, None);
}

#[test]
fn several_steps_pass_in_one_reconcile_when_nothing_waits() {
    let mut sim = Sim::serving("1", plan(vec![Step::SetWeight(25), Step::SetWeight(50)]));
    sim.set_version("2");
    sim.step(0, 0);
    // an operator that was down while the canary became ready for 50% already
    let d = sim.step(100, 4);
    assert_eq!(reasons(&d), ["CanaryStep", "Promoting", "RolloutSucceeded"]);
    assert_eq!(d.stable.version, "2");
}

#[test]
fn immediate_rollouts_start_the_new_version_at_full_size() {
    let mut sim = Sim::serving("1", plan(vec![]));
    sim.set_version("2");
    let d = sim.step(0, 0);
    assert_eq!(reasons(&d), ["RolloutStarted"]);
    assert_eq!(
        d.canary,
        Some(VersionPods {
            version: "2".into(),
            replicas: 4
        })
    );
    assert_eq!(d.status.rollout_phase, Some(RolloutPhase::Promoting));
    let d = sim.step(3, 3);
    assert!(d.events.is_empty(), "stable stays until all 4 are ready");
    let d = sim.step(4, 4);
    assert_eq!(reasons(&d), ["RolloutSucceeded"]);
}

#[test]
fn analysis_failures_roll_back_at_the_limit() {
    let mut sim = Sim::serving("2", with_analysis(canary_plan()));
    sim.set_version("3");
    sim.step(0, 0);
    sim.step(2, 1);
    let fail = || Some(Verdict::Fail("canary error rate 23.0% > 1.0%".into()));
    let d = sim.step_with(10, 1, fail());
    assert_eq!(reasons(&d), ["AnalysisFailed"]);
    assert!(d.events[0].warning);
    assert_eq!(
        d.status.analysis.as_ref().map(|a| a.consecutive_failures),
        Some(1)
    );
    assert!(d.canary.is_some());
    // an inconclusive interval (too few requests) neither resets nor counts
    let d = sim.step_with(20, 1, Some(Verdict::Inconclusive("3 requests".into())));
    assert!(d.events.is_empty());
    assert_eq!(
        d.status.analysis.as_ref().map(|a| a.consecutive_failures),
        Some(1)
    );
    let d = sim.step_with(30, 1, fail());
    assert_eq!(reasons(&d), ["AnalysisFailed", "RolledBack"]);
    assert!(d.events.iter().all(|e| e.warning));
    assert_eq!(d.canary, None, "the canary goes");
    assert_eq!(
        d.stable,
        VersionPods {
            version: "2".into(),
            replicas: 4
        },
        "stable untouched"
    );
    assert_eq!(d.weights, (100, 0));
    assert_eq!(d.status.rollout_phase, Some(RolloutPhase::RolledBack));
    let problem = d.problem.expect("Degraded");
    assert_eq!(problem.reason, "RolledBack");
    assert!(
        problem
            .message
            .contains("canary error rate 23.0% > 1.0% in 2 consecutive intervals"),
        "{}",
        problem.message
    );
    assert_eq!(d.status.history[0].outcome, "RolledBack");

    // it stays rolled back (and says so) until the spec changes
    let d = sim.step(500, 0);
    assert!(d.events.is_empty());
    assert_eq!(d.canary, None);
    assert!(d.problem.is_some());
    // a spec change retries the same version
    sim.generation += 1;
    let d = sim.step(600, 0);
    assert_eq!(reasons(&d), ["RolloutStarted"]);
    assert!(d.problem.is_none());
}

#[test]
fn a_pass_resets_the_failure_count() {
    let mut sim = Sim::serving("2", with_analysis(canary_plan()));
    sim.set_version("3");
    sim.step(0, 0);
    sim.step_with(10, 1, Some(Verdict::Fail("x".into())));
    let d = sim.step_with(20, 1, Some(Verdict::Pass("ok".into())));
    assert_eq!(reasons(&d), ["AnalysisPassed", "CanaryStep"]);
    assert_eq!(
        d.status.analysis.as_ref().map(|a| a.consecutive_failures),
        Some(0)
    );
    let d = sim.step_with(30, 1, Some(Verdict::Fail("x".into())));
    assert!(
        d.canary.is_some(),
        "one failure after a pass is not two in a row"
    );
}

#[test]
fn a_canary_that_never_becomes_ready_fails_at_the_deadline() {
    let mut p = canary_plan();
    p.progress_deadline = Duration::from_secs(120);
    let mut sim = Sim::serving("2", p);
    sim.set_version("3");
    sim.step(0, 0);
    let d = sim.step(100, 0);
    assert!(d.events.is_empty());
    assert_eq!(d.wake_in, Some(Duration::from_millis(20_100)));
    let d = sim.step(121, 0);
    assert_eq!(reasons(&d), ["RolloutFailed"]);
    assert_eq!(d.status.rollout_phase, Some(RolloutPhase::Failed));
    assert_eq!(d.canary, None);
    let problem = d.problem.expect("Degraded");
    assert_eq!(problem.reason, "RolloutFailed");
    assert!(
        problem
            .message
            .contains("had 0/1 ready pods after 2m (progressDeadline)"),
        "{}",
        problem.message
    );
    assert_eq!(d.status.history[0].outcome, "Failed");
}

#[test]
fn the_deadline_counts_from_the_step_not_from_the_start() {
    let mut p = plan(vec![
        Step::SetWeight(25),
        Step::Pause(Some(Duration::from_secs(300))),
        Step::SetWeight(50),
    ]);
    p.progress_deadline = Duration::from_secs(120);
    let mut sim = Sim::serving("1", p);
    sim.set_version("2");
    sim.step(0, 0);
    sim.step(60, 1);
    sim.step(360, 1); // pause over: setWeight 50 starts now
    let d = sim.step(470, 1);
    assert!(d.canary.is_some(), "110 s into the step is within 120 s");
    let d = sim.step(481, 1);
    assert_eq!(reasons(&d), ["RolloutFailed"]);
}

#[test]
fn abort_and_promote_annotations_act_once_per_value() {
    let mut sim = Sim::serving("1", canary_plan());
    sim.abort = Some("old".into());
    sim.promote = Some("old".into());
    sim.set_version("2");
    let d = sim.step(0, 0);
    assert_eq!(
        reasons(&d),
        ["RolloutStarted"],
        "values present before the rollout do not act"
    );
    sim.step(1, 1);
    sim.abort = Some("now".into());
    let d = sim.step(2, 1);
    assert_eq!(reasons(&d), ["RolledBack"]);
    assert!(
        d.problem
            .expect("Degraded")
            .message
            .contains("aborted by sconce.dev/abort=now")
    );
    assert_eq!(
        d.status
            .rollout
            .as_ref()
            .and_then(|r| r.aborted_by.as_deref()),
        Some("now")
    );
}

#[test]
fn setting_the_version_back_is_an_instant_rollback() {
    let mut sim = Sim::serving("1", canary_plan());
    sim.set_version("2");
    sim.step(0, 0);
    sim.step(1, 1);
    sim.set_version("1");
    let d = sim.step(2, 1);
    assert_eq!(reasons(&d), ["RolledBack"]);
    assert!(!d.events[0].warning, "the user asked for it");
    assert_eq!(d.canary, None);
    assert_eq!(d.stable.version, "1");
    assert_eq!(d.problem, None, "not degraded: the spec is what serves");
    assert_eq!(
        d.status.history[0].reason.as_deref(),
        Some("spec.model.version set back to the stable version 1")
    );
}

#[test]
fn another_version_mid_rollout_supersedes_the_canary() {
    let mut sim = Sim::serving("1", canary_plan());
    sim.set_version("2");
    sim.step(0, 0);
    sim.step(1, 1);
    sim.set_version("3");
    // version 3 has no pods yet (the ready count is always the target version's)
    let d = sim.step(2, 0);
    assert_eq!(reasons(&d), ["Superseded", "RolloutStarted"]);
    assert_eq!(
        d.canary,
        Some(VersionPods {
            version: "3".into(),
            replicas: 1
        })
    );
    assert_eq!(d.stable.version, "1");
    assert_eq!(d.status.history[0].version, "2");
    assert_eq!(d.status.history[0].outcome, "Superseded");
    assert_eq!(
        d.status.rollout.as_ref().and_then(|r| r.current_step),
        Some(0)
    );
}

#[test]
fn restarts_resume_from_the_status_without_repeating_or_skipping() {
    // An operator restart is a reconcile from the last written status: the same input twice
    // gives the same decision, and no step is repeated.
    let mut sim = Sim::serving("1", canary_plan());
    sim.set_version("2");
    sim.step(0, 0);
    sim.step(5, 1);
    let before = sim.status.clone();
    let d1 = sim.step(30, 1);
    sim.status = before;
    let d2 = sim.step(30, 1);
    assert_eq!(d1, d2);
    assert!(d2.events.is_empty());
}

#[test]
fn clock_jumps_do_not_skip_unready_steps() {
    let mut sim = Sim::serving("1", canary_plan());
    sim.set_version("2");
    sim.step(0, 0);
    sim.step(5, 1);
    // the clock jumps an hour: the pause ends, but setWeight 50 still waits for its pods
    let d = sim.step(3600, 1);
    assert_eq!(reasons(&d), ["CanaryStep"]);
    assert_eq!(d.status.rollout_phase, Some(RolloutPhase::Progressing));
    // and a clock that goes back does not end a pause early
    let mut sim = Sim::serving("1", canary_plan());
    sim.set_version("2");
    sim.step(100, 0);
    sim.step(105, 1);
    let d = sim.step(50, 1);
    assert!(d.events.is_empty());
    assert_eq!(d.status.rollout_phase, Some(RolloutPhase::Paused));
}

#[test]
fn history_is_capped_newest_first() {
    let mut sim = Sim::serving("1", plan(vec![]));
    for v in 2..=6 {
        sim.set_version(&v.to_string());
        sim.step(v * 10, 0);
        sim.step(v * 10 + 1, 4);
    }
    let versions: Vec<_> = sim
        .status
        .history
        .iter()
        .map(|h| h.version.as_str())
        .collect();
    assert_eq!(versions, ["6", "5", "4"]);
}

#[test]
fn canary_pod_counts() {
    assert_eq!(canary_pods(10, 4), 1);
    assert_eq!(canary_pods(50, 4), 2);
    assert_eq!(canary_pods(51, 4), 3);
    assert_eq!(canary_pods(100, 4), 4);
    assert_eq!(canary_pods(0, 4), 0);
    assert_eq!(canary_pods(1, 1), 1);
    assert_eq!(canary_pods(30, 0), 0);
    let steps = [Step::Pause(None), Step::SetWeight(20), Step::Pause(None)];
    assert_eq!(weight_at(&steps, 0), 0);
    assert_eq!(weight_at(&steps, 2), 20);
    assert_eq!(weight_at(&steps, 3), 100);
}

#[test]
fn every_phase_handles_every_event() {
    // Phase x event: abort, a failing verdict, promote, a version change, version set back.
    // Whatever the phase, each event leaves a consistent state: a canary exactly while the
    // phase is Progressing, Paused or Promoting.
    type Setup = fn(&mut Sim);
    type Event = fn(&mut Sim) -> Decision;
    let phases: [(&str, Setup); 3] = [
        ("Progressing", |s| {
            s.step(0, 0);
        }),
        ("Paused", |s| {
            s.step(0, 0);
            s.step(1, 1);
        }),
        ("Promoting", |s| {
            s.promote = Some("p".into());
            s.step(0, 0);
            s.step(1, 1);
            s.promote = Some("q".into());
            s.step(2, 2);
            s.step(3, 2);
        }),
    ];
    let events: [(&str, Event); 5] = [
        ("abort", |s| {
            s.abort = Some("x".into());
            s.step(100, 1)
        }),
        ("verdict", |s| {
            s.step_with(100, 1, Some(Verdict::Fail("f".into())));
            s.step_with(110, 1, Some(Verdict::Fail("f".into())))
        }),
        ("promote", |s| {
            s.promote = Some("z".into());
            s.step(100, 4)
        }),
        ("new version", |s| {
            s.set_version("3");
            s.step(100, 1)
        }),
        ("set back", |s| {
            s.set_version("1");
            s.step(100, 1)
        }),
    ];
    for (phase, setup) in phases {
        for (event, apply) in events {
            let mut sim = Sim::serving("1", with_analysis(canary_plan()));
            sim.set_version("2");
            setup(&mut sim);
            let d = apply(&mut sim);
            let running = matches!(
                d.status.rollout_phase,
                Some(RolloutPhase::Progressing | RolloutPhase::Paused | RolloutPhase::Promoting)
            );
            assert_eq!(
                running,
                d.canary.is_some(),
                "{phase} + {event}: {:?}",
                d.status.rollout_phase
            );
            assert_eq!(
                d.status.canary_version.is_some(),
                d.canary.is_some(),
                "{phase} + {event}"
            );
            assert_eq!(d.weights.0 + d.weights.1, 100, "{phase} + {event}");
            assert_eq!(
                d.stable.replicas, 4,
                "{phase} + {event}: stable never shrinks"
            );
            let expected = match event {
                "abort" | "verdict" => Some(RolloutPhase::RolledBack),
                "set back" => Some(RolloutPhase::RolledBack),
                _ => None,
            };
            if let Some(e) = expected {
                assert_eq!(d.status.rollout_phase, Some(e), "{phase} + {event}");
            }
        }
    }
}

#[test]
fn with_an_analysis_a_weight_rises_only_after_a_pass_at_it() {
    let mut sim = Sim::serving(
        "1",
        with_analysis(plan(vec![Step::SetWeight(25), Step::SetWeight(50)])),
    );
    sim.set_version("2");
    sim.step(0, 0);
    let d = sim.step(5, 1);
    assert!(
        d.events.is_empty(),
        "ready alone is not enough: {:?}",
        reasons(&d)
    );
    assert_eq!(d.status.rollout_phase, Some(RolloutPhase::Progressing));
    let d = sim.step_with(10, 1, Some(Verdict::Inconclusive("2 requests".into())));
    assert!(d.events.is_empty(), "no traffic is no evidence");
    let d = sim.step_with(20, 1, Some(Verdict::Pass("ok".into())));
    assert_eq!(reasons(&d), ["AnalysisPassed", "CanaryStep"]);
    assert_eq!(d.canary.as_ref().map(|c| c.replicas), Some(2));
    // the pass at 25% does not count for 50%
    let d = sim.step(25, 2);
    assert!(d.events.is_empty(), "{:?}", reasons(&d));
    let d = sim.step_with(30, 2, Some(Verdict::Pass("ok".into())));
    assert_eq!(reasons(&d), ["AnalysisPassed", "Promoting"]);
    let d = sim.step(31, 4);
    assert_eq!(reasons(&d), ["RolloutSucceeded"]);
}
