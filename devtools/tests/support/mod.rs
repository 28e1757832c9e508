//! Shared helpers for the node agent's integration tests: manifests as typed objects, waiting,
//! and a V2 inference client.

#![allow(dead_code)]

use std::future::Future;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, ContainerStatus, HTTPGetAction, HostPathVolumeSource, Namespace, Pod,
    PodCondition, PodSpec, PodTemplateSpec, Probe, ServiceAccount, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, ObjectMeta, PostParams};

/// Polls `check` every 250 ms until it yields a value; API errors count as "not yet".
pub async fn wait_until<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>>>,
{
    let deadline = Instant::now() + timeout;
    let mut last_error = None;
    loop {
        match check().await {
            Ok(Some(value)) => return Ok(value),
            Ok(None) => {}
            Err(e) => last_error = Some(e),
        }
        if Instant::now() > deadline {
            bail!(
                "timed out after {}s waiting for {what} (last error: {last_error:?})",
                timeout.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

pub async fn create_namespace(client: &kube::Client, name: &str) -> Result<()> {
    let ns = Namespace {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    };
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await?;
    Ok(())
}

/// Pods are rejected by the ServiceAccount admission plugin until the controllers created the
/// account and (on 1.20) its token secret.
pub async fn wait_for_default_service_account(client: &kube::Client, ns: &str) -> Result<()> {
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), ns);
    wait_until(
        Duration::from_secs(30),
        "default service account and token",
        || async {
            let account = accounts.get_opt("default").await?;
            let has_token = account
                .and_then(|a| a.secrets)
                .is_some_and(|s| !s.is_empty());
            Ok(has_token.then_some(()))
        },
    )
    .await
}

fn server_container(image: &str) -> Container {
    Container {
        name: "server".into(),
        image: Some(image.into()),
        args: Some(
            [
                "--model-dir",
                "/models",
                "--format",
                "sequential",
                "--model-name",
                "demo",
            ]
            .map(String::from)
            .to_vec(),
        ),
        ports: Some(vec![ContainerPort {
            container_port: 8080,
            name: Some("http".into()),
            ..ContainerPort::default()
        }]),
        readiness_probe: Some(Probe {
            http_get: Some(HTTPGetAction {
                path: Some("/v2/health/ready".into()),
                port: IntOrString::String("http".into()),
                ..HTTPGetAction::default()
            }),
            period_seconds: Some(1),
            failure_threshold: Some(1),
            ..Probe::default()
        }),
        volume_mounts: Some(vec![VolumeMount {
            name: "model".into(),
            mount_path: "/models".into(),
            read_only: Some(true),
            ..VolumeMount::default()
        }]),
        ..Container::default()
    }
}

pub fn demo_deployment(model_dir: &Path) -> Deployment {
    let labels = std::collections::BTreeMap::from([("app".to_string(), "demo".to_string())]);
    Deployment {
        metadata: ObjectMeta {
            name: Some("demo".into()),
            ..ObjectMeta::default()
        },
        spec: DeploymentSpec {
            replicas: Some(2),
            selector: LabelSelector {
                match_labels: Some(labels.clone()),
                ..LabelSelector::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![server_container("sconce-server:dev")],
                    termination_grace_period_seconds: Some(5),
                    volumes: Some(vec![Volume {
                        name: "model".into(),
                        host_path: Some(HostPathVolumeSource {
                            path: model_dir.display().to_string(),
                            type_: Some("Directory".into()),
                        }),
                        ..Volume::default()
                    }]),
                    ..PodSpec::default()
                }),
            },
            ..DeploymentSpec::default()
        },
        ..Deployment::default()
    }
}

/// A single pod; `node_selector` makes it unschedulable on the agent's node.
pub fn bare_pod(name: &str, image: &str, node_selector: Option<(&str, &str)>) -> Pod {
    let mut container = server_container(image);
    container.volume_mounts = None;
    Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..ObjectMeta::default()
        },
        spec: Some(PodSpec {
            containers: vec![container],
            node_selector: node_selector.map(|(k, v)| [(k.to_string(), v.to_string())].into()),
            termination_grace_period_seconds: Some(5),
            ..PodSpec::default()
        }),
        ..Pod::default()
    }
}

pub fn condition<'a>(pod: &'a Pod, type_: &str) -> Option<&'a PodCondition> {
    pod.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
}

pub fn container_status(pod: &Pod) -> Option<&ContainerStatus> {
    pod.status.as_ref()?.container_statuses.as_ref()?.first()
}

pub fn pod_ip(pod: &Pod) -> Option<String> {
    pod.status.as_ref()?.pod_ip.clone()
}

pub fn is_running_and_ready(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_none()
        && pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
        && condition(pod, "Ready").is_some_and(|c| c.status == "True")
}

/// A KServe V2 request with one FP32 input of shape `[1, n]`; returns the first output's data.
pub async fn infer(ip: &str, input: &[f32]) -> Result<Vec<f32>> {
    let body = serde_json::json!({
        "inputs": [{"name": "input", "shape": [1, input.len()], "datatype": "FP32", "data": input}]
    });
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()?;
    let response = http
        .post(format!("http://{ip}:8080/v2/models/demo/infer"))
        .json(&body)
        .send()
        .await?;
    let status = response.status();
    let json: serde_json::Value = response
        .json()
        .await
        .context("inference response is JSON")?;
    if !status.is_success() {
        bail!("inference on {ip} failed with {status}: {json}");
    }
    let data = json["outputs"][0]["data"]
        .as_array()
        .context("outputs[0].data")?;
    data.iter()
        .map(|v| v.as_f64().map(|f| f as f32).context("numeric output"))
        .collect()
}

pub fn close(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| (x - y).abs() <= 1e-4 + 1e-4 * y.abs())
}

pub fn dump_logs(dir: &Path) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(40).collect();
        eprintln!("==== {} ====", entry.path().display());
        for line in tail.iter().rev() {
            eprintln!("{line}");
        }
    }
}
