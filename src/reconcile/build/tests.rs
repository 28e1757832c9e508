use k8s_openapi::api::core::v1::Container;

use super::*;
use crate::crd::ModelDeployment;
use crate::reconcile::validate::validate;

const FIXTURE: &str = r#"
apiVersion: sconce.dev/v1alpha1
kind: ModelDeployment
metadata: {name: mnist, namespace: ml, uid: 1234-abcd, generation: 3}
spec:
  replicas: 2
  model: {version: "1.0", uri: "file:///models/mnist", format: sequential}
  runtime:
    port: 9000
    env: [{name: SCONCE_MAX_BATCH_SIZE, value: "16"}]
    nodeSelector: {disk: ssd}
    resources: {requests: {cpu: 500m, memory: 256Mi}}
"#;

fn fixture(yaml: &str) -> ModelDeployment {
    serde_yaml::from_str(yaml).expect("fixture parses")
}

fn config() -> BuildConfig {
    BuildConfig {
        server_image: "registry.example/sconce-server:9.9".into(),
        ..Default::default()
    }
}

fn owner(md: &ModelDeployment) -> k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
    use kube::Resource;
    md.controller_owner_ref(&()).expect("fixture has a uid")
}

fn server_container(d: &k8s_openapi::api::apps::v1::Deployment) -> Container {
    d.spec.template.spec.as_ref().expect("pod spec").containers[0].clone()
}

#[test]
fn deployment_runs_the_server_with_the_model_mounted() {
    let md = fixture(FIXTURE);
    let model = validate(&md).expect("valid");
    let d = deployment(&md, &model, &config(), owner(&md), md.spec.replicas);

    assert_eq!(d.metadata.name.as_deref(), Some("mnist-1-0"));
    assert_eq!(d.metadata.namespace.as_deref(), Some("ml"));
    let refs = d.metadata.owner_references.clone().expect("owner refs");
    assert_eq!(refs[0].kind, "ModelDeployment");
    assert_eq!(refs[0].uid, "1234-abcd");
    assert_eq!(refs[0].controller, Some(true));

    let spec = d.spec.clone();
    assert_eq!(spec.replicas, Some(2));
    let selector = spec.selector.match_labels.clone().expect("selector");
    assert_eq!(
        selector.get(INSTANCE_LABEL).map(String::as_str),
        Some("mnist")
    );
    assert_eq!(selector.get(VERSION_LABEL).map(String::as_str), Some("1-0"));
    let template_labels = spec
        .template
        .metadata
        .clone()
        .and_then(|m| m.labels)
        .expect("labels");
    for (k, v) in &selector {
        assert_eq!(
            template_labels.get(k),
            Some(v),
            "template carries selector label {k}"
        );
    }
    assert_eq!(template_labels["app.kubernetes.io/managed-by"], "sconce");
    assert_eq!(template_labels["app.kubernetes.io/instance"], "mnist");

    let c = server_container(&d);
    assert_eq!(
        c.image.as_deref(),
        Some("registry.example/sconce-server:9.9")
    );
    assert_eq!(
        c.args.clone().expect("args"),
        [
            "--format",
            "sequential",
            "--model-name",
            "mnist",
            "--model-version",
            "1.0",
            "--port",
            "9000",
            "--model-dir",
            MODEL_MOUNT_PATH
        ]
    );
    assert_eq!(c.ports.clone().expect("ports")[0].container_port, 9000);
    let ready = c
        .readiness_probe
        .clone()
        .and_then(|p| p.http_get)
        .expect("readiness");
    assert_eq!(ready.path.as_deref(), Some("/v2/health/ready"));
    let live = c
        .liveness_probe
        .clone()
        .and_then(|p| p.http_get)
        .expect("liveness");
    assert_eq!(live.path.as_deref(), Some("/v2/health/live"));
    assert_eq!(c.env.clone().expect("env")[0].name, "SCONCE_MAX_BATCH_SIZE");
    assert!(c.resources.is_some());

    let pod = spec.template.spec.clone().expect("pod spec");
    let volume = &pod.volumes.clone().expect("volumes")[0];
    assert_eq!(
        volume.host_path.as_ref().map(|h| h.path.as_str()),
        Some("/models/mnist")
    );
    let mount = &c.volume_mounts.clone().expect("mounts")[0];
    assert_eq!(mount.mount_path, MODEL_MOUNT_PATH);
    assert_eq!(mount.read_only, Some(true));
    assert_eq!(pod.node_selector.expect("node selector")["disk"], "ssd");
}

#[test]
fn downloaded_models_get_a_cache_and_checksum() {
    let md = fixture(
        r#"
apiVersion: sconce.dev/v1alpha1
kind: ModelDeployment
metadata: {name: minilm, namespace: ml, uid: u1}
spec:
  model:
    version: "2"
    uri: "https://models.example/minilm"
    format: bert
    sha256: "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
    name: embed
"#,
    );
    let model = validate(&md).expect("valid");
    let d = deployment(&md, &model, &config(), owner(&md), md.spec.replicas);
    let c = server_container(&d);
    let args = c.args.expect("args");
    let after = |flag: &str| {
        let i = args
            .iter()
            .position(|a| a == flag)
            .unwrap_or_else(|| panic!("{flag} in {args:?}"));
        args[i + 1].clone()
    };
    assert_eq!(after("--model-uri"), "https://models.example/minilm");
    assert_eq!(after("--model-sha256").len(), 64);
    assert_eq!(after("--format"), "bert");
    assert_eq!(after("--model-name"), "embed");
    assert_eq!(after("--port"), "8080");
    assert_eq!(d.spec.replicas, Some(1), "replicas default to 1");
}

#[test]
fn pvc_models_mount_the_sub_path() {
    let md = fixture(
        r#"
apiVersion: sconce.dev/v1alpha1
kind: ModelDeployment
metadata: {name: digits, namespace: ml, uid: u2}
spec:
  model: {version: "7", uri: "pvc://models/digits/v7", format: sequential}
"#,
    );
    let model = validate(&md).expect("valid");
    let d = deployment(&md, &model, &config(), owner(&md), md.spec.replicas);
    let pod = d.spec.template.spec.expect("pod");
    let claim = pod.volumes.expect("volumes")[0]
        .persistent_volume_claim
        .clone()
        .expect("pvc");
    assert_eq!(claim.claim_name, "models");
    let mount = pod.containers[0].volume_mounts.clone().expect("mounts")[0].clone();
    assert_eq!(mount.sub_path.as_deref(), Some("digits/v7"));
}

#[test]
fn service_selects_every_version() {
    let md = fixture(FIXTURE);
    let model = validate(&md).expect("valid");
    let s = service(&model, owner(&md));
    assert_eq!(s.metadata.name.as_deref(), Some("mnist"));
    let spec = s.spec.expect("spec");
    let selector = spec.selector.expect("selector");
    assert_eq!(selector.len(), 1);
    assert_eq!(selector[INSTANCE_LABEL], "mnist");
    let port = &spec.ports.expect("ports")[0];
    assert_eq!(port.port, SERVICE_PORT);
    assert!(
        !s.metadata
            .labels
            .expect("labels")
            .contains_key(VERSION_LABEL)
    );
    assert_eq!(s.metadata.owner_references.expect("owner")[0].name, "mnist");
}

#[test]
fn selector_string_is_sorted_and_comma_separated() {
    let md = fixture(FIXTURE);
    let model = validate(&md).expect("valid");
    assert_eq!(
        selector_string(&pod_selector(&model)),
        "sconce.dev/model-deployment=mnist,sconce.dev/version=1-0"
    );
}

#[test]
fn language_models_get_a_startup_probe_for_their_load_time() {
    let md = fixture(
        r#"
apiVersion: sconce.dev/v1alpha1
kind: ModelDeployment
metadata: {name: chat, namespace: ml, uid: u1}
spec:
  model: {version: "1", uri: "https://models.example/smollm2.gguf", format: gguf}
"#,
    );
    let model = validate(&md).expect("valid");
    let c = server_container(&deployment(&md, &model, &config(), owner(&md), 1));
    let args = c.args.clone().expect("args");
    assert!(
        args.windows(2).any(|w| w == ["--format", "gguf"]),
        "{args:?}"
    );
    let startup = c.startup_probe.expect("startup probe");
    let path = startup.http_get.and_then(|g| g.path);
    assert_eq!(path.as_deref(), Some("/v2/health/ready"));
    // 10 minutes to load before the container is restarted.
    assert_eq!(
        startup.period_seconds.unwrap() * startup.failure_threshold.unwrap(),
        600
    );

    let md = fixture(
        r#"
apiVersion: sconce.dev/v1alpha1
kind: ModelDeployment
metadata: {name: mnist, namespace: ml, uid: u1}
spec:
  model: {version: "1", uri: "file:///models/mnist", format: sequential}
"#,
    );
    let model = validate(&md).expect("valid");
    let c = server_container(&deployment(&md, &model, &config(), owner(&md), 1));
    assert!(c.startup_probe.is_none());
}

#[test]
fn servers_drain_before_they_stop_unless_told_otherwise() {
    let md = fixture(FIXTURE);
    let model = validate(&md).expect("valid");
    let env = server_container(&deployment(&md, &model, &config(), owner(&md), 1))
        .env
        .expect("env");
    let names: Vec<(&str, Option<&str>)> = env
        .iter()
        .map(|e| (e.name.as_str(), e.value.as_deref()))
        .collect();
    assert_eq!(
        names,
        [
            ("SCONCE_MAX_BATCH_SIZE", Some("16")),
            ("SCONCE_DRAIN_SECONDS", Some("5"))
        ]
    );
    let mut own = md.clone();
    if let Some(r) = own.spec.runtime.as_mut() {
        r.env = vec![k8s_openapi::api::core::v1::EnvVar {
            name: "SCONCE_DRAIN_SECONDS".into(),
            value: Some("1".into()),
            ..Default::default()
        }];
    }
    let env = server_container(&deployment(&own, &model, &config(), owner(&own), 1))
        .env
        .expect("env");
    assert_eq!(env.len(), 1);
    assert_eq!(env[0].value.as_deref(), Some("1"));
}
