use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use std::time::Duration;

use clap::{Parser, Subcommand};
use k8s_openapi::api::core::v1::ResourceRequirements;
use sconce::{admin, crd, leader, metrics::Metrics, reconcile};

#[derive(Parser)]
#[command(version, about = "Sconce: serve machine-learning models on Kubernetes")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Run the operator (the default).
    Run,
    /// Print the ModelDeployment CRD as YAML.
    Crd,
}

#[derive(clap::Args)]
struct RunArgs {
    /// Address of the admin server (/metrics, /healthz, /readyz).
    #[arg(long, env = "SCONCE_ADMIN_ADDR", default_value = "0.0.0.0:8081")]
    admin_addr: SocketAddr,
    /// Inference server image used when a ModelDeployment does not set spec.runtime.image.
    #[arg(long, env = "SCONCE_SERVER_IMAGE", default_value = concat!("ghcr.io/sconce-dev/sconce-server:", env!("CARGO_PKG_VERSION")))]
    server_image: String,
    /// Requests and limits (JSON, as in `spec.runtime.resources`) of serving pods whose
    /// ModelDeployment sets none, e.g. `{"requests":{"cpu":"100m"},"limits":{"memory":"2Gi"}}`.
    #[arg(long, env = "SCONCE_SERVER_DEFAULT_RESOURCES", value_parser = parse_resources)]
    server_default_resources: Option<ResourceRequirements>,
    /// Watch only this namespace (default: all namespaces).
    #[arg(long, env = "SCONCE_NAMESPACE")]
    namespace: Option<String>,
    /// Log as JSON lines.
    #[arg(long, env = "SCONCE_LOG_JSON")]
    log_json: bool,
    #[command(flatten)]
    leader: LeaderArgs,
    /// Namespace of the operator's own pods (in-cluster: from POD_NAMESPACE). With
    /// --operator-pod-labels, a ModelDeployment's spec.networkPolicy lets these pods in, so
    /// canary analysis can read the serving pods' /metrics.
    #[arg(long, env = "POD_NAMESPACE")]
    operator_namespace: Option<String>,
    /// Labels of the operator's own pods, `k=v,k=v`.
    #[arg(long, env = "SCONCE_OPERATOR_POD_LABELS")]
    operator_pod_labels: Option<String>,
}

/// Several replicas: one leads (reconciles), the others stand by.
#[derive(clap::Args)]
struct LeaderArgs {
    /// Reconcile only while holding the Lease (for more than one replica).
    #[arg(long, env = "SCONCE_LEADER_ELECT")]
    leader_elect: bool,
    /// Namespace of the Lease (default: the pod's own namespace in-cluster, else the
    /// kubeconfig's).
    #[arg(long, env = "SCONCE_LEADER_ELECTION_NAMESPACE")]
    leader_election_namespace: Option<String>,
    /// Name of the Lease.
    #[arg(
        long,
        env = "SCONCE_LEADER_ELECTION_LEASE",
        default_value = "sconce-operator"
    )]
    leader_election_lease: String,
    /// This replica's identity in the Lease (default: the pod's name, from POD_NAME).
    #[arg(long, env = "POD_NAME")]
    leader_election_identity: Option<String>,
    /// Seconds a standby waits for an unchanged Lease before taking it over.
    #[arg(long, default_value_t = 15)]
    leader_election_lease_duration: u64,
    /// Seconds the leader keeps trying to renew before it gives up leading (and exits).
    #[arg(long, default_value_t = 10)]
    leader_election_renew_deadline: u64,
    /// Seconds between two looks at the Lease.
    #[arg(long, default_value_t = 2)]
    leader_election_retry_period: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Some(Command::Crd) = cli.command {
        print!("{}", crd::crd_yaml()?);
        return Ok(());
    }
    init_tracing(cli.run.log_json);
    let metrics = Arc::new(Metrics::default());
    let client = sconce::api_requests::counting_client(metrics.clone()).await?;
    let ready = Arc::new(AtomicBool::new(false));
    let admin_state = admin::AdminState {
        metrics: metrics.clone(),
        ready: ready.clone(),
    };
    let config = reconcile::build::BuildConfig {
        server_image: cli.run.server_image.clone(),
        scraper: match (&cli.run.operator_namespace, &cli.run.operator_pod_labels) {
            (Some(ns), Some(labels)) => Some(
                reconcile::build::ScraperPeer::parse(ns, labels).ok_or_else(|| {
                    anyhow::anyhow!("--operator-pod-labels {labels:?}: expected k=v,k=v")
                })?,
            ),
            _ => None,
        },
        default_resources: cli.run.server_default_resources.clone(),
    };
    let admin_addr = cli.run.admin_addr;
    tokio::select! {
        result = admin::serve(admin_addr, admin_state) => result?,
        result = operate(client, cli.run, config, metrics, ready) => result?,
    }
    Ok(())
}

/// Reconcile until SIGTERM: at once, or with `--leader-elect` only while holding the Lease
/// (released on the way out, so a standby takes over within its retry period).
async fn operate(
    client: kube::Client,
    run: RunArgs,
    config: reconcile::build::BuildConfig,
    metrics: Arc<Metrics>,
    ready: Arc<AtomicBool>,
) -> anyhow::Result<()> {
    // Dropping the controller mid-reconcile is safe: every write is one idempotent request.
    let controller = reconcile::run(
        client.clone(),
        run.namespace,
        config,
        metrics.clone(),
        ready.clone(),
    );
    if !run.leader.leader_elect {
        metrics.leader.set(1);
        return tokio::select! {
            result = controller => result,
            () = shutdown_signal() => Ok(()),
        };
    }
    let mut elector = elector(&client, &run.leader)?;
    tokio::select! {
        () = elector.acquire(|| ready.store(true, std::sync::atomic::Ordering::Relaxed)) => {}
        () = shutdown_signal() => return Ok(()),
    }
    metrics.leader.set(1);
    let result = tokio::select! {
        result = controller => result,
        lost = elector.keep_leading() => Err(anyhow::anyhow!("lost leadership: {lost}")),
        () = shutdown_signal() => Ok(()),
    };
    metrics.leader.set(0);
    elector.release().await;
    result
}

/// `--server-default-resources`: JSON that Kubernetes would accept as a container's resources.
fn parse_resources(text: &str) -> Result<ResourceRequirements, String> {
    let resources: ResourceRequirements =
        serde_json::from_str(text).map_err(|e| format!("not resources JSON: {e}"))?;
    reconcile::validate::check_resources(&resources).map_err(|e| e.to_string())?;
    Ok(resources)
}

fn elector(client: &kube::Client, args: &LeaderArgs) -> anyhow::Result<leader::Elector> {
    let timings = leader::Timings {
        lease_duration: Duration::from_secs(args.leader_election_lease_duration),
        renew_deadline: Duration::from_secs(args.leader_election_renew_deadline),
        retry_period: Duration::from_secs(args.leader_election_retry_period),
    };
    timings.check().map_err(anyhow::Error::msg)?;
    let namespace = args
        .leader_election_namespace
        .clone()
        .unwrap_or_else(|| client.default_namespace().to_string());
    // Outside a pod: unique per process, so two local operators never share an identity.
    let identity = args.leader_election_identity.clone().unwrap_or_else(|| {
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "sconce".into());
        format!("{host}-{}", std::process::id())
    });
    Ok(leader::Elector::new(
        client.clone(),
        &namespace,
        &args.leader_election_lease,
        &identity,
        timings,
    ))
}

/// SIGTERM (the kubelet stopping the pod) or Ctrl-C.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = ctrl_c.await;
        }
    }
}

fn init_tracing(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,kube=warn"));
    // colours only on a terminal: a pod's log (and its termination message) stays plain text
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()));
    if json {
        builder.json().init()
    } else {
        builder.init()
    }
}
