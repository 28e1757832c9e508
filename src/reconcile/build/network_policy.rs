//! `spec.networkPolicy`: a NetworkPolicy `<name>` that lets only the listed clients and the
//! operator (which scrapes the pods' `/metrics` for canary analysis) reach the serving pods.
use std::collections::BTreeMap;

use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort,
    NetworkPolicySpec as PolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::labels;
use crate::crd::NetworkPolicySpec;
use crate::reconcile::validate::ValidModel;

/// Where the operator's pods run, so the policy can let its scraper in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScraperPeer {
    pub namespace: String,
    pub pod_labels: BTreeMap<String, String>,
}

/// Namespaces carry their name as this label (Kubernetes 1.21 and later set it; on 1.20, label
/// the operator's namespace so by hand).
pub const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

impl ScraperPeer {
    /// `k=v,k=v` labels of the operator's pods; None when empty or malformed.
    pub fn parse(namespace: &str, labels: &str) -> Option<ScraperPeer> {
        let pod_labels: Option<BTreeMap<String, String>> = labels
            .split(',')
            .filter(|p| !p.trim().is_empty())
            .map(|pair| {
                let (k, v) = pair.split_once('=')?;
                Some((k.trim().to_string(), v.trim().to_string()))
            })
            .collect();
        let pod_labels = pod_labels.filter(|l| !l.is_empty())?;
        (!namespace.is_empty()).then(|| ScraperPeer {
            namespace: namespace.to_string(),
            pod_labels,
        })
    }

    fn peer(&self) -> NetworkPolicyPeer {
        NetworkPolicyPeer {
            namespace_selector: Some(LabelSelector {
                match_labels: Some(BTreeMap::from([(
                    NAMESPACE_NAME_LABEL.to_string(),
                    self.namespace.clone(),
                )])),
                ..Default::default()
            }),
            pod_selector: Some(LabelSelector {
                match_labels: Some(self.pod_labels.clone()),
                ..Default::default()
            }),
            ..Default::default()
        }
    }
}

/// The policy over every version's serving pods: ingress only on the server's port, only from
/// `spec.allowFrom` and the operator. With no peer at all it denies every ingress (an ingress
/// rule without `from` would allow everyone).
pub fn network_policy(
    model: &ValidModel,
    spec: &NetworkPolicySpec,
    scraper: Option<&ScraperPeer>,
    port: i32,
    owner: OwnerReference,
) -> NetworkPolicy {
    let mut meta_labels = labels::pod_labels(model);
    meta_labels.remove(labels::VERSION_LABEL);
    meta_labels.remove("app.kubernetes.io/version");
    let peers: Vec<NetworkPolicyPeer> = spec
        .allow_from
        .iter()
        .cloned()
        .chain(scraper.map(ScraperPeer::peer))
        .collect();
    let ingress = if peers.is_empty() {
        Vec::new()
    } else {
        vec![NetworkPolicyIngressRule {
            from: Some(peers),
            ports: Some(vec![NetworkPolicyPort {
                port: Some(IntOrString::Int(port)),
                protocol: Some("TCP".into()),
                end_port: None,
            }]),
        }]
    };
    NetworkPolicy {
        metadata: ObjectMeta {
            name: Some(model.instance.clone()),
            namespace: Some(model.namespace.clone()),
            labels: Some(meta_labels),
            owner_references: Some(vec![owner]),
            ..Default::default()
        },
        spec: Some(PolicySpec {
            pod_selector: Some(LabelSelector {
                match_labels: Some(labels::service_selector(model)),
                ..Default::default()
            }),
            policy_types: Some(vec!["Ingress".into()]),
            ingress: Some(ingress),
            egress: None,
        }),
    }
}
