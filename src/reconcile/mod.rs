//! The reconcile pipeline: validate (pure) -> build (pure) -> apply -> observe -> status.
mod applied;
pub mod apply;
mod autoscaling;
pub mod build;
mod canary;
mod children;
mod controller;
pub mod events;
mod network_policy;
pub mod observe;
pub mod pods;
pub mod scrape;
pub mod status;
pub mod traffic;
pub mod validate;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::{Client, Resource, ResourceExt};
use tracing::{info, instrument, warn};

use crate::crd::{ModelDeployment, ModelDeploymentStatus};
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::rollout;
use build::BuildConfig;
pub use controller::{Stores, run};
use status::Transition;

/// Periodic re-check of healthy objects, in case a watch event was missed.
const RESYNC: Duration = Duration::from_secs(300);
/// How often an autoscaled ModelDeployment's pods are sampled (the panic window needs several
/// samples).
const SCALING_TICK: Duration = Duration::from_secs(2);
/// How long after a pod turns ready its absence from the Service's endpoints is still normal.
const ENDPOINTS_LAG: Duration = Duration::from_secs(10);
/// Re-check while pods start, so a cause only visible in Events is found within seconds.
const STARTING_RECHECK: Duration = Duration::from_secs(5);
const BACKOFF_BASE: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(120);

pub struct Context {
    pub client: Client,
    pub config: BuildConfig,
    pub metrics: Arc<Metrics>,
    pub events: events::Publisher,
    pub stores: Stores,
    /// The serving pods' last scraped counters, shared by canary analysis and the autoscaler,
    /// each with its own baseline.
    pub scraper: scrape::Scraper,
    pub analysis_baseline: scrape::Baseline,
    pub scaling: autoscaling::Histories,
    /// What was last applied per child, to skip applies that would change nothing.
    pub applied: applied::Applied,
    /// Consecutive transient failures per object, for exponential backoff.
    failures: Mutex<HashMap<String, u32>>,
}

impl Context {
    pub fn new(client: Client, config: BuildConfig, metrics: Arc<Metrics>, stores: Stores) -> Self {
        Context {
            events: events::Publisher::new(client.clone()),
            client,
            config,
            metrics,
            stores,
            scraper: scrape::Scraper::default(),
            analysis_baseline: scrape::Baseline::default(),
            scaling: autoscaling::Histories::default(),
            applied: applied::Applied::default(),
            failures: Mutex::new(HashMap::new()),
        }
    }

    fn failures(&self) -> std::sync::MutexGuard<'_, HashMap<String, u32>> {
        self.failures.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn object_key(md: &ModelDeployment) -> String {
    format!("{}/{}", md.namespace().unwrap_or_default(), md.name_any())
}

#[instrument(skip(md, ctx), fields(namespace = md.namespace().unwrap_or_default(), name = md.name_any()))]
pub async fn reconcile(md: Arc<ModelDeployment>, ctx: Arc<Context>) -> Result<Action> {
    let started = Instant::now();
    ctx.metrics.reconciliations.inc();
    let result = reconcile_inner(&md, &ctx).await;
    ctx.metrics.observe(started.elapsed());
    if result.is_ok() {
        ctx.failures().remove(&object_key(&md));
    }
    result
}

async fn reconcile_inner(md: &ModelDeployment, ctx: &Context) -> Result<Action> {
    // Observations below come from the caches; a half-filled cache would misreport.
    ctx.stores.ready().await;
    let namespace = md.namespace().ok_or(Error::MissingObjectKey("namespace"))?;
    let api: Api<ModelDeployment> = Api::namespaced(ctx.client.clone(), &namespace);
    let now = Time(k8s_openapi::jiff::Timestamp::now());

    let model = match validate::validate(md) {
        Ok(model) => model,
        Err(invalid) => {
            // Permanent: report, touch no children, wait for the user's next edit.
            let desired = status::invalid_status(md, &invalid, &now);
            write_status(md, &api, desired, ctx, Vec::new()).await?;
            return Err(invalid.into());
        }
    };
    let owner = md
        .controller_owner_ref(&())
        .ok_or(Error::MissingObjectKey("uid"))?;

    // An HTTPRoute that is missing or someone else's: report it, start nothing, delete nothing.
    if let Some(route) = &model.rollout.http_route
        && let Err(problem) =
            traffic::sync_route(&ctx.client, &namespace, route, &model.instance, None).await?
    {
        let previous = md.status.clone().unwrap_or_default();
        let serving = previous
            .stable_version
            .or(previous.current_version)
            .unwrap_or_else(|| model.version.clone());
        let stable = model.for_version(&serving);
        let deployment = children::deployment(&ctx.stores, &stable);
        let seen = status::Observation {
            deployment: deployment.as_deref(),
            apply_problem: Some(&problem),
            ..Default::default()
        };
        let desired = status::valid_status(md, &stable, &seen, &now);
        write_status(md, &api, desired, ctx, Vec::new()).await?;
        return Err(Error::Refused {
            problem,
            permanent: false,
        });
    }

    // The spec's version: its pods' readiness (through the Service) drives a rollout's steps.
    let endpoints = children::endpoints(&ctx.stores, &model);
    let target_pods = children::pods_of_version(&ctx.stores, &model);
    // Ready for the rollout only when the endpoints and the Deployment's controller agree:
    // endpoints can run ahead of the Deployment's status, and promoting on them alone made
    // Ready flap (computed from the Deployment) right after a promotion.
    let target_serving =
        observe::serving_endpoints(endpoints.as_deref(), target_pods.iter().map(|p| p.as_ref()))
            .min(observe::deployment_ready(
                children::deployment(&ctx.stores, &model).as_deref(),
            ));
    let previous = md.status.clone().unwrap_or_default();
    let annotations = md.annotations();
    let verdict = canary::verdict(ctx, md, &model, now.clone()).await;
    let scaled = autoscaling::replicas(ctx, md, &model, &now).await;
    let mut decision = rollout::decide(&rollout::Input {
        plan: &model.rollout,
        target: &model.version,
        target_uri: &md.spec.model.uri,
        replicas: scaled.replicas,
        generation: md.metadata.generation.unwrap_or(0),
        previous: &previous,
        promote: annotations
            .get(rollout::PROMOTE_ANNOTATION)
            .map(String::as_str),
        abort: annotations
            .get(rollout::ABORT_ANNOTATION)
            .map(String::as_str),
        canary_ready: target_serving,
        verdict,
        now: now.0,
    });

    // While a canary runs under the autoscaler, the desired total is split by weight (the
    // canary's share is already in `canary.replicas`), but stable never drops below the pods
    // it has ready: a scale-down of stable waits for the promotion.
    if let Some(canary) = &decision.canary {
        let stable = model.for_version(&decision.stable.version);
        let stable_ready =
            observe::deployment_ready(children::deployment(&ctx.stores, &stable).as_deref());
        let share = if model.scaling.is_some() {
            (decision.stable.replicas - canary.replicas).max(1)
        } else {
            decision.stable.replicas
        };
        decision.stable.replicas = share.max(stable_ready);
    }

    let mut notes: Vec<Transition> = scaled.event.iter().cloned().collect();
    let outcome =
        children::apply_all(ctx, md, &model, owner.clone(), &decision, &mut notes).await?;

    // Ready, counts and problems are about the stable version: it serves.
    let stable = model.for_version(&decision.stable.version);
    let stable_pods = children::pods_of_version(&ctx.stores, &stable);
    let stable_problem = children::pod_problem(ctx, &stable, &stable_pods).await?;
    let seen = status::Observation {
        deployment: outcome.stable.as_ref(),
        replicas: Some(decision.stable.replicas),
        serving_endpoints: observe::serving_endpoints(
            endpoints.as_deref(),
            stable_pods.iter().map(|p| p.as_ref()),
        ),
        endpoints_may_lag: observe::endpoints_may_lag(
            stable_pods.iter().map(|p| p.as_ref()),
            now.0,
            ENDPOINTS_LAG,
        ),
        pod_problem: stable_problem.as_ref(),
        apply_problem: outcome.refusal.as_ref().map(|r| &r.problem),
    };
    let mut desired = status::valid_status(md, &stable, &seen, &now);
    let canary_problem = match &decision.canary {
        Some(_) => children::pod_problem(ctx, &model, &target_pods).await?,
        None => None,
    };
    canary::with_rollout(
        &mut desired,
        &decision,
        canary_problem.as_ref(),
        md.metadata.generation,
        &now,
    );
    desired.desired_replicas = Some(scaled.replicas);
    desired.scaling = scaled.status.clone();
    let labels = crate::metrics::ModelLabels {
        namespace: namespace.clone(),
        name: model.instance.clone(),
    };
    ctx.metrics
        .desired_replicas
        .get_or_create(&labels)
        .set(i64::from(scaled.replicas));
    ctx.metrics
        .ready_replicas
        .get_or_create(&labels)
        .set(i64::from(desired.ready_replicas));
    if let Some(m) = scaled.metric {
        ctx.metrics.scaling_metric.get_or_create(&labels).set(m);
    }
    let ready = status::is_ready(&desired);
    if ready {
        let mut keep = vec![decision.stable.version.as_str()];
        keep.extend(decision.canary.as_ref().map(|c| c.version.as_str()));
        children::retire_versions(ctx, &model, &keep, &owner.uid, &mut notes).await?;
    }
    notes.extend(decision.events.iter().cloned());
    write_status(md, &api, desired, ctx, notes).await?;
    let starting = !ready && stable_problem.is_none() && !stable_pods.is_empty();
    let recheck = [
        Some(RESYNC),
        starting.then_some(STARTING_RECHECK),
        decision.canary.as_ref().map(|_| STARTING_RECHECK),
        model.scaling.as_ref().map(|_| SCALING_TICK),
        decision.wake_in,
    ]
    .into_iter()
    .flatten()
    .min()
    .unwrap_or(RESYNC);
    match outcome.refusal {
        Some(refusal) => Err(Error::Refused {
            problem: refusal.problem,
            permanent: refusal.permanent,
        }),
        None => Ok(Action::requeue(recheck)),
    }
}

/// Write the status only when it changed, then publish events for condition transitions and
/// for what the reconcile did (`notes`).
async fn write_status(
    md: &ModelDeployment,
    api: &Api<ModelDeployment>,
    desired: ModelDeploymentStatus,
    ctx: &Context,
    notes: Vec<Transition>,
) -> Result<()> {
    let current = md.status.clone().unwrap_or_default();
    if current != desired {
        apply::patch_status(api, &md.name_any(), &current, &desired).await?;
    }
    // A running rollout's progress and its end are told by the rollout's own events.
    let changes: Vec<Transition> = status::transitions(&current.conditions, &desired.conditions)
        .into_iter()
        .filter(|t| !canary::ROLLOUT_REASONS.contains(&t.reason.as_str()))
        .collect();
    for t in notes.iter().chain(&changes) {
        ctx.events.publish(md, t).await;
    }
    Ok(())
}

pub fn error_policy(md: Arc<ModelDeployment>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.error(error.category());
    if error.is_permanent() {
        info!(error = %error, "waiting for a spec change");
        return Action::await_change();
    }
    let attempt = {
        let mut failures = ctx.failures();
        let n = failures.entry(object_key(&md)).or_insert(0);
        *n = n.saturating_add(1);
        *n
    };
    let delay = backoff_delay(attempt);
    warn!(error = %error, attempt, ?delay, "reconcile failed, retrying");
    Action::requeue(delay)
}

/// Exponential backoff for the `attempt`-th consecutive transient failure: 1 s, 2 s, 4 s ... 120 s.
pub fn backoff_delay(attempt: u32) -> Duration {
    BACKOFF_BASE
        .saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1).min(10)))
        .min(BACKOFF_MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        let secs: Vec<u64> = [1, 2, 3, 7, 8, 50, u32::MAX]
            .iter()
            .map(|&a| backoff_delay(a).as_secs())
            .collect();
        assert_eq!(secs, [1, 2, 4, 64, 120, 120, 120]);
    }

    #[test]
    fn errors_know_whether_retrying_helps() {
        let invalid: Error = validate::ValidationError::InvalidVersion("...".into()).into();
        assert!(invalid.is_permanent());
        assert_eq!(invalid.category(), "InvalidSpec");
        let api = |code: u16| {
            Error::Kube(kube::Error::Api(Box::new(
                kube::core::Status::failure("x", "y").with_code(code),
            )))
        };
        assert!(
            api(422).is_permanent(),
            "a rejected object will be rejected again"
        );
        assert!(!api(409).is_permanent(), "conflicts resolve themselves");
        assert!(!api(429).is_permanent());
        assert!(!api(500).is_permanent());
        assert_eq!(api(500).category(), "ApiRejected");
        assert!(!Error::MissingObjectKey("uid").is_permanent());
        let refused = |permanent| Error::Refused {
            problem: status::Problem::new("ServiceRejected", "no"),
            permanent,
        };
        assert!(refused(true).is_permanent());
        assert!(!refused(false).is_permanent());
        assert_eq!(refused(true).category(), "ServiceRejected");
    }
}
