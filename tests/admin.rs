//! The operator's admin server over real HTTP on an ephemeral port.
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use sconce::admin::{AdminState, serve_on};
use sconce::metrics::Metrics;

#[tokio::test]
async fn health_readiness_and_metrics() {
    let metrics = Arc::new(Metrics::default());
    let ready = Arc::new(AtomicBool::new(false));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let state = AdminState {
        metrics: metrics.clone(),
        ready: ready.clone(),
    };
    tokio::spawn(serve_on(listener, state));
    let http = reqwest::Client::new();

    let health = http
        .get(format!("{base}/healthz"))
        .send()
        .await
        .expect("healthz");
    assert_eq!(health.status(), 200);
    let not_ready = http
        .get(format!("{base}/readyz"))
        .send()
        .await
        .expect("readyz");
    assert_eq!(
        not_ready.status(),
        503,
        "not ready before the controller lists its objects"
    );
    ready.store(true, Ordering::Relaxed);
    assert_eq!(
        http.get(format!("{base}/readyz"))
            .send()
            .await
            .expect("readyz")
            .status(),
        200
    );

    metrics.reconciliations.inc();
    metrics.error("InvalidSpec");
    metrics.observe(std::time::Duration::from_millis(12));
    let text = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("body");
    assert!(
        text.contains("sconce_operator_reconciliations_total 1"),
        "{text}"
    );
    assert!(
        text.contains(r#"sconce_operator_reconcile_errors_total{category="InvalidSpec"} 1"#),
        "{text}"
    );
    assert!(
        text.contains("sconce_operator_reconcile_duration_seconds_count 1"),
        "{text}"
    );
}
