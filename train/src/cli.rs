//! Command-line interface.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::error::Result;
use crate::pipeline;
use crate::settings::TrainOptions;

#[derive(Debug, Parser)]
#[command(
    name = "sconce-train",
    version,
    about = "Train and import the dense `sequential` models sconce-server serves"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Train a model on CSV/NPY data: cross-validate, test on held-out rows, write the model directory.
    Fit(Box<FitArgs>),
    /// Convert a Keras Sequential model of Dense layers (`.h5` or `.keras`) into the `sequential` format.
    ImportKeras(ImportKerasArgs),
}

#[derive(Debug, clap::Args)]
pub struct ImportKerasArgs {
    /// The Keras file: legacy HDF5 from `model.save("model.h5")` or a Keras 3 `.keras` archive.
    pub model: PathBuf,
    /// Model directory to write.
    #[arg(long)]
    pub out: PathBuf,
    /// Version label written to config.json.
    #[arg(long = "version", id = "model_version")]
    pub version: Option<String>,
    /// Class names for the output units, comma separated.
    #[arg(long, value_delimiter = ',')]
    pub labels: Option<Vec<String>>,
}

#[derive(Debug, clap::Args)]
pub struct FitArgs {
    /// JSON file with any of the settings below (snake_case keys); flags override it.
    #[arg(long)]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub options: TrainOptions,
}

pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Fit(args) => {
            let base = match &args.config {
                Some(path) => TrainOptions::from_file(path)?,
                None => TrainOptions::default(),
            };
            let settings = base.overlaid_with(args.options).resolve()?;
            pipeline::run(&settings)?;
            Ok(())
        }
        Command::ImportKeras(args) => {
            let mut model = crate::keras::import(&args.model)?;
            model.version = args.version;
            model.labels = args.labels;
            model.save(&args.out)?;
            let layers: Vec<String> = model
                .network
                .layer_configs()
                .iter()
                .map(|l| format!("{} {:?}", l.units, l.activation))
                .collect();
            tracing::info!(
                "imported {} ({} inputs → {}) into {}",
                args.model.display(),
                model.network.input_size,
                layers.join(" → "),
                args.out.display()
            );
            Ok(())
        }
    }
}
