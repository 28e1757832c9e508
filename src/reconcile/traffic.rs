//! Weighted traffic through a Gateway API HTTPRoute: per-version Services `<name>-<version>`
//! and the route's `backendRefs`. The user creates the route (parentRefs, matches); Sconce owns
//! the backendRefs of its rules and marks the route with its instance label. The decisions are
//! pure functions; `sync_route` is the glue.
use kube::Client;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, PostParams};
use serde_json::{Value, json};

use super::build::INSTANCE_LABEL;
use super::status::Problem;
use crate::error::Result;

pub fn route_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("gateway.networking.k8s.io", "v1", "HTTPRoute"),
        "httproutes",
    )
}

/// Whether this ModelDeployment may own the route's backendRefs.
pub fn route_problem(route: Option<&DynamicObject>, name: &str, instance: &str) -> Option<Problem> {
    let Some(route) = route else {
        return Some(Problem::new(
            "HTTPRouteNotFound",
            format!(
                "spec.traffic.httpRoute: HTTPRoute {name} does not exist in this namespace; \
                 create it (with its parentRefs), or remove spec.traffic.httpRoute"
            ),
        ));
    };
    let marked = route
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(INSTANCE_LABEL));
    if let Some(other) = marked.filter(|m| *m != instance) {
        return Some(Problem::new(
            "HTTPRouteConflict",
            format!("HTTPRoute {name} already carries the weights of ModelDeployment {other}"),
        ));
    }
    let controller = route
        .metadata
        .owner_references
        .iter()
        .flatten()
        .find(|r| r.controller == Some(true));
    if let Some(owner) = controller {
        return Some(Problem::new(
            "HTTPRouteConflict",
            format!(
                "HTTPRoute {name} is managed by {} {}; Sconce will not change its backendRefs",
                owner.kind, owner.name
            ),
        ));
    }
    None
}

/// The backendRefs for (Service name, weight) pairs; a zero weight is kept (it tells readers
/// the version exists), except for a missing canary.
pub fn backend_refs(backends: &[(String, i32)], port: i32) -> Value {
    Value::Array(
        backends
            .iter()
            .map(|(service, weight)| {
                json!({"group": "", "kind": "Service", "name": service, "port": port, "weight": weight})
            })
            .collect(),
    )
}

/// The route with every rule's backendRefs set to `refs` and Sconce's label, or None when it
/// already is so.
pub fn with_backends(route: &DynamicObject, refs: &Value, instance: &str) -> Option<DynamicObject> {
    let mut updated = route.clone();
    let rules = updated
        .data
        .pointer_mut("/spec/rules")
        .and_then(Value::as_array_mut);
    match rules {
        Some(rules) if !rules.is_empty() => {
            for rule in rules {
                if let Some(rule) = rule.as_object_mut() {
                    rule.insert("backendRefs".into(), refs.clone());
                }
            }
        }
        _ => {
            if let Some(spec) = updated.data.get_mut("spec").and_then(Value::as_object_mut) {
                spec.insert("rules".into(), json!([{"backendRefs": refs}]));
            }
        }
    }
    updated
        .metadata
        .labels
        .get_or_insert_with(Default::default)
        .insert(INSTANCE_LABEL.into(), instance.into());
    (updated.data != route.data || updated.metadata.labels != route.metadata.labels)
        .then_some(updated)
}

/// Read the route, check it is ours to drive, and write the weights if they changed.
pub async fn sync_route(
    client: &Client,
    namespace: &str,
    name: &str,
    instance: &str,
    refs: Option<&Value>,
) -> Result<Result<(), Problem>> {
    let api: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), namespace, &route_resource());
    let route = match api.get_opt(name).await {
        Ok(route) => route,
        // The Gateway API is not installed: same as a missing route, for the user.
        Err(kube::Error::Api(s)) if s.code == 404 => None,
        Err(e) => return Err(e.into()),
    };
    if let Some(problem) = route_problem(route.as_ref(), name, instance) {
        return Ok(Err(problem));
    }
    let (Some(route), Some(refs)) = (route, refs) else {
        return Ok(Ok(()));
    };
    if let Some(updated) = with_backends(&route, refs, instance) {
        api.replace(name, &PostParams::default(), &updated).await?;
    }
    Ok(Ok(()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(yaml: &str) -> DynamicObject {
        serde_yaml::from_str(yaml).expect("route")
    }

    #[test]
    fn only_an_unclaimed_or_own_route_is_driven() {
        assert_eq!(
            route_problem(None, "r", "m").map(|p| p.reason),
            Some("HTTPRouteNotFound".into())
        );
        let free = route(
            "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: r}\nspec: {}",
        );
        assert_eq!(route_problem(Some(&free), "r", "m"), None);
        let mine = route(
            "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\n\
             metadata: {name: r, labels: {sconce.dev/model-deployment: m}}\nspec: {}",
        );
        assert_eq!(route_problem(Some(&mine), "r", "m"), None);
        let theirs = route(
            "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\n\
             metadata: {name: r, labels: {sconce.dev/model-deployment: other}}\nspec: {}",
        );
        let p = route_problem(Some(&theirs), "r", "m").expect("conflict");
        assert_eq!(p.reason, "HTTPRouteConflict");
        assert!(p.message.contains("ModelDeployment other"), "{}", p.message);
        let owned = route(
            "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\n\
             metadata: {name: r, ownerReferences: [{apiVersion: x/v1, kind: Thing, name: t, uid: u, controller: true}]}\nspec: {}",
        );
        assert!(
            route_problem(Some(&owned), "r", "m")
                .expect("conflict")
                .message
                .contains("Thing t")
        );
    }

    #[test]
    fn backend_refs_replace_every_rules_backends_and_keep_matches() {
        let r = route(
            "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: r}\n\
             spec:\n  parentRefs: [{name: gw}]\n  rules:\n  - matches: [{path: {type: PathPrefix, value: /v2}}]\n    backendRefs: [{name: old, port: 80}]\n",
        );
        let refs = backend_refs(&[("m-2".into(), 90), ("m-3".into(), 10)], 80);
        let updated = with_backends(&r, &refs, "m").expect("changed");
        assert_eq!(
            updated.data["spec"]["rules"][0]["matches"][0]["path"]["value"],
            "/v2"
        );
        assert_eq!(
            updated.data["spec"]["rules"][0]["backendRefs"][1]["name"],
            "m-3"
        );
        assert_eq!(
            updated.data["spec"]["rules"][0]["backendRefs"][1]["weight"],
            10
        );
        assert_eq!(updated.data["spec"]["parentRefs"][0]["name"], "gw");
        assert_eq!(
            updated
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(INSTANCE_LABEL))
                .map(String::as_str),
            Some("m")
        );
        assert_eq!(
            with_backends(&updated, &refs, "m"),
            None,
            "nothing to write twice"
        );
        // a route without rules gets one
        let bare = route(
            "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: r}\nspec: {parentRefs: []}",
        );
        let updated = with_backends(&bare, &refs, "m").expect("changed");
        assert_eq!(
            updated.data["spec"]["rules"][0]["backendRefs"][0]["weight"],
            90
        );
    }
}
