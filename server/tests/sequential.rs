//! The sequential model over real HTTP: V2 and V1 answers equal a plain-Rust reference.

mod common;

use common::{Mlp, Rng, TestServer, assert_close, floats};
use serde_json::json;

const TOL: f32 = 1e-5;

fn model(dir: &std::path::Path, standardize: bool) -> Mlp {
    let m = Mlp::random(
        7,
        20,
        &[
            (16, "relu"),
            (12, "tanh"),
            (8, "sigmoid"),
            (6, "linear"),
            (5, "softmax"),
        ],
        standardize,
    );
    m.write(dir, Some("3"));
    m
}

async fn serve(dir: &std::path::Path, extra: &[&str]) -> TestServer {
    let d = dir.to_str().unwrap();
    let mut flags = vec![
        "--model-dir",
        d,
        "--format",
        "sequential",
        "--model-name",
        "mlp",
    ];
    flags.extend_from_slice(extra);
    TestServer::start_ready(&flags).await
}

fn examples(rows: usize, width: usize, seed: u64) -> Vec<Vec<f32>> {
    let mut rng = Rng::new(seed);
    (0..rows).map(|_| rng.vec(width, 3.0)).collect()
}

fn reference(m: &Mlp, xs: &[Vec<f32>]) -> Vec<f32> {
    xs.iter().flat_map(|x| m.reference(x)).collect()
}

#[tokio::test]
async fn v2_matches_reference() {
    let dir = tempfile::tempdir().unwrap();
    let m = model(dir.path(), true);
    let s = serve(dir.path(), &[]).await;
    let xs = examples(4, 20, 1);
    let want = reference(&m, &xs);
    let flat: Vec<f32> = xs.concat();

    // flat data, with id echoed
    let (code, body) = s
        .post_json(
            "/v2/models/mlp/infer",
            &json!({"id": "req-1", "inputs": [{"name": "input", "shape": [4, 20], "datatype": "FP32", "data": flat}]}),
        )
        .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["id"], "req-1");
    assert_eq!(body["model_name"], "mlp");
    assert_eq!(body["model_version"], "3");
    let out = &body["outputs"][0];
    assert_eq!(out["name"], "output");
    assert_eq!(out["datatype"], "FP32");
    assert_eq!(out["shape"], json!([4, 5]));
    assert_close(&floats(&out["data"]), &want, TOL);

    // nested data, FP64, explicit version and outputs
    let (code, body) = s
        .post_json(
            "/v2/models/mlp/versions/3/infer",
            &json!({"inputs": [{"name": "input", "shape": [4, 20], "datatype": "FP64", "data": xs}],
                    "outputs": [{"name": "output"}]}),
        )
        .await;
    assert_eq!(code, 200, "{body}");
    assert!(body.get("id").is_none());
    assert_close(&floats(&body["outputs"][0]["data"]), &want, TOL);

    // integer datatype
    let ints: Vec<i32> = (0..20).map(|i| i - 10).collect();
    let want_int = m.reference(&ints.iter().map(|&v| v as f32).collect::<Vec<_>>());
    let (code, body) = s
        .post_json(
            "/v2/models/mlp/infer",
            &json!({"inputs": [{"name": "input", "shape": [1, 20], "datatype": "INT32", "data": ints}]}),
        )
        .await;
    assert_eq!(code, 200, "{body}");
    assert_close(&floats(&body["outputs"][0]["data"]), &want_int, TOL);
    s.stop().await.unwrap();
}

#[tokio::test]
async fn v1_matches_reference() {
    let dir = tempfile::tempdir().unwrap();
    let m = model(dir.path(), false);
    let s = serve(dir.path(), &["--model-version", "7"]).await;
    let xs = examples(3, 20, 2);
    let want = reference(&m, &xs);

    let (code, body) = s
        .post_json("/v1/models/mlp:predict", &json!({"instances": xs}))
        .await;
    assert_eq!(code, 200, "{body}");
    let preds = body["predictions"].as_array().unwrap();
    assert_eq!(preds.len(), 3);
    assert_eq!(preds[0].as_array().unwrap().len(), 5);
    assert_close(&floats(&body["predictions"]), &want, TOL);

    let (code, body) = s
        .post_json("/v1/models/mlp/versions/7:predict", &json!({"inputs": xs}))
        .await;
    assert_eq!(code, 200, "{body}");
    assert_close(&floats(&body["outputs"]), &want, TOL);

    let (code, body) = s
        .post_json("/v1/models/mlp:predict", &json!({"inputs": {"input": xs}}))
        .await;
    assert_eq!(code, 200, "{body}");
    assert_close(&floats(&body["outputs"]), &want, TOL);

    let (code, body) = s.get_json("/v1/models/mlp").await;
    assert_eq!(code, 200);
    assert_eq!(body["model_version_status"][0]["state"], "AVAILABLE");
    assert_eq!(body["model_version_status"][0]["version"], "7");
    s.stop().await.unwrap();
}

#[tokio::test]
async fn metadata_health_and_metrics() {
    let dir = tempfile::tempdir().unwrap();
    model(dir.path(), false);
    let s = serve(dir.path(), &[]).await;
    assert_eq!(s.get_json("/v2/health/live").await.0, 200);
    assert_eq!(s.get_json("/v2/health/ready").await.0, 200);
    let (code, meta) = s.get_json("/v2").await;
    assert_eq!(code, 200);
    assert_eq!(meta["name"], "sconce-server");
    assert!(
        meta["extensions"]
            .as_array()
            .unwrap()
            .contains(&json!("binary_tensor_data"))
    );

    let (code, meta) = s.get_json("/v2/models/mlp").await;
    assert_eq!(code, 200);
    assert_eq!(meta["name"], "mlp");
    assert_eq!(meta["versions"], json!(["3"]));
    assert_eq!(
        meta["inputs"],
        json!([{"name": "input", "datatype": "FP32", "shape": [-1, 20]}])
    );
    assert_eq!(
        meta["outputs"],
        json!([{"name": "output", "datatype": "FP32", "shape": [-1, 5]}])
    );
    assert_eq!(s.get_json("/v2/models/mlp/versions/3").await.0, 200);
    assert_eq!(s.get_json("/v2/models/mlp/ready").await.0, 200);
    assert_eq!(s.get_json("/v2/models/mlp/versions/3/ready").await.0, 200);

    let x = examples(1, 20, 3).concat();
    let req =
        json!({"inputs": [{"name": "input", "shape": [1, 20], "datatype": "FP32", "data": x}]});
    assert_eq!(s.post_json("/v2/models/mlp/infer", &req).await.0, 200);
    assert_eq!(s.post_json("/v2/models/mlp/infer", &json!({})).await.0, 400);
    let text = s.metrics_text().await;
    for needle in [
        r#"sconce_requests_total{model="mlp",protocol="v2",code="200"} 1"#,
        r#"sconce_requests_total{model="mlp",protocol="v2",code="400"} 1"#,
        r#"sconce_request_duration_seconds_count{model="mlp",protocol="v2"} 2"#,
        r#"sconce_requests_in_flight{model="mlp"} 0"#,
        r#"sconce_queue_depth{model="mlp"} 0"#,
        r#"sconce_batch_size_count{model="mlp"} 1"#,
        r#"sconce_model_ready{model="mlp"} 1"#,
    ] {
        assert!(text.contains(needle), "missing {needle} in\n{text}");
    }
    s.stop().await.unwrap();
}

#[tokio::test]
async fn concurrent_requests_are_batched_and_correct() {
    let dir = tempfile::tempdir().unwrap();
    let m = model(dir.path(), true);
    let s = serve(
        dir.path(),
        &["--max-batch-size", "16", "--max-batch-delay-ms", "20"],
    )
    .await;
    let mut tasks = Vec::new();
    for i in 0..24u64 {
        let client = s.client.clone();
        let url = s.url("/v2/models/mlp/infer");
        let rows = 1 + (i as usize % 3);
        let xs = examples(rows, 20, 100 + i);
        let want = reference(&m, &xs);
        tasks.push(tokio::spawn(async move {
            let body = json!({"inputs": [{"name": "input", "shape": [rows, 20], "datatype": "FP32", "data": xs}]});
            let r = client.post(url).json(&body).send().await.unwrap();
            assert_eq!(r.status(), 200);
            let v: serde_json::Value = r.json().await.unwrap();
            assert_close(&floats(&v["outputs"][0]["data"]), &want, TOL);
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let text = s.metrics_text().await;
    let batches: f64 = text
        .lines()
        .find(|l| l.starts_with("sconce_batch_size_count"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap();
    assert!(
        batches < 24.0,
        "expected requests to be merged into batches, got {batches} batches"
    );
    s.stop().await.unwrap();
}
