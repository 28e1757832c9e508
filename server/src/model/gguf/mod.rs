//! `gguf`: one quantized decoder-only model file (llama.cpp's format) holding the weights, the
//! tokenizer and the chat template. See docs/model-format.md.

mod attention;
pub mod config;
mod ggml;
pub mod llama;
mod ops;
mod qmatmul;
mod spm;
pub mod template;
pub mod vocab;

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use candle_core::quantized::gguf_file;

pub use llama::{KvCache, Llama, SeqStep};
pub use template::{ChatTemplate, Message};
pub use vocab::Vocab;

pub struct GgufModel {
    pub llama: Llama,
    pub vocab: Vocab,
    pub template: Option<ChatTemplate>,
    /// `general.name`, if the file has one.
    pub name: Option<String>,
}

/// The model file: `path` itself if it is a file, else the one `.gguf` in the directory.
pub fn find_file(path: &Path) -> anyhow::Result<PathBuf> {
    if path.is_file() {
        return Ok(path.to_path_buf());
    }
    let mut found = Vec::new();
    for entry in std::fs::read_dir(path).with_context(|| format!("reading {}", path.display()))? {
        let p = entry?.path();
        if p.extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("gguf"))
            && p.is_file()
        {
            found.push(p);
        }
    }
    found.sort();
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => bail!("no .gguf file in {}", path.display()),
        _ => bail!(
            "{} holds {} .gguf files ({}); give a directory with exactly one",
            path.display(),
            found.len(),
            found
                .iter()
                .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// candle's reader says "unknown dtype for tensor 20" for the types it cannot read; name them.
fn explain_read_error(e: candle_core::Error) -> anyhow::Error {
    let msg = e.to_string();
    if let Some(id) = msg
        .split("unknown dtype for tensor ")
        .nth(1)
        .and_then(|rest| rest.trim().split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse::<u32>().ok())
    {
        return anyhow::anyhow!(
            "unsupported quantization {} (ggml type {id}); supported: F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K",
            config::ggml_type_name(id)
        );
    }
    anyhow::anyhow!("reading the GGUF header: {msg}")
}

/// Checks every tensor lies inside the file, so a truncated download fails at load with a
/// clear message rather than on some later tensor.
fn check_complete(ct: &gguf_file::Content, file_len: u64) -> anyhow::Result<()> {
    for (name, info) in &ct.tensor_infos {
        let bytes = (info.shape.elem_count() / info.ggml_dtype.block_size()) as u64
            * info.ggml_dtype.type_size() as u64;
        let end = ct.tensor_data_offset + info.offset + bytes;
        if end > file_len {
            bail!(
                "the file is truncated: tensor {name} ends at byte {end} but the file has {file_len} bytes"
            );
        }
    }
    Ok(())
}

impl GgufModel {
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let path = find_file(path)?;
        let mut file = File::open(&path).with_context(|| format!("opening {}", path.display()))?;
        let file_len = file.metadata()?.len();
        let mut magic = [0u8; 4];
        if file.read_exact(&mut magic).is_err() || &magic != b"GGUF" {
            bail!(
                "{} is not a GGUF file (it does not start with \"GGUF\")",
                path.display()
            );
        }
        use std::io::Seek;
        file.rewind()?;
        let ct = gguf_file::Content::read(&mut file).map_err(explain_read_error)?;
        let cfg = config::llama(&ct.metadata).map_err(anyhow::Error::msg)?;
        check_complete(&ct, file_len)?;
        let vocab = Vocab::from_metadata(&ct.metadata).map_err(anyhow::Error::msg)?;
        let text = |id: Option<u32>| {
            id.and_then(|i| vocab.token_text(i))
                .unwrap_or("")
                .to_string()
        };
        let template = match config::get_str(&ct.metadata, "tokenizer.chat_template") {
            Some(src) => Some(
                ChatTemplate::new(src, &text(vocab.bos), &text(vocab.eos))
                    .map_err(anyhow::Error::msg)?,
            ),
            None => None,
        };
        let llama = Llama::load(cfg, &ct, &mut file)?;
        if llama.vocab_size != vocab.len() {
            bail!(
                "the embedding table has {} rows but the tokenizer has {} tokens",
                llama.vocab_size,
                vocab.len()
            );
        }
        tracing::info!(
            file = %path.display(),
            layers = llama.cfg.n_layer,
            embedding = llama.cfg.n_embd,
            context = llama.cfg.context_length,
            vocab = vocab.len(),
            weights = ?llama.weight_type(),
            chat_template = template.is_some(),
            "gguf model loaded"
        );
        Ok(GgufModel {
            name: config::get_str(&ct.metadata, "general.name").map(str::to_string),
            llama,
            vocab,
            template,
        })
    }
}
