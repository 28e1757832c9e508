//! The benchmark's floor: the same HTTP stack as sconce-server (its accept loop, hyper, axum on a
//! current-thread tokio runtime, mimalloc) answering every POST with a precomputed body, without parsing the request
//! or running a model. Its CPU per request is what HTTP alone costs on the machine, so
//! `peer / floor` bounds every `peer / sconce-server` ratio the benchmark can show.
//!
//! ```text
//! cargo run --release -p sconce-server --example http_floor -- \
//!     --port 8080 --json-response out.json --binary-response out.bin --binary-header-len 120
//! ```
//! A request with `Inference-Header-Content-Length` gets the binary response (and that header),
//! any other POST the JSON one. `GET /v2/health/ready` answers 200.

use std::net::SocketAddr;
use std::path::PathBuf;

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use clap::Parser;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
struct Args {
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    #[arg(long)]
    port: u16,
    #[arg(long)]
    json_response: PathBuf,
    #[arg(long)]
    binary_response: PathBuf,
    /// Length of the JSON header at the start of the binary response.
    #[arg(long)]
    binary_header_len: usize,
}

struct Canned {
    json: Bytes,
    binary: Bytes,
    header_len: HeaderValue,
}

fn answer(canned: &Canned, headers: &HeaderMap, body: &Bytes) -> Response {
    // Touch the body so it is read like a real server reads it, then ignore it.
    std::hint::black_box(body.len());
    if headers.contains_key("inference-header-content-length") {
        (
            [
                (
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/octet-stream"),
                ),
                (
                    header::HeaderName::from_static("inference-header-content-length"),
                    canned.header_len.clone(),
                ),
            ],
            canned.binary.clone(),
        )
            .into_response()
    } else {
        (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            canned.json.clone(),
        )
            .into_response()
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let canned = std::sync::Arc::new(Canned {
        json: std::fs::read(&args.json_response)?.into(),
        binary: std::fs::read(&args.binary_response)?.into(),
        header_len: HeaderValue::from(args.binary_header_len),
    });
    let app = Router::new()
        .route("/v2/health/ready", get(|| async { "{\"ready\":true}" }))
        .fallback(post(move |headers: HeaderMap, body: Bytes| {
            let canned = canned.clone();
            async move { answer(&canned, &headers, &body) }
        }));
    let addr: SocketAddr = format!("{}:{}", args.host, args.port).parse()?;
    sconce_server::runtime(1)?.block_on(async move {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let cfg = sconce_server::serve::ServeConfig {
            header_timeout: std::time::Duration::from_secs(30),
            drain: std::time::Duration::ZERO,
        };
        let never = std::future::pending::<()>;
        sconce_server::serve::serve(
            listener,
            app,
            cfg,
            std::sync::Arc::new(()),
            never(),
            never(),
        )
        .await;
        Ok(())
    })
}
