use std::collections::BTreeMap;

use crate::reconcile::validate::ValidModel;

/// Selects every serving pod of one ModelDeployment, whatever its version.
pub const INSTANCE_LABEL: &str = "sconce.dev/model-deployment";
/// Selects the pods of one model version.
pub const VERSION_LABEL: &str = "sconce.dev/version";
pub const MANAGED_BY: &str = "sconce";

/// Recommended `app.kubernetes.io/*` labels plus Sconce's selector labels.
pub fn pod_labels(model: &ValidModel) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::from([
        (
            "app.kubernetes.io/name".to_string(),
            "sconce-server".to_string(),
        ),
        (
            "app.kubernetes.io/instance".to_string(),
            model.instance.clone(),
        ),
        (
            "app.kubernetes.io/version".to_string(),
            model.version_slug.clone(),
        ),
        (
            "app.kubernetes.io/component".to_string(),
            "predictor".to_string(),
        ),
        (
            "app.kubernetes.io/part-of".to_string(),
            "sconce".to_string(),
        ),
        (
            "app.kubernetes.io/managed-by".to_string(),
            MANAGED_BY.to_string(),
        ),
    ]);
    labels.extend(pod_selector(model));
    labels
}

/// The Deployment's (immutable) selector: one ModelDeployment, one version.
pub fn pod_selector(model: &ValidModel) -> BTreeMap<String, String> {
    BTreeMap::from([
        (INSTANCE_LABEL.to_string(), model.instance.clone()),
        (VERSION_LABEL.to_string(), model.version_slug.clone()),
    ])
}

/// The Service routes to all versions: during a hand-over both old and new pods serve.
pub fn service_selector(model: &ValidModel) -> BTreeMap<String, String> {
    BTreeMap::from([(INSTANCE_LABEL.to_string(), model.instance.clone())])
}

/// `k=v,k=v` form of a selector, as `status.selector` and the scale subresource expect.
pub fn selector_string(selector: &BTreeMap<String, String>) -> String {
    selector
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}
