//! The bert format over real HTTP, on a tiny random BERT with a word-level tokenizer made
//! here: V2 BYTES, V1, OpenAI embeddings, normalisation and padding-independent batching.

mod common;

use std::path::Path;

use common::tiny_bert::{H, write_tiny_bert};
use common::{TestServer, assert_close, floats};
use serde_json::json;

async fn serve(dir: &Path) -> TestServer {
    let d = dir.to_str().unwrap();
    TestServer::start_ready(&["--model-dir", d, "--format", "bert", "--model-name", "tiny"]).await
}

const SENTENCES: [&str; 3] = [
    "the cat sat on the mat",
    "hello",
    "a dog ran fast on the mat today",
];

#[tokio::test]
async fn v2_v1_and_openai_agree() {
    let dir = tempfile::tempdir().unwrap();
    write_tiny_bert(dir.path());
    let s = serve(dir.path()).await;

    let (code, meta) = s.get_json("/v2/models/tiny").await;
    assert_eq!(code, 200);
    assert_eq!(
        meta["inputs"],
        json!([{"name": "text", "datatype": "BYTES", "shape": [-1]}])
    );
    assert_eq!(
        meta["outputs"],
        json!([{"name": "embedding", "datatype": "FP32", "shape": [-1, H]}])
    );

    // Batched V2 request.
    let (code, v) = s
        .post_json(
            "/v2/models/tiny/infer",
            &json!({"inputs": [{"name": "text", "shape": [3], "datatype": "BYTES", "data": SENTENCES}]}),
        )
        .await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["outputs"][0]["shape"], json!([3, H]));
    let batch = floats(&v["outputs"][0]["data"]);
    for row in batch.chunks(H) {
        let norm: f32 = row.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "not normalised: {norm}");
    }
    // Each sentence alone gives the same embedding: padding does not leak into the mean.
    for (i, sentence) in SENTENCES.iter().enumerate() {
        let (code, v) = s
            .post_json(
                "/v2/models/tiny/infer",
                &json!({"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": [sentence]}]}),
            )
            .await;
        assert_eq!(code, 200);
        assert_close(
            &floats(&v["outputs"][0]["data"]),
            &batch[i * H..(i + 1) * H],
            1e-5,
        );
    }

    // V1
    let (code, v) = s
        .post_json("/v1/models/tiny:predict", &json!({"instances": SENTENCES}))
        .await;
    assert_eq!(code, 200, "{v}");
    assert_close(&floats(&v["predictions"]), &batch, 1e-5);

    // OpenAI, list and single string, float and base64
    let (code, v) = s
        .post_json(
            "/v1/embeddings",
            &json!({"input": SENTENCES, "model": "tiny"}),
        )
        .await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["object"], "list");
    assert_eq!(v["model"], "tiny");
    assert_eq!(v["data"].as_array().unwrap().len(), 3);
    assert_eq!(v["data"][2]["index"], 2);
    assert_eq!(v["data"][0]["object"], "embedding");
    let got: Vec<f32> = (0..3)
        .flat_map(|i| floats(&v["data"][i]["embedding"]))
        .collect();
    assert_close(&got, &batch, 1e-5);
    // words + [CLS] + [SEP]: 6+2, 1+2, 8+2 ("today" is [UNK])
    assert_eq!(v["usage"]["prompt_tokens"], 21);
    assert_eq!(v["usage"]["total_tokens"], 21);

    let (code, v) = s
        .post_json(
            "/v1/embeddings",
            &json!({"input": "hello", "encoding_format": "base64"}),
        )
        .await;
    assert_eq!(code, 200, "{v}");
    let b64 = v["data"][0]["embedding"].as_str().unwrap();
    let decoded = decode_b64(b64);
    let got: Vec<f32> = decoded
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    assert_close(&got, &batch[H..2 * H], 1e-6);

    // Errors specific to text models.
    let (code, _) = s
        .post_json(
            "/v2/models/tiny/infer",
            &json!({"inputs": [{"name": "text", "shape": [1], "datatype": "FP32", "data": [1.0]}]}),
        )
        .await;
    assert_eq!(code, 400);
    let (code, _) = s.post_json("/v1/embeddings", &json!({"input": []})).await;
    assert_eq!(code, 400);
    let (code, _) = s
        .post_json("/v1/embeddings", &json!({"input": [1, 2]}))
        .await;
    assert_eq!(code, 400);
    s.stop().await.unwrap();
}

#[tokio::test]
async fn binary_bytes_input() {
    let dir = tempfile::tempdir().unwrap();
    write_tiny_bert(dir.path());
    let s = serve(dir.path()).await;
    let mut blob = Vec::new();
    for t in SENTENCES {
        blob.extend_from_slice(&(t.len() as u32).to_le_bytes());
        blob.extend_from_slice(t.as_bytes());
    }
    let header = json!({"inputs": [{"name": "text", "shape": [3], "datatype": "BYTES",
                                     "parameters": {"binary_data_size": blob.len()}}]});
    let mut body = serde_json::to_vec(&header).unwrap();
    let n = body.len();
    body.extend_from_slice(&blob);
    let r = s
        .client
        .post(s.url("/v2/models/tiny/infer"))
        .header("Inference-Header-Content-Length", n.to_string())
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.unwrap();
    let (_, json_v) = s
        .post_json(
            "/v2/models/tiny/infer",
            &json!({"inputs": [{"name": "text", "shape": [3], "datatype": "BYTES", "data": SENTENCES}]}),
        )
        .await;
    assert_close(
        &floats(&v["outputs"][0]["data"]),
        &floats(&json_v["outputs"][0]["data"]),
        1e-6,
    );
    s.stop().await.unwrap();
}

fn decode_b64(s: &str) -> Vec<u8> {
    let val = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => (c - b'A') as u32,
            b'a'..=b'z' => (c - b'a' + 26) as u32,
            b'0'..=b'9' => (c - b'0' + 52) as u32,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("bad base64"),
        }
    };
    let mut out = Vec::new();
    for chunk in s.as_bytes().chunks(4) {
        let pad = chunk.iter().filter(|&&c| c == b'=').count();
        let n = chunk
            .iter()
            .take(4 - pad)
            .enumerate()
            .fold(0u32, |acc, (i, &c)| acc | val(c) << (18 - 6 * i));
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&bytes[..3 - pad]);
    }
    out
}
