//! Counting the operator's own requests to the apiserver, by verb and resource, in its metrics
//! (`sconce_operator_apiserver_requests_total`): what an operator costs a cluster, and proof
//! that a converged one writes nothing.
use std::sync::Arc;

use http::{Method, Request, Uri};
use prometheus_client::encoding::EncodeLabelSet;
use tower::util::MapRequestLayer;

use crate::metrics::Metrics;

/// One kind of request: `verb` as the apiserver's audit log names it (get, list, watch,
/// create, update, patch, delete, deletecollection), `resource` with its subresource
/// (`deployments`, `modeldeployments/status`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ApiRequestLabels {
    pub verb: String,
    pub resource: String,
}

impl ApiRequestLabels {
    /// Whether the request changes something.
    pub fn is_write(&self) -> bool {
        !matches!(self.verb.as_str(), "get" | "list" | "watch")
    }
}

/// Verb and resource of a request to `/api/v1/...` or `/apis/<group>/<version>/...`.
pub fn classify(method: &Method, uri: &Uri) -> ApiRequestLabels {
    let segments: Vec<&str> = uri.path().split('/').filter(|s| !s.is_empty()).collect();
    let rest: &[&str] = match segments.first() {
        Some(&"api") => segments.get(2..).unwrap_or_default(),
        Some(&"apis") => segments.get(3..).unwrap_or_default(),
        _ => &[],
    };
    // `namespaces/<ns>/<resource>...`; `namespaces` or `namespaces/<ns>` alone is the
    // Namespace resource itself.
    let rest = match rest {
        ["namespaces", _, tail @ ..] if !tail.is_empty() => tail,
        other => other,
    };
    let resource = match rest {
        [] => "(none)".to_string(),
        [kind] | [kind, _] => (*kind).to_string(),
        [kind, _, sub, ..] => format!("{kind}/{sub}"),
    };
    let named = rest.len() >= 2;
    let watching = uri
        .query()
        .is_some_and(|q| q.split('&').any(|p| p == "watch=true" || p == "watch=1"));
    let verb = match *method {
        Method::GET if watching => "watch",
        Method::GET if named => "get",
        Method::GET => "list",
        Method::POST => "create",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE if named => "delete",
        Method::DELETE => "deletecollection",
        _ => "other",
    };
    ApiRequestLabels {
        verb: verb.to_string(),
        resource,
    }
}

/// A kube client whose every request is counted in `metrics`.
pub async fn counting_client(metrics: Arc<Metrics>) -> anyhow::Result<kube::Client> {
    let config = kube::Config::infer().await?;
    let layer = MapRequestLayer::new(move |request: Request<kube::client::Body>| {
        metrics.api_request(classify(request.method(), request.uri()));
        request
    });
    let builder = kube::client::ClientBuilder::try_from(config)?;
    Ok(builder.with_layer(&layer).build())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(method: Method, uri: &str) -> (String, String) {
        let l = classify(&method, &uri.parse().expect("uri"));
        (l.verb, l.resource)
    }

    fn pair(verb: &str, resource: &str) -> (String, String) {
        (verb.to_string(), resource.to_string())
    }

    #[test]
    fn names_verbs_and_resources_like_the_audit_log() {
        let cases = [
            (
                Method::GET,
                "/api/v1/namespaces/a/pods",
                pair("list", "pods"),
            ),
            (
                Method::GET,
                "/api/v1/pods?watch=true&resourceVersion=1",
                pair("watch", "pods"),
            ),
            (
                Method::GET,
                "/apis/apps/v1/namespaces/a/deployments/x",
                pair("get", "deployments"),
            ),
            (
                Method::PATCH,
                "/apis/apps/v1/namespaces/a/deployments/x?fieldManager=sconce",
                pair("patch", "deployments"),
            ),
            (
                Method::PATCH,
                "/apis/sconce.dev/v1alpha1/namespaces/a/modeldeployments/m/status",
                pair("patch", "modeldeployments/status"),
            ),
            (
                Method::POST,
                "/api/v1/namespaces/a/events",
                pair("create", "events"),
            ),
            (
                Method::DELETE,
                "/api/v1/namespaces/a/services/x",
                pair("delete", "services"),
            ),
            (
                Method::DELETE,
                "/api/v1/namespaces/a/services",
                pair("deletecollection", "services"),
            ),
            (
                Method::GET,
                "/api/v1/namespaces/a",
                pair("get", "namespaces"),
            ),
            (
                Method::GET,
                "/api/v1/namespaces",
                pair("list", "namespaces"),
            ),
            (
                Method::PUT,
                "/apis/coordination.k8s.io/v1/namespaces/s/leases/sconce",
                pair("update", "leases"),
            ),
            (Method::GET, "/version", pair("list", "(none)")),
        ];
        for (method, uri, want) in cases {
            assert_eq!(labels(method, uri), want, "{uri}");
        }
    }

    #[test]
    fn only_reads_are_not_writes() {
        for (verb, write) in [
            ("get", false),
            ("list", false),
            ("watch", false),
            ("create", true),
            ("update", true),
            ("patch", true),
            ("delete", true),
            ("deletecollection", true),
        ] {
            let l = ApiRequestLabels {
                verb: verb.into(),
                resource: "pods".into(),
            };
            assert_eq!(l.is_write(), write, "{verb}");
        }
    }
}
