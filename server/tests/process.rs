//! The real binary: `--port 0` + the `listening on` log line, env configuration, SIGTERM
//! finishing in-flight requests, and `--model-uri` (file://, http://) with sha256 checks.

mod common;

use std::process::Command;
use std::time::Duration;

use axum::extract::{Path as AxPath, State};
use common::process::{MLP_ON_FREE_PORT, Proc};
use common::{Mlp, Rng, TestServer, assert_close, floats};
use serde_json::json;

fn infer_body(x: &[f32]) -> serde_json::Value {
    json!({"inputs": [{"name": "input", "shape": [1, x.len()], "datatype": "FP32", "data": x}]})
}

#[tokio::test]
async fn sigterm_finishes_in_flight_requests() {
    let dir = tempfile::tempdir().unwrap();
    let m = Mlp::random(5, 8, &[(4, "relu"), (3, "softmax")], false);
    m.write(dir.path(), None);
    // Configured through the environment; the batch delay keeps a request in flight.
    let p = Proc::start(
        &[],
        &[
            ("SCONCE_MODEL_DIR", dir.path().to_str().unwrap()),
            ("SCONCE_FORMAT", "sequential"),
            ("SCONCE_MODEL_NAME", "mlp"),
            ("SCONCE_HOST", "127.0.0.1"),
            ("SCONCE_PORT", "0"),
            ("SCONCE_MAX_BATCH_SIZE", "64"),
            ("SCONCE_MAX_BATCH_DELAY_MS", "2000"),
            // A short drain (drain.rs tests it under load); fractions are allowed.
            ("SCONCE_DRAIN_SECONDS", "0.2"),
        ],
    );
    let x = Rng::new(4).vec(8, 1.0);
    let want = m.reference(&x);
    let client = reqwest::Client::new();
    let url = format!("http://{}/v2/models/mlp/infer", p.addr);
    let in_flight = {
        let client = client.clone();
        let url = url.clone();
        let body = infer_body(&x);
        tokio::spawn(async move { client.post(url).json(&body).send().await })
    };
    common::wait_in_flight(&client, &format!("http://{}", p.addr), 1).await;
    p.sigterm();
    let r = in_flight.await.unwrap().expect("in-flight request failed");
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_close(&floats(&v["outputs"][0]["data"]), &want, 1e-5);
    let mut p = p;
    let status = tokio::task::spawn_blocking(move || {
        let s = p.child.wait().unwrap();
        while p.lines.try_recv().is_ok() {}
        s
    })
    .await
    .unwrap();
    assert!(status.success(), "exit status {status:?}");
    // Nothing listens any more.
    assert!(
        client
            .post(&url)
            .json(&infer_body(&x))
            .send()
            .await
            .is_err()
    );
}

/// `--http-threads 2` runs HTTP on a multi-thread runtime: concurrent requests with different
/// inputs each get their own answer.
#[tokio::test]
async fn multi_thread_http_runtime_answers_concurrent_requests() {
    let dir = tempfile::tempdir().unwrap();
    let m = Mlp::random(6, 8, &[(4, "relu"), (3, "softmax")], false);
    m.write(dir.path(), None);
    let model_dir = dir.path().to_str().unwrap();
    let mut args = vec!["--model-dir", model_dir, "--http-threads", "2"];
    args.extend(MLP_ON_FREE_PORT);
    let p = Proc::start(&args, &[]);
    let client = reqwest::Client::new();
    let url = format!("http://{}/v2/models/mlp/infer", p.addr);
    let mut rng = Rng::new(9);
    let inputs: Vec<Vec<f32>> = (0..16).map(|_| rng.vec(8, 1.0)).collect();
    let answers = futures::future::join_all(inputs.iter().map(|x| {
        let client = client.clone();
        let url = url.clone();
        let body = infer_body(x);
        async move {
            let r = client.post(url).json(&body).send().await.unwrap();
            assert_eq!(r.status(), 200);
            r.json::<serde_json::Value>().await.unwrap()
        }
    }))
    .await;
    for (x, v) in inputs.iter().zip(&answers) {
        assert_close(&floats(&v["outputs"][0]["data"]), &m.reference(x), 1e-5);
    }
}

#[tokio::test]
async fn sha256_mismatch_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    Mlp::random(5, 8, &[(3, "softmax")], false).write(dir.path(), None);
    let uri = format!("file://{}", dir.path().display());
    let out = Command::new(common::process::binary())
        .args([
            "--model-uri",
            &uri,
            "--model-sha256",
            &"0".repeat(64),
            "--cache-dir",
        ])
        .arg(cache.path())
        .args(MLP_ON_FREE_PORT)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("sha256 mismatch"), "{stderr}");
}

#[tokio::test]
async fn model_uri_file_and_http() {
    let dir = tempfile::tempdir().unwrap();
    let m = Mlp::random(6, 8, &[(5, "tanh"), (2, "sigmoid")], true);
    std::fs::create_dir_all(dir.path().join("models/mlp")).unwrap();
    m.write(&dir.path().join("models/mlp"), None);
    let sha = sconce_server::fetch::sha256_file(&dir.path().join("models/mlp/model.safetensors"))
        .unwrap();
    let x = Rng::new(8).vec(8, 1.0);
    let want = m.reference(&x);

    let files_addr = serve_files(dir.path().to_path_buf()).await;

    let uris = [
        format!("file://{}/models/mlp", dir.path().display()),
        format!("http://{files_addr}/models/mlp/"),
    ];
    for uri in &uris {
        let cache = tempfile::tempdir().unwrap();
        let c = cache.path().to_str().unwrap();
        let flags = uri_flags(uri, Some(&sha), c);
        let s = TestServer::start_ready(&flags).await;
        let (code, v) = s.post_json("/v2/models/mlp/infer", &infer_body(&x)).await;
        assert_eq!(code, 200, "{v}");
        assert_close(&floats(&v["outputs"][0]["data"]), &want, 1e-5);
        s.stop().await.unwrap();
        // Second start uses the cache.
        let s = TestServer::start_ready(&flags).await;
        s.stop().await.unwrap();
    }

    // http: wrong sha and a missing directory both stop the server with an error.
    let cache = tempfile::tempdir().unwrap();
    let c = cache.path().to_str().unwrap();
    let bad = format!("http://{files_addr}/models/mlp");
    let wrong_sha = "a".repeat(64);
    let s = TestServer::start(&uri_flags(&bad, Some(&wrong_sha), c)).await;
    let err = tokio::time::timeout(Duration::from_secs(30), s.stop_when_done())
        .await
        .unwrap();
    assert!(format!("{err:#}").contains("sha256 mismatch"), "{err:#}");
    let missing = format!("http://{files_addr}/models/none");
    let s = TestServer::start(&uri_flags(&missing, None, c)).await;
    let err = tokio::time::timeout(Duration::from_secs(30), s.stop_when_done())
        .await
        .unwrap();
    assert!(format!("{err:#}").contains("not found"), "{err:#}");
}

/// Flags for an in-process server (which adds host and port) of the `sequential` model `mlp`
/// fetched from `uri` into `cache`, checked against `sha` if given.
fn uri_flags<'a>(uri: &'a str, sha: Option<&'a str>, cache: &'a str) -> Vec<&'a str> {
    let mut flags = vec!["--model-uri", uri, "--cache-dir", cache];
    if let Some(sha) = sha {
        flags.extend(["--model-sha256", sha]);
    }
    flags.extend(["--format", "sequential", "--model-name", "mlp"]);
    flags
}

/// A tiny static file server on loopback (also good enough as an S3 stub: path-style
/// `GET /bucket/key`, no auth checks).
async fn serve_files(root: std::path::PathBuf) -> std::net::SocketAddr {
    let app = axum::Router::new()
        .route(
            "/{*path}",
            axum::routing::get(
                |State(root): State<std::path::PathBuf>, AxPath(path): AxPath<String>| async move {
                    match std::fs::read(root.join(path)) {
                        Ok(b) => Ok(b),
                        Err(_) => Err(axum::http::StatusCode::NOT_FOUND),
                    }
                },
            ),
        )
        .with_state(root);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

// Multi-threaded: the stub must keep serving while this thread waits for the server's log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_uri_s3() {
    let root = tempfile::tempdir().unwrap();
    let model_dir = root.path().join("bucket/models/mlp");
    std::fs::create_dir_all(&model_dir).unwrap();
    let m = Mlp::random(12, 6, &[(4, "relu"), (3, "linear")], false);
    m.write(&model_dir, None);
    let sha = sconce_server::fetch::sha256_file(&model_dir.join("model.safetensors")).unwrap();
    let s3 = serve_files(root.path().to_path_buf()).await;
    let cache = tempfile::tempdir().unwrap();
    let endpoint = format!("http://{s3}");
    // The binary, so the AWS_* environment stays out of this test process.
    let mut args = vec![
        "--model-uri",
        "s3://bucket/models/mlp",
        "--model-sha256",
        &sha,
        "--cache-dir",
        cache.path().to_str().unwrap(),
    ];
    args.extend(MLP_ON_FREE_PORT);
    let p = Proc::start(
        &args,
        &[
            ("AWS_ENDPOINT", endpoint.as_str()),
            ("AWS_ALLOW_HTTP", "true"),
            ("AWS_ACCESS_KEY_ID", "test"),
            ("AWS_SECRET_ACCESS_KEY", "test"),
            ("AWS_REGION", "us-east-1"),
        ],
    );
    let x = Rng::new(13).vec(6, 1.0);
    let r = reqwest::Client::new()
        .post(format!("http://{}/v2/models/mlp/infer", p.addr))
        .json(&infer_body(&x))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_close(&floats(&v["outputs"][0]["data"]), &m.reference(&x), 1e-5);
}
