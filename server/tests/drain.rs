//! SIGTERM under steady keep-alive load, as a Kubernetes rollout delivers it: readiness turns 503
//! at once, clients stop sending new requests once they see that (as endpoint removal would make
//! them), and every request sent until then is answered; none fails on a closed connection.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::Mlp;
use common::process::{MLP_ON_FREE_PORT, Proc};
use serde_json::json;

const CLIENTS: usize = 16;
const RUNS: usize = 10;
/// Long enough for a busy test process to see readiness fail well within it.
const DRAIN_SECONDS: u64 = 2;

#[derive(Default)]
struct Tally {
    ok: AtomicUsize,
    failed: AtomicUsize,
    closing: AtomicUsize,
}

/// One client: its own keep-alive connection pool, requests back to back until `stop`.
async fn client_loop(
    url: String,
    stop: Arc<AtomicBool>,
    tally: Arc<Tally>,
    errors: Arc<std::sync::Mutex<Vec<String>>>,
) {
    let client = reqwest::Client::new();
    let body = json!({"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": [0.1, 0.2, 0.3, 0.4]}]});
    while !stop.load(Ordering::SeqCst) {
        match client.post(&url).json(&body).send().await {
            Ok(r) if r.status() == 200 => {
                if r.headers().get("connection").is_some_and(|v| v == "close") {
                    tally.closing.fetch_add(1, Ordering::SeqCst);
                }
                match r.bytes().await {
                    Ok(_) => tally.ok.fetch_add(1, Ordering::SeqCst),
                    Err(e) => {
                        errors.lock().unwrap().push(format!("body: {e:?}"));
                        tally.failed.fetch_add(1, Ordering::SeqCst)
                    }
                };
            }
            Ok(r) => {
                errors
                    .lock()
                    .unwrap()
                    .push(format!("status {}", r.status()));
                tally.failed.fetch_add(1, Ordering::SeqCst);
            }
            Err(e) => {
                errors.lock().unwrap().push(format!("{e:?}"));
                tally.failed.fetch_add(1, Ordering::SeqCst);
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_keep_alive_load_fails_no_request() {
    let dir = tempfile::tempdir().unwrap();
    Mlp::random(3, 4, &[(8, "relu"), (2, "softmax")], false).write(dir.path(), None);
    let model_dir = dir.path().to_str().unwrap();
    let mut total_ok = 0;
    for run in 0..RUNS {
        let mut args = vec!["--model-dir", model_dir];
        args.extend(MLP_ON_FREE_PORT);
        let drain = DRAIN_SECONDS.to_string();
        let p = Proc::start(&args, &[("SCONCE_DRAIN_SECONDS", drain.as_str())]);
        let base = format!("http://{}", p.addr);
        let stop = Arc::new(AtomicBool::new(false));
        let tally = Arc::new(Tally::default());
        let errors = Arc::new(std::sync::Mutex::new(Vec::new()));
        let clients: Vec<_> = (0..CLIENTS)
            .map(|_| {
                tokio::spawn(client_loop(
                    format!("{base}/v2/models/mlp/infer"),
                    stop.clone(),
                    tally.clone(),
                    errors.clone(),
                ))
            })
            .collect();
        // Steady load first.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let ok_before = tally.ok.load(Ordering::SeqCst);
        assert!(ok_before > 0, "run {run}: no load before the signal");
        let poller = reqwest::Client::new();
        let signalled = Instant::now();
        p.sigterm();
        // Readiness turns 503 at once; that is when clients stop opening requests.
        let seen_unready = loop {
            let r = poller.get(format!("{base}/v2/health/ready")).send().await;
            match r {
                Ok(r) if r.status() == 503 => break signalled.elapsed(),
                Ok(r) => assert_eq!(r.status(), 200),
                Err(e) => panic!(
                    "run {run}: readiness probe failed {:?} after the signal: {e:?}",
                    signalled.elapsed()
                ),
            }
            assert!(
                signalled.elapsed() < Duration::from_secs(5),
                "run {run}: still ready"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        stop.store(true, Ordering::SeqCst);
        for c in clients {
            c.await.unwrap();
        }
        // A client with a stale endpoint list still gets answered during the drain, and is told
        // to close its connection.
        let r = reqwest::Client::new()
            .post(format!("{base}/v2/models/mlp/infer"))
            .json(&json!({"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]}))
            .send()
            .await
            .unwrap_or_else(|e| panic!("run {run}: a request during the drain failed: {e}"));
        assert_eq!(r.status(), 200);
        assert_eq!(
            r.headers().get("connection").map(|v| v.to_str().unwrap()),
            Some("close"),
            "run {run}"
        );
        let mut p = p;
        let status = tokio::task::spawn_blocking(move || p.child.wait().unwrap())
            .await
            .unwrap();
        assert!(status.success(), "run {run}: exit status {status:?}");
        assert!(
            signalled.elapsed() >= Duration::from_secs(DRAIN_SECONDS),
            "run {run}: stopped before the drain period"
        );
        let failed = tally.failed.load(Ordering::SeqCst);
        assert_eq!(
            failed,
            0,
            "run {run}: {failed} requests failed (readiness 503 after {seen_unready:?}): {:?}",
            errors.lock().unwrap()
        );
        total_ok += tally.ok.load(Ordering::SeqCst);
        eprintln!(
            "run {run}: {} answered, {} with Connection: close, readiness 503 after {seen_unready:?}",
            tally.ok.load(Ordering::SeqCst),
            tally.closing.load(Ordering::SeqCst)
        );
    }
    assert!(total_ok > RUNS * CLIENTS);
}
