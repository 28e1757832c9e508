//! The `bert` format: a sentence-transformers directory with mean pooling.

mod encoder;

use std::path::Path;

use anyhow::{Context, bail};
use candle_core::{DType, Device};
use candle_nn::VarBuilder;
use serde::Deserialize;
use tokenizers::{Tokenizer, TruncationParams};

use encoder::{Config, Encoder, Packed};

/// Tokens per forward pass at most: bounds the activations' memory (the intermediate layer holds
/// `tokens × intermediate_size` floats, 25 MB for MiniLM) whatever the batch size.
const MAX_TOKENS_PER_PASS: usize = 4096;

#[derive(Deserialize)]
struct PoolingConfig {
    #[serde(default)]
    pooling_mode_mean_tokens: bool,
    #[serde(default)]
    pooling_mode_cls_token: bool,
    #[serde(default)]
    pooling_mode_max_tokens: bool,
}

#[derive(Deserialize)]
struct ModuleEntry {
    #[serde(rename = "type")]
    kind: String,
}

#[derive(Deserialize)]
struct SentenceBertConfig {
    max_seq_length: Option<usize>,
}

/// A loaded sentence embedding model.
pub struct Bert {
    encoder: Encoder,
    tokenizer: Tokenizer,
    normalize: bool,
}

/// Embeddings of a batch of texts.
pub struct Embeddings {
    /// `texts.len() * hidden` values, row-major.
    pub data: Vec<f32>,
    /// Tokens per text (after truncation, special tokens included).
    pub tokens: Vec<usize>,
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> anyhow::Result<T> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

impl Bert {
    pub fn load(dir: &Path, device: &Device) -> anyhow::Result<Self> {
        let config: Config = read_json(&dir.join("config.json"))?;
        let pooling: PoolingConfig = read_json(&dir.join("1_Pooling/config.json"))?;
        if !pooling.pooling_mode_mean_tokens
            || pooling.pooling_mode_cls_token
            || pooling.pooling_mode_max_tokens
        {
            bail!("1_Pooling/config.json: only pooling_mode_mean_tokens is supported");
        }
        let modules = dir.join("modules.json");
        let normalize = if modules.exists() {
            let entries: Vec<ModuleEntry> = read_json(&modules)?;
            entries
                .iter()
                .any(|m| m.kind == "sentence_transformers.models.Normalize")
        } else {
            false
        };
        let st = dir.join("sentence_bert_config.json");
        let max_len = if st.exists() {
            read_json::<SentenceBertConfig>(&st)?.max_seq_length
        } else {
            None
        }
        .unwrap_or(config.max_position_embeddings)
        .min(config.max_position_embeddings);

        let tok_path = dir.join("tokenizer.json");
        let mut tokenizer = Tokenizer::from_file(&tok_path)
            .map_err(|e| anyhow::anyhow!("loading {}: {e}", tok_path.display()))?;
        // Sentences are packed, never padded.
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: max_len,
                ..TruncationParams::default()
            }))
            .map_err(|e| anyhow::anyhow!("tokenizer truncation: {e}"))?;

        let weights = dir.join("model.safetensors");
        // SAFETY: read-only mapping of a file we do not expect to change while serving.
        let vb = unsafe { VarBuilder::from_mmaped_safetensors(&[&weights], DType::F32, device) }
            .with_context(|| format!("mapping {}", weights.display()))?;
        let encoder = Encoder::load(vb, &config).context("loading BERT weights")?;
        Ok(Bert {
            encoder,
            tokenizer,
            normalize,
        })
    }

    pub fn hidden_size(&self) -> usize {
        self.encoder.hidden_size()
    }

    pub fn embed(&self, texts: &[&str]) -> anyhow::Result<Embeddings> {
        let hidden = self.hidden_size();
        if texts.is_empty() {
            return Ok(Embeddings {
                data: Vec::new(),
                tokens: Vec::new(),
            });
        }
        let encodings = self
            .tokenizer
            .encode_batch(texts.to_vec(), true)
            .map_err(|e| anyhow::anyhow!("tokenizing: {e}"))?;
        let tokens: Vec<usize> = encodings.iter().map(|e| e.get_ids().len()).collect();
        let mut data = Vec::with_capacity(texts.len() * hidden);
        let mut first = 0;
        while first < encodings.len() {
            // At least one sentence per pass, however long.
            let mut end = first + 1;
            let mut total = tokens[first];
            while end < encodings.len() && total + tokens[end] <= MAX_TOKENS_PER_PASS {
                total += tokens[end];
                end += 1;
            }
            data.extend(self.embed_packed(&encodings[first..end])?);
            first = end;
        }
        Ok(Embeddings { data, tokens })
    }

    /// Pooled (and normalised) embeddings of `encodings`, run as one packed pass.
    fn embed_packed(&self, encodings: &[tokenizers::Encoding]) -> anyhow::Result<Vec<f32>> {
        let hidden = self.hidden_size();
        let mut batch = Packed {
            ids: Vec::new(),
            type_ids: Vec::new(),
            starts: vec![0],
        };
        for e in encodings {
            batch.ids.extend_from_slice(e.get_ids());
            batch.type_ids.extend_from_slice(e.get_type_ids());
            batch.starts.push(batch.ids.len());
        }
        let states = self.encoder.forward(&batch)?;
        let mut pooled = vec![0f32; encodings.len() * hidden];
        for (out, s) in pooled.chunks_exact_mut(hidden).zip(batch.starts.windows(2)) {
            // Mean over the sentence's tokens (a sentence has at least [CLS] and [SEP]).
            for row in states[s[0] * hidden..s[1] * hidden].chunks_exact(hidden) {
                for (o, v) in out.iter_mut().zip(row) {
                    *o += v;
                }
            }
            let inv = 1.0 / (s[1] - s[0]).max(1) as f32;
            out.iter_mut().for_each(|o| *o *= inv);
            if self.normalize {
                let norm = out.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
                out.iter_mut().for_each(|o| *o /= norm);
            }
        }
        Ok(pooled)
    }
}
