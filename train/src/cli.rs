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
    Fit(FitArgs),
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
    }
}
