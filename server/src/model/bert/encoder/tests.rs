//! The packed encoder against an independent BERT, and its refusals.

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert as reference;
use serde_json::json;

use super::*;

/// A small random BERT; `LayerNorm.weight`s near 1 like trained ones.
fn random_weights(cfg: &Config, seed: u64) -> HashMap<String, Tensor> {
    let mut state = seed;
    let mut rand = |n: usize, around: f32, spread: f32| -> Vec<f32> {
        (0..n)
            .map(|_| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                around + spread * (((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0)
            })
            .collect()
    };
    let (h, i) = (cfg.hidden_size, cfg.intermediate_size);
    let mut shapes: Vec<(String, Vec<usize>)> = vec![
        (
            "embeddings.word_embeddings.weight".into(),
            vec![cfg.vocab_size, h],
        ),
        (
            "embeddings.position_embeddings.weight".into(),
            vec![cfg.max_position_embeddings, h],
        ),
        (
            "embeddings.token_type_embeddings.weight".into(),
            vec![cfg.type_vocab_size, h],
        ),
        ("embeddings.LayerNorm.weight".into(), vec![h]),
        ("embeddings.LayerNorm.bias".into(), vec![h]),
    ];
    for l in 0..cfg.num_hidden_layers {
        let p = format!("encoder.layer.{l}");
        for (name, out, inp) in [
            ("attention.self.query", h, h),
            ("attention.self.key", h, h),
            ("attention.self.value", h, h),
            ("attention.output.dense", h, h),
            ("intermediate.dense", i, h),
            ("output.dense", h, i),
        ] {
            shapes.push((format!("{p}.{name}.weight"), vec![out, inp]));
            shapes.push((format!("{p}.{name}.bias"), vec![out]));
        }
        for ln in ["attention.output.LayerNorm", "output.LayerNorm"] {
            shapes.push((format!("{p}.{ln}.weight"), vec![h]));
            shapes.push((format!("{p}.{ln}.bias"), vec![h]));
        }
    }
    shapes
        .into_iter()
        .map(|(name, shape)| {
            let n = shape.iter().product();
            let around = if name.ends_with("LayerNorm.weight") {
                1.0
            } else {
                0.0
            };
            let t = Tensor::from_vec(rand(n, around, 0.5), shape, &Device::Cpu).unwrap();
            (name, t)
        })
        .collect()
}

/// The packed encoder equals candle-transformers' BERT run on the same sentences padded into
/// one batch with an attention mask, token by token, for each activation.
#[test]
fn packed_encoder_matches_candle_transformers_bert() {
    for (ours, theirs) in [
        ("gelu", "gelu"),
        ("gelu_new", "geluapproximate"),
        ("relu", "relu"),
    ] {
        let config = json!({
            "vocab_size": 50, "hidden_size": 16, "num_hidden_layers": 2,
            "num_attention_heads": 4, "intermediate_size": 24, "hidden_act": ours,
            "hidden_dropout_prob": 0.1, "max_position_embeddings": 40, "type_vocab_size": 2,
            "initializer_range": 0.02, "layer_norm_eps": 1e-12, "pad_token_id": 0,
            "model_type": "bert"
        });
        let cfg: Config = serde_json::from_value(config.clone()).unwrap();
        let mut ref_config = config;
        ref_config["hidden_act"] = json!(theirs);
        let ref_cfg: reference::Config = serde_json::from_value(ref_config).unwrap();
        let weights = random_weights(&cfg, 3);
        let vb = VarBuilder::from_tensors(weights, DType::F32, &Device::Cpu);
        let encoder = Encoder::load(vb.clone(), &cfg).unwrap();
        let model = reference::BertModel::load(vb, &ref_cfg).unwrap();

        let lengths = [5usize, 1, 9, 3, 33];
        let mut batch = Packed {
            ids: vec![],
            type_ids: vec![],
            starts: vec![0],
        };
        for (s, &len) in lengths.iter().enumerate() {
            batch
                .ids
                .extend((0..len).map(|t| ((s * 7 + t * 3) % 50) as u32));
            batch
                .type_ids
                .extend((0..len).map(|t| u32::from(t >= len / 2)));
            batch.starts.push(batch.ids.len());
        }
        let got = encoder.forward(&batch).unwrap();

        let (n, max) = (lengths.len(), *lengths.iter().max().unwrap());
        let (mut ids, mut types, mut mask) = (
            vec![0u32; n * max],
            vec![0u32; n * max],
            vec![0u32; n * max],
        );
        for (s, w) in batch.starts.windows(2).enumerate() {
            let len = w[1] - w[0];
            ids[s * max..s * max + len].copy_from_slice(&batch.ids[w[0]..w[1]]);
            types[s * max..s * max + len].copy_from_slice(&batch.type_ids[w[0]..w[1]]);
            mask[s * max..s * max + len].fill(1);
        }
        let t = |v: Vec<u32>| Tensor::from_vec(v, (n, max), &Device::Cpu).unwrap();
        let want = model
            .forward(&t(ids), &t(types), Some(&t(mask)))
            .unwrap()
            .to_vec3::<f32>()
            .unwrap();
        let h = cfg.hidden_size;
        for (s, w) in batch.starts.windows(2).enumerate() {
            for (pos, token) in (w[0]..w[1]).enumerate() {
                for c in 0..h {
                    let (g, r) = (got[token * h + c], want[s][pos][c]);
                    assert!(
                        (g - r).abs() < 1e-4,
                        "{ours}: sentence {s} token {pos} dim {c}: {g} vs reference {r}"
                    );
                }
            }
        }
    }
}

#[test]
fn bad_configs_and_ids_are_errors() {
    let mut config = json!({
        "vocab_size": 10, "hidden_size": 6, "num_hidden_layers": 1,
        "num_attention_heads": 4, "intermediate_size": 8, "hidden_act": "gelu",
        "max_position_embeddings": 4
    });
    let cfg: Config = serde_json::from_value(config.clone()).unwrap();
    let vb =
        |cfg: &Config| VarBuilder::from_tensors(random_weights(cfg, 1), DType::F32, &Device::Cpu);
    let err = Encoder::load(vb(&cfg), &cfg).err().unwrap().to_string();
    assert!(err.contains("not a multiple"), "{err}");

    config["num_attention_heads"] = json!(2);
    config["position_embedding_type"] = json!("relative_key");
    let cfg: Config = serde_json::from_value(config.clone()).unwrap();
    let err = Encoder::load(vb(&cfg), &cfg).err().unwrap().to_string();
    assert!(err.contains("relative_key"), "{err}");

    config["hidden_act"] = json!("swish");
    assert!(serde_json::from_value::<Config>(config.clone()).is_err());

    config["hidden_act"] = json!("gelu");
    config["position_embedding_type"] = json!("absolute");
    let cfg: Config = serde_json::from_value(config).unwrap();
    let encoder = Encoder::load(vb(&cfg), &cfg).unwrap();
    let packed = |ids: Vec<u32>, types: Vec<u32>| Packed {
        starts: vec![0, ids.len()],
        ids,
        type_ids: types,
    };
    let refusal = |ids: Vec<u32>, types: Vec<u32>| match encoder.forward(&packed(ids, types)) {
        Ok(_) => panic!("accepted"),
        Err(e) => e.to_string(),
    };
    let err = refusal(vec![1, 10], vec![0, 0]);
    assert!(err.contains("token id 10"), "{err}");
    let err = refusal(vec![1, 2], vec![0, 2]);
    assert!(err.contains("type id 2"), "{err}");
    let err = refusal(vec![1; 5], vec![0; 5]);
    assert!(err.contains("max_position_embeddings"), "{err}");
    assert_eq!(
        encoder
            .forward(&packed(vec![1; 4], vec![0; 4]))
            .unwrap()
            .len(),
        4 * 6
    );
}
