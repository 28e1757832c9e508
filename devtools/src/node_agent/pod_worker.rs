//! The kubelet half: one task per pod bound to this node. It owns the pod's IP, sandbox directory
//! and container runners, writes status when it changes, and finishes deletions.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, TcpListener};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, PodStatus};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use tokio::sync::{Notify, watch};
use tracing::{info, warn};

use super::AgentContext;
use super::container_runner::{RunnerConfig, RunnerHandle, spawn_runner};
use super::launch::{LaunchContext, LaunchRefusal, plan_launch};
use super::pod_status::{PodFacts, compute_status};
use super::probe::ProbePlan;

pub const FIELD_MANAGER: &str = "sconce-node-agent";
const DEFAULT_GRACE: Duration = Duration::from_secs(30);
/// On agent shutdown children get at most this long: the agent must exit promptly.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Why the worker is winding down.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Ending {
    /// `deletionTimestamp` set: stop containers, then delete the pod object with grace 0.
    Deleted,
    /// The object is gone already: stop containers, nothing to write.
    Vanished,
    /// The agent is exiting: stop containers, leave the API alone.
    Shutdown,
}

fn grace_of(pod: &Pod) -> Duration {
    let seconds = pod.metadata.deletion_grace_period_seconds.or_else(|| {
        pod.spec
            .as_ref()
            .and_then(|s| s.termination_grace_period_seconds)
    });
    seconds
        .and_then(|s| u64::try_from(s).ok())
        .map(Duration::from_secs)
        .unwrap_or(DEFAULT_GRACE)
}

fn has_init_containers(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.init_containers.as_ref())
        .is_some_and(|c| !c.is_empty())
}

fn pod_key(pod: &Pod) -> String {
    format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or_default(),
        pod.metadata.name.as_deref().unwrap_or_default()
    )
}

pub async fn run_pod(ctx: Arc<AgentContext>, mut pod_rx: watch::Receiver<Option<Pod>>) {
    let Some(mut pod) = pod_rx.borrow_and_update().clone() else {
        return;
    };
    let key = pod_key(&pod);
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let name = pod.metadata.name.clone().unwrap_or_default();
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &namespace);

    if pod.metadata.deletion_timestamp.is_some() {
        // nothing of ours runs for it (e.g. after an agent restart): just finish the deletion
        delete_now(&api, &name, &uid).await;
        return;
    }
    let Some(ip) = allocate_ip(&ctx, &pod, &mut pod_rx).await else {
        return;
    };
    let sandbox = ctx.state_dir.join(format!("{namespace}_{name}_{uid}"));
    let volume_dirs = prepare_volumes(&pod, &sandbox);
    info!(pod = %key, %ip, "starting pod");

    let changed = Arc::new(Notify::new());
    // a pod that already finished (seen again after an agent restart) is not run a second time
    let finished_before = pod
        .status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .is_some_and(|p| p == "Succeeded" || p == "Failed");
    let runners = if finished_before {
        Vec::new()
    } else {
        start_containers(&ctx, &pod, ip, &sandbox, &volume_dirs, &changed)
    };
    let start_time = pod
        .status
        .as_ref()
        .and_then(|s| s.start_time.clone())
        .map(|t| t.0)
        .unwrap_or_else(Timestamp::now);
    let restart_policy = pod
        .spec
        .as_ref()
        .and_then(|s| s.restart_policy.clone())
        .unwrap_or_else(|| "Always".into());
    let mut last_written: Option<PodStatus> = None;
    let mut write_failed = false;
    let mut ending: Option<Ending> = None;
    let mut shutdown = ctx.shutdown.clone();

    loop {
        if !finished_before && ending.is_none_or(|e| e == Ending::Deleted) {
            let snapshots: Vec<_> = runners
                .iter()
                .map(|r| r.snapshot.borrow().clone())
                .collect();
            let previous = last_written.as_ref().or(pod.status.as_ref());
            let facts = PodFacts {
                initialized: !has_init_containers(&pod),
                pod_ip: Some(ip),
                start_time,
                restart_policy: &restart_policy,
                previous,
                now: Timestamp::now(),
            };
            let status = compute_status(&facts, &snapshots);
            if last_written.as_ref() != Some(&status) {
                match write_status(&api, &name, status.clone()).await {
                    Ok(()) => {
                        last_written = Some(status);
                        write_failed = false;
                    }
                    Err(e) => {
                        warn!(pod = %key, "status write failed (will retry): {e}");
                        write_failed = true;
                    }
                }
            }
        }
        if ending.is_some() && runners.iter().all(|r| r.task.is_finished()) {
            break;
        }
        let mut stop_with = None;
        tokio::select! {
            update = pod_rx.changed() => {
                match update.ok().and_then(|()| pod_rx.borrow_and_update().clone()) {
                    None => stop_with = Some((Ending::Vanished, grace_of(&pod))),
                    Some(p) => {
                        pod = p;
                        if pod.metadata.deletion_timestamp.is_some() {
                            stop_with = Some((Ending::Deleted, grace_of(&pod)));
                        }
                    }
                }
            }
            _ = changed.notified() => {}
            _ = shutdown.changed() => stop_with = Some((Ending::Shutdown, grace_of(&pod).min(SHUTDOWN_GRACE))),
            _ = tokio::time::sleep(Duration::from_secs(2)), if write_failed => {}
            _ = tokio::time::sleep(Duration::from_millis(200)), if ending.is_some() => {}
        }
        if let Some((why, grace)) = stop_with
            && ending.is_none()
        {
            info!(pod = %key, ?why, grace_seconds = grace.as_secs(), "stopping containers");
            ending = Some(why);
            for r in &runners {
                r.stop.send_replace(Some(grace));
            }
        }
    }

    if ending == Some(Ending::Deleted) {
        delete_now(&api, &name, &uid).await;
    }
    if let Ok(mut pool) = ctx.ips.lock() {
        pool.release(ip);
    }
    if let Err(e) = std::fs::remove_dir_all(&sandbox)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        warn!(pod = %key, "cannot remove sandbox {}: {e}", sandbox.display());
    }
    info!(pod = %key, "pod finished on this node");
}

/// A free pod IP on which every containerPort can still be bound (something outside the agent
/// may hold an address); waits while the pool is exhausted. `None` when the pod went away.
async fn allocate_ip(
    ctx: &AgentContext,
    pod: &Pod,
    pod_rx: &mut watch::Receiver<Option<Pod>>,
) -> Option<Ipv4Addr> {
    let preferred = pod
        .status
        .as_ref()
        .and_then(|s| s.pod_ip.as_deref())
        .and_then(|ip| ip.parse().ok());
    let ports: Vec<u16> = pod
        .spec
        .iter()
        .flat_map(|s| &s.containers)
        .flat_map(|c| c.ports.iter().flatten())
        .filter_map(|p| u16::try_from(p.container_port).ok())
        .collect();
    loop {
        let candidate = ctx
            .ips
            .lock()
            .ok()
            .and_then(|mut pool| pool.allocate(preferred));
        match candidate {
            Some(ip)
                if ports
                    .iter()
                    .all(|&port| TcpListener::bind((ip, port)).is_ok()) =>
            {
                return Some(ip);
            }
            Some(ip) => {
                warn!(pod = %pod_key(pod), %ip, "address already in use outside the agent; skipping it");
                continue; // stays allocated: never handed out again
            }
            None => {
                warn!(pod = %pod_key(pod), "no free pod IP; waiting");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(5)) => {}
                    r = pod_rx.changed() => if r.is_err() || pod_rx.borrow().is_none() { return None },
                }
            }
        }
    }
}

/// Local directories for the volumes the agent can provide: `hostPath` as is, `emptyDir` in the
/// sandbox. Other volume types (secrets, configMaps, PVCs) are not mounted.
fn prepare_volumes(pod: &Pod, sandbox: &std::path::Path) -> BTreeMap<String, PathBuf> {
    let mut dirs = BTreeMap::new();
    for volume in pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
        let dir = if let Some(host) = &volume.host_path {
            let path = PathBuf::from(&host.path);
            if host.type_.as_deref() == Some("DirectoryOrCreate")
                && let Err(e) = std::fs::create_dir_all(&path)
            {
                warn!(pod = %pod_key(pod), "hostPath {}: {e}", path.display());
            }
            path
        } else if volume.empty_dir.is_some() {
            let path = sandbox.join("volumes").join(&volume.name);
            if let Err(e) = std::fs::create_dir_all(&path) {
                warn!(pod = %pod_key(pod), "emptyDir {}: {e}", path.display());
            }
            path
        } else {
            continue;
        };
        dirs.insert(volume.name.clone(), dir);
    }
    if let Err(e) = std::fs::create_dir_all(sandbox) {
        warn!(pod = %pod_key(pod), "sandbox {}: {e}", sandbox.display());
    }
    dirs
}

fn start_containers(
    ctx: &AgentContext,
    pod: &Pod,
    ip: Ipv4Addr,
    sandbox: &std::path::Path,
    volume_dirs: &BTreeMap<String, PathBuf>,
    changed: &Arc<Notify>,
) -> Vec<RunnerHandle> {
    let Some(spec) = &pod.spec else {
        return Vec::new();
    };
    let launch_ctx = LaunchContext {
        server_binary: &ctx.server_binary,
        pod_ip: ip,
        node_name: &ctx.node_name,
        volume_dirs,
        sandbox_dir: sandbox,
    };
    let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    let previous = pod
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref());
    spec.containers
        .iter()
        .map(|c| {
            let probe = |p: &Option<k8s_openapi::api::core::v1::Probe>| {
                p.as_ref().map(|p| ProbePlan::from_spec(p, c))
            };
            let config = RunnerConfig {
                label: format!("{namespace}/{name}/{}", c.name),
                name: c.name.clone(),
                image: c.image.clone().unwrap_or_default(),
                launch: if has_init_containers(pod) {
                    Err(LaunchRefusal {
                        reason: "InitContainersNotSupportedLocally",
                        message: "the local node agent does not run init containers".into(),
                    })
                } else {
                    plan_launch(pod, c, &launch_ctx)
                },
                readiness: probe(&c.readiness_probe),
                liveness: probe(&c.liveness_probe),
                startup: probe(&c.startup_probe),
                restart_policy: spec
                    .restart_policy
                    .clone()
                    .unwrap_or_else(|| "Always".into()),
                backoff: ctx.backoff,
                termination_grace: grace_of(pod),
                log_file: ctx
                    .log_dir
                    .as_ref()
                    .map(|d| d.join(format!("{namespace}_{name}_{}.log", c.name))),
                pod_ip: ip,
                initial_restart_count: previous
                    .and_then(|cs| cs.iter().find(|s| s.name == c.name))
                    .map_or(0, |s| s.restart_count),
                http: ctx.http.clone(),
            };
            spawn_runner(config, changed.clone())
        })
        .collect()
}

async fn write_status(api: &Api<Pod>, name: &str, status: PodStatus) -> kube::Result<()> {
    let patch = Pod {
        metadata: kube::api::ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        status: Some(status),
        ..Pod::default()
    };
    api.patch_status(
        name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await?;
    Ok(())
}

/// Deletes the pod object with grace 0 (what the kubelet does once containers are gone), so the
/// ReplicaSet, namespace and GC controllers can finish. Retries transient errors a few times.
async fn delete_now(api: &Api<Pod>, name: &str, uid: &str) {
    let params = DeleteParams {
        grace_period_seconds: Some(0),
        preconditions: Some(Preconditions {
            uid: Some(uid.into()),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    for attempt in 1..=5u32 {
        match api.delete(name, &params).await {
            Ok(_) => return,
            Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => return,
            Err(e) => {
                warn!(pod = name, attempt, "final delete failed: {e}");
                tokio::time::sleep(Duration::from_secs(u64::from(attempt))).await;
            }
        }
    }
}
