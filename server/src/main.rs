use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = sconce_server::Args::parse();
    // Before any thread exists: the only safe moment to touch the environment.
    sconce_server::tune_threads(args.format);
    sconce_server::init_tracing();
    let result = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|rt| rt.block_on(sconce_server::run(args)));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}
