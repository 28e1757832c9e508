//! Thin API glue: server-side apply with one field manager, status patches, cleanup.
use k8s_openapi::NamespaceResourceScope;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
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
    api.patch_status(name, &PatchParams::default(), &patch)
        .await?;
    Ok(())
}

/// Names of objects matching `selector` in `namespace`.
pub async fn list_names<K>(
    client: &Client,
    namespace: &str,
    selector: &str,
) -> Result<Vec<(String, Option<String>)>>
where
    K: NamespacedObject,
{
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    let list = api
        .list_metadata(&ListParams::default().labels(selector))
        .await?;
    Ok(list
        .items
        .into_iter()
        .filter_map(|o| {
            let owner = o
                .metadata
                .owner_references
                .unwrap_or_default()
                .into_iter()
                .find(|r| r.controller == Some(true))
                .map(|r| r.uid);
            o.metadata.name.map(|n| (n, owner))
        })
        .collect())
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
