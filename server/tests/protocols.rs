//! Protocol details real clients check: KServe V1 liveness (`GET /`) and model readiness
//! (`{"name", "ready"}` next to TF-Serving's `model_version_status`), the model list, and
//! Triton's `GET /v2/models/{name}/config` and `/stats`.

mod common;

use common::TestServer;
use serde_json::json;

async fn serve(extra: &[&str]) -> (TestServer, tempfile::TempDir) {
    common::serve_mlp(&common::small_mlp(), Some("7"), extra).await
}

fn req(rows: usize) -> serde_json::Value {
    json!({"inputs": [{"name": "input", "shape": [rows, 4], "datatype": "FP32", "data": vec![0.5f32; rows * 4]}]})
}

#[tokio::test]
async fn kserve_v1_liveness_readiness_and_model_list() {
    let (s, _dir) = serve(&[]).await;
    let (code, v) = s.get_json("/").await;
    assert_eq!(code, 200);
    assert_eq!(v, json!({"status": "alive"}));
    for path in ["/v1/models/mlp", "/v1/models/mlp/versions/7"] {
        let (code, v) = s.get_json(path).await;
        assert_eq!(code, 200, "{path}");
        assert_eq!(v["name"], "mlp");
        assert_eq!(v["ready"], true);
        assert_eq!(
            v["model_version_status"],
            json!([{"version": "7", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}])
        );
    }
    let (code, v) = s.get_json("/v1/models/other").await;
    assert_eq!(code, 404, "{v}");
    let (code, v) = s.get_json("/v1/models").await;
    assert_eq!(code, 200);
    assert_eq!(v["models"], json!(["mlp"]));
    assert_eq!(v["object"], "list");
    assert_eq!(v["data"][0]["id"], "mlp");
    s.stop().await.unwrap();
}

#[tokio::test]
async fn kserve_v1_readiness_while_loading() {
    let (addr, server) = common::unloaded_server().await;
    let r = reqwest::get(format!("http://{addr}/v1/models/mlp"))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["name"], "mlp");
    assert_eq!(v["ready"], false);
    assert_eq!(v["model_version_status"][0]["state"], "LOADING");
    let r = reqwest::get(format!("http://{addr}/")).await.unwrap();
    assert_eq!(r.status(), 200);
    server.abort();
}

#[tokio::test]
async fn triton_model_config() {
    let (s, _dir) = serve(&["--max-batch-size", "16", "--max-batch-delay-ms", "2"]).await;
    for path in ["/v2/models/mlp/config", "/v2/models/mlp/versions/7/config"] {
        let (code, v) = s.get_json(path).await;
        assert_eq!(code, 200, "{path}: {v}");
        assert_eq!(v["name"], "mlp");
        assert_eq!(v["platform"], "sconce-candle-sequential");
        assert_eq!(v["backend"], "sconce");
        assert_eq!(v["max_batch_size"], 16);
        assert_eq!(
            v["input"],
            json!([{"name": "input", "data_type": "TYPE_FP32", "format": "FORMAT_NONE", "dims": [4]}])
        );
        assert_eq!(
            v["output"],
            json!([{"name": "output", "data_type": "TYPE_FP32", "dims": [2]}])
        );
        assert_eq!(v["dynamic_batching"]["max_queue_delay_microseconds"], 2000);
    }
    assert_eq!(s.get_json("/v2/models/other/config").await.0, 404);
    assert_eq!(s.get_json("/v2/models/mlp/versions/1/config").await.0, 404);
    s.stop().await.unwrap();
}

#[tokio::test]
async fn triton_model_stats() {
    let (s, _dir) = serve(&[]).await;
    let (code, v) = s.get_json("/v2/models/mlp/stats").await;
    assert_eq!(code, 200, "{v}");
    let m = &v["model_stats"][0];
    assert_eq!(m["name"], "mlp");
    assert_eq!(m["version"], "7");
    assert_eq!(m["inference_count"], 0);
    assert_eq!(
        m["inference_stats"]["success"],
        json!({"count": 0, "ns": 0})
    );

    // 3 good requests of 1 + 2 + 3 rows over V2 and V1, and one that fails.
    for rows in 1..=2 {
        assert_eq!(s.post_json("/v2/models/mlp/infer", &req(rows)).await.0, 200);
    }
    let (code, _) = s
        .post_json(
            "/v1/models/mlp:predict",
            &json!({"instances": [[1, 2, 3, 4], [1, 2, 3, 4], [1, 2, 3, 4]]}),
        )
        .await;
    assert_eq!(code, 200);
    assert_eq!(
        s.post_json("/v2/models/mlp/infer", &json!({"inputs": []}))
            .await
            .0,
        400
    );

    let (code, v) = s.get_json("/v2/models/mlp/versions/7/stats").await;
    assert_eq!(code, 200, "{v}");
    let m = &v["model_stats"][0];
    assert_eq!(m["inference_count"], 6, "{m}");
    let executions = m["execution_count"].as_u64().unwrap();
    assert!((1..=3).contains(&executions), "{m}");
    assert!(
        m["last_inference"].as_u64().unwrap() > 1_600_000_000_000,
        "{m}"
    );
    let stats = &m["inference_stats"];
    assert_eq!(stats["success"]["count"], 3, "{stats}");
    assert_eq!(stats["fail"]["count"], 1, "{stats}");
    for part in [
        "success",
        "fail",
        "queue",
        "compute_input",
        "compute_infer",
        "compute_output",
    ] {
        assert!(stats[part]["ns"].as_u64().unwrap() > 0, "{part}: {stats}");
    }
    for part in ["queue", "compute_input", "compute_infer", "compute_output"] {
        assert_eq!(stats[part]["count"], 3, "{part}: {stats}");
    }
    // Compute never exceeds the whole request.
    assert!(
        stats["compute_infer"]["ns"].as_u64().unwrap() < stats["success"]["ns"].as_u64().unwrap()
    );
    let batches = m["batch_stats"].as_array().unwrap();
    let counted: u64 = batches
        .iter()
        .map(|b| b["compute_infer"]["count"].as_u64().unwrap())
        .sum();
    assert_eq!(counted, executions, "{m}");
    assert_eq!(s.get_json("/v2/models/other/stats").await.0, 404);
    s.stop().await.unwrap();
}
