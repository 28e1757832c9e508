//! The binary tensor data extension, both directions.

mod common;

use common::{Mlp, Rng, TestServer, assert_close, floats};
use serde_json::json;

const HEADER: &str = "Inference-Header-Content-Length";

fn le_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

async fn post_raw(s: &TestServer, header: &serde_json::Value, blob: &[u8]) -> reqwest::Response {
    let mut body = serde_json::to_vec(header).unwrap();
    let n = body.len();
    body.extend_from_slice(blob);
    s.client
        .post(s.url("/v2/models/mlp/infer"))
        .header(HEADER, n.to_string())
        .header("content-type", "application/octet-stream")
        .body(body)
        .send()
        .await
        .unwrap()
}

/// Splits a binary response into its JSON header and the blob.
async fn split(r: reqwest::Response) -> (serde_json::Value, Vec<u8>) {
    let n: usize = r.headers()[HEADER].to_str().unwrap().parse().unwrap();
    let body = r.bytes().await.unwrap();
    (
        serde_json::from_slice(&body[..n]).unwrap(),
        body[n..].to_vec(),
    )
}

#[tokio::test]
async fn binary_in_and_out() {
    let dir = tempfile::tempdir().unwrap();
    let m = Mlp::random(3, 10, &[(7, "relu"), (4, "softmax")], true);
    m.write(dir.path(), None);
    let d = dir.path().to_str().unwrap();
    let s = TestServer::start_ready(&[
        "--model-dir",
        d,
        "--format",
        "sequential",
        "--model-name",
        "mlp",
    ])
    .await;
    let mut rng = Rng::new(9);
    let x = rng.vec(30, 2.0);
    let want: Vec<f32> = x.chunks(10).flat_map(|r| m.reference(r)).collect();

    // binary input, JSON output
    let header = json!({"inputs": [{"name": "input", "shape": [3, 10], "datatype": "FP32",
                                     "parameters": {"binary_data_size": 120}}]});
    let r = post_raw(&s, &header, &le_bytes(&x)).await;
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_close(&floats(&v["outputs"][0]["data"]), &want, 1e-5);

    // binary input, binary output (request-wide flag)
    let header = json!({"parameters": {"binary_data_output": true},
                        "inputs": [{"name": "input", "shape": [3, 10], "datatype": "FP32",
                                     "parameters": {"binary_data_size": 120}}]});
    let r = post_raw(&s, &header, &le_bytes(&x)).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/octet-stream");
    let (head, blob) = split(r).await;
    let out = &head["outputs"][0];
    assert_eq!(out["parameters"]["binary_data_size"], 48);
    assert!(out.get("data").is_none());
    assert_eq!(out["shape"], json!([3, 4]));
    let got: Vec<f32> = blob
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    assert_close(&got, &want, 1e-5);

    // JSON input, binary output (per-output flag), FP64 binary input
    let x64: Vec<u8> = x.iter().flat_map(|v| (*v as f64).to_le_bytes()).collect();
    let header = json!({"inputs": [{"name": "input", "shape": [3, 10], "datatype": "FP64",
                                     "parameters": {"binary_data_size": 240}}],
                        "outputs": [{"name": "output", "parameters": {"binary_data": true}}]});
    let r = post_raw(&s, &header, &x64).await;
    let (_, blob) = split(r).await;
    let got: Vec<f32> = blob
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    assert_close(&got, &want, 1e-5);

    // errors: size mismatch, header length past the body, unclaimed bytes
    let header = json!({"inputs": [{"name": "input", "shape": [3, 10], "datatype": "FP32",
                                     "parameters": {"binary_data_size": 120}}]});
    let r = post_raw(&s, &header, &le_bytes(&x[..20])).await;
    assert_eq!(r.status(), 400);
    let r = s
        .client
        .post(s.url("/v2/models/mlp/infer"))
        .header(HEADER, "100000")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let mut extra = le_bytes(&x);
    extra.extend_from_slice(&[0, 0, 0, 0]);
    let r = post_raw(&s, &header, &extra).await;
    assert_eq!(r.status(), 400);
    let v: serde_json::Value = r.json().await.unwrap();
    assert!(v["error"].as_str().unwrap().contains("not claimed"), "{v}");
    s.stop().await.unwrap();
}
