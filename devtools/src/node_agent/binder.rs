//! Binding Pending pods to this node (the scheduler's job), or marking them Unschedulable.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Binding, ObjectReference, Pod, PodCondition, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Status, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};
use tracing::{info, warn};

use super::scheduling::check_fit;

const SCHEDULER_FIELD_MANAGER: &str = "sconce-node-agent-scheduler";

/// Binds `pod` to `node_name` if it fits, else records why it cannot be scheduled.
pub async fn schedule(
    api: Api<Pod>,
    pod: Pod,
    node_name: String,
    labels: BTreeMap<String, String>,
) {
    let name = pod.metadata.name.clone().unwrap_or_default();
    let key = format!(
        "{}/{name}",
        pod.metadata.namespace.as_deref().unwrap_or_default()
    );
    match check_fit(&pod, &labels) {
        Ok(()) => bind(&api, &pod, &name, &key, &node_name).await,
        Err(message) => mark_unschedulable(&api, &pod, &name, &key, message).await,
    }
}

async fn bind(api: &Api<Pod>, pod: &Pod, name: &str, key: &str, node_name: &str) {
    let binding = Binding {
        metadata: ObjectMeta {
            name: Some(name.into()),
            uid: pod.metadata.uid.clone(),
            ..ObjectMeta::default()
        },
        target: ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Node".into()),
            name: Some(node_name.into()),
            ..ObjectReference::default()
        },
    };
    for attempt in 1..=5u32 {
        match api
            .create_subresource::<_, Status>("binding", name, &PostParams::default(), &binding)
            .await
        {
            Ok(_) => {
                info!(pod = key, node = node_name, "bound");
                return;
            }
            // already bound (by us or another scheduler) or gone: nothing left to do
            Err(kube::Error::Api(e)) if matches!(e.code, 404 | 409) => {
                info!(pod = key, "not bound: {}", e.message);
                return;
            }
            Err(e) => {
                warn!(pod = key, attempt, "binding failed: {e}");
                tokio::time::sleep(Duration::from_secs(u64::from(attempt))).await;
            }
        }
    }
}

async fn mark_unschedulable(api: &Api<Pod>, pod: &Pod, name: &str, key: &str, message: String) {
    let current = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "PodScheduled"));
    if current
        .is_some_and(|c| c.status == "False" && c.message.as_deref() == Some(message.as_str()))
    {
        return; // already says so: no write
    }
    info!(pod = key, "unschedulable: {message}");
    let patch = Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..ObjectMeta::default()
        },
        status: Some(PodStatus {
            phase: Some("Pending".into()),
            conditions: Some(vec![PodCondition {
                type_: "PodScheduled".into(),
                status: "False".into(),
                reason: Some("Unschedulable".into()),
                message: Some(message),
                last_transition_time: Some(Time(Timestamp::now())),
                ..PodCondition::default()
            }]),
            ..PodStatus::default()
        }),
        ..Pod::default()
    };
    let params = PatchParams::apply(SCHEDULER_FIELD_MANAGER).force();
    if let Err(e) = api.patch_status(name, &params, &Patch::Apply(&patch)).await {
        warn!(pod = key, "cannot record Unschedulable: {e}");
    }
}
