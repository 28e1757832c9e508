//! BERT's encoder over packed sequences: the tokens of every sentence of a batch are rows of one
//! matrix, with no padding. The linear layers then run as a few large matrix products over all
//! tokens, and attention runs per sentence and head, so no work is spent on pad tokens and no
//! attention mask is needed.

use anyhow::{Context, bail};

use candle_nn::VarBuilder;
use rayon::prelude::*;
use serde::Deserialize;

use crate::model::flat;
use crate::model::kernels::{
    attention_head, broadcast_rows, gelu_erf, gelu_tanh, layer_norm_rows, matmul_nt, relu,
};

/// The fields of a Hugging Face BERT `config.json` the forward pass depends on.
#[derive(Debug, Clone, Deserialize)]
pub struct Config {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    pub hidden_act: Activation,
    pub max_position_embeddings: usize,
    #[serde(default = "default_type_vocab_size")]
    pub type_vocab_size: usize,
    #[serde(default = "default_layer_norm_eps")]
    pub layer_norm_eps: f64,
    #[serde(default = "default_position_embedding_type")]
    pub position_embedding_type: String,
    #[serde(default)]
    pub model_type: Option<String>,
}

fn default_type_vocab_size() -> usize {
    2
}
fn default_layer_norm_eps() -> f64 {
    1e-12
}
fn default_position_embedding_type() -> String {
    "absolute".into()
}

/// `hidden_act` values with the meaning Hugging Face gives them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    Gelu,
    #[serde(alias = "gelu_new", alias = "gelu_pytorch_tanh")]
    GeluApproximate,
    Relu,
}

/// A linear layer; `weight` is `[out × in]` row-major as stored.
struct Linear {
    weight: Vec<f32>,
    bias: Vec<f32>,
}

impl Linear {
    fn load(vb: &VarBuilder, inputs: usize, outputs: usize) -> anyhow::Result<Self> {
        Ok(Linear {
            weight: flat(vb.get((outputs, inputs), "weight")?)?,
            bias: flat(vb.get(outputs, "bias")?)?,
        })
    }

    /// Stacks layers that read the same input into one (rows of the first, then the next...).
    fn concat(parts: Vec<Linear>) -> Linear {
        Linear {
            weight: parts
                .iter()
                .flat_map(|p| p.weight.iter().copied())
                .collect(),
            bias: parts.iter().flat_map(|p| p.bias.iter().copied()).collect(),
        }
    }

    /// `out = x · Wᵀ + b + residual` (residual only when given).
    fn forward_into(&self, out: &mut [f32], x: &[f32], residual: Option<&[f32]>) {
        broadcast_rows(out, &self.bias);
        if let Some(r) = residual {
            for (o, r) in out.iter_mut().zip(r) {
                *o += r;
            }
        }
        matmul_nt(
            out,
            x,
            &self.weight,
            self.weight.len() / self.bias.len(),
            true,
        );
    }
}

struct LayerNorm {
    gamma: Vec<f32>,
    beta: Vec<f32>,
}

impl LayerNorm {
    fn load(vb: &VarBuilder, size: usize) -> anyhow::Result<Self> {
        // Old checkpoints call them gamma/beta.
        let (g, b) = if vb.contains_tensor("weight") {
            ("weight", "bias")
        } else {
            ("gamma", "beta")
        };
        Ok(LayerNorm {
            gamma: flat(vb.get(size, g)?)?,
            beta: flat(vb.get(size, b)?)?,
        })
    }
}

struct Layer {
    qkv: Linear,
    attention_out: Linear,
    attention_norm: LayerNorm,
    intermediate: Linear,
    output: Linear,
    output_norm: LayerNorm,
}

/// Token positions of the sentences of one batch: sentence `i` is rows `starts[i]..starts[i+1]`.
pub struct Packed {
    pub ids: Vec<u32>,
    pub type_ids: Vec<u32>,
    pub starts: Vec<usize>,
}

pub struct Encoder {
    cfg: Config,
    word: Vec<f32>,
    position: Vec<f32>,
    token_type: Vec<f32>,
    embedding_norm: LayerNorm,
    layers: Vec<Layer>,
}

impl Encoder {
    pub fn load(vb: VarBuilder, cfg: &Config) -> anyhow::Result<Self> {
        if cfg.position_embedding_type != "absolute" {
            bail!(
                "config.json: position_embedding_type {:?} is not supported (only \"absolute\")",
                cfg.position_embedding_type
            );
        }
        let (h, heads) = (cfg.hidden_size, cfg.num_attention_heads);
        if heads == 0 || h % heads != 0 {
            bail!("config.json: hidden_size {h} is not a multiple of num_attention_heads {heads}");
        }
        // Weights may sit under `bert.` or `<model_type>.` (whole-model checkpoints).
        let mut vb = vb;
        for prefix in ["bert".to_string()]
            .into_iter()
            .chain(cfg.model_type.clone())
        {
            if vb.contains_tensor(&format!("{prefix}.embeddings.word_embeddings.weight")) {
                vb = vb.pp(prefix);
                break;
            }
        }
        let emb = vb.pp("embeddings");
        let word = flat(emb.get((cfg.vocab_size, h), "word_embeddings.weight")?)?;
        let position = flat(emb.get(
            (cfg.max_position_embeddings, h),
            "position_embeddings.weight",
        )?)?;
        let token_type = flat(emb.get((cfg.type_vocab_size, h), "token_type_embeddings.weight")?)?;
        let embedding_norm = LayerNorm::load(&emb.pp("LayerNorm"), h)?;
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| {
                let l = vb.pp(format!("encoder.layer.{i}"));
                let att = l.pp("attention");
                let qkv = ["query", "key", "value"]
                    .iter()
                    .map(|n| Linear::load(&att.pp("self").pp(n), h, h))
                    .collect::<anyhow::Result<Vec<_>>>()?;
                Ok(Layer {
                    qkv: Linear::concat(qkv),
                    attention_out: Linear::load(&att.pp("output").pp("dense"), h, h)?,
                    attention_norm: LayerNorm::load(&att.pp("output").pp("LayerNorm"), h)?,
                    intermediate: Linear::load(
                        &l.pp("intermediate").pp("dense"),
                        h,
                        cfg.intermediate_size,
                    )?,
                    output: Linear::load(&l.pp("output").pp("dense"), cfg.intermediate_size, h)?,
                    output_norm: LayerNorm::load(&l.pp("output").pp("LayerNorm"), h)?,
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()
            .with_context(|| format!("layer weights ({} layers)", cfg.num_hidden_layers))?;
        Ok(Encoder {
            cfg: cfg.clone(),
            word,
            position,
            token_type,
            embedding_norm,
            layers,
        })
    }

    pub fn hidden_size(&self) -> usize {
        self.cfg.hidden_size
    }

    /// Last hidden states, `[tokens × hidden]` in the order of `batch.ids`.
    pub fn forward(&self, batch: &Packed) -> anyhow::Result<Vec<f32>> {
        let h = self.cfg.hidden_size;
        let mut x = self.embed(batch)?;
        let tokens = batch.ids.len();
        let mut qkv = vec![0f32; tokens * 3 * h];
        let mut context = vec![0f32; tokens * h];
        let mut attended = vec![0f32; tokens * h];
        let mut inter = vec![0f32; tokens * self.cfg.intermediate_size];
        for layer in &self.layers {
            layer.qkv.forward_into(&mut qkv, &x, None);
            self.attention(&qkv, &mut context, &batch.starts);
            layer
                .attention_out
                .forward_into(&mut attended, &context, Some(&x));
            self.norm_rows(&mut attended, &layer.attention_norm);
            layer.intermediate.forward_into(&mut inter, &attended, None);
            self.activate(&mut inter);
            layer.output.forward_into(&mut x, &inter, Some(&attended));
            self.norm_rows(&mut x, &layer.output_norm);
        }
        Ok(x)
    }

    fn embed(&self, batch: &Packed) -> anyhow::Result<Vec<f32>> {
        let h = self.cfg.hidden_size;
        let mut x = vec![0f32; batch.ids.len() * h];
        for sentence in batch.starts.windows(2) {
            let (start, end) = (sentence[0], sentence[1]);
            if end - start > self.cfg.max_position_embeddings {
                bail!(
                    "{} tokens, more than max_position_embeddings {}",
                    end - start,
                    self.cfg.max_position_embeddings
                );
            }
            for (pos, t) in (start..end).enumerate() {
                let (id, ty) = (batch.ids[t] as usize, batch.type_ids[t] as usize);
                let (Some(w), Some(ty)) = (
                    self.word.get(id * h..(id + 1) * h),
                    self.token_type.get(ty * h..(ty + 1) * h),
                ) else {
                    bail!("token id {id} or type id {ty} is outside the model's vocabulary");
                };
                let p = &self.position[pos * h..(pos + 1) * h];
                for (((o, w), p), ty) in x[t * h..(t + 1) * h].iter_mut().zip(w).zip(p).zip(ty) {
                    *o = w + p + ty;
                }
            }
        }
        self.norm_rows(&mut x, &self.embedding_norm);
        Ok(x)
    }

    /// Multi-head self-attention of every sentence, `context` rows in `qkv`'s order.
    fn attention(&self, qkv: &[f32], context: &mut [f32], starts: &[usize]) {
        let h = self.cfg.hidden_size;
        let heads = self.cfg.num_attention_heads;
        let dim = h / heads;
        // One task per sentence (all its heads): each owns its block of `context` rows.
        let mut blocks: Vec<(&[f32], &mut [f32])> = Vec::with_capacity(starts.len());
        let mut rest = context;
        for s in starts.windows(2) {
            let (block, tail) = rest.split_at_mut((s[1] - s[0]) * h);
            blocks.push((&qkv[s[0] * 3 * h..s[1] * 3 * h], block));
            rest = tail;
        }
        blocks.par_iter_mut().for_each(|(q, out)| {
            let len = q.len() / (3 * h);
            let mut scores = vec![0f32; len];
            for head in 0..heads {
                attention_head(q, out, &mut scores, len, h, head, dim);
            }
        });
    }

    fn norm_rows(&self, x: &mut [f32], norm: &LayerNorm) {
        let h = self.cfg.hidden_size;
        let eps = self.cfg.layer_norm_eps as f32;
        x.par_chunks_mut(h * ROWS_PER_TASK)
            .for_each(|rows| layer_norm_rows(rows, &norm.gamma, &norm.beta, eps));
    }

    fn activate(&self, x: &mut [f32]) {
        let width = self.cfg.intermediate_size * ROWS_PER_TASK;
        match self.cfg.hidden_act {
            Activation::Gelu => x.par_chunks_mut(width).for_each(gelu_erf),
            Activation::GeluApproximate => x.par_chunks_mut(width).for_each(gelu_tanh),
            Activation::Relu => x.par_chunks_mut(width).for_each(relu),
        }
    }
}

/// Rows per parallel task in element-wise steps: enough work to outweigh handing it over.
const ROWS_PER_TASK: usize = 32;

#[cfg(test)]
mod tests;
