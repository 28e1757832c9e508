use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{SERVICE_PORT, labels};
use crate::reconcile::validate::ValidModel;

/// The Service `<name>`: a stable in-cluster address for every version's pods.
pub fn service(model: &ValidModel, owner: OwnerReference) -> Service {
    let mut meta_labels = labels::pod_labels(model);
    // The Service outlives versions: drop the per-version labels.
    meta_labels.remove(labels::VERSION_LABEL);
    meta_labels.remove("app.kubernetes.io/version");
    http_service(
        model,
        model.instance.clone(),
        meta_labels,
        labels::service_selector(model),
        owner,
    )
}

/// The Service `<name>-<version>` of one version's pods (an HTTPRoute's backend).
pub fn version_service(model: &ValidModel, owner: OwnerReference) -> Service {
    http_service(
        model,
        model.deployment_name.clone(),
        labels::pod_labels(model),
        labels::pod_selector(model),
        owner,
    )
}

fn http_service(
    model: &ValidModel,
    name: String,
    meta_labels: std::collections::BTreeMap<String, String>,
    selector: std::collections::BTreeMap<String, String>,
    owner: OwnerReference,
) -> Service {
    Service {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: Some(model.namespace.clone()),
            labels: Some(meta_labels),
            owner_references: Some(vec![owner]),
            ..Default::default()
        },
        spec: Some(ServiceSpec {
            selector: Some(selector),
            ports: Some(vec![ServicePort {
                name: Some("http".into()),
                port: SERVICE_PORT,
                target_port: Some(IntOrString::String("http".into())),
                protocol: Some("TCP".into()),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    }
}
