//! The Llama decoder over quantized GGUF weights, run one *step* at a time for many sequences:
//! the rows of every sequence in the step (one token for a sequence that is decoding, a chunk of
//! its prompt for one that is prefilling) go through each weight matrix together — one pass over
//! the weights per step — while attention reads each sequence's own KV cache.
//!
//! Matrix products are candle's quantized CPU kernels (activations quantized to the weight's
//! dot-product type, as llama.cpp does); the rest is `ops.rs`. candle-transformers'
//! `quantized_llama` keeps one KV cache per model, so it cannot batch sequences at different
//! positions; this is the same computation arranged for that.

use std::fs::File;
use std::sync::Arc;

use anyhow::{Context, bail};
use candle_core::quantized::{GgmlDType, QTensor, ggml_file, gguf_file};
use candle_core::{Device, Tensor};

use super::attention::{self, Heads, Kernel, KvLayer};
use super::config::LlamaConfig;
use super::ops;
use super::qmatmul::{self, QMatrix};

/// The weights of one matrix: our llama.cpp-exact kernel for the types it has
/// (`qmatmul.rs`), candle's quantized matmul for the rest.
enum Weights {
    Own(QMatrix),
    Candle(Arc<QTensor>),
}

/// `y = x Wᵀ` for a quantized `W` of `n` rows of `k`.
struct Linear {
    w: Weights,
    dtype: GgmlDType,
    n: usize,
    k: usize,
}

impl Linear {
    fn new(w: Arc<QTensor>, name: &str, n: usize, k: usize) -> anyhow::Result<Self> {
        let dims = w.shape().dims();
        if dims != [n, k] {
            bail!("tensor {name} has shape {dims:?}, expected [{n}, {k}]");
        }
        let dtype = w.dtype();
        let w = match qmatmul::Kind::of(dtype) {
            Some(kind) if k.is_multiple_of(32) => Weights::Own(
                QMatrix::new(kind, n, k, w.data()?.into_owned()).map_err(anyhow::Error::msg)?,
            ),
            _ => Weights::Candle(w),
        };
        Ok(Linear { w, dtype, n, k })
    }

    fn forward(&self, x: &[f32], rows: usize) -> candle_core::Result<Vec<f32>> {
        match &self.w {
            Weights::Own(m) => Ok(m.forward(x, rows)),
            Weights::Candle(w) => {
                let t = Tensor::from_slice(x, (rows, self.k), &Device::Cpu)?;
                t.apply_op1_no_bwd(w.as_ref())?
                    .flatten_all()?
                    .to_vec1::<f32>()
            }
        }
    }
}

/// Several matrices applied to the same input, outputs side by side (`[q | k | v]`,
/// `[gate | up]`). Stored as one matrix when their types agree, so a step makes one call (and
/// one wake-up of candle's thread pool) instead of several.
struct Projection {
    parts: Vec<Linear>,
    n: usize,
}

impl Projection {
    fn new(parts: Vec<(String, QTensor, usize)>, k: usize) -> anyhow::Result<Self> {
        let n = parts.iter().map(|(_, _, n)| n).sum();
        let dtype = parts[0].1.dtype();
        let mut linears = Vec::new();
        for (name, w, rows) in &parts {
            if w.shape().dims() != [*rows, k] {
                bail!(
                    "tensor {name} has shape {:?}, expected [{rows}, {k}]",
                    w.shape().dims()
                );
            }
        }
        if parts.len() > 1 && parts.iter().all(|(_, w, _)| w.dtype() == dtype) {
            let mut raw = Vec::new();
            for (_, w, _) in &parts {
                raw.extend_from_slice(&w.data()?);
            }
            let fused = ggml_file::qtensor_from_ggml(dtype, &raw, vec![n, k], &Device::Cpu)?;
            linears.push(Linear::new(Arc::new(fused), "fused", n, k)?);
        } else {
            for (name, w, rows) in parts {
                linears.push(Linear::new(Arc::new(w), &name, rows, k)?);
            }
        }
        Ok(Projection { parts: linears, n })
    }

    fn forward(&self, x: &[f32], rows: usize) -> candle_core::Result<Vec<f32>> {
        if let [one] = self.parts.as_slice() {
            return one.forward(x, rows);
        }
        let mut out = vec![0f32; rows * self.n];
        let mut col = 0;
        for part in &self.parts {
            let y = part.forward(x, rows)?;
            for (dst, src) in out.chunks_exact_mut(self.n).zip(y.chunks_exact(part.n)) {
                dst[col..col + part.n].copy_from_slice(src);
            }
            col += part.n;
        }
        Ok(out)
    }
}

struct Layer {
    attn_norm: Vec<f32>,
    qkv: Projection,
    wo: Linear,
    ffn_norm: Vec<f32>,
    gate_up: Projection,
    down: Linear,
}

/// One sequence's keys and values (f16, as llama.cpp caches them): per layer, room for a fixed
/// number of positions.
pub struct KvCache {
    layers: Vec<KvLayer>,
    len: usize,
    /// llama.cpp reads a prompt of several tokens as one batch, and its attention products sum
    /// in another order for a batch than for one token (`attention::Kernel`): the prompt's rows
    /// follow the batch order however this server chunks them.
    prompt_len: usize,
}

fn heads(cfg: &LlamaConfig) -> Heads {
    Heads {
        n_head: cfg.n_head,
        n_head_kv: cfg.n_head_kv,
        head_dim: cfg.head_dim,
    }
}

impl KvCache {
    /// A cache for a sequence whose prompt is `prompt_len` tokens, with room for `tokens`
    /// positions allocated up front (zeroed memory: pages are touched as the sequence grows),
    /// so appending never copies the cache.
    pub fn new(cfg: &LlamaConfig, prompt_len: usize, tokens: usize) -> Self {
        KvCache {
            layers: (0..cfg.n_layer)
                .map(|_| KvLayer::new(heads(cfg), tokens))
                .collect(),
            len: 0,
            prompt_len,
        }
    }

    /// The product order of llama.cpp's attention for `rows` rows from position `len`.
    fn kernel(&self, rows: usize) -> Kernel {
        let reading_prompt = self.len < self.prompt_len && self.prompt_len >= 2;
        Kernel::for_rows(if reading_prompt { rows.max(2) } else { rows })
    }

    /// Positions cached.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// One sequence's part of a step.
pub struct SeqStep<'a> {
    /// Tokens at positions `cache.len() ..`.
    pub tokens: &'a [u32],
    pub cache: &'a mut KvCache,
    /// Whether the step returns the logits after this sequence's last token.
    pub logits: bool,
}

pub struct Llama {
    pub cfg: LlamaConfig,
    pub vocab_size: usize,
    embd: Arc<QTensor>,
    layers: Vec<Layer>,
    out_norm: Vec<f32>,
    output: Linear,
    freq_factors: Option<Vec<f32>>,
}

fn read(ct: &gguf_file::Content, file: &mut File, name: &str) -> anyhow::Result<QTensor> {
    let t = ct
        .tensor(file, name, &Device::Cpu)
        .with_context(|| format!("reading tensor {name}"))?;
    if !super::config::supported_type(t.dtype()) {
        bail!(
            "tensor {name} has type {:?}, which is not supported",
            t.dtype()
        );
    }
    Ok(t)
}

fn read_vec(
    ct: &gguf_file::Content,
    file: &mut File,
    name: &str,
    len: usize,
) -> anyhow::Result<Vec<f32>> {
    let t = read(ct, file, name)?.dequantize(&Device::Cpu)?;
    let v = t.flatten_all()?.to_vec1::<f32>()?;
    if v.len() != len {
        bail!("tensor {name} has {} values, expected {len}", v.len());
    }
    Ok(v)
}

impl Llama {
    pub fn load(
        cfg: LlamaConfig,
        ct: &gguf_file::Content,
        file: &mut File,
    ) -> anyhow::Result<Self> {
        let d = cfg.n_embd;
        let embd = read(ct, file, "token_embd.weight")?;
        let [vocab_size, width] = *embd.shape().dims() else {
            bail!("token_embd.weight is not a matrix");
        };
        if width != d {
            bail!("token_embd.weight rows have {width} values, expected {d}");
        }
        let embd = Arc::new(embd);
        let output = match ct.tensor_infos.contains_key("output.weight") {
            true => Arc::new(read(ct, file, "output.weight")?),
            // Tied embeddings (SmolLM2, Llama 3.2): the output matrix is the embedding table.
            false => embd.clone(),
        };
        let output = Linear::new(output, "output.weight", vocab_size, d)?;
        let mut layers = Vec::with_capacity(cfg.n_layer);
        for i in 0..cfg.n_layer {
            let name = |t: &str| format!("blk.{i}.{t}.weight");
            let part = |file: &mut File, t: &str, rows: usize| -> anyhow::Result<_> {
                Ok((name(t), read(ct, file, &name(t))?, rows))
            };
            let qkv = vec![
                part(file, "attn_q", cfg.q_dim())?,
                part(file, "attn_k", cfg.kv_dim())?,
                part(file, "attn_v", cfg.kv_dim())?,
            ];
            let gate_up = vec![
                part(file, "ffn_gate", cfg.n_ff)?,
                part(file, "ffn_up", cfg.n_ff)?,
            ];
            layers.push(Layer {
                attn_norm: read_vec(ct, file, &name("attn_norm"), d)?,
                qkv: Projection::new(qkv, d)?,
                wo: Linear::new(
                    Arc::new(read(ct, file, &name("attn_output"))?),
                    &name("attn_output"),
                    d,
                    cfg.q_dim(),
                )?,
                ffn_norm: read_vec(ct, file, &name("ffn_norm"), d)?,
                gate_up: Projection::new(gate_up, d)?,
                down: Linear::new(
                    Arc::new(read(ct, file, &name("ffn_down"))?),
                    &name("ffn_down"),
                    d,
                    cfg.n_ff,
                )?,
            });
        }
        let freq_factors = match ct.tensor_infos.contains_key("rope_freqs.weight") {
            true => Some(read_vec(ct, file, "rope_freqs.weight", cfg.rope_dim / 2)?),
            false => None,
        };
        Ok(Llama {
            out_norm: read_vec(ct, file, "output_norm.weight", d)?,
            cfg,
            vocab_size,
            embd,
            layers,
            output,
            freq_factors,
        })
    }

    /// The quantization of the bulk of the weights (the first layer's feed-forward matrix).
    pub fn weight_type(&self) -> Option<GgmlDType> {
        self.layers.first().map(|l| l.down.dtype)
    }

    /// Runs one step: every sequence's `tokens` are appended to its cache; returns, for each
    /// sequence with `logits` set and in order, the `vocab_size` logits after its last token.
    pub fn step(&self, seqs: &mut [SeqStep<'_>]) -> anyhow::Result<Vec<Vec<f32>>> {
        let cfg = &self.cfg;
        let d = cfg.n_embd;
        let q_dim = cfg.q_dim();
        let kv_dim = cfg.kv_dim();
        let ids: Vec<u32> = seqs.iter().flat_map(|s| s.tokens.iter().copied()).collect();
        let rows = ids.len();
        if rows == 0 {
            return Ok(Vec::new());
        }
        if let Some(bad) = ids.iter().find(|&&t| t as usize >= self.vocab_size) {
            bail!("token id {bad} is outside the vocabulary");
        }
        let mut x = self
            .embd
            .embedding(&Tensor::new(ids.as_slice(), &Device::Cpu)?)?
            .flatten_all()?
            .to_vec1::<f32>()?;

        // Rotary angles per row, shared by every layer and head.
        let half = cfg.rope_dim / 2;
        let mut cos = vec![0f32; rows * half];
        let mut sin = vec![0f32; rows * half];
        let mut r = 0;
        for s in seqs.iter() {
            for i in 0..s.tokens.len() {
                ops::rope_angles(
                    s.cache.len + i,
                    cfg.rope_dim,
                    cfg.rope_base,
                    cfg.rope_linear_scale,
                    self.freq_factors.as_deref(),
                    &mut cos[r * half..][..half],
                    &mut sin[r * half..][..half],
                );
                r += 1;
            }
        }

        let heads = heads(cfg);
        let qkv_width = q_dim + 2 * kv_dim;
        let mut h = vec![0f32; rows * d];
        let mut attn = vec![0f32; rows * q_dim];
        let mut act = vec![0f32; rows * cfg.n_ff];
        let mut scratch = attention::Scratch::default();
        for (l, layer) in self.layers.iter().enumerate() {
            ops::rms_norm_rows(&x, &layer.attn_norm, cfg.rms_eps, &mut h);
            let mut qkv = layer.qkv.forward(&h, rows)?;
            for (r, row) in qkv.chunks_exact_mut(qkv_width).enumerate() {
                let (c, s) = (&cos[r * half..][..half], &sin[r * half..][..half]);
                ops::rope_row(&mut row[..q_dim], cfg.head_dim, c, s);
                ops::rope_row(&mut row[q_dim..q_dim + kv_dim], cfg.head_dim, c, s);
            }
            let mut r0 = 0;
            let mut q = Vec::new();
            for s in seqs.iter_mut() {
                let n = s.tokens.len();
                let start = s.cache.len;
                let kernel = s.cache.kernel(n);
                let cache = &mut s.cache.layers[l];
                q.clear();
                for (i, row) in qkv[r0 * qkv_width..(r0 + n) * qkv_width]
                    .chunks_exact(qkv_width)
                    .enumerate()
                {
                    q.extend_from_slice(&row[..q_dim]);
                    let (k, v) = row[q_dim..].split_at(kv_dim);
                    cache.store(heads, start + i, k, v);
                }
                attention::attention(
                    &q,
                    cache,
                    start,
                    heads,
                    kernel,
                    &mut attn[r0 * q_dim..(r0 + n) * q_dim],
                    &mut scratch,
                );
                r0 += n;
            }
            let o = layer.wo.forward(&attn, rows)?;
            x.iter_mut().zip(&o).for_each(|(x, o)| *x += o);
            ops::rms_norm_rows(&x, &layer.ffn_norm, cfg.rms_eps, &mut h);
            let gu = layer.gate_up.forward(&h, rows)?;
            ops::swiglu_rows(&gu, cfg.n_ff, &mut act);
            let down = layer.down.forward(&act, rows)?;
            x.iter_mut().zip(&down).for_each(|(x, o)| *x += o);
        }

        // Only the rows that are sampled go through the (large) output matrix.
        let mut last = Vec::new();
        let mut r0 = 0;
        for s in seqs.iter_mut() {
            let n = s.tokens.len();
            s.cache.len += n;
            if s.logits {
                last.extend_from_slice(&x[(r0 + n - 1) * d..(r0 + n) * d]);
            }
            r0 += n;
        }
        let wanted = last.len() / d;
        if wanted == 0 {
            return Ok(Vec::new());
        }
        let mut normed = vec![0f32; last.len()];
        ops::rms_norm_rows(&last, &self.out_norm, cfg.rms_eps, &mut normed);
        let logits = self.output.forward(&normed, wanted)?;
        Ok(logits
            .chunks_exact(self.vocab_size)
            .map(<[f32]>::to_vec)
            .collect())
    }
}
