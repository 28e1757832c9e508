//! The decoder's hyper-parameters and the checks that refuse what this server cannot run, read
//! from GGUF metadata (`general.architecture`, `llama.*`). Pure: no file access.

use std::collections::HashMap;

use candle_core::quantized::GgmlDType;
use candle_core::quantized::gguf_file::Value;

/// Architectures run by `llama.rs` (Mistral and most Llama fine-tunes are written as `llama`).
pub const ARCHITECTURES: &[&str] = &["llama"];

/// A Llama-architecture decoder.
#[derive(Debug, Clone, PartialEq)]
pub struct LlamaConfig {
    pub n_layer: usize,
    pub n_embd: usize,
    pub n_head: usize,
    pub n_head_kv: usize,
    pub head_dim: usize,
    pub n_ff: usize,
    /// Leading dimensions of each head that RoPE rotates.
    pub rope_dim: usize,
    pub rope_base: f32,
    /// Positions are divided by this (`llama.rope.scaling.type = linear`); 1 otherwise.
    pub rope_linear_scale: f32,
    pub rms_eps: f32,
    pub context_length: usize,
}

impl LlamaConfig {
    /// Values a query row has: all heads.
    pub fn q_dim(&self) -> usize {
        self.n_head * self.head_dim
    }

    /// Values one token keeps in the cache per layer for keys (and as many for values).
    pub fn kv_dim(&self) -> usize {
        self.n_head_kv * self.head_dim
    }

    /// KV cache bytes one token costs over all layers (f16 keys and values).
    pub fn kv_bytes_per_token(&self) -> usize {
        2 * self.n_layer * self.kv_dim() * std::mem::size_of::<half::f16>()
    }
}

fn get<'a>(md: &'a HashMap<String, Value>, key: &str) -> Result<&'a Value, String> {
    md.get(key)
        .ok_or_else(|| format!("GGUF metadata has no {key}"))
}

fn get_usize(md: &HashMap<String, Value>, key: &str) -> Result<usize, String> {
    let v = get(md, key)?;
    let n = match v {
        Value::U8(x) => u64::from(*x),
        Value::U16(x) => u64::from(*x),
        Value::U32(x) => u64::from(*x),
        Value::U64(x) => *x,
        Value::I8(x) => u64::try_from(*x).map_err(|_| format!("{key} is negative"))?,
        Value::I16(x) => u64::try_from(*x).map_err(|_| format!("{key} is negative"))?,
        Value::I32(x) => u64::try_from(*x).map_err(|_| format!("{key} is negative"))?,
        Value::I64(x) => u64::try_from(*x).map_err(|_| format!("{key} is negative"))?,
        other => return Err(format!("{key} is not an integer ({other:?})")),
    };
    usize::try_from(n).map_err(|_| format!("{key} is too large"))
}

fn get_f32(md: &HashMap<String, Value>, key: &str) -> Result<Option<f32>, String> {
    Ok(match md.get(key) {
        None => None,
        Some(Value::F32(x)) => Some(*x),
        Some(Value::F64(x)) => Some(*x as f32),
        Some(other) => return Err(format!("{key} is not a number ({other:?})")),
    })
}

pub fn get_str<'a>(md: &'a HashMap<String, Value>, key: &str) -> Option<&'a str> {
    match md.get(key) {
        Some(Value::String(s)) => Some(s.as_str()),
        _ => None,
    }
}

/// `general.architecture`, refused by name unless `llama.rs` runs it.
pub fn architecture(md: &HashMap<String, Value>) -> Result<&str, String> {
    let arch = get_str(md, "general.architecture")
        .ok_or("GGUF metadata has no general.architecture (not a model file?)")?;
    if ARCHITECTURES.contains(&arch) {
        Ok(arch)
    } else {
        Err(format!(
            "unsupported architecture {arch:?}: sconce-server runs {} models",
            ARCHITECTURES.join(", ")
        ))
    }
}

/// The hyper-parameters of a `llama` model, checked for consistency.
pub fn llama(md: &HashMap<String, Value>) -> Result<LlamaConfig, String> {
    let arch = architecture(md)?;
    let key = |k: &str| format!("{arch}.{k}");
    let experts = md
        .get(&key("expert_count"))
        .map(|_| get_usize(md, &key("expert_count")))
        .transpose()?
        .unwrap_or(0);
    if experts > 1 {
        return Err(format!(
            "mixture-of-experts models ({experts} experts) are not supported"
        ));
    }
    let n_embd = get_usize(md, &key("embedding_length"))?;
    let n_head = get_usize(md, &key("attention.head_count"))?;
    let n_head_kv = match md.get(&key("attention.head_count_kv")) {
        Some(_) => get_usize(md, &key("attention.head_count_kv"))?,
        None => n_head,
    };
    if n_head == 0 || n_head_kv == 0 || n_embd == 0 {
        return Err("embedding length and head counts must be positive".into());
    }
    if n_embd % n_head != 0 || n_head % n_head_kv != 0 {
        return Err(format!(
            "inconsistent attention: {n_embd} embedding values, {n_head} heads, {n_head_kv} key/value heads"
        ));
    }
    let head_dim = match md.get(&key("attention.key_length")) {
        Some(_) => get_usize(md, &key("attention.key_length"))?,
        None => n_embd / n_head,
    };
    let rope_dim = match md.get(&key("rope.dimension_count")) {
        Some(_) => get_usize(md, &key("rope.dimension_count"))?,
        None => head_dim,
    };
    if rope_dim > head_dim || rope_dim % 2 != 0 {
        return Err(format!(
            "rope.dimension_count {rope_dim} must be even and at most the head size {head_dim}"
        ));
    }
    let rope_linear_scale = match get_str(md, &key("rope.scaling.type")) {
        None | Some("none") => 1.0,
        Some("linear") => get_f32(md, &key("rope.scaling.factor"))?.unwrap_or(1.0),
        Some(other) => return Err(format!("RoPE scaling {other:?} is not supported")),
    };
    if rope_linear_scale.is_nan() || rope_linear_scale <= 0.0 {
        return Err("rope.scaling.factor must be positive".into());
    }
    Ok(LlamaConfig {
        n_layer: get_usize(md, &key("block_count"))?,
        n_embd,
        n_head,
        n_head_kv,
        head_dim,
        n_ff: get_usize(md, &key("feed_forward_length"))?,
        rope_dim,
        rope_base: get_f32(md, &key("rope.freq_base"))?.unwrap_or(10_000.0),
        rope_linear_scale,
        rms_eps: get_f32(md, &key("attention.layer_norm_rms_epsilon"))?.unwrap_or(1e-5),
        context_length: get_usize(md, &key("context_length"))?,
    })
}

/// The llama.cpp name of a ggml tensor type id, for types candle cannot read.
pub fn ggml_type_name(id: u32) -> &'static str {
    match id {
        4 => "Q4_2",
        5 => "Q4_3",
        16 => "IQ2_XXS",
        17 => "IQ2_XS",
        18 => "IQ3_XXS",
        19 => "IQ1_S",
        20 => "IQ4_NL",
        21 => "IQ3_S",
        22 => "IQ2_S",
        23 => "IQ4_XS",
        24 => "I8",
        25 => "I16",
        26 => "I32",
        27 => "I64",
        28 => "F64",
        29 => "IQ1_M",
        31..=33 => "Q4_0_4_4/Q4_0_4_8/Q4_0_8_8",
        34 => "TQ1_0",
        35 => "TQ2_0",
        36..=38 => "IQ4_NL_4_4/IQ4_NL_4_8/IQ4_NL_8_8",
        39 => "MXFP4",
        _ => "unknown",
    }
}

/// Tensor types the decoder's matrix products accept (everything candle reads).
pub fn supported_type(t: GgmlDType) -> bool {
    !matches!(t, GgmlDType::Q8_1 | GgmlDType::Q8K)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn smollm() -> HashMap<String, Value> {
        let mut md = HashMap::new();
        let s = |v: &str| Value::String(v.into());
        md.insert("general.architecture".into(), s("llama"));
        md.insert("llama.block_count".into(), Value::U32(30));
        md.insert("llama.context_length".into(), Value::U32(8192));
        md.insert("llama.embedding_length".into(), Value::U32(576));
        md.insert("llama.feed_forward_length".into(), Value::U32(1536));
        md.insert("llama.attention.head_count".into(), Value::U32(9));
        md.insert("llama.attention.head_count_kv".into(), Value::U32(3));
        md.insert("llama.rope.freq_base".into(), Value::F32(100000.0));
        md.insert(
            "llama.attention.layer_norm_rms_epsilon".into(),
            Value::F32(1e-5),
        );
        md.insert("llama.rope.dimension_count".into(), Value::U32(64));
        md
    }

    #[test]
    fn reads_smollm2() {
        let c = llama(&smollm()).unwrap();
        assert_eq!(c.n_layer, 30);
        assert_eq!(c.head_dim, 64);
        assert_eq!(c.kv_dim(), 192);
        assert_eq!(c.q_dim(), 576);
        assert_eq!(c.rope_base, 100000.0);
        assert_eq!(c.rope_linear_scale, 1.0);
        assert_eq!(c.context_length, 8192);
        assert_eq!(c.kv_bytes_per_token(), 2 * 30 * 192 * 2);
    }

    #[test]
    fn refuses_other_architectures_by_name() {
        let mut md = smollm();
        md.insert("general.architecture".into(), Value::String("qwen2".into()));
        let e = llama(&md).unwrap_err();
        assert!(e.contains("\"qwen2\"") && e.contains("llama"), "{e}");
        md.remove("general.architecture");
        assert!(llama(&md).unwrap_err().contains("general.architecture"));
    }

    #[test]
    fn refuses_inconsistent_or_unsupported_shapes() {
        let mut md = smollm();
        md.insert("llama.attention.head_count_kv".into(), Value::U32(4));
        assert!(llama(&md).unwrap_err().contains("inconsistent"));
        let mut md = smollm();
        md.insert("llama.expert_count".into(), Value::U32(8));
        assert!(llama(&md).unwrap_err().contains("mixture-of-experts"));
        let mut md = smollm();
        md.insert(
            "llama.rope.scaling.type".into(),
            Value::String("yarn".into()),
        );
        assert!(llama(&md).unwrap_err().contains("yarn"));
        let mut md = smollm();
        md.remove("llama.block_count");
        assert!(llama(&md).unwrap_err().contains("llama.block_count"));
        let mut md = smollm();
        md.insert(
            "llama.attention.head_count".into(),
            Value::String("9".into()),
        );
        assert!(llama(&md).unwrap_err().contains("not an integer"));
    }

    #[test]
    fn linear_rope_scaling_and_defaults() {
        let mut md = smollm();
        md.insert(
            "llama.rope.scaling.type".into(),
            Value::String("linear".into()),
        );
        md.insert("llama.rope.scaling.factor".into(), Value::F32(4.0));
        md.remove("llama.attention.head_count_kv");
        md.remove("llama.rope.freq_base");
        let c = llama(&md).unwrap();
        assert_eq!(c.rope_linear_scale, 4.0);
        assert_eq!(c.n_head_kv, 9);
        assert_eq!(c.rope_base, 10_000.0);
    }

    #[test]
    fn type_names() {
        assert_eq!(ggml_type_name(20), "IQ4_NL");
        assert_eq!(ggml_type_name(39), "MXFP4");
        assert!(supported_type(GgmlDType::Q4_1));
        assert!(!supported_type(GgmlDType::Q8K));
    }
}
