//! The Node object this agent stands for: labels, capacity, address, Ready condition, heartbeat.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, NodeAddress, NodeCondition, NodeStatus, NodeSystemInfo};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ObjectMeta, Patch, PatchParams};
use tokio::sync::watch;
use tracing::{info, warn};

use super::launch::HOST_IP;
use super::pod_worker::FIELD_MANAGER;

const HEARTBEAT: Duration = Duration::from_secs(10);
/// One address less than the pool holds, so the node never looks bigger than it is.
const MAX_PODS: &str = "253";

pub fn node_labels(node_name: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("kubernetes.io/hostname".to_string(), node_name.to_string()),
        ("kubernetes.io/os".to_string(), "linux".to_string()),
        ("kubernetes.io/arch".to_string(), go_arch().to_string()),
        ("sconce.dev/node-agent".to_string(), "true".to_string()),
    ])
}

fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

fn read_trimmed(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

fn memory_kib() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn os_image() -> String {
    std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("PRETTY_NAME=")
                    .map(|v| v.trim_matches('"').to_string())
            })
        })
        .unwrap_or_else(|| "linux".into())
}

pub fn build_node(node_name: &str) -> Node {
    Node {
        metadata: ObjectMeta {
            name: Some(node_name.into()),
            labels: Some(node_labels(node_name)),
            ..ObjectMeta::default()
        },
        ..Node::default()
    }
}

pub fn build_node_status(node_name: &str, ready_since: Timestamp, now: Timestamp) -> NodeStatus {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut capacity = BTreeMap::from([
        ("cpu".to_string(), Quantity(cpus.to_string())),
        ("pods".to_string(), Quantity(MAX_PODS.into())),
    ]);
    if let Some(kib) = memory_kib() {
        capacity.insert("memory".into(), Quantity(format!("{kib}Ki")));
    }
    let machine_id = read_trimmed("/etc/machine-id");
    NodeStatus {
        allocatable: Some(capacity.clone()),
        capacity: Some(capacity),
        addresses: Some(vec![
            NodeAddress {
                type_: "InternalIP".into(),
                address: HOST_IP.into(),
            },
            NodeAddress {
                type_: "Hostname".into(),
                address: node_name.into(),
            },
        ]),
        conditions: Some(vec![NodeCondition {
            type_: "Ready".into(),
            status: "True".into(),
            reason: Some("SconceNodeAgentReady".into()),
            message: Some("sconce node agent runs pods as local processes".into()),
            last_heartbeat_time: Some(Time(now)),
            last_transition_time: Some(Time(ready_since)),
        }]),
        node_info: Some(NodeSystemInfo {
            architecture: go_arch().into(),
            boot_id: read_trimmed("/proc/sys/kernel/random/boot_id"),
            container_runtime_version: format!(
                "sconce-local-process://{}",
                env!("CARGO_PKG_VERSION")
            ),
            kernel_version: read_trimmed("/proc/sys/kernel/osrelease"),
            kube_proxy_version: String::new(),
            kubelet_version: format!("v{}-sconce-node-agent", env!("CARGO_PKG_VERSION")),
            machine_id: machine_id.clone(),
            operating_system: "linux".into(),
            os_image: os_image(),
            system_uuid: machine_id,
            ..NodeSystemInfo::default()
        }),
        ..NodeStatus::default()
    }
}

/// Applies the Node and its status. Shared by registration and the heartbeat.
pub async fn apply_node(
    api: &Api<Node>,
    node_name: &str,
    ready_since: Timestamp,
) -> kube::Result<()> {
    let params = PatchParams::apply(FIELD_MANAGER).force();
    api.patch(node_name, &params, &Patch::Apply(&build_node(node_name)))
        .await?;
    let status = Node {
        metadata: ObjectMeta {
            name: Some(node_name.into()),
            ..ObjectMeta::default()
        },
        status: Some(build_node_status(node_name, ready_since, Timestamp::now())),
        ..Node::default()
    };
    api.patch_status(node_name, &params, &Patch::Apply(&status))
        .await?;
    Ok(())
}

/// Registers the node, retrying until it works or the agent shuts down.
pub async fn register(
    api: &Api<Node>,
    node_name: &str,
    ready_since: Timestamp,
    shutdown: &mut watch::Receiver<bool>,
) -> bool {
    let mut delay = Duration::from_millis(500);
    loop {
        match apply_node(api, node_name, ready_since).await {
            Ok(()) => {
                info!(node = node_name, "node registered");
                return true;
            }
            Err(e) => warn!(node = node_name, "node registration failed (retrying): {e}"),
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = shutdown.changed() => return false,
        }
        delay = (delay * 2).min(Duration::from_secs(10));
    }
}

pub async fn heartbeat(
    api: Api<Node>,
    node_name: String,
    ready_since: Timestamp,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(HEARTBEAT) => {}
            _ = shutdown.changed() => return,
        }
        if let Err(e) = apply_node(&api, &node_name, ready_since).await {
            warn!(node = %node_name, "node heartbeat failed: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_carries_scheduling_labels_and_a_ready_condition() {
        let node = build_node("n1");
        let labels = node.metadata.labels.expect("labels");
        assert_eq!(
            labels.get("kubernetes.io/hostname").map(String::as_str),
            Some("n1")
        );
        assert_eq!(
            labels.get("kubernetes.io/os").map(String::as_str),
            Some("linux")
        );
        let since = Timestamp::from_second(1_700_000_000).expect("timestamp");
        let status = build_node_status("n1", since, Timestamp::now());
        let ready = &status.conditions.expect("conditions")[0];
        assert_eq!(
            (ready.type_.as_str(), ready.status.as_str()),
            ("Ready", "True")
        );
        assert_eq!(ready.last_transition_time, Some(Time(since)));
        assert!(status.capacity.expect("capacity").contains_key("pods"));
        assert_eq!(status.addresses.expect("addresses")[0].address, "127.0.0.1");
    }
}
