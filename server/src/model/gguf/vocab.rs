//! The tokenizer a GGUF file carries in its metadata (`tokenizer.ggml.*`): byte-level BPE
//! (`gpt2`, through the `tokenizers` crate with the pre-tokenizer llama.cpp picks for
//! `tokenizer.ggml.pre`) or SentencePiece (`llama`, `spm.rs`). Control and user-defined tokens
//! written in the text (`<|im_start|>` in a rendered chat template) are encoded as themselves.
//! Decoding is per token to bytes, so a stream can emit text as soon as it is valid UTF-8.

use std::collections::HashMap;

use candle_core::quantized::gguf_file::Value;
use tokenizers::models::bpe::{BPE, Vocab as BpeVocab};
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{AddedToken, SplitDelimiterBehavior, Tokenizer};

use super::config::get_str;
use super::spm::Spm;

// llama.cpp's token types.
const NORMAL: i32 = 1;
const CONTROL: i32 = 3;
const USER_DEFINED: i32 = 4;
const BYTE: i32 = 6;

/// Control tokens llama.cpp also treats as end of generation when the metadata names none.
const EOG_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "<|eom_id|>",
    "<EOT>",
];

enum Encoder {
    Bpe(Box<Tokenizer>),
    Spm {
        spm: Spm,
        add_space_prefix: bool,
        /// Control / user-defined token texts, longest first, split out before SentencePiece.
        specials: Vec<(String, u32)>,
    },
}

pub struct Vocab {
    encoder: Encoder,
    tokens: Vec<String>,
    /// What each token decodes to (empty for control tokens).
    pieces: Vec<Vec<u8>>,
    pub bos: Option<u32>,
    pub eos: Option<u32>,
    add_bos: bool,
    eog: Vec<u32>,
}

fn strings(md: &HashMap<String, Value>, key: &str) -> Result<Vec<String>, String> {
    let Some(Value::Array(items)) = md.get(key) else {
        return Err(format!("GGUF metadata has no {key} array"));
    };
    items
        .iter()
        .map(|v| match v {
            Value::String(s) => Ok(s.clone()),
            other => Err(format!("{key} holds a non-string {other:?}")),
        })
        .collect()
}

fn id(md: &HashMap<String, Value>, key: &str, n: usize) -> Result<Option<u32>, String> {
    let v = match md.get(key) {
        None => return Ok(None),
        Some(Value::U32(v)) => i64::from(*v),
        Some(Value::I32(v)) => i64::from(*v),
        Some(Value::U64(v)) => i64::try_from(*v).unwrap_or(-1),
        Some(Value::I64(v)) => *v,
        Some(other) => return Err(format!("{key} is not a token id ({other:?})")),
    };
    // -1 is llama.cpp's "none".
    if v < 0 {
        return Ok(None);
    }
    match usize::try_from(v) {
        Ok(i) if i < n => Ok(Some(i as u32)),
        _ => Err(format!("{key} {v} is outside the vocabulary of {n} tokens")),
    }
}

fn flag(md: &HashMap<String, Value>, key: &str) -> Option<bool> {
    match md.get(key) {
        Some(Value::Bool(b)) => Some(*b),
        _ => None,
    }
}

/// GPT-2's byte-to-character table, inverted: the byte each printable stand-in represents.
fn byte_level_decoder() -> HashMap<char, u8> {
    let mut map = HashMap::new();
    let mut extra = 0u32;
    for b in 0..=255u8 {
        let printable = matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
        let c = if printable {
            char::from(b)
        } else {
            extra += 1;
            char::from_u32(255 + extra).unwrap_or('\u{FFFD}')
        };
        map.insert(c, b);
    }
    map
}

// Pre-tokenizer regexes (llama.cpp `llama-vocab.cpp`, Hugging Face tokenizer.json files);
// GPT-2's is ByteLevel's own.
const LLAMA3: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const QWEN2: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// The pre-tokenizer for `tokenizer.ggml.pre`; unknown names are refused (their splitting
/// rules are unknown, and a guess would tokenize differently from the model's training).
fn pre_tokenizer(pre: &str) -> Result<PreTokenizerWrapper, String> {
    let split = |re: &str| -> Result<PreTokenizerWrapper, String> {
        let split = Split::new(
            SplitPattern::Regex(re.into()),
            SplitDelimiterBehavior::Isolated,
            false,
        )
        .map_err(|e| e.to_string())?;
        Ok(Sequence::new(vec![
            split.into(),
            ByteLevel::new(false, true, false).into(),
        ])
        .into())
    };
    Ok(match pre {
        "default" | "gpt2" | "gpt-2" => ByteLevel::new(false, true, true).into(),
        "smollm" | "starcoder" | "refact" => Sequence::new(vec![
            Digits::new(true).into(),
            ByteLevel::new(false, true, true).into(),
        ])
        .into(),
        "llama3" | "llama-bpe" | "llama-v3" | "smaug-bpe" => split(LLAMA3)?,
        "qwen2" => split(QWEN2)?,
        other => {
            return Err(format!(
                "unsupported BPE pre-tokenizer {other:?} (tokenizer.ggml.pre)"
            ));
        }
    })
}

impl Vocab {
    pub fn from_metadata(md: &HashMap<String, Value>) -> Result<Self, String> {
        let model = get_str(md, "tokenizer.ggml.model")
            .ok_or("GGUF metadata has no tokenizer.ggml.model")?;
        let tokens = strings(md, "tokenizer.ggml.tokens")?;
        let n = tokens.len();
        let types: Vec<i32> = match md.get("tokenizer.ggml.token_type") {
            Some(Value::Array(v)) => v
                .iter()
                .map(|t| match t {
                    Value::I32(x) => *x,
                    Value::U32(x) => *x as i32,
                    _ => NORMAL,
                })
                .collect(),
            _ => vec![NORMAL; n],
        };
        if types.len() != n {
            return Err(format!(
                "tokenizer.ggml.token_type has {} entries for {n} tokens",
                types.len()
            ));
        }
        let bos = id(md, "tokenizer.ggml.bos_token_id", n)?;
        let eos = id(md, "tokenizer.ggml.eos_token_id", n)?;
        let unk = id(md, "tokenizer.ggml.unknown_token_id", n)?;
        let special = |i: usize| matches!(types[i], CONTROL | USER_DEFINED);
        let (encoder, pieces, default_add_bos) = match model {
            "gpt2" => {
                let merges = strings(md, "tokenizer.ggml.merges")?
                    .into_iter()
                    .map(|m| {
                        m.split_once(' ')
                            .map(|(a, b)| (a.to_string(), b.to_string()))
                            .ok_or_else(|| format!("invalid merge {m:?}"))
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                let vocab: BpeVocab = tokens
                    .iter()
                    .enumerate()
                    .map(|(i, t)| (t.clone(), i as u32))
                    .collect();
                let bpe = BPE::builder()
                    .vocab_and_merges(vocab, merges)
                    .build()
                    .map_err(|e| format!("building the BPE tokenizer: {e}"))?;
                let mut tk = Tokenizer::new(bpe);
                let pre = get_str(md, "tokenizer.ggml.pre").unwrap_or("default");
                tk.with_pre_tokenizer(Some(pre_tokenizer(pre)?));
                let added: Vec<AddedToken> = (0..n)
                    .filter(|&i| special(i))
                    .map(|i| AddedToken::from(tokens[i].clone(), true))
                    .collect();
                tk.add_special_tokens(&added);
                let bytes = byte_level_decoder();
                let pieces = tokens
                    .iter()
                    .zip(&types)
                    .map(|(t, ty)| match *ty {
                        CONTROL => Vec::new(),
                        USER_DEFINED => t.as_bytes().to_vec(),
                        _ => t
                            .chars()
                            .map(|c| bytes.get(&c).copied().ok_or(c))
                            .collect::<Result<Vec<u8>, char>>()
                            .unwrap_or_else(|_| t.as_bytes().to_vec()),
                    })
                    .collect();
                (Encoder::Bpe(Box::new(tk)), pieces, false)
            }
            "llama" => {
                let scores: Vec<f32> = match md.get("tokenizer.ggml.scores") {
                    Some(Value::Array(v)) => v
                        .iter()
                        .map(|s| match s {
                            Value::F32(x) => *x,
                            _ => 0.0,
                        })
                        .collect(),
                    _ => vec![0.0; n],
                };
                let mut specials: Vec<(String, u32)> = (0..n)
                    .filter(|&i| special(i) && !tokens[i].is_empty())
                    .map(|i| (tokens[i].clone(), i as u32))
                    .collect();
                specials.sort_by_key(|(t, _)| std::cmp::Reverse(t.len()));
                let pieces = tokens
                    .iter()
                    .zip(&types)
                    .map(|(t, ty)| match *ty {
                        CONTROL => Vec::new(),
                        BYTE => t
                            .strip_prefix("<0x")
                            .and_then(|h| h.strip_suffix('>'))
                            .and_then(|h| u8::from_str_radix(h, 16).ok())
                            .map(|b| vec![b])
                            .unwrap_or_default(),
                        _ => t.replace('\u{2581}', " ").into_bytes(),
                    })
                    .collect();
                let spm = Spm::new(&tokens, scores, unk);
                let add_space_prefix = flag(md, "tokenizer.ggml.add_space_prefix").unwrap_or(true);
                let encoder = Encoder::Spm {
                    spm,
                    add_space_prefix,
                    specials,
                };
                (encoder, pieces, true)
            }
            other => {
                return Err(format!(
                    "unsupported tokenizer {other:?} (tokenizer.ggml.model): gpt2 (BPE) and llama (SentencePiece) are"
                ));
            }
        };
        let mut eog: Vec<u32> = [
            eos,
            id(md, "tokenizer.ggml.eot_token_id", n)?,
            id(md, "tokenizer.ggml.eom_token_id", n)?,
        ]
        .into_iter()
        .flatten()
        .collect();
        for (i, t) in tokens.iter().enumerate() {
            if types[i] == CONTROL && EOG_TEXTS.contains(&t.as_str()) {
                eog.push(i as u32);
            }
        }
        eog.sort_unstable();
        eog.dedup();
        Ok(Vocab {
            encoder,
            add_bos: flag(md, "tokenizer.ggml.add_bos_token").unwrap_or(default_add_bos)
                && bos.is_some(),
            tokens,
            pieces,
            bos,
            eos,
            eog,
        })
    }

    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// The token's text as written in the vocabulary (`<|im_start|>`, `Ġthe`...).
    pub fn token_text(&self, id: u32) -> Option<&str> {
        self.tokens.get(id as usize).map(String::as_str)
    }

    /// The bytes a generated token adds to the output (nothing for control tokens).
    pub fn piece(&self, id: u32) -> &[u8] {
        self.pieces.get(id as usize).map_or(&[], Vec::as_slice)
    }

    /// Whether generating `id` ends the sequence (end of sequence / turn).
    pub fn is_eog(&self, id: u32) -> bool {
        self.eog.binary_search(&id).is_ok()
    }

    /// Tokens of `text`, with the beginning-of-sequence token first when the model wants it.
    /// Control tokens written in the text are encoded as themselves.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, String> {
        let mut out = Vec::new();
        if self.add_bos
            && let Some(b) = self.bos
        {
            out.push(b);
        }
        match &self.encoder {
            Encoder::Bpe(tk) => {
                let enc = tk.encode(text, false).map_err(|e| e.to_string())?;
                out.extend_from_slice(enc.get_ids());
            }
            Encoder::Spm {
                spm,
                add_space_prefix,
                specials,
            } => {
                let mut prev_special = true;
                let mut rest = text;
                while !rest.is_empty() {
                    // The next special token written in the text, if any.
                    let next = specials
                        .iter()
                        .filter_map(|(t, id)| rest.find(t.as_str()).map(|at| (at, t.len(), *id)))
                        .min_by_key(|(at, len, _)| (*at, std::cmp::Reverse(*len)));
                    let (plain, special) = match next {
                        Some((at, len, id)) => (&rest[..at], Some((id, at + len))),
                        None => (rest, None),
                    };
                    if !plain.is_empty() {
                        let mut s = String::with_capacity(plain.len() + 3);
                        if *add_space_prefix && prev_special {
                            s.push(' ');
                        }
                        s.push_str(plain);
                        spm.encode(&s.replace(' ', "\u{2581}"), &mut out);
                    }
                    match special {
                        Some((id, end)) => {
                            out.push(id);
                            prev_special = true;
                            rest = &rest[end..];
                        }
                        None => break,
                    }
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arr(items: &[&str]) -> Value {
        Value::Array(items.iter().map(|s| Value::String(s.to_string())).collect())
    }

    fn spm_metadata() -> HashMap<String, Value> {
        let mut md = HashMap::new();
        md.insert("tokenizer.ggml.model".into(), Value::String("llama".into()));
        let toks = [
            "<unk>", "<s>", "</s>", "▁", "h", "i", "▁h", "▁hi", "<0x0A>", "<|x|>",
        ];
        md.insert("tokenizer.ggml.tokens".into(), arr(&toks));
        md.insert(
            "tokenizer.ggml.scores".into(),
            Value::Array(
                [0.0, 0.0, 0.0, -5.0, -5.0, -5.0, -2.0, -1.0, 0.0, 0.0]
                    .iter()
                    .map(|s| Value::F32(*s))
                    .collect(),
            ),
        );
        md.insert(
            "tokenizer.ggml.token_type".into(),
            Value::Array(
                [2, 3, 3, 1, 1, 1, 1, 1, 6, 4]
                    .iter()
                    .map(|t| Value::I32(*t))
                    .collect(),
            ),
        );
        md.insert("tokenizer.ggml.bos_token_id".into(), Value::U32(1));
        md.insert("tokenizer.ggml.eos_token_id".into(), Value::U32(2));
        md.insert("tokenizer.ggml.unknown_token_id".into(), Value::U32(0));
        md
    }

    #[test]
    fn sentencepiece_vocabulary() {
        let v = Vocab::from_metadata(&spm_metadata()).unwrap();
        // BOS, then " hi" as one piece; the special token splits the text, and the text after
        // it gets the space prefix again; "\n" is a byte token.
        assert_eq!(v.encode("hi").unwrap(), [1, 7]);
        assert_eq!(v.encode("hi<|x|>hi\n").unwrap(), [1, 7, 9, 7, 8]);
        assert_eq!(v.piece(7), b" hi");
        assert_eq!(v.piece(8), b"\n");
        assert_eq!(v.piece(2), b"");
        assert!(v.is_eog(2) && !v.is_eog(7));
    }

    #[test]
    fn byte_level_table_is_gpt2s() {
        let t = byte_level_decoder();
        assert_eq!(t.len(), 256);
        assert_eq!(t[&'Ġ'], b' ');
        assert_eq!(t[&'Ċ'], b'\n');
        assert_eq!(t[&'a'], b'a');
    }

    #[test]
    fn refusals_name_what_is_unsupported() {
        let mut md = spm_metadata();
        md.insert("tokenizer.ggml.model".into(), Value::String("bert".into()));
        let e = Vocab::from_metadata(&md).err().unwrap();
        assert!(e.contains("\"bert\""), "{e}");
        assert!(
            pre_tokenizer("deepseek-coder")
                .err()
                .unwrap()
                .contains("deepseek-coder")
        );
        let mut md = spm_metadata();
        md.insert("tokenizer.ggml.eos_token_id".into(), Value::U32(99));
        assert!(Vocab::from_metadata(&md).err().unwrap().contains("outside"));
    }
}
