//! Thin API glue: server-side apply with one field manager, status patches, cleanup.
use std::collections::BTreeMap;

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::{Client, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::crd::{ModelDeployment, ModelDeploymentStatus};
use crate::error::{Error, Result};

/// A namespaced, typed Kubernetes object we can read, list and delete.
pub trait NamespacedObject:
    Resource<Scope = NamespaceResourceScope, DynamicType = ()>
    + Clone
    + DeserializeOwned
    + std::fmt::Debug
{
}
impl<K> NamespacedObject for K where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug
{
}

/// The single field manager Sconce writes with.
pub const FIELD_MANAGER: &str = "sconce";

/// Server-side apply `object` and return what the API server stored. Unchanged content is a
/// no-op on the server (resourceVersion stays).
pub async fn apply<K>(client: &Client, object: &K) -> Result<K>
where
    K: NamespacedObject + Serialize,
{
    let meta = object.meta();
    let namespace = meta
        .namespace
        .as_deref()
        .ok_or(Error::MissingObjectKey("namespace"))?;
    let name = meta
        .name
        .as_deref()
        .ok_or(Error::MissingObjectKey("name"))?;
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    let params = PatchParams::apply(FIELD_MANAGER).force();
    Ok(api.patch(name, &params, &Patch::Apply(object)).await?)
}

#[derive(Serialize, Debug)]
struct StatusPatch<'a> {
    status: &'a ModelDeploymentStatus,
}

/// Merge-patch the status subresource (the conditions list is replaced whole).
pub async fn patch_status(
    api: &Api<ModelDeployment>,
    name: &str,
    status: &ModelDeploymentStatus,
) -> Result<()> {
    let patch = Patch::Merge(StatusPatch { status });
    api.patch_status(name, &manager_params(), &patch).await?;
    Ok(())
}

/// Params for non-apply patches, so managedFields name Sconce instead of `unknown`.
pub fn manager_params() -> PatchParams {
    PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..Default::default()
    }
}

/// Make a Service's selector exactly `desired`. Server-side apply cannot remove keys another
/// field manager added, so this merge patch sets each such key of `live` to null.
pub async fn replace_service_selector(
    client: &Client,
    namespace: &str,
    name: &str,
    live: Option<&BTreeMap<String, String>>,
    desired: &BTreeMap<String, String>,
) -> Result<()> {
    let mut selector: BTreeMap<&str, Option<&str>> = live
        .into_iter()
        .flatten()
        .map(|(k, _)| (k.as_str(), None))
        .collect();
    selector.extend(desired.iter().map(|(k, v)| (k.as_str(), Some(v.as_str()))));
    let patch = serde_json::json!({"spec": {"selector": selector}});
    let api: Api<Service> = Api::namespaced(client.clone(), namespace);
    api.patch(name, &manager_params(), &Patch::Merge(&patch))
        .await?;
    Ok(())
}

/// Delete in the background; a concurrent deletion is not an error.
pub async fn delete<K>(client: &Client, namespace: &str, name: &str) -> Result<()>
where
    K: NamespacedObject,
{
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    match api.delete(name, &DeleteParams::background()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}
