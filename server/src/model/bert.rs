//! The `bert` format: a sentence-transformers directory with mean pooling.

use std::path::Path;

use anyhow::{Context, bail};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};
use serde::Deserialize;
use tokenizers::{Tokenizer, TruncationParams};

/// Sentences per forward pass after sorting by length.
const GROUP: usize = 8;

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
    model: BertModel,
    tokenizer: Tokenizer,
    normalize: bool,
    hidden: usize,
    pad_id: u32,
    device: Device,
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
        let pad_id = tokenizer
            .get_padding()
            .map_or(config.pad_token_id as u32, |p| p.pad_id);
        // We pad ourselves, per group of similar length.
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
        let model = BertModel::load(vb, &config).context("loading BERT weights")?;
        Ok(Bert {
            model,
            tokenizer,
            normalize,
            hidden: config.hidden_size,
            pad_id,
            device: device.clone(),
        })
    }

    pub fn hidden_size(&self) -> usize {
        self.hidden
    }

    pub fn embed(&self, texts: &[&str]) -> anyhow::Result<Embeddings> {
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
        // Sort by length and run groups of similar length, each padded only to its own longest:
        // padding is wasted compute (~30% on a batch of mixed sentences).
        let mut order: Vec<usize> = (0..encodings.len()).collect();
        order.sort_by_key(|&i| tokens[i]);
        let mut data = vec![0f32; encodings.len() * self.hidden];
        for group in order.chunks(GROUP) {
            let batch: Vec<&tokenizers::Encoding> = group.iter().map(|&i| &encodings[i]).collect();
            let pooled = self.forward_group(&batch)?;
            for (row, &i) in pooled.chunks(self.hidden).zip(group) {
                data[i * self.hidden..(i + 1) * self.hidden].copy_from_slice(row);
            }
        }
        Ok(Embeddings { data, tokens })
    }

    /// Pooled (and normalised) embeddings of a few encodings, padded to the longest of them.
    fn forward_group(&self, encodings: &[&tokenizers::Encoding]) -> anyhow::Result<Vec<f32>> {
        let n = encodings.len();
        let len = encodings
            .iter()
            .map(|e| e.get_ids().len())
            .max()
            .unwrap_or(0);
        let mut ids = vec![self.pad_id; n * len];
        let mut types = vec![0u32; n * len];
        let mut mask = vec![0u32; n * len];
        for (row, e) in encodings.iter().enumerate() {
            let k = e.get_ids().len();
            ids[row * len..row * len + k].copy_from_slice(e.get_ids());
            types[row * len..row * len + k].copy_from_slice(e.get_type_ids());
            mask[row * len..row * len + k].copy_from_slice(e.get_attention_mask());
        }
        let ids = Tensor::from_vec(ids, (n, len), &self.device)?;
        let types = Tensor::from_vec(types, (n, len), &self.device)?;
        let mask = Tensor::from_vec(mask, (n, len), &self.device)?;
        let hidden = self.model.forward(&ids, &types, Some(&mask))?;
        // Mean over non-padding tokens.
        let maskf = mask.to_dtype(DType::F32)?.unsqueeze(2)?;
        let summed = hidden.broadcast_mul(&maskf)?.sum(1)?;
        let counts = maskf.sum(1)?.clamp(1e-9f32, f32::MAX)?;
        let mut pooled = summed.broadcast_div(&counts)?;
        if self.normalize {
            let norm = pooled
                .sqr()?
                .sum_keepdim(1)?
                .sqrt()?
                .clamp(1e-12f32, f32::MAX)?;
            pooled = pooled.broadcast_div(&norm)?;
        }
        Ok(pooled.flatten_all()?.to_vec1::<f32>()?)
    }
}
