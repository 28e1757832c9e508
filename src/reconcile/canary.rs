//! The reconcile's part of a rollout: when an analysis interval is due, scrape stable's and the
//! canary's pods and judge; after the decision, put the rollout into the status conditions.
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::build::DEFAULT_PORT;
use super::scrape;
use super::status::{self, DEGRADED, PROGRESSING, Problem};
use super::validate::ValidModel;
use super::{Context, children};
use crate::crd::{AnalysisStatus, ModelDeployment, ModelDeploymentStatus, RolloutPhase};
use crate::rollout::analysis::judge;
use crate::rollout::{Decision, Verdict};

/// Progressing reasons of a running rollout; their events come from the state machine.
pub const ROLLOUT_REASONS: &[&str] = &[
    "CanaryProgressing",
    "CanaryPaused",
    "Promoting",
    "RolledBack",
    "RolloutFailed",
];

/// The verdict on the interval that just ended, if one is due: the canary (the spec's version)
/// is running, the plan has an analysis, and `interval` has passed since the last one.
pub async fn verdict(
    ctx: &Context,
    md: &ModelDeployment,
    model: &ValidModel,
    now: Time,
) -> Option<(Verdict, AnalysisStatus)> {
    let plan = model.rollout.analysis.as_ref()?;
    let previous = md.status.as_ref()?;
    if previous.canary_version.as_deref() != Some(model.version.as_str()) {
        return None;
    }
    let stable_version = previous.stable_version.as_deref()?;
    let since_last = previous
        .analysis
        .as_ref()
        .map(|a| now.0.duration_since(a.time.0))
        .and_then(|d| Duration::try_from(d).ok());
    if since_last.is_some_and(|d| d < plan.interval) {
        return None;
    }
    let port = md
        .spec
        .runtime
        .as_ref()
        .and_then(|r| r.port)
        .unwrap_or(DEFAULT_PORT);
    let canary_pods = children::pods_of_version(&ctx.stores, model);
    let stable_model = model.for_version(stable_version);
    let stable_pods = children::pods_of_version(&ctx.stores, &stable_model);
    let read = |pods: &[std::sync::Arc<k8s_openapi::api::core::v1::Pod>]| {
        let pods: Vec<k8s_openapi::api::core::v1::Pod> =
            pods.iter().map(|p| p.as_ref().clone()).collect();
        async move {
            let refs: Vec<&k8s_openapi::api::core::v1::Pod> = pods.iter().collect();
            let ready = refs.iter().filter(|p| scrape::is_ready(p)).count();
            (ctx.scraper.read(&refs, port).await, ready)
        }
    };
    let (canary_readings, canary_ready) = read(&canary_pods).await;
    let (stable_readings, stable_ready) = read(&stable_pods).await;
    let canary = scrape::traffic(
        &model.version,
        canary_ready,
        &canary_readings,
        &ctx.analysis_baseline,
    );
    let stable = scrape::traffic(
        stable_version,
        stable_ready,
        &stable_readings,
        &ctx.analysis_baseline,
    );
    let verdict = if canary.baseline_only {
        Verdict::Inconclusive(
            "first scrape of the canary's pods: the baseline for the next interval".into(),
        )
    } else {
        judge(plan, &canary.traffic, Some(&stable.traffic))
    };
    let (name, message) = match &verdict {
        Verdict::Pass(m) => ("Pass", m.clone()),
        Verdict::Fail(m) => ("Fail", m.clone()),
        Verdict::Inconclusive(m) => ("Inconclusive", m.clone()),
    };
    let figures = AnalysisStatus {
        time: now,
        verdict: name.into(),
        message,
        consecutive_failures: 0,
        canary: Some(canary.traffic.figures()),
        stable: Some(stable.traffic.figures()),
    };
    Some((verdict, figures))
}

/// Overlay the rollout onto the status computed for the stable version: its fields, a
/// Progressing condition while it runs, and Degraded for a canary that cannot run or a
/// rollout that was rolled back (Ready stays about stable, which keeps serving).
pub fn with_rollout(
    status: &mut ModelDeploymentStatus,
    decision: &Decision,
    canary_problem: Option<&Problem>,
    generation: Option<i64>,
    now: &Time,
) {
    let r = &decision.status;
    status.stable_version = r.stable_version.clone();
    status.canary_version = r.canary_version.clone();
    status.canary_weight = r.canary_weight;
    status.rollout_phase = r.rollout_phase;
    status.rollout = r.rollout.clone();
    status.analysis = r.analysis.clone();
    status.history = r.history.clone();
    let stable_degraded = status
        .conditions
        .iter()
        .any(|c| c.type_ == DEGRADED && c.status == "True");
    if stable_degraded {
        return;
    }
    let mut set = |type_: &str, value: bool, reason: &str, message: String| {
        status::merge_condition(
            &mut status.conditions,
            status::condition(type_, value, reason, message, generation, now),
        );
    };
    if let Some(canary) = &decision.canary {
        let step = r.rollout.as_ref().and_then(|x| x.current_step).unwrap_or(0);
        let (reason, what) = match r.rollout_phase {
            Some(RolloutPhase::Paused) => ("CanaryPaused", "paused"),
            Some(RolloutPhase::Promoting) => ("Promoting", "promoting"),
            _ => ("CanaryProgressing", "progressing"),
        };
        set(
            PROGRESSING,
            true,
            reason,
            format!(
                "version {} {what} beside version {}: step {}, weight {}%, {} pods",
                canary.version,
                decision.stable.version,
                step + 1,
                r.canary_weight.unwrap_or(0),
                canary.replicas
            ),
        );
    }
    let problem = decision.problem.clone().or_else(|| {
        canary_problem.map(|p| {
            Problem::new(
                p.reason.clone(),
                format!(
                    "canary version {}: {}",
                    r.canary_version.as_deref().unwrap_or("?"),
                    p.message
                ),
            )
        })
    });
    if let Some(p) = problem {
        set(DEGRADED, true, &p.reason, p.message);
        status.phase = Some(DEGRADED.into());
    }
}
