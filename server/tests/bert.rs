//! The bert format over real HTTP, on a tiny random BERT with a word-level tokenizer made
//! here: V2 BYTES, V1, OpenAI embeddings, normalisation and padding-independent batching.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::{Rng, TestServer, assert_close, floats, write_safetensors};
use serde_json::json;

const H: usize = 8;
const WORDS: &[&str] = &[
    "[PAD]", "[CLS]", "[SEP]", "[UNK]", "the", "cat", "sat", "on", "mat", "a", "dog", "ran",
    "fast", "hello", "world",
];

fn write_tiny_bert(dir: &Path) {
    let (layers, inter, max_pos, vocab) = (2, 16, 32, WORDS.len());
    let config = json!({
        "vocab_size": vocab, "hidden_size": H, "num_hidden_layers": layers,
        "num_attention_heads": 2, "intermediate_size": inter, "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1,
        "max_position_embeddings": max_pos, "type_vocab_size": 2, "initializer_range": 0.02,
        "layer_norm_eps": 1e-12, "pad_token_id": 0, "model_type": "bert"
    });
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    std::fs::create_dir_all(dir.join("1_Pooling")).unwrap();
    std::fs::write(
        dir.join("1_Pooling/config.json"),
        json!({"word_embedding_dimension": H, "pooling_mode_mean_tokens": true}).to_string(),
    )
    .unwrap();
    std::fs::write(
        dir.join("modules.json"),
        json!([
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
            {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}
        ])
        .to_string(),
    )
    .unwrap();
    let vocab_map: serde_json::Map<String, serde_json::Value> = WORDS
        .iter()
        .enumerate()
        .map(|(i, w)| (w.to_string(), json!(i)))
        .collect();
    let tokenizer = json!({
        "version": "1.0", "truncation": null, "padding": null, "added_tokens": [],
        "normalizer": {"type": "Lowercase"},
        "pre_tokenizer": {"type": "Whitespace"},
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}, {"SpecialToken": {"id": "[SEP]", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}, {"SpecialToken": {"id": "[SEP]", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}, {"SpecialToken": {"id": "[SEP]", "type_id": 1}}],
            "special_tokens": {
                "[CLS]": {"id": "[CLS]", "ids": [1], "tokens": ["[CLS]"]},
                "[SEP]": {"id": "[SEP]", "ids": [2], "tokens": ["[SEP]"]}
            }
        },
        "decoder": null,
        "model": {"type": "WordLevel", "vocab": vocab_map, "unk_token": "[UNK]"}
    });
    std::fs::write(dir.join("tokenizer.json"), tokenizer.to_string()).unwrap();

    let mut rng = Rng::new(11);
    let mut t: BTreeMap<String, (Vec<usize>, Vec<f32>)> = BTreeMap::new();
    let mut put = |name: &str, shape: Vec<usize>, rng: &mut Rng| {
        let n = shape.iter().product();
        let v = if name.ends_with("LayerNorm.weight") {
            rng.vec(n, 0.1).into_iter().map(|x| 1.0 + x).collect()
        } else {
            rng.vec(n, 0.5)
        };
        t.insert(name.to_string(), (shape, v));
    };
    put(
        "embeddings.word_embeddings.weight",
        vec![vocab, H],
        &mut rng,
    );
    put(
        "embeddings.position_embeddings.weight",
        vec![max_pos, H],
        &mut rng,
    );
    put(
        "embeddings.token_type_embeddings.weight",
        vec![2, H],
        &mut rng,
    );
    put("embeddings.LayerNorm.weight", vec![H], &mut rng);
    put("embeddings.LayerNorm.bias", vec![H], &mut rng);
    for i in 0..layers {
        let p = format!("encoder.layer.{i}.");
        for m in [
            "attention.self.query",
            "attention.self.key",
            "attention.self.value",
            "attention.output.dense",
        ] {
            put(&format!("{p}{m}.weight"), vec![H, H], &mut rng);
            put(&format!("{p}{m}.bias"), vec![H], &mut rng);
        }
        put(
            &format!("{p}intermediate.dense.weight"),
            vec![inter, H],
            &mut rng,
        );
        put(
            &format!("{p}intermediate.dense.bias"),
            vec![inter],
            &mut rng,
        );
        put(&format!("{p}output.dense.weight"), vec![H, inter], &mut rng);
        put(&format!("{p}output.dense.bias"), vec![H], &mut rng);
        for ln in ["attention.output.LayerNorm", "output.LayerNorm"] {
            put(&format!("{p}{ln}.weight"), vec![H], &mut rng);
            put(&format!("{p}{ln}.bias"), vec![H], &mut rng);
        }
    }
    write_safetensors(&dir.join("model.safetensors"), &t);
}

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
