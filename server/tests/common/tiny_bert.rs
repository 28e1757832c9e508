//! A tiny random BERT with a word-level tokenizer, written by the tests: the `bert` format with
//! nothing to download.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::json;

use super::{Rng, write_safetensors};

/// Hidden size of the tiny BERT.
pub const H: usize = 8;
pub const WORDS: &[&str] = &[
    "[PAD]", "[CLS]", "[SEP]", "[UNK]", "the", "cat", "sat", "on", "mat", "a", "dog", "ran",
    "fast", "hello", "world",
];

pub fn write_tiny_bert(dir: &Path) {
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
