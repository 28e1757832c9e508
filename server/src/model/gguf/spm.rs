//! SentencePiece-style tokenization for GGUF `llama` vocabularies (`tokenizer.ggml.model =
//! "llama"`), as llama.cpp's `llm_tokenizer_spm` does it: spaces become `▁`, the text starts as
//! one symbol per character, and the adjacent pair whose merge is the vocabulary entry with the
//! highest score is merged until no pair is in the vocabulary. Characters left that are not
//! tokens fall back to their UTF-8 bytes (`<0xAB>` tokens), then to the unknown token.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};

pub struct Spm {
    ids: HashMap<String, u32>,
    scores: Vec<f32>,
    byte_tokens: Vec<Option<u32>>,
    unk: Option<u32>,
}

#[derive(PartialEq)]
struct Bigram {
    score: f32,
    left: usize,
    len: usize,
}

impl Eq for Bigram {}

impl Ord for Bigram {
    /// Highest score first; on ties the leftmost pair, as llama.cpp.
    fn cmp(&self, other: &Self) -> Ordering {
        self.score
            .total_cmp(&other.score)
            .then_with(|| other.left.cmp(&self.left))
    }
}

impl PartialOrd for Bigram {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

struct Symbol {
    start: usize,
    len: usize,
    prev: Option<usize>,
    next: Option<usize>,
}

impl Spm {
    pub fn new(tokens: &[String], scores: Vec<f32>, unk: Option<u32>) -> Self {
        let ids = tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (t.clone(), i as u32))
            .collect::<HashMap<_, _>>();
        let byte_tokens = (0..=255u8)
            .map(|b| ids.get(&format!("<0x{b:02X}>")).copied())
            .collect();
        Spm {
            ids,
            scores,
            byte_tokens,
            unk,
        }
    }

    /// Tokens of `text` (already `▁`-escaped), appended to `out`.
    pub fn encode(&self, text: &str, out: &mut Vec<u32>) {
        let mut symbols: Vec<Symbol> = text
            .char_indices()
            .enumerate()
            .map(|(i, (start, c))| Symbol {
                start,
                len: c.len_utf8(),
                prev: i.checked_sub(1),
                next: None,
            })
            .collect();
        let n = symbols.len();
        for (i, s) in symbols.iter_mut().enumerate() {
            s.next = (i + 1 < n).then_some(i + 1);
        }
        let mut queue = BinaryHeap::new();
        let try_add = |queue: &mut BinaryHeap<Bigram>, symbols: &[Symbol], left: usize| {
            let Some(right) = symbols[left].next else {
                return;
            };
            let start = symbols[left].start;
            let len = symbols[left].len + symbols[right].len;
            if let Some(&id) = self.ids.get(&text[start..start + len]) {
                let score = self.scores.get(id as usize).copied().unwrap_or(0.0);
                queue.push(Bigram { score, left, len });
            }
        };
        for i in 0..n.saturating_sub(1) {
            try_add(&mut queue, &symbols, i);
        }
        while let Some(b) = queue.pop() {
            let left = b.left;
            let Some(right) = symbols[left].next else {
                continue;
            };
            // Stale entry: one side has merged with something else since it was queued.
            if symbols[left].len == 0 || symbols[left].len + symbols[right].len != b.len {
                continue;
            }
            symbols[left].len = b.len;
            symbols[right].len = 0;
            symbols[left].next = symbols[right].next;
            if let Some(next) = symbols[right].next {
                symbols[next].prev = Some(left);
            }
            if let Some(prev) = symbols[left].prev {
                try_add(&mut queue, &symbols, prev);
            }
            try_add(&mut queue, &symbols, left);
        }
        let mut i = (n > 0).then_some(0);
        while let Some(s) = i {
            let sym = &symbols[s];
            let piece = &text[sym.start..sym.start + sym.len];
            match self.ids.get(piece) {
                Some(&id) => out.push(id),
                None => {
                    for b in piece.bytes() {
                        if let Some(id) = self.byte_tokens[b as usize].or(self.unk) {
                            out.push(id);
                        }
                    }
                }
            }
            i = sym.next;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spm(vocab: &[(&str, f32)]) -> Spm {
        let tokens: Vec<String> = vocab.iter().map(|(t, _)| t.to_string()).collect();
        Spm::new(&tokens, vocab.iter().map(|(_, s)| *s).collect(), Some(0))
    }

    fn encode(s: &Spm, text: &str) -> Vec<u32> {
        let mut out = Vec::new();
        s.encode(text, &mut out);
        out
    }

    #[test]
    fn merges_highest_scoring_pairs_first() {
        // "▁ab": ▁a (score -1) beats ab (-2), then ▁ab (-0.5) is formed from ▁a + b.
        let s = spm(&[
            ("<unk>", 0.0),
            ("▁", -10.0),
            ("a", -10.0),
            ("b", -10.0),
            ("▁a", -1.0),
            ("ab", -2.0),
            ("▁ab", -0.5),
        ]);
        assert_eq!(encode(&s, "▁ab"), [6]);
        assert_eq!(encode(&s, "ba"), [3, 2]);
        assert_eq!(encode(&s, ""), Vec::<u32>::new());
    }

    #[test]
    fn ties_merge_leftmost_and_unknown_chars_fall_back_to_bytes() {
        let mut vocab = vec![("<unk>", 0.0), ("a", -1.0), ("aa", -1.0)];
        let bytes: Vec<String> = (0..=255u8).map(|b| format!("<0x{b:02X}>")).collect();
        vocab.extend(bytes.iter().map(|b| (b.as_str(), 0.0)));
        let s = spm(&vocab);
        // "aaa": the left pair merges first.
        assert_eq!(encode(&s, "aaa"), [2, 1]);
        // "é" is not a token: its two UTF-8 bytes are.
        let e: Vec<u32> = "é".bytes().map(|b| 3 + u32::from(b)).collect();
        assert_eq!(encode(&s, "aé"), [vec![1], e].concat());
        // Without byte tokens, the unknown token.
        let s = spm(&[("<unk>", 0.0), ("a", -1.0)]);
        assert_eq!(encode(&s, "ab"), [1, 0]);
    }
}
