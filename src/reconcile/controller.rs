//! Wiring: one watch per kind, each feeding a local cache (store) and the controller's triggers.
//! Reconciles read children from the caches instead of asking the apiserver.
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::{Stream, StreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Endpoints, Pod, PodSpec, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Api, ListParams};
use kube::runtime::controller::{self, Controller};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;

use super::build::{self, BuildConfig, INSTANCE_LABEL};
use super::{Context, error_policy, reconcile};
use crate::crd::ModelDeployment;
use crate::metrics::Metrics;

/// Local caches of the objects Sconce manages (all labelled `app.kubernetes.io/managed-by=sconce`).
#[derive(Clone)]
pub struct Stores {
    pub deployments: Store<Deployment>,
    pub services: Store<Service>,
    pub endpoints: Store<Endpoints>,
    pub pods: Store<Pod>,
    pub network_policies: Store<NetworkPolicy>,
}

impl Stores {
    /// Waits until every cache holds its initial list: a reconcile that ran on a half-filled
    /// cache would report pods or endpoints as missing.
    pub async fn ready(&self) {
        let _ = self.deployments.wait_until_ready().await;
        let _ = self.services.wait_until_ready().await;
        let _ = self.endpoints.wait_until_ready().await;
        let _ = self.pods.wait_until_ready().await;
        let _ = self.network_policies.wait_until_ready().await;
    }
}

fn api<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// A watch of Sconce's children of kind `K` that keeps `Store<K>` filled and yields every
/// changed or deleted object. managedFields are dropped: they are most of an object's size
/// and the operator never reads them; `trim` drops what else of `K` it never reads.
fn cached_watch<K>(
    client: &Client,
    namespace: Option<&str>,
    trim: fn(&mut K),
) -> (
    Store<K>,
    impl Stream<Item = Result<K, watcher::Error>> + Send + 'static,
)
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let config = watcher::Config::default().labels(&format!(
        "app.kubernetes.io/managed-by={}",
        build::MANAGED_BY
    ));
    let (reader, writer) = reflector::store::<K>();
    let stream = watcher(api::<K>(client, namespace), config)
        .default_backoff()
        .modify(move |o: &mut K| {
            o.managed_fields_mut().clear();
            trim(o);
        })
        .reflect(writer)
        .touched_objects();
    (reader, stream)
}

/// Cache the whole object (but its managedFields).
fn keep<K>(_: &mut K) {}

/// Of a pod's spec the operator reads only the node it runs on (pod problems come from its
/// status); the rest (containers, probes, volumes) was the largest part of the cache.
fn trim_pod(pod: &mut Pod) {
    if let Some(spec) = pod.spec.as_mut() {
        *spec = PodSpec {
            node_name: spec.node_name.take(),
            ..Default::default()
        };
    }
}

/// The ModelDeployment a pod or Endpoints object serves, from its instance label.
fn owner_of<K: Resource>(o: &K) -> Option<ObjectRef<ModelDeployment>> {
    let name = o.meta().labels.as_ref()?.get(INSTANCE_LABEL)?;
    let namespace = o.meta().namespace.as_deref()?;
    Some(ObjectRef::new(name).within(namespace))
}

/// Reconciliations at once. Unbounded, a thousand new ModelDeployments meant a thousand
/// concurrent requests, each on its own TLS connection to the apiserver: 140 MiB peak RSS
/// (bench/operator_scale.rs) and the apiserver's in-flight limit, for no faster convergence.
const MAX_CONCURRENT_RECONCILES: u16 = 16;

/// Run the controller until shutdown. `namespace: None` watches every namespace.
pub async fn run(
    client: Client,
    namespace: Option<String>,
    config: BuildConfig,
    metrics: Arc<Metrics>,
    ready: Arc<AtomicBool>,
) -> anyhow::Result<()> {
    let ns = namespace.as_deref();
    let mds: Api<ModelDeployment> = api(&client, ns);
    // Fails fast with a clear message when the CRD is not installed.
    mds.list(&ListParams::default().limit(1)).await.map_err(|e| {
        anyhow::anyhow!("cannot list ModelDeployments (is the CRD installed? `sconce crd | kubectl apply -f -`): {e}")
    })?;
    let (deployments, deployment_events) = cached_watch::<Deployment>(&client, ns, keep);
    let (services, service_events) = cached_watch::<Service>(&client, ns, keep);
    let (endpoints, endpoint_events) = cached_watch::<Endpoints>(&client, ns, keep);
    let (pods, pod_events) = cached_watch::<Pod>(&client, ns, trim_pod);
    let (network_policies, policy_events) = cached_watch::<NetworkPolicy>(&client, ns, keep);
    let stores = Stores {
        deployments,
        services,
        endpoints,
        pods,
        network_policies,
    };
    ready.store(true, Ordering::Relaxed);
    let ctx = Arc::new(Context::new(client, config, metrics, stores));
    Controller::new(mds, watcher::Config::default())
        .with_config(controller::Config::default().concurrency(MAX_CONCURRENT_RECONCILES))
        .owns_stream(deployment_events)
        .owns_stream(service_events)
        .owns_stream(policy_events)
        .watches_stream(endpoint_events, |e: Endpoints| owner_of(&e))
        .watches_stream(pod_events, |p: Pod| owner_of(&p))
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
