use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment,
};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, ContainerPort, EmptyDirVolumeSource, EnvVar, HTTPGetAction,
    HostPathVolumeSource, PersistentVolumeClaimVolumeSource, PodSpec, PodTemplateSpec, Probe,
    SeccompProfile, SecurityContext, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{BuildConfig, DEFAULT_PORT, auth, labels};
use crate::crd::{ModelDeployment, ModelFormat};
use crate::reconcile::validate::{ModelSource, ValidModel};

/// Where the model directory appears inside the server container.
pub const MODEL_MOUNT_PATH: &str = "/mnt/models";
const CACHE_MOUNT_PATH: &str = "/var/cache/sconce";
/// Long enough for the drain below plus in-flight requests to finish after SIGTERM.
const TERMINATION_GRACE_SECONDS: i64 = 30;
/// After SIGTERM the server keeps answering (readiness failing, `Connection: close`) this long,
/// while the endpoints controller and kube-proxy stop sending it new connections: a rollout or
/// scale-down drops no request. A few seconds cover them; the rest of the grace period is for
/// requests still in flight.
const DRAIN_SECONDS: &str = "5";
const DRAIN_ENV: &str = "SCONCE_DRAIN_SECONDS";

/// The Deployment `<name>-<version>` serving one model version with `replicas` pods (the
/// rollout decides: `spec.replicas`, or a canary's share).
pub fn deployment(
    md: &ModelDeployment,
    model: &ValidModel,
    config: &BuildConfig,
    owner: OwnerReference,
    replicas: i32,
) -> Deployment {
    let runtime = md.spec.runtime.clone().unwrap_or_default();
    let port = runtime.port.unwrap_or(DEFAULT_PORT);
    let (volumes, mounts, location_args) = model_location(&model.source);

    let mut args = vec![
        "--format".to_string(),
        model.format.as_str().to_string(),
        "--model-name".to_string(),
        model.served_name.clone(),
        "--model-version".to_string(),
        model.version.clone(),
        "--port".to_string(),
        port.to_string(),
    ];
    args.extend(location_args);

    let container = Container {
        name: "server".into(),
        image: Some(runtime.image.unwrap_or_else(|| config.server_image.clone())),
        image_pull_policy: Some(
            runtime
                .image_pull_policy
                .map_or("IfNotPresent", |p| p.as_str())
                .into(),
        ),
        args: Some(args),
        ports: Some(vec![ContainerPort {
            name: Some("http".into()),
            container_port: port,
            protocol: Some("TCP".into()),
            ..Default::default()
        }]),
        env: Some(with_drain(runtime.env)),
        resources: runtime
            .resources
            .or_else(|| config.default_resources.clone()),
        // Language models can take minutes to fetch and load: liveness and readiness wait for
        // the model, and a load that never finishes (10 min) restarts the container.
        startup_probe: (model.format == ModelFormat::Gguf)
            .then(|| http_probe("/v2/health/ready", 5, 120)),
        readiness_probe: Some(http_probe("/v2/health/ready", 2, 3)),
        liveness_probe: Some(http_probe("/v2/health/live", 10, 3)),
        volume_mounts: Some(mounts),
        // The server's last log lines become the termination message when it fails, so the
        // ModelDeployment's status can say why (e.g. a model file that is not there).
        termination_message_policy: Some("FallbackToLogsOnError".into()),
        security_context: Some(SecurityContext {
            run_as_non_root: Some(true),
            read_only_root_filesystem: Some(true),
            allow_privilege_escalation: Some(false),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".into()]),
                ..Default::default()
            }),
            seccomp_profile: Some(SeccompProfile {
                type_: "RuntimeDefault".into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };

    let pod_labels = labels::pod_labels(model);
    let mut deployment = Deployment {
        metadata: ObjectMeta {
            name: Some(model.deployment_name.clone()),
            namespace: Some(model.namespace.clone()),
            labels: Some(pod_labels.clone()),
            owner_references: Some(vec![owner]),
            ..Default::default()
        },
        spec: DeploymentSpec {
            replicas: Some(replicas),
            selector: LabelSelector {
                match_labels: Some(labels::pod_selector(model)),
                ..Default::default()
            },
            // Surge first, never take a serving pod away before its replacement is ready.
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: Some(RollingUpdateDeployment {
                    max_surge: Some(IntOrString::Int(1)),
                    max_unavailable: Some(IntOrString::Int(0)),
                }),
            }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(pod_labels),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![container],
                    volumes: Some(volumes),
                    node_selector: (!runtime.node_selector.is_empty())
                        .then_some(runtime.node_selector),
                    tolerations: (!runtime.tolerations.is_empty()).then_some(runtime.tolerations),
                    service_account_name: runtime.service_account_name,
                    termination_grace_period_seconds: Some(TERMINATION_GRACE_SECONDS),
                    ..Default::default()
                }),
            },
            ..Default::default()
        },
        ..Default::default()
    };
    auth::mount_api_key(&mut deployment, md.spec.auth.as_ref());
    deployment
}

/// The user's env, plus the drain period unless they set it themselves.
fn with_drain(mut env: Vec<EnvVar>) -> Vec<EnvVar> {
    if !env.iter().any(|e| e.name == DRAIN_ENV) {
        env.push(EnvVar {
            name: DRAIN_ENV.into(),
            value: Some(DRAIN_SECONDS.into()),
            ..Default::default()
        });
    }
    env
}

fn http_probe(path: &str, period_seconds: i32, failure_threshold: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::String("http".into()),
            scheme: Some("HTTP".into()),
            ..Default::default()
        }),
        period_seconds: Some(period_seconds),
        failure_threshold: Some(failure_threshold),
        timeout_seconds: Some(1),
        ..Default::default()
    }
}

/// Volumes, mounts and server arguments that put the model where the server reads it.
fn model_location(source: &ModelSource) -> (Vec<Volume>, Vec<VolumeMount>, Vec<String>) {
    let model_mount = |sub_path: &str| VolumeMount {
        name: "model".into(),
        mount_path: MODEL_MOUNT_PATH.into(),
        read_only: Some(true),
        sub_path: (!sub_path.is_empty()).then(|| sub_path.to_string()),
        ..Default::default()
    };
    match source {
        ModelSource::HostPath { path } => (
            vec![Volume {
                name: "model".into(),
                host_path: Some(HostPathVolumeSource {
                    path: path.clone(),
                    type_: Some("Directory".into()),
                }),
                ..Default::default()
            }],
            vec![model_mount("")],
            vec!["--model-dir".into(), MODEL_MOUNT_PATH.into()],
        ),
        ModelSource::Pvc { claim, sub_path } => (
            vec![Volume {
                name: "model".into(),
                persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                    claim_name: claim.clone(),
                    read_only: Some(true),
                }),
                ..Default::default()
            }],
            vec![model_mount(sub_path)],
            vec!["--model-dir".into(), MODEL_MOUNT_PATH.into()],
        ),
        ModelSource::Download { uri, sha256 } => {
            let mut args = vec![
                "--model-uri".into(),
                uri.clone(),
                "--cache-dir".into(),
                CACHE_MOUNT_PATH.into(),
            ];
            if let Some(sha) = sha256 {
                args.extend(["--model-sha256".into(), sha.clone()]);
            }
            (
                vec![Volume {
                    name: "model-cache".into(),
                    empty_dir: Some(EmptyDirVolumeSource::default()),
                    ..Default::default()
                }],
                vec![VolumeMount {
                    name: "model-cache".into(),
                    mount_path: CACHE_MOUNT_PATH.into(),
                    ..Default::default()
                }],
                args,
            )
        }
    }
}
