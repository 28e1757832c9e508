//! The rollout state machine: what the cluster shows, the spec's plan, an analysis verdict and
//! the clock in; the next rollout state, how many pods each version gets, the traffic weights
//! and the events out. Pure: no client, no I/O. Everything it needs to resume after an operator
//! restart is in the status it returns.
pub mod analysis;
pub mod metrics_text;

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use crate::crd::{
    AnalysisStatus, HistoryEntry, ModelDeploymentStatus, RolloutPhase, RolloutStatus,
};
use crate::reconcile::status::{Problem, Transition};
use crate::reconcile::validate::duration;
use crate::reconcile::validate::rollout::{RolloutPlan, Step};

/// The verdict of one finished analysis interval.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Pass(String),
    Fail(String),
    Inconclusive(String),
}

/// What the reconcile saw and wants.
#[derive(Debug, Clone)]
pub struct Input<'a> {
    pub plan: &'a RolloutPlan,
    /// `spec.model.version` and `spec.model.uri`.
    pub target: &'a str,
    pub target_uri: &'a str,
    pub replicas: i32,
    pub generation: i64,
    pub previous: &'a ModelDeploymentStatus,
    /// Values of the `sconce.dev/promote` and `sconce.dev/abort` annotations.
    pub promote: Option<&'a str>,
    pub abort: Option<&'a str>,
    /// Ready pods of the canary version's Deployment (0 when it does not exist yet).
    pub canary_ready: i32,
    /// A just finished analysis interval, with its figures for the status.
    pub verdict: Option<(Verdict, AnalysisStatus)>,
    pub now: Timestamp,
}

/// Pods for one version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionPods {
    pub version: String,
    pub replicas: i32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// The rollout fields of the next status (stable/canary versions, weight, phase, rollout
    /// bookkeeping, analysis, history); the rest of the status is the reconcile's.
    pub status: ModelDeploymentStatus,
    pub stable: VersionPods,
    pub canary: Option<VersionPods>,
    /// Traffic percentages for an HTTPRoute: (stable, canary).
    pub weights: (i32, i32),
    /// A finished rollout that failed, for the Degraded condition (until the spec changes).
    pub problem: Option<Problem>,
    pub events: Vec<Transition>,
    /// When to look again (a pause ends, an analysis interval is due, a deadline passes).
    pub wake_in: Option<Duration>,
}

pub const PROMOTE_ANNOTATION: &str = "sconce.dev/promote";
pub const ABORT_ANNOTATION: &str = "sconce.dev/abort";

fn time(t: Timestamp) -> Time {
    Time(t)
}

fn elapsed(since: Option<&Time>, now: Timestamp) -> Duration {
    since
        .map(|t| now.duration_since(t.0))
        .and_then(|d| Duration::try_from(d).ok())
        .unwrap_or(Duration::ZERO)
}

/// Pods the canary needs at `weight` percent of `replicas` (at least one when weight > 0).
pub fn canary_pods(weight: i32, replicas: i32) -> i32 {
    if weight <= 0 || replicas <= 0 {
        return 0;
    }
    let pods = (i64::from(weight) * i64::from(replicas) + 99) / 100;
    i32::try_from(pods).unwrap_or(replicas).clamp(1, replicas)
}

/// The weight in effect at step `step` (the last setWeight at or before it), 100 when promoting.
pub fn weight_at(steps: &[Step], step: usize) -> i32 {
    if step >= steps.len() {
        return 100;
    }
    steps[..=step]
        .iter()
        .rev()
        .find_map(|s| match s {
            Step::SetWeight(w) => Some(*w),
            Step::Pause(_) => None,
        })
        .unwrap_or(0)
}

fn describe_step(steps: &[Step], step: usize) -> String {
    match steps.get(step) {
        Some(Step::SetWeight(w)) => format!("step {}/{}: setWeight {w}", step + 1, steps.len()),
        Some(Step::Pause(Some(d))) => {
            format!(
                "step {}/{}: pause {}",
                step + 1,
                steps.len(),
                duration::format(*d)
            )
        }
        Some(Step::Pause(None)) => format!(
            "step {}/{}: paused until promoted (kubectl annotate mdep NAME {PROMOTE_ANNOTATION}=<new value>)",
            step + 1,
            steps.len()
        ),
        None => "promoting".into(),
    }
}

pub fn decide(input: &Input) -> Decision {
    Machine::new(input).run()
}

/// Working state of one decision.
struct Machine<'a> {
    input: &'a Input<'a>,
    status: ModelDeploymentStatus,
    events: Vec<Transition>,
    problem: Option<Problem>,
    wake_in: Option<Duration>,
}

impl<'a> Machine<'a> {
    fn new(input: &'a Input<'a>) -> Self {
        let mut status = input.previous.clone();
        // Status written before rollouts existed has only currentVersion.
        if status.stable_version.is_none() {
            status.stable_version = status.current_version.clone();
        }
        Machine {
            input,
            status,
            events: Vec::new(),
            problem: None,
            wake_in: None,
        }
    }

    fn wake(&mut self, after: Duration) {
        self.wake_in = Some(self.wake_in.map_or(after, |w| w.min(after)));
    }

    fn rollout(&mut self) -> &mut RolloutStatus {
        self.status.rollout.get_or_insert_with(Default::default)
    }

    fn run(mut self) -> Decision {
        let input = self.input;
        let Some(stable) = self.status.stable_version.clone() else {
            // The first version: nothing to roll out from.
            self.status.stable_version = Some(input.target.to_string());
            return self.finish();
        };
        let canary = self.status.canary_version.clone();
        match canary {
            _ if input.target == stable => {
                if let Some(canary) = canary {
                    self.end(
                        &canary,
                        RolloutPhase::RolledBack,
                        "RolledBack",
                        format!("spec.model.version set back to the stable version {stable}"),
                        false,
                    );
                } else {
                    self.remember_sticky_failure();
                }
            }
            Some(canary) if canary != input.target => {
                self.end(
                    &canary,
                    RolloutPhase::RolledBack,
                    "Superseded",
                    format!("spec.model.version changed to {}", input.target),
                    false,
                );
                self.start(&stable);
                self.advance();
            }
            Some(_) => self.advance(),
            None if self.failed_at_this_generation() => self.remember_sticky_failure(),
            None => {
                self.start(&stable);
                self.advance();
            }
        }
        self.finish()
    }

    /// The last rollout of the target failed or was rolled back, and the spec has not changed
    /// since: stay on stable (a new spec retries).
    fn failed_at_this_generation(&self) -> bool {
        let input = self.input;
        let ended_here = self
            .status
            .rollout
            .as_ref()
            .and_then(|r| r.ended_generation)
            == Some(input.generation);
        let failed = matches!(
            self.status.rollout_phase,
            Some(RolloutPhase::RolledBack | RolloutPhase::Failed)
        );
        let last = self.status.history.first();
        ended_here && failed && last.is_some_and(|h| h.version == input.target)
    }

    /// Keep reporting a failed rollout of the target (Degraded) while it stays rolled back.
    fn remember_sticky_failure(&mut self) {
        if self.input.target == self.status.stable_version.as_deref().unwrap_or_default() {
            return;
        }
        let Some(last) = self.status.history.first() else {
            return;
        };
        let reason = match self.status.rollout_phase {
            Some(RolloutPhase::Failed) => "RolloutFailed",
            _ => "RolledBack",
        };
        self.problem = Some(Problem::new(
            reason,
            format!(
                "version {} was rolled back: {}; version {} keeps serving (change the spec to try again)",
                last.version,
                last.reason.as_deref().unwrap_or("no reason recorded"),
                self.status.stable_version.as_deref().unwrap_or("?")
            ),
        ));
    }

    fn start(&mut self, stable: &str) {
        let input = self.input;
        let now = time(input.now);
        self.status.canary_version = Some(input.target.to_string());
        self.status.analysis = None;
        self.status.rollout = Some(RolloutStatus {
            current_step: Some(0),
            step_started: Some(now.clone()),
            started: Some(now),
            promoted_by: input.promote.map(String::from),
            aborted_by: input.abort.map(String::from),
            canary_uri: Some(input.target_uri.to_string()),
            ..Default::default()
        });
        let how = if input.plan.is_canary() {
            format!("canary, {} steps", input.plan.steps.len())
        } else {
            "immediate".into()
        };
        self.events.push(Transition::normal(
            "RolloutStarted",
            format!(
                "rolling out version {} beside version {stable} ({how})",
                input.target
            ),
        ));
    }

    /// Move through the steps as far as the cluster, the clock, the verdict and the
    /// annotations allow; or end the rollout.
    fn advance(&mut self) {
        let input = self.input;
        let steps = &input.plan.steps;
        let Some(canary) = self.status.canary_version.clone() else {
            return;
        };
        if let Some(reason) = self.abort_requested() {
            return self.end(
                &canary,
                RolloutPhase::RolledBack,
                "RolledBack",
                reason,
                true,
            );
        }
        if let Some(reason) = self.analysis_failed() {
            return self.end(
                &canary,
                RolloutPhase::RolledBack,
                "RolledBack",
                reason,
                true,
            );
        }
        let mut promote = self.promote_requested();
        let mut step = self.current_step();
        // Each turn advances one step or returns: at most steps+1 turns.
        for _ in 0..=steps.len() {
            let in_step = elapsed(self.rollout().step_started.as_ref(), input.now);
            if step >= steps.len() {
                // Promoting: the canary scales to all replicas; stable stays until it is ready,
                // and keeps its share of an HTTPRoute until then.
                let ready = input.canary_ready >= input.replicas;
                if ready {
                    return self.promote_canary(&canary);
                }
                self.status.canary_weight = Some(
                    steps
                        .len()
                        .checked_sub(1)
                        .map_or(0, |last| weight_at(steps, last)),
                );
                self.status.rollout_phase = Some(RolloutPhase::Promoting);
                return self.wait_for_ready(&canary, input.replicas, in_step);
            }
            let weight = weight_at(steps, step);
            self.status.canary_weight = Some(weight);
            if let Some(by) = promote.take() {
                self.events.push(Transition::normal(
                    "Promoted",
                    format!(
                        "{PROMOTE_ANNOTATION}={by}: version {canary} skips {}",
                        describe_step(steps, step)
                    ),
                ));
            } else {
                match steps[step] {
                    Step::SetWeight(_) => {
                        let needed = canary_pods(weight, input.replicas);
                        if input.canary_ready < needed {
                            self.status.rollout_phase = Some(RolloutPhase::Progressing);
                            return self.wait_for_ready(&canary, needed, in_step);
                        }
                        // With an analysis, the weight rises only after the canary passed an
                        // interval at this one: no traffic (inconclusive) is no evidence.
                        if input.plan.analysis.is_some() && !self.passed_in_step() {
                            self.status.rollout_phase = Some(RolloutPhase::Progressing);
                            return;
                        }
                    }
                    Step::Pause(wait) => {
                        if wait.is_none_or(|d| in_step < d) {
                            self.status.rollout_phase = Some(RolloutPhase::Paused);
                            if let Some(d) = wait {
                                self.wake(d.saturating_sub(in_step));
                            }
                            return;
                        }
                    }
                }
            }
            step += 1;
            self.set_step(step);
            let pods = if step >= steps.len() {
                input.replicas
            } else {
                canary_pods(weight_at(steps, step), input.replicas)
            };
            self.events.push(Transition::normal(
                if step >= steps.len() {
                    "Promoting"
                } else {
                    "CanaryStep"
                },
                format!(
                    "version {canary}: {} (weight {}, {pods} of {} pods)",
                    describe_step(steps, step),
                    weight_at(steps, step),
                    input.replicas
                ),
            ));
        }
    }

    /// The canary is not ready yet: fail it once the progress deadline has passed.
    fn wait_for_ready(&mut self, canary: &str, needed: i32, in_step: Duration) {
        let input = self.input;
        let deadline = input.plan.progress_deadline;
        if in_step > deadline {
            let reason = format!(
                "canary version {canary} had {}/{needed} ready pods after {} (progressDeadline)",
                input.canary_ready,
                duration::format(deadline)
            );
            return self.end(canary, RolloutPhase::Failed, "Failed", reason, true);
        }
        self.wake(deadline.saturating_sub(in_step) + Duration::from_millis(100));
    }

    /// The canary passed an analysis interval that ended after the current step started.
    fn passed_in_step(&self) -> bool {
        let started = self
            .status
            .rollout
            .as_ref()
            .and_then(|r| r.step_started.as_ref());
        self.status
            .analysis
            .as_ref()
            .is_some_and(|a| a.verdict == "Pass" && started.is_none_or(|s| a.time.0 > s.0))
    }

    fn current_step(&self) -> usize {
        self.status
            .rollout
            .as_ref()
            .and_then(|r| r.current_step)
            .and_then(|s| usize::try_from(s).ok())
            .unwrap_or(0)
    }

    fn set_step(&mut self, step: usize) {
        let now = time(self.input.now);
        let r = self.rollout();
        r.current_step = i32::try_from(step).ok();
        r.step_started = Some(now);
    }

    /// A promote annotation value not acted on yet (each value acts once).
    fn promote_requested(&mut self) -> Option<String> {
        let value = self.input.promote?;
        let r = self.rollout();
        if r.promoted_by.as_deref() == Some(value) {
            return None;
        }
        r.promoted_by = Some(value.to_string());
        Some(value.to_string())
    }

    fn abort_requested(&mut self) -> Option<String> {
        let value = self.input.abort?;
        let r = self.rollout();
        if r.aborted_by.as_deref() == Some(value) {
            return None;
        }
        r.aborted_by = Some(value.to_string());
        Some(format!("aborted by {ABORT_ANNOTATION}={value}"))
    }

    /// Record a finished analysis interval; the reason to roll back once failures reach the
    /// limit.
    fn analysis_failed(&mut self) -> Option<String> {
        let (verdict, mut figures) = self.input.verdict.clone()?;
        let plan = self.input.plan.analysis.as_ref()?;
        let before = self
            .status
            .analysis
            .as_ref()
            .map_or(0, |a| a.consecutive_failures);
        let canary = self.status.canary_version.clone().unwrap_or_default();
        figures.verdict = match &verdict {
            Verdict::Pass(_) => "Pass",
            Verdict::Fail(_) => "Fail",
            Verdict::Inconclusive(_) => "Inconclusive",
        }
        .into();
        figures.consecutive_failures = match &verdict {
            Verdict::Pass(_) => 0,
            Verdict::Fail(_) => before + 1,
            Verdict::Inconclusive(_) => before,
        };
        let failures = figures.consecutive_failures;
        self.status.analysis = Some(figures);
        match verdict {
            Verdict::Pass(m) => {
                self.events.push(Transition::normal(
                    "AnalysisPassed",
                    format!("version {canary}: {m}"),
                ));
                None
            }
            Verdict::Inconclusive(_) => None,
            Verdict::Fail(m) => {
                self.events.push(Transition::warning(
                    "AnalysisFailed",
                    format!(
                        "version {canary}: {m} ({failures} of {} allowed failures in a row)",
                        plan.failure_limit
                    ),
                ));
                (failures >= plan.failure_limit)
                    .then(|| format!("{m} in {failures} consecutive intervals"))
            }
        }
    }

    fn promote_canary(&mut self, canary: &str) {
        let old = self.status.stable_version.clone().unwrap_or_default();
        self.record(canary, "Succeeded", format!("replaced version {old}"));
        self.status.stable_version = Some(canary.to_string());
        self.status.current_version = Some(canary.to_string());
        self.status.canary_version = None;
        self.status.canary_weight = None;
        self.status.rollout_phase = Some(RolloutPhase::Succeeded);
        let generation = self.input.generation;
        let r = self.rollout();
        r.current_step = None;
        r.step_started = None;
        r.ended_generation = Some(generation);
        self.events.push(Transition::normal(
            "RolloutSucceeded",
            format!("version {canary} is stable; version {old} is retired"),
        ));
    }

    /// End the canary without promoting it: stable untouched, canary removed.
    fn end(
        &mut self,
        canary: &str,
        phase: RolloutPhase,
        outcome: &str,
        reason: String,
        failed: bool,
    ) {
        self.record(canary, outcome, reason.clone());
        self.status.canary_version = None;
        self.status.canary_weight = None;
        self.status.rollout_phase = Some(phase);
        let generation = self.input.generation;
        let r = self.rollout();
        r.current_step = None;
        r.step_started = None;
        r.ended_generation = Some(generation);
        r.message = Some(reason.clone());
        let stable = self.status.stable_version.clone().unwrap_or_default();
        let note =
            format!("version {canary} rolled back, version {stable} keeps serving: {reason}");
        if failed {
            let condition = if phase == RolloutPhase::Failed {
                "RolloutFailed"
            } else {
                "RolledBack"
            };
            self.events.push(Transition::warning(condition, note));
            self.remember_sticky_failure();
        } else {
            self.events.push(Transition::normal(outcome, note));
        }
    }

    fn record(&mut self, version: &str, outcome: &str, reason: String) {
        let input = self.input;
        let r = self.status.rollout.clone().unwrap_or_default();
        let entry = HistoryEntry {
            version: version.to_string(),
            uri: r.canary_uri.unwrap_or_default(),
            started: r.started.unwrap_or_else(|| time(input.now)),
            finished: Some(time(input.now)),
            outcome: outcome.to_string(),
            reason: Some(reason),
        };
        self.status.history.insert(0, entry);
        self.status.history.truncate(input.plan.history_limit);
    }

    fn finish(mut self) -> Decision {
        let input = self.input;
        let stable = self.status.stable_version.clone().unwrap_or_default();
        let canary = self.status.canary_version.clone().map(|version| {
            let step = self.current_step();
            let replicas = if step >= input.plan.steps.len() {
                input.replicas
            } else {
                canary_pods(weight_at(&input.plan.steps, step), input.replicas)
            };
            VersionPods { version, replicas }
        });
        // An HTTPRoute gives the canary weight only once it has ready pods.
        let weight = match &canary {
            Some(_) if input.canary_ready > 0 => self.status.canary_weight.unwrap_or(0),
            _ => 0,
        };
        if let (Some(analysis), Some(_)) = (&input.plan.analysis, &canary) {
            self.wake(analysis.interval);
        }
        Decision {
            status: self.status,
            stable: VersionPods {
                version: stable,
                replicas: input.replicas,
            },
            canary,
            weights: (100 - weight, weight),
            problem: self.problem,
            events: self.events,
            wake_in: self.wake_in,
        }
    }
}

#[cfg(test)]
mod tests;
