//! The `bert` format: a sentence-transformers directory with mean pooling.

use std::path::Path;

use anyhow::{Context, bail};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};
use serde::Deserialize;
use tokenizers::{PaddingParams, PaddingStrategy, Tokenizer, TruncationParams};

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
        let mut padding = tokenizer.get_padding().cloned().unwrap_or(PaddingParams {
            pad_id: config.pad_token_id as u32,
            ..PaddingParams::default()
        });
        padding.strategy = PaddingStrategy::BatchLongest;
        tokenizer.with_padding(Some(padding));
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
        let n = encodings.len();
        let len = encodings.first().map_or(0, |e| e.get_ids().len());
        let mut ids = Vec::with_capacity(n * len);
        let mut types = Vec::with_capacity(n * len);
        let mut mask = Vec::with_capacity(n * len);
        let mut tokens = Vec::with_capacity(n);
        for e in &encodings {
            ids.extend_from_slice(e.get_ids());
            types.extend_from_slice(e.get_type_ids());
            mask.extend_from_slice(e.get_attention_mask());
            tokens.push(e.get_attention_mask().iter().filter(|&&m| m != 0).count());
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
        let data = pooled.flatten_all()?.to_vec1::<f32>()?;
        Ok(Embeddings { data, tokens })
    }
}
