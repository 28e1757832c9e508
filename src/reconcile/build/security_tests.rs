//! spec.auth and spec.networkPolicy builders.
use std::collections::BTreeMap;

use super::*;
use crate::crd::ModelDeployment;
use crate::reconcile::validate::validate;

fn fixture(extra: &str) -> ModelDeployment {
    serde_yaml::from_str(&format!(
        "apiVersion: sconce.dev/v1alpha1\nkind: ModelDeployment\n\
         metadata: {{name: mnist, namespace: ml, uid: u-1, generation: 1}}\n\
         spec:\n  model: {{version: '2', uri: 'file:///models/mnist', format: sequential}}\n{extra}"
    ))
    .expect("fixture parses")
}

fn config() -> BuildConfig {
    BuildConfig {
        server_image: "img".into(),
        ..Default::default()
    }
}

fn build(md: &ModelDeployment) -> k8s_openapi::api::apps::v1::Deployment {
    use kube::Resource;
    let model = validate(md).expect("valid");
    let owner = md.controller_owner_ref(&()).expect("uid");
    deployment(md, &model, &config(), owner, 1)
}

#[test]
fn the_api_key_is_a_read_only_file_for_the_server_and_nowhere_else() {
    let md = fixture("  auth: {apiKeySecret: {name: mnist-keys, key: token}}\n");
    let d = build(&md);
    let pod = d.spec.template.spec.clone().expect("pod spec");
    let volume = pod
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name == "api-key")
        .expect("api-key volume");
    let secret = volume.secret.clone().expect("secret volume");
    assert_eq!(secret.secret_name.as_deref(), Some("mnist-keys"));
    let items = secret.items.expect("one item");
    assert_eq!(items.len(), 1);
    assert_eq!(items[0].key, "token");
    assert_eq!(items[0].path, "api-key");
    assert_eq!(secret.default_mode, Some(0o440));
    assert_eq!(secret.optional, Some(false));
    assert_eq!(
        pod.security_context.and_then(|s| s.fs_group),
        Some(65532),
        "the server's group may read the 0440 file"
    );
    let server = &pod.containers[0];
    let mount = server
        .volume_mounts
        .iter()
        .flatten()
        .find(|m| m.name == "api-key")
        .expect("mounted");
    assert_eq!(mount.read_only, Some(true));
    assert_eq!(api_key_path(), format!("{}/api-key", mount.mount_path));
    let args = server.args.clone().unwrap_or_default();
    let at = args
        .iter()
        .position(|a| a == "--api-key-file")
        .expect("--api-key-file");
    assert_eq!(args[at + 1], api_key_path());
    // never through the environment: no variable refers to a Secret or names the key
    assert!(server.env_from.is_none(), "{server:?}");
    for var in server.env.iter().flatten() {
        assert!(var.value_from.is_none(), "{var:?}");
        assert!(!var.name.contains("KEY"), "{var:?}");
    }
    // the model mount is still there
    assert!(
        server
            .volume_mounts
            .iter()
            .flatten()
            .any(|m| m.name == "model")
    );
}

#[test]
fn the_default_key_is_api_key_and_no_auth_mounts_nothing() {
    let d = build(&fixture("  auth: {apiKeySecret: {name: keys}}\n"));
    let pod = d.spec.template.spec.expect("pod spec");
    let volume = pod.volumes.iter().flatten().find(|v| v.name == "api-key");
    let items = volume
        .and_then(|v| v.secret.clone())
        .and_then(|s| s.items)
        .expect("items");
    assert_eq!(items[0].key, "api-key");

    let plain = build(&fixture(""));
    let pod = plain.spec.template.spec.expect("pod spec");
    assert!(pod.security_context.is_none());
    assert!(pod.volumes.iter().flatten().all(|v| v.name != "api-key"));
    let args = pod.containers[0].args.clone().unwrap_or_default();
    assert!(!args.contains(&"--api-key-file".to_string()), "{args:?}");
}

fn policy(
    extra: &str,
    scraper: Option<&ScraperPeer>,
) -> k8s_openapi::api::networking::v1::NetworkPolicy {
    use kube::Resource;
    let md = fixture(extra);
    let model = validate(&md).expect("valid");
    let spec = md.spec.network_policy.clone().expect("networkPolicy");
    network_policy(
        &model,
        &spec,
        scraper,
        server_port(&md),
        md.controller_owner_ref(&()).expect("uid"),
    )
}

#[test]
fn the_policy_admits_the_listed_clients_and_the_operator_on_the_server_port_only() {
    let scraper = ScraperPeer::parse(
        "sconce-system",
        "app.kubernetes.io/name=sconce,app.kubernetes.io/component=operator",
    )
    .expect("peer");
    let p = policy(
        "  runtime: {port: 9000}\n  networkPolicy:\n    allowFrom:\n    - podSelector: {matchLabels: {role: frontend}}\n    - namespaceSelector: {matchLabels: {team: ml}}\n",
        Some(&scraper),
    );
    assert_eq!(p.metadata.name.as_deref(), Some("mnist"));
    assert_eq!(p.metadata.namespace.as_deref(), Some("ml"));
    assert_eq!(p.metadata.owner_references.expect("owner")[0].uid, "u-1");
    let spec = p.spec.expect("spec");
    assert_eq!(
        spec.pod_selector.and_then(|s| s.match_labels),
        Some(BTreeMap::from([(
            INSTANCE_LABEL.to_string(),
            "mnist".to_string()
        )])),
        "every version's pods"
    );
    assert_eq!(spec.policy_types, Some(vec!["Ingress".to_string()]));
    assert!(spec.egress.is_none());
    let rules = spec.ingress.expect("ingress");
    assert_eq!(rules.len(), 1);
    let ports = rules[0].ports.clone().expect("ports");
    assert_eq!(ports.len(), 1);
    assert_eq!(
        ports[0].port,
        Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(9000))
    );
    let from = rules[0].from.clone().expect("from");
    assert_eq!(from.len(), 3);
    let labels = |s: &Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector>| {
        s.clone().and_then(|s| s.match_labels).unwrap_or_default()
    };
    assert_eq!(
        labels(&from[0].pod_selector)
            .get("role")
            .map(String::as_str),
        Some("frontend")
    );
    assert_eq!(
        labels(&from[1].namespace_selector)
            .get("team")
            .map(String::as_str),
        Some("ml")
    );
    let operator = &from[2];
    assert_eq!(
        labels(&operator.namespace_selector)
            .get(NAMESPACE_NAME_LABEL)
            .map(String::as_str),
        Some("sconce-system")
    );
    assert_eq!(
        labels(&operator.pod_selector)
            .get("app.kubernetes.io/component")
            .map(String::as_str),
        Some("operator")
    );
}

#[test]
fn no_peer_at_all_denies_every_ingress_instead_of_allowing_all() {
    let p = policy("  networkPolicy: {}\n", None);
    let spec = p.spec.expect("spec");
    assert_eq!(
        spec.ingress,
        Some(Vec::new()),
        "an ingress rule without `from` allows everyone"
    );
    assert_eq!(spec.policy_types, Some(vec!["Ingress".to_string()]));
    // only the operator
    let scraper = ScraperPeer::parse("ops", "app=sconce").expect("peer");
    let p = policy("  networkPolicy: {}\n", Some(&scraper));
    let rules = p.spec.and_then(|s| s.ingress).expect("ingress");
    assert_eq!(rules.len(), 1);
    assert_eq!(rules[0].from.as_ref().map(Vec::len), Some(1));
    assert_eq!(
        rules[0].ports.as_ref().and_then(|p| p[0].port.clone()),
        Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(DEFAULT_PORT))
    );
}

#[test]
fn operator_pod_labels_parse_or_are_refused() {
    let peer = ScraperPeer::parse("ns", " a=1 , b=2,").expect("peer");
    assert_eq!(peer.namespace, "ns");
    assert_eq!(
        peer.pod_labels,
        BTreeMap::from([("a".into(), "1".into()), ("b".into(), "2".into())])
    );
    assert_eq!(ScraperPeer::parse("ns", ""), None);
    assert_eq!(ScraperPeer::parse("ns", "novalue"), None);
    assert_eq!(ScraperPeer::parse("", "a=1"), None);
}

/// Pods without `spec.runtime.resources` get the operator's defaults (bounded by default);
/// a ModelDeployment's own resources win whole (no merge: half of each would surprise).
#[test]
fn default_resources_apply_only_when_the_spec_has_none() {
    use k8s_openapi::api::core::v1::ResourceRequirements;
    use kube::Resource;
    let defaults: ResourceRequirements =
        serde_json::from_str(r#"{"requests":{"cpu":"100m"},"limits":{"memory":"2Gi"}}"#)
            .expect("resources");
    let config = BuildConfig {
        default_resources: Some(defaults.clone()),
        ..config()
    };
    let resources_of = |md: &ModelDeployment| {
        let model = validate(md).expect("valid");
        let owner = md.controller_owner_ref(&()).expect("uid");
        let d = deployment(md, &model, &config, owner, 1);
        d.spec.template.spec.expect("pod").containers[0]
            .resources
            .clone()
    };
    assert_eq!(resources_of(&fixture("")), Some(defaults));
    let own = resources_of(&fixture(
        "  runtime: {resources: {limits: {memory: 512Mi}}}\n",
    ))
    .expect("resources");
    assert_eq!(
        serde_json::to_value(&own).expect("json"),
        serde_json::json!({"limits": {"memory": "512Mi"}})
    );
}
