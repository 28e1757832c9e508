//! Thin API glue: server-side apply with one field manager, status patches, cleanup.
use std::collections::BTreeMap;

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::{Client, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

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

/// Merge-patch the status subresource from `current` to `desired`. Unset fields are skipped
/// when serialising, so a plain merge patch of `desired` would leave a field that went away
/// (a finished rollout's canaryVersion) in place: the patch sets those to null.
pub async fn patch_status(
    api: &Api<ModelDeployment>,
    name: &str,
    current: &ModelDeploymentStatus,
    desired: &ModelDeploymentStatus,
) -> Result<()> {
    let diff = merge_diff(
        &serde_json::to_value(current)?,
        &serde_json::to_value(desired)?,
    );
    let patch = Patch::Merge(serde_json::json!({ "status": diff }));
    api.patch_status(name, &manager_params(), &patch).await?;
    Ok(())
}

/// The JSON merge patch (RFC 7386) that turns `current` into `desired`: changed values, nested
/// objects patched key by key, and null for keys `desired` lacks. Arrays are replaced whole.
pub fn merge_diff(current: &Value, desired: &Value) -> Value {
    match (current, desired) {
        (Value::Object(old), Value::Object(new)) => {
            let mut patch = serde_json::Map::new();
            for (key, value) in new {
                match old.get(key) {
                    Some(before) if before == value => {}
                    Some(before) => {
                        patch.insert(key.clone(), merge_diff(before, value));
                    }
                    None => {
                        patch.insert(key.clone(), value.clone());
                    }
                }
            }
            for key in old.keys().filter(|k| !new.contains_key(*k)) {
                patch.insert(key.clone(), Value::Null);
            }
            Value::Object(patch)
        }
        _ => desired.clone(),
    }
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

#[cfg(test)]
mod tests {
    use super::merge_diff;
    use serde_json::json;

    /// Applies a merge patch as RFC 7386 says, to check the diff against.
    fn apply(target: &mut serde_json::Value, patch: &serde_json::Value) {
        match (target.as_object_mut(), patch.as_object()) {
            (Some(t), Some(p)) => {
                for (k, v) in p {
                    if v.is_null() {
                        t.remove(k);
                    } else {
                        apply(t.entry(k.clone()).or_insert(json!({})), v);
                    }
                }
            }
            _ => *target = patch.clone(),
        }
    }

    #[test]
    fn the_diff_removes_what_went_away_and_keeps_what_stayed() {
        let current = json!({"stableVersion": "1", "canaryVersion": "2", "canaryWeight": 50,
            "rollout": {"currentStep": 1, "started": "t0"}, "history": [{"v": "1"}], "replicas": 2});
        let desired = json!({"stableVersion": "2", "rollout": {"started": "t0", "endedGeneration": 3},
            "history": [{"v": "2"}, {"v": "1"}], "replicas": 2});
        let patch = merge_diff(&current, &desired);
        assert_eq!(
            patch,
            json!({"stableVersion": "2", "canaryVersion": null, "canaryWeight": null,
                "rollout": {"currentStep": null, "endedGeneration": 3},
                "history": [{"v": "2"}, {"v": "1"}]})
        );
        let mut patched = current.clone();
        apply(&mut patched, &patch);
        assert_eq!(patched, desired);
        assert_eq!(merge_diff(&desired, &desired), json!({}));
    }
}
