//! The reconcile pipeline: validate (pure) -> build (pure) -> apply -> status.
pub mod apply;
pub mod build;
pub mod status;
pub mod validate;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, ListParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use tracing::{info, instrument, warn};

use crate::crd::ModelDeployment;
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use build::BuildConfig;

/// Periodic re-check of healthy objects, in case a watch event was missed.
const RESYNC: Duration = Duration::from_secs(300);
const BACKOFF_BASE: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(120);

pub struct Context {
    pub client: Client,
    pub config: BuildConfig,
    pub metrics: Arc<Metrics>,
    pub recorder: Recorder,
    /// Consecutive transient failures per object, for exponential backoff.
    failures: Mutex<HashMap<String, u32>>,
}

impl Context {
    pub fn new(client: Client, config: BuildConfig, metrics: Arc<Metrics>) -> Self {
        let reporter = Reporter {
            controller: "sconce".into(),
            instance: std::env::var("POD_NAME").ok(),
        };
        Context {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            config,
            metrics,
            failures: Mutex::new(HashMap::new()),
        }
    }

    fn failures(&self) -> std::sync::MutexGuard<'_, HashMap<String, u32>> {
        match self.failures.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
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
    let namespace = md.namespace().ok_or(Error::MissingObjectKey("namespace"))?;
    let name = md.name_any();
    let api: Api<ModelDeployment> = Api::namespaced(ctx.client.clone(), &namespace);
    let now = Time(k8s_openapi::jiff::Timestamp::now());

    let model = match validate::validate(md) {
        Ok(model) => model,
        Err(invalid) => {
            // Permanent: report, touch no children, wait for the user's next edit.
            let desired = status::invalid_status(md, &invalid, &now);
            write_status(md, &api, &name, desired, ctx).await?;
            return Err(invalid.into());
        }
    };

    let owner = md
        .controller_owner_ref(&())
        .ok_or(Error::MissingObjectKey("uid"))?;
    let deployment = build::deployment(md, &model, &ctx.config, owner.clone());
    let service = build::service(&model, owner.clone());
    let deployment = apply::apply(&ctx.client, &deployment).await?;
    apply::apply::<Service>(&ctx.client, &service).await?;

    let desired = status::valid_status(md, &model, Some(&deployment), &now);
    if status::is_ready(&desired) {
        remove_old_versions(ctx, &namespace, &model, &owner.uid).await?;
    }
    write_status(md, &api, &name, desired, ctx).await?;
    Ok(Action::requeue(RESYNC))
}

/// Once the current version is fully ready, Deployments of earlier versions go.
async fn remove_old_versions(
    ctx: &Context,
    namespace: &str,
    model: &validate::ValidModel,
    owner_uid: &str,
) -> Result<()> {
    let selector = format!("{}={}", build::INSTANCE_LABEL, model.instance);
    let existing = apply::list_names::<Deployment>(&ctx.client, namespace, &selector).await?;
    for (name, owner) in existing {
        if name != model.deployment_name && owner.as_deref() == Some(owner_uid) {
            info!(deployment = %name, "removing the previous version's Deployment");
            apply::delete::<Deployment>(&ctx.client, namespace, &name).await?;
        }
    }
    Ok(())
}

/// Write the status only when it changed, and publish events for condition transitions.
async fn write_status(
    md: &ModelDeployment,
    api: &Api<ModelDeployment>,
    name: &str,
    desired: crate::crd::ModelDeploymentStatus,
    ctx: &Context,
) -> Result<()> {
    let current = md.status.clone().unwrap_or_default();
    if current == desired {
        return Ok(());
    }
    apply::patch_status(api, name, &desired).await?;
    let reference = md.object_ref(&());
    for t in status::transitions(&current.conditions, &desired.conditions) {
        let event = Event {
            type_: if t.warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: t.reason,
            note: Some(truncate(&t.note, 1000)),
            action: "Reconcile".into(),
            secondary: None,
        };
        // An event that cannot be published must not fail the reconcile.
        if let Err(e) = ctx.recorder.publish(&event, &reference).await {
            warn!(error = %e, "publishing event failed");
        }
    }
    Ok(())
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
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

/// Run the controller until shutdown. `namespace: None` watches every namespace.
pub async fn run(
    client: Client,
    namespace: Option<String>,
    config: BuildConfig,
    metrics: Arc<Metrics>,
    ready: Arc<AtomicBool>,
) -> anyhow::Result<()> {
    let (mds, deployments, services): (Api<ModelDeployment>, Api<Deployment>, Api<Service>) =
        match &namespace {
            Some(ns) => (
                Api::namespaced(client.clone(), ns),
                Api::namespaced(client.clone(), ns),
                Api::namespaced(client.clone(), ns),
            ),
            None => (
                Api::all(client.clone()),
                Api::all(client.clone()),
                Api::all(client.clone()),
            ),
        };
    // Fails fast with a clear message when the CRD is not installed.
    mds.list(&ListParams::default().limit(1)).await.map_err(|e| {
        anyhow::anyhow!("cannot list ModelDeployments (is the CRD installed? `sconce crd | kubectl apply -f -`): {e}")
    })?;
    ready.store(true, Ordering::Relaxed);
    let ctx = Arc::new(Context::new(client, config, metrics));
    let children = watcher::Config::default().labels(&format!(
        "app.kubernetes.io/managed-by={}",
        build::MANAGED_BY
    ));
    Controller::new(mds, watcher::Config::default())
        .owns(deployments, children.clone())
        .owns(services, children)
        .shutdown_on_signal()
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(error = %e, "reconcile loop");
            }
        })
        .await;
    Ok(())
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
    }
}
