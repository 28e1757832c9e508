//! The accept loop: HTTP/1.1 connections served by hyper with a header deadline, JSON answers for
//! requests hyper refuses itself (`rejections.rs`), and a shutdown in two steps: a drain that
//! keeps serving, then a graceful stop that lets every accepted request finish.
//!
//! `axum::serve` has no header timeout, so a client that sends headers slowly (or never finishes
//! them) held its connection, and its file descriptor, forever.

mod rejections;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderValue, header};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tower::ServiceExt;

pub use rejections::Rejection;

/// What the accept loop tells the application about.
pub trait ServeEvents: Send + Sync + 'static {
    /// The drain began: readiness must fail from now on so load balancers stop sending.
    fn draining(&self) {}
    /// A request was refused before it reached the router.
    fn rejected(&self, _why: Rejection) {}
}

/// No one listens (the benchmark's HTTP floor).
impl ServeEvents for () {}

/// Accept loop settings.
#[derive(Debug, Clone, Copy)]
pub struct ServeConfig {
    /// Deadline for a request's headers (also how long an idle keep-alive connection stays).
    pub header_timeout: Duration,
    /// How long to keep serving once `drain` resolves, answering with `Connection: close`.
    pub drain: Duration,
}

/// Serves `router` on `listener`. When `drain` resolves, tells `events`, keeps accepting and
/// answering for `cfg.drain` with `Connection: close` on every answer (clients whose endpoint
/// lists are not updated yet are still served, and move their keep-alive connections on), then
/// stops accepting and waits for the requests in progress. `stop_now` skips or ends the drain.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    cfg: ServeConfig,
    events: Arc<dyn ServeEvents>,
    drain: impl Future<Output = ()>,
    stop_now: impl Future<Output = ()>,
) {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(cfg.header_timeout);
    let graceful = GracefulShutdown::new();
    let draining = Arc::new(AtomicBool::new(false));
    let mut drain = std::pin::pin!(drain);
    let mut stop_now = std::pin::pin!(stop_now);
    // The end of the drain period: set, and polled, once the drain begins.
    let mut drain_over = std::pin::pin!(tokio::time::sleep(Duration::ZERO));
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut drain, if !draining.load(Ordering::Relaxed) => {
                draining.store(true, Ordering::Relaxed);
                events.draining();
                if cfg.drain.is_zero() {
                    break;
                }
                tracing::info!(seconds = cfg.drain.as_secs_f64(), "draining: not ready, still serving");
                drain_over.as_mut().reset(tokio::time::Instant::now() + cfg.drain);
                continue;
            }
            () = &mut drain_over, if draining.load(Ordering::Relaxed) => break,
            () = &mut stop_now => break,
        };
        // Answers are written whole; Nagle would only hold back the last segment.
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, "TCP_NODELAY");
        }
        let draining = draining.clone();
        let service = TowerToHyperService::new(
            router
                .clone()
                .map_request(|req: hyper::Request<Incoming>| req.map(Body::new))
                .map_response(move |mut resp: axum::response::Response| {
                    if draining.load(Ordering::Relaxed) {
                        resp.headers_mut()
                            .insert(header::CONNECTION, HeaderValue::from_static("close"));
                    }
                    resp
                }),
        );
        let io = rejections::JsonRejections::new(stream, events.clone());
        let connection = http.serve_connection(TokioIo::new(io), service);
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
}
