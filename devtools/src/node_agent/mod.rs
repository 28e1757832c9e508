//! `sconce-dev node-agent`: scheduler + kubelet stand-in for a control plane without either.
//!
//! It registers a Node, binds Pending pods to it, and runs each bound pod's sconce-server
//! container as a local process on its own loopback IP (see `launch` for the mapping rules),
//! reporting status, probes, restarts and deletions like a kubelet would. Test/demo use only.

mod backoff;
mod binder;
mod container_runner;
mod container_state;
mod ip_pool;
mod launch;
mod node;
mod pod_status;
mod pod_worker;
mod probe;
mod scheduling;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::jiff::Timestamp;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{info, warn};

pub use backoff::RestartBackoff;
pub use ip_pool::{IpPool, parse_prefix};

#[derive(Debug, Clone, clap::Args)]
pub struct AgentArgs {
    /// Kubeconfig file (default: $KUBECONFIG, then ~/.kube/config or in-cluster).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// Name of the Node this agent registers and plays the kubelet for.
    #[arg(long, default_value = "sconce-local")]
    pub node_name: String,
    /// Only schedule and run pods of this namespace (one agent per test namespace).
    #[arg(long)]
    pub namespace: Option<String>,
    /// Pod IPs are <prefix>.2 ..= <prefix>.254 on loopback.
    #[arg(long, default_value = "127.0.1")]
    pub ip_prefix: String,
    /// The sconce-server binary run for sconce-server images (default: next to this executable, then PATH).
    #[arg(long)]
    pub server_binary: Option<PathBuf>,
    /// Write each container's stdout/stderr to <dir>/<namespace>_<pod>_<container>.log.
    #[arg(long)]
    pub log_dir: Option<PathBuf>,
    /// Per-pod sandboxes (emptyDir volumes) live here (default: <tmp>/sconce-node-agent/<node-name>).
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
}

/// Shared by the supervisor and every pod worker.
pub(crate) struct AgentContext {
    pub client: Client,
    pub node_name: String,
    pub server_binary: PathBuf,
    pub log_dir: Option<PathBuf>,
    pub state_dir: PathBuf,
    pub ips: Mutex<IpPool>,
    pub http: reqwest::Client,
    pub backoff: RestartBackoff,
    pub shutdown: watch::Receiver<bool>,
}

/// `--server-binary`, else `sconce-server` beside our own executable, else on PATH.
pub fn locate_server_binary(explicit: Option<PathBuf>) -> PathBuf {
    const NAME: &str = "sconce-server";
    if let Some(path) = explicit {
        return path;
    }
    let beside = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|d| d.join(NAME)));
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(NAME))
            .find(|p| p.is_file())
    });
    beside
        .filter(|p| p.is_file())
        .or(on_path)
        .unwrap_or_else(|| PathBuf::from(NAME))
}

async fn make_client(kubeconfig: Option<&PathBuf>) -> Result<Client> {
    let Some(path) = kubeconfig else {
        return Client::try_default()
            .await
            .context("connecting to Kubernetes");
    };
    let kubeconfig = kube::config::Kubeconfig::read_from(path)
        .with_context(|| format!("reading {}", path.display()))?;
    let config = kube::Config::from_custom_kubeconfig(
        kubeconfig,
        &kube::config::KubeConfigOptions::default(),
    )
    .await
    .context("loading kubeconfig")?;
    Client::try_from(config).context("building Kubernetes client")
}

async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}

struct Worker {
    pod_tx: watch::Sender<Option<Pod>>,
    task: JoinHandle<()>,
}

/// Runs until SIGTERM/SIGINT; then stops every container (SIGTERM, grace, SIGKILL) and returns.
pub async fn run(args: AgentArgs) -> Result<()> {
    let client = make_client(args.kubeconfig.as_ref()).await?;
    let prefix = parse_prefix(&args.ip_prefix)?;
    let server_binary = locate_server_binary(args.server_binary.clone());
    if !server_binary.is_file() {
        warn!(
            "sconce-server binary {} not found; its containers will fail to start",
            server_binary.display()
        );
    }
    let state_dir = args.state_dir.clone().unwrap_or_else(|| {
        std::env::temp_dir()
            .join("sconce-node-agent")
            .join(&args.node_name)
    });
    std::fs::create_dir_all(&state_dir)
        .with_context(|| format!("creating {}", state_dir.display()))?;
    if let Some(dir) = &args.log_dir {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let ctx = Arc::new(AgentContext {
        client: client.clone(),
        node_name: args.node_name.clone(),
        server_binary,
        log_dir: args.log_dir.clone(),
        state_dir,
        ips: Mutex::new(IpPool::new(prefix)),
        http: reqwest::Client::builder()
            .no_proxy()
            .build()
            .context("building HTTP client")?,
        backoff: RestartBackoff::default(),
        shutdown: shutdown_rx.clone(),
    });
    info!(node = %args.node_name, namespace = ?args.namespace, ip_prefix = %args.ip_prefix,
          server = %ctx.server_binary.display(), "node agent starting");

    let signal = tokio::spawn(async move {
        shutdown_signal().await;
        info!("shutdown requested");
        shutdown_tx.send_replace(true);
    });
    let nodes: Api<Node> = Api::all(client.clone());
    let ready_since = Timestamp::now();
    let mut registration_shutdown = shutdown_rx.clone();
    if !node::register(
        &nodes,
        &args.node_name,
        ready_since,
        &mut registration_shutdown,
    )
    .await
    {
        return Ok(());
    }
    let heartbeat = tokio::spawn(node::heartbeat(
        nodes,
        args.node_name.clone(),
        ready_since,
        shutdown_rx.clone(),
    ));

    let pods: Api<Pod> = match &args.namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let workers = watch_pods(ctx.clone(), pods, shutdown_rx.clone()).await;

    info!(pods = workers.len(), "stopping containers");
    for worker in workers {
        if let Err(e) = worker.task.await {
            warn!("pod worker panicked: {e}");
        }
    }
    heartbeat.abort();
    signal.abort();
    info!("node agent stopped");
    Ok(())
}

/// The watch loop: binds unscheduled pods, hands pods bound here to their workers, notices pods
/// that disappear. Returns the workers still alive once shutdown was requested.
async fn watch_pods(
    ctx: Arc<AgentContext>,
    pods: Api<Pod>,
    mut shutdown: watch::Receiver<bool>,
) -> Vec<Worker> {
    let labels = node::node_labels(&ctx.node_name);
    let mut workers: HashMap<String, Worker> = HashMap::new();
    let mut bindings: HashMap<String, JoinHandle<()>> = HashMap::new();
    let mut listed: Option<HashSet<String>> = None;
    let stream = watcher::watcher(pods.clone(), watcher::Config::default()).default_backoff();
    let mut stream = std::pin::pin!(stream);
    loop {
        let event = tokio::select! {
            event = stream.next() => event,
            _ = shutdown.changed() => break,
        };
        let event = match event {
            Some(Ok(event)) => event,
            Some(Err(e)) => {
                warn!("pod watch error (retrying): {e}");
                continue;
            }
            None => break,
        };
        workers.retain(|_, w| !w.task.is_finished());
        bindings.retain(|_, b| !b.is_finished());
        match event {
            Event::Init => listed = Some(HashSet::new()),
            Event::InitDone => {
                // pods we run that the fresh list no longer has were deleted while we were not watching
                if let Some(seen) = listed.take() {
                    for (uid, w) in &workers {
                        if !seen.contains(uid) {
                            w.pod_tx.send_replace(None);
                        }
                    }
                }
            }
            Event::Apply(pod) | Event::InitApply(pod) => {
                let uid = pod.metadata.uid.clone().unwrap_or_default();
                if let Some(seen) = listed.as_mut() {
                    seen.insert(uid.clone());
                }
                let node = pod.spec.as_ref().and_then(|s| s.node_name.as_deref());
                if node == Some(ctx.node_name.as_str()) {
                    match workers.get(&uid) {
                        Some(w) => {
                            w.pod_tx.send_replace(Some(pod));
                        }
                        None => {
                            let (pod_tx, pod_rx) = watch::channel(Some(pod));
                            let task = tokio::spawn(pod_worker::run_pod(ctx.clone(), pod_rx));
                            workers.insert(uid, Worker { pod_tx, task });
                        }
                    }
                } else if scheduling::wants_default_scheduler(&pod) && !bindings.contains_key(&uid)
                {
                    let api = Api::namespaced(
                        ctx.client.clone(),
                        pod.metadata.namespace.as_deref().unwrap_or("default"),
                    );
                    let task = tokio::spawn(binder::schedule(
                        api,
                        pod,
                        ctx.node_name.clone(),
                        labels.clone(),
                    ));
                    bindings.insert(uid, task);
                }
            }
            Event::Delete(pod) => {
                if let Some(w) = pod.metadata.uid.as_ref().and_then(|uid| workers.get(uid)) {
                    w.pod_tx.send_replace(None);
                }
            }
        }
    }
    workers
        .into_values()
        .filter(|w| !w.task.is_finished())
        .collect()
}
