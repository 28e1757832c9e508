//! The ModelDeployment's children: applying them (never over someone else's object), reading
//! them back from the caches, retiring old versions.
use std::sync::Arc;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Endpoints, Event, Pod, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::ResourceExt;
use kube::api::{Api, ListParams, Patch};
use kube::runtime::reflector::{ObjectRef, Store};
use serde::Serialize;
use tracing::info;

use super::applied;
use super::apply::{self, NamespacedObject};
use super::build::{self, INSTANCE_LABEL, VERSION_LABEL};
use super::status::{Problem, Transition};
use super::validate::{ValidModel, version_slug};
use super::{Context, Stores, observe, pods, traffic};
use crate::crd::ModelDeployment;
use crate::error::{Error, Result};
use crate::rollout::Decision;

/// A child the apiserver refused, or whose name belongs to someone else.
#[derive(Debug)]
pub struct Refusal {
    pub problem: Problem,
    /// Only a spec change can help (the apiserver found the object invalid).
    pub permanent: bool,
}

#[derive(Debug, Default)]
pub struct Outcome {
    /// The stable version's Deployment as the apiserver has it.
    pub stable: Option<Deployment>,
    /// The canary's, while a rollout runs.
    pub canary: Option<Deployment>,
    /// The first refusal; the reconcile reports it and fails with it.
    pub refusal: Option<Refusal>,
}

impl Outcome {
    fn refuse(&mut self, refusal: Refusal) {
        self.refusal.get_or_insert(refusal);
    }
}

/// Apply what the rollout decided: the stable version's Deployment (in full when it is the
/// spec's version, else only its replica count: its template belongs to the version it serves),
/// the canary's, the shared Service and, with an HTTPRoute, the per-version Services and the
/// route's weights. Transient API failures are errors; refusals come back in the outcome.
pub async fn apply_all(
    ctx: &Context,
    md: &ModelDeployment,
    model: &ValidModel,
    owner: OwnerReference,
    decision: &Decision,
    notes: &mut Vec<Transition>,
) -> Result<Outcome> {
    let uid = owner.uid.clone();
    let mut outcome = Outcome::default();
    let stable = &decision.stable;
    if stable.version == model.version {
        let deployment = build::deployment(md, model, &ctx.config, owner.clone(), stable.replicas);
        match apply_child(
            ctx,
            &ctx.stores.deployments,
            &deployment,
            "Deployment",
            &uid,
        )
        .await?
        {
            Ok(applied) => outcome.stable = Some(applied),
            Err(refusal) => outcome.refuse(refusal),
        }
    } else {
        let frozen = model.for_version(&stable.version);
        match scale(ctx, &frozen, stable.replicas).await? {
            Some(d) => outcome.stable = Some(d),
            None => outcome.refuse(Refusal {
                problem: Problem::new(
                    "StableMissing",
                    format!(
                        "Deployment {} of the stable version {} is gone; set spec.model.version                          to {} to serve it again from the spec",
                        frozen.deployment_name, stable.version, stable.version
                    ),
                ),
                permanent: false,
            }),
        }
    }
    if let Some(canary) = &decision.canary {
        let deployment = build::deployment(md, model, &ctx.config, owner.clone(), canary.replicas);
        match apply_child(
            ctx,
            &ctx.stores.deployments,
            &deployment,
            "Deployment",
            &uid,
        )
        .await?
        {
            Ok(applied) => outcome.canary = Some(applied),
            Err(refusal) => outcome.refuse(refusal),
        }
    }
    let service = build::service(model, owner.clone());
    let before = ctx.stores.services.get(&object_ref(&service));
    match apply_child(ctx, &ctx.stores.services, &service, "Service", &uid).await? {
        Ok(applied) => restore_selector(ctx, model, before.as_deref(), &applied, notes).await?,
        Err(refusal) => outcome.refuse(refusal),
    }
    if let Some(route) = &model.rollout.http_route {
        let mut backends = vec![(stable.version.clone(), decision.weights.0)];
        if let Some(canary) = &decision.canary {
            backends.push((canary.version.clone(), decision.weights.1));
        }
        let mut refs = Vec::new();
        for (version, weight) in backends {
            let versioned = model.for_version(&version);
            let service = build::version_service(&versioned, owner.clone());
            match apply_child(ctx, &ctx.stores.services, &service, "Service", &uid).await? {
                Ok(_) => refs.push((versioned.deployment_name, weight)),
                Err(refusal) => outcome.refuse(refusal),
            }
        }
        let refs = traffic::backend_refs(&refs, build::SERVICE_PORT);
        if let Err(problem) = traffic::sync_route(
            &ctx.client,
            &model.namespace,
            route,
            &model.instance,
            Some(&refs),
        )
        .await?
        {
            outcome.refuse(Refusal {
                problem,
                permanent: false,
            });
        }
    }
    if let Some(refusal) = super::network_policy::sync(ctx, md, model, owner).await? {
        outcome.refuse(refusal);
    }
    Ok(outcome)
}

/// Set the replica count of an existing Deployment (from the cache) without touching its
/// template; None when it does not exist.
async fn scale(ctx: &Context, model: &ValidModel, replicas: i32) -> Result<Option<Deployment>> {
    let Some(current) = deployment(&ctx.stores, model) else {
        return Ok(None);
    };
    if current.spec.replicas == Some(replicas) {
        return Ok(Some(current.as_ref().clone()));
    }
    let api: Api<Deployment> = Api::namespaced(ctx.client.clone(), &model.namespace);
    let patch = serde_json::json!({"spec": {"replicas": replicas}});
    let scaled = api
        .patch(
            &model.deployment_name,
            &apply::manager_params(),
            &Patch::Merge(&patch),
        )
        .await?;
    Ok(Some(scaled))
}

fn object_ref<K: NamespacedObject>(object: &K) -> ObjectRef<K> {
    let r = ObjectRef::new(&object.name_any());
    match object.namespace() {
        Some(ns) => r.within(&ns),
        None => r,
    }
}

/// Server-side apply `object` unless a same-named object belongs to someone else.
pub(super) async fn apply_child<K>(
    ctx: &Context,
    store: &Store<K>,
    object: &K,
    kind: &str,
    our_uid: &str,
) -> Result<Result<K, Refusal>>
where
    K: NamespacedObject + Serialize,
{
    let name = object.name_any();
    let namespace = object.namespace().unwrap_or_default();
    let key = format!("{kind}/{namespace}/{name}");
    let fingerprint = applied::fingerprint(object);
    let cached = store.get(&object_ref(object));
    if let (Some(cached), Some(f)) = (&cached, fingerprint)
        && ctx
            .applied
            .unchanged(&key, f, applied::live_fingerprint(cached.as_ref()))
    {
        return Ok(Ok(cached.as_ref().clone()));
    }
    // The cache holds only objects labelled as Sconce's; anything else needs a look.
    let existing = match cached {
        Some(cached) => Some(cached.meta().clone()),
        None => Api::<K>::namespaced(ctx.client.clone(), &namespace)
            .get_metadata_opt(&name)
            .await?
            .map(|m| m.metadata),
    };
    if let Some(problem) = existing
        .as_ref()
        .and_then(|meta| observe::ownership_problem(kind, meta, our_uid))
    {
        // Transient: the other object may go away; the backoff notices.
        return Ok(Err(Refusal {
            problem,
            permanent: false,
        }));
    }
    match apply::apply(&ctx.client, object).await {
        Ok(result) => {
            if let Some(f) = fingerprint {
                ctx.applied
                    .remember(key, f, applied::live_fingerprint(&result));
            }
            Ok(Ok(result))
        }
        Err(Error::Kube(kube::Error::Api(status))) if refused(status.code) => Ok(Err(Refusal {
            problem: Problem::new(
                format!("{kind}Rejected"),
                format!("the apiserver refused {kind} {name}: {}", status.message),
            ),
            permanent: matches!(status.code, 400 | 422),
        })),
        Err(e) => Err(e),
    }
}

/// A 4xx that says our request is wrong or not allowed (reported to the user), as opposed to
/// "not now" (404 while a namespace goes away, 408, 429: retried quietly).
fn refused(code: u16) -> bool {
    (400..500).contains(&code) && !matches!(code, 404 | 408 | 429)
}

/// Put back the Service selector when someone changed it. Server-side apply restores the
/// values Sconce owns, but not keys another manager added, so those need a replace.
async fn restore_selector(
    ctx: &Context,
    model: &ValidModel,
    before: Option<&Service>,
    applied: &Service,
    notes: &mut Vec<Transition>,
) -> Result<()> {
    let desired = build::service_selector(model);
    let live = |s: &Service| s.spec.as_ref().and_then(|spec| spec.selector.clone());
    if let Some(before) = before
        && let Some(note) =
            observe::selector_drift(&model.instance, live(before).as_ref(), &desired)
    {
        notes.push(Transition::warning("ServiceSelectorRestored", note));
    }
    let after_apply = live(applied);
    if after_apply.as_ref() != Some(&desired) {
        apply::replace_service_selector(
            &ctx.client,
            &model.namespace,
            &model.instance,
            after_apply.as_ref(),
            &desired,
        )
        .await?;
    }
    Ok(())
}

/// The current version's pods, from the cache.
pub fn pods_of_version(stores: &Stores, model: &ValidModel) -> Vec<Arc<Pod>> {
    stores.pods.state_filter(|p| {
        p.namespace().as_deref() == Some(model.namespace.as_str())
            && p.labels().get(INSTANCE_LABEL) == Some(&model.instance)
            && p.labels().get(VERSION_LABEL) == Some(&model.version_slug)
    })
}

/// How long a scheduled pod may create its containers before its Events are read for a cause.
const CREATING_GRACE: std::time::Duration = std::time::Duration::from_secs(8);

/// Why the current version's pods cannot run: from their status, or for pods stuck creating
/// their containers, from their Events (one list request, only then).
pub async fn pod_problem(
    ctx: &Context,
    model: &ValidModel,
    pods: &[Arc<Pod>],
) -> Result<Option<Problem>> {
    let pods: Vec<&Pod> = pods.iter().map(|p| p.as_ref()).collect();
    if let Some(problem) = pods::diagnose(&pods) {
        return Ok(Some(problem));
    }
    let now = k8s_openapi::jiff::Timestamp::now();
    let Some(stuck) = pods::stuck_creating(&pods, now, CREATING_GRACE)
        .into_iter()
        .next()
    else {
        return Ok(None);
    };
    let name = stuck.name_any();
    let api: Api<Event> = Api::namespaced(ctx.client.clone(), &model.namespace);
    let selector = format!("involvedObject.kind=Pod,involvedObject.name={name}");
    let events = api.list(&ListParams::default().fields(&selector)).await?;
    Ok(pods::problem_from_events(&name, &events.items))
}

/// The Deployment of `model`'s version, from the cache.
pub fn deployment(stores: &Stores, model: &ValidModel) -> Option<Arc<Deployment>> {
    stores
        .deployments
        .get(&ObjectRef::new(&model.deployment_name).within(&model.namespace))
}

/// The model Service's Endpoints, from the cache.
pub fn endpoints(stores: &Stores, model: &ValidModel) -> Option<Arc<Endpoints>> {
    stores
        .endpoints
        .get(&ObjectRef::new(&model.instance).within(&model.namespace))
}

/// Deployments (and per-version Services) of versions that are neither stable nor canary go.
/// Called only once stable serves, so no serving version is ever removed before its
/// replacement is ready.
pub async fn retire_versions(
    ctx: &Context,
    model: &ValidModel,
    keep: &[&str],
    owner_uid: &str,
    notes: &mut Vec<Transition>,
) -> Result<()> {
    let keep_slugs: Vec<String> = keep.iter().map(|v| version_slug(v)).collect();
    let ours = |meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta| {
        let labels = meta.labels.as_ref();
        let version = labels.and_then(|l| l.get(VERSION_LABEL));
        meta.namespace.as_deref() == Some(model.namespace.as_str())
            && labels.and_then(|l| l.get(INSTANCE_LABEL)) == Some(&model.instance)
            && version.is_some_and(|v| !keep_slugs.contains(v))
            && meta.deletion_timestamp.is_none()
            && meta
                .owner_references
                .iter()
                .flatten()
                .any(|r| r.controller == Some(true) && r.uid == owner_uid)
    };
    let old = ctx.stores.deployments.state_filter(|d| ours(&d.metadata));
    for deployment in old {
        let name = deployment.name_any();
        let version = deployment
            .labels()
            .get(VERSION_LABEL)
            .cloned()
            .unwrap_or_default();
        info!(deployment = %name, "removing a retired version's Deployment");
        apply::delete::<Deployment>(&ctx.client, &model.namespace, &name).await?;
        notes.push(Transition::normal(
            "VersionRetired",
            format!(
                "removed Deployment {name} (version {version}): version {} is serving",
                keep.first().copied().unwrap_or("?")
            ),
        ));
    }
    for service in ctx.stores.services.state_filter(|s| ours(&s.metadata)) {
        apply::delete::<Service>(&ctx.client, &model.namespace, &service.name_any()).await?;
    }
    Ok(())
}
