use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use clap::{Parser, Subcommand};
use sconce::{admin, crd, metrics::Metrics, reconcile};

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
    /// Watch only this namespace (default: all namespaces).
    #[arg(long, env = "SCONCE_NAMESPACE")]
    namespace: Option<String>,
    /// Log as JSON lines.
    #[arg(long, env = "SCONCE_LOG_JSON")]
    log_json: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Some(Command::Crd) = cli.command {
        print!("{}", crd::crd_yaml()?);
        return Ok(());
    }
    init_tracing(cli.run.log_json);
    let client = kube::Client::try_default().await?;
    let metrics = Arc::new(Metrics::default());
    let ready = Arc::new(AtomicBool::new(false));
    let admin_state = admin::AdminState {
        metrics: metrics.clone(),
        ready: ready.clone(),
    };
    let config = reconcile::build::BuildConfig {
        server_image: cli.run.server_image,
    };
    tokio::select! {
        result = admin::serve(cli.run.admin_addr, admin_state) => result?,
        result = reconcile::run(client, cli.run.namespace, config, metrics, ready) => result?,
    }
    Ok(())
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
