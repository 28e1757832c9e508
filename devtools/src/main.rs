use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use sconce_devtools::model_fixture::{ModelSpec, write_model};

/// Sconce development tools.
#[derive(Parser)]
#[command(name = "sconce-dev", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write a deterministic random `sequential` model (config.json + model.safetensors).
    MakeModel {
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 1000)]
        input_size: usize,
        /// Hidden layer sizes, comma separated (empty for none).
        #[arg(long, default_value = "64,64", value_delimiter = ',', num_args = 0..)]
        hidden: Vec<usize>,
        #[arg(long, default_value_t = 10)]
        outputs: usize,
        #[arg(long, default_value_t = 42)]
        seed: u64,
    },
}

#[tokio::main]
async fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::MakeModel {
            out,
            input_size,
            hidden,
            outputs,
            seed,
        } => {
            let spec = ModelSpec {
                input_size,
                hidden,
                outputs,
                seed,
            };
            write_model(&out, &spec)
                .with_context(|| format!("writing model to {}", out.display()))?;
            println!("{}", out.display());
            Ok(())
        }
    }
}
