use std::process::ExitCode;

use clap::Parser;

// Requests allocate on tokio threads and free on the model thread (and back): glibc's arenas
// contend on that, mimalloc's per-thread free lists do not.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let args = sconce_server::Args::parse();
    // Before any thread exists: the only safe moment to touch the environment.
    sconce_server::tune_threads(args.format);
    sconce_server::init_tracing();
    let result = sconce_server::runtime(args.http_threads)
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
