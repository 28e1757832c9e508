//! SmolLM2-135M-Instruct Q4_1 against llama.cpp: the chat template renders the prompts as
//! jinja2 did, the tokenizer gives llama.cpp's prompt tokens, and greedy decoding gives
//! llama.cpp's tokens (tests/fixtures/smollm2_reference.json, made by
//! make_smollm2_reference.py with llama-cpp-python). Then batched decoding — sequences joining
//! and leaving at different steps, prompts read in chunks — against one sequence at a time.
//!
//! The server computes what llama.cpp's CPU backend computes, bit for bit (quantized products
//! `qmatmul.rs`, attention `attention.rs`, the rest `ops.rs`): the logits of every step equal
//! llama.cpp's exactly, so the continuations are identical even where llama.cpp itself picks
//! its token by a few hundredths of a logit (several of these prompts do). The issue's
//! criterion is weaker — every first token identical and at least 4 of 5 continuations — and
//! is what fails first if the arithmetic drifts; the exact logits are checked too, and any
//! divergence is printed with both margins.

mod common;

use sconce_server::engine::generate::plan::step_tokens;
use sconce_server::engine::generate::sampler::argmax;
use sconce_server::model::GgufModel;
use sconce_server::model::gguf::{KvCache, Message, SeqStep};
use serde::Deserialize;

#[derive(Deserialize)]
struct Reference {
    sha256: String,
    cases: Vec<Case>,
    single_token: Single,
}

#[derive(Deserialize)]
struct Single {
    tokens: Vec<u32>,
    logits: std::collections::BTreeMap<u32, f64>,
}

#[derive(Deserialize)]
struct Case {
    name: String,
    messages: Option<Vec<RefMessage>>,
    prompt: String,
    prompt_tokens: Vec<u32>,
    tokens: Vec<u32>,
    /// Per step: best token, its logit, second token, its logit.
    top2: Vec<(u32, f64, u32, f64)>,
}

#[derive(Deserialize)]
struct RefMessage {
    role: String,
    content: String,
}

fn reference() -> Reference {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/smollm2_reference.json"
    );
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn load() -> GgufModel {
    let dir = common::smollm2_dir();
    GgufModel::load(&dir).unwrap()
}

/// Greedy tokens of one sequence alone (whole prompt in one step), with each step's logits.
fn greedy(model: &GgufModel, prompt: &[u32], steps: usize) -> (Vec<u32>, Vec<Vec<f32>>) {
    let mut cache = KvCache::new(&model.llama.cfg, prompt.len(), prompt.len() + steps);
    let mut tokens = Vec::new();
    let mut all = Vec::new();
    let mut input = prompt.to_vec();
    for _ in 0..steps {
        let logits = model
            .llama
            .step(&mut [SeqStep {
                tokens: &input,
                cache: &mut cache,
                logits: true,
            }])
            .unwrap()
            .remove(0);
        let t = argmax(&logits);
        tokens.push(t);
        all.push(logits);
        if model.vocab.is_eog(t) {
            break;
        }
        input = vec![t];
    }
    (tokens, all)
}

fn top2(logits: &[f32]) -> (u32, f32, u32, f32) {
    let a = argmax(logits);
    let mut b = if a == 0 { 1 } else { 0 };
    for (i, v) in logits.iter().enumerate() {
        if i as u32 != a && *v > logits[b as usize] {
            b = i as u32;
        }
    }
    (a, logits[a as usize], b, logits[b as usize])
}

#[test]
fn greedy_decoding_matches_llama_cpp() {
    let reference = reference();
    let model = load();
    let dir = common::smollm2_dir();
    let file = sconce_server::model::gguf::find_file(&dir).unwrap();
    assert_eq!(
        sconce_server::fetch::sha256_file(&file).unwrap(),
        reference.sha256,
        "the fixture was made from another file"
    );
    let template = model
        .template
        .as_ref()
        .expect("SmolLM2 ships a chat template");
    let mut identical = 0;
    let mut exact_steps = 0;
    for case in &reference.cases {
        if let Some(messages) = &case.messages {
            let messages: Vec<Message> = messages
                .iter()
                .map(|m| Message {
                    role: m.role.clone(),
                    content: m.content.clone(),
                })
                .collect();
            assert_eq!(
                template.render(&messages).unwrap(),
                case.prompt,
                "{}",
                case.name
            );
        }
        let prompt = model.vocab.encode(&case.prompt).unwrap();
        assert_eq!(prompt, case.prompt_tokens, "{}: prompt tokens", case.name);
        let (tokens, logits) = greedy(&model, &prompt, case.tokens.len());
        assert_eq!(tokens[0], case.tokens[0], "{}: first token", case.name);
        let agree = tokens
            .iter()
            .zip(&case.tokens)
            .take_while(|(a, b)| a == b)
            .count();
        // Up to the first divergence the inputs are the same, so the logits must be too. (The
        // fixture's numbers are f32 values; serde_json may parse them 1 f64 ulp off, which the
        // conversion back to f32 undoes.)
        for (step, l) in logits.iter().enumerate().take(agree) {
            let (a, la, b, lb) = top2(l);
            let (ra, rla, rb, rlb) = case.top2[step];
            assert_eq!(
                (a, la, b, lb),
                (ra, rla as f32, rb, rlb as f32),
                "{}: step {step}: top-2 logits differ from llama.cpp's",
                case.name
            );
            exact_steps += 1;
        }
        if agree == case.tokens.len() && tokens.len() == case.tokens.len() {
            identical += 1;
            eprintln!("{}: {} tokens identical", case.name, tokens.len());
        } else {
            let i = agree;
            let (ours_a, la, ours_b, lb) = top2(&logits[i]);
            let (ref_a, ra, ref_b, rb) = case.top2[i];
            eprintln!(
                "{}: first divergence at token {i}: sconce {ours_a} ({la:.4}) over {ours_b} ({lb:.4}), margin {:.4}; llama.cpp {ref_a} ({ra:.4}) over {ref_b} ({rb:.4}), margin {:.4}",
                case.name,
                la - lb,
                ra - rb
            );
        }
    }
    eprintln!(
        "{identical} of {} continuations identical to llama.cpp's; top-2 logits bit-identical at all {exact_steps} steps before any divergence",
        reference.cases.len()
    );
    assert_eq!(reference.cases.len(), 5);
    assert!(
        identical >= 4,
        "only {identical} of 5 continuations identical to llama.cpp's"
    );
}

/// One token (no attention mixing): the same logits as llama.cpp, bit for bit.
#[test]
fn single_token_logits_equal_llama_cpps() {
    let reference = reference();
    let model = load();
    let s = &reference.single_token;
    let (_, logits) = greedy(&model, &s.tokens, 1);
    for (id, want) in &s.logits {
        let got = logits[0][*id as usize];
        assert_eq!(got, *want as f32, "token {id}: {got} vs llama.cpp {want}");
    }
}

/// Sequences join at different steps, read their prompts in chunks of at most 7 tokens (shared
/// with the decodes of the others), generate different numbers of tokens and leave: each must
/// get exactly the tokens it gets alone.
#[test]
fn batched_decoding_equals_one_sequence_at_a_time() {
    let reference = reference();
    let model = load();
    let lengths = [12usize, 5, 9, 16, 3];
    let joins = [0usize, 1, 1, 4, 9];
    let prompts: Vec<Vec<u32>> = reference
        .cases
        .iter()
        .map(|c| c.prompt_tokens.clone())
        .collect();
    let alone: Vec<Vec<u32>> = prompts
        .iter()
        .zip(lengths)
        .map(|(p, n)| greedy(&model, p, n).0)
        .collect();

    struct Seq {
        prompt: Vec<u32>,
        cache: KvCache,
        out: Vec<u32>,
        want: usize,
    }
    let mut running: Vec<(usize, Seq)> = Vec::new();
    let mut done: Vec<Option<Vec<u32>>> = vec![None; prompts.len()];
    let mut step = 0;
    while done.iter().any(Option::is_none) {
        for (i, p) in prompts.iter().enumerate() {
            if joins[i] == step {
                running.push((
                    i,
                    Seq {
                        prompt: p.clone(),
                        cache: KvCache::new(&model.llama.cfg, p.len(), p.len() + lengths[i]),
                        out: Vec::new(),
                        want: lengths[i],
                    },
                ));
            }
        }
        step += 1;
        if running.is_empty() {
            continue;
        }
        let left: Vec<usize> = running
            .iter()
            .map(|(_, s)| s.prompt.len().saturating_sub(s.cache.len()))
            .collect();
        let take = step_tokens(&left, 7);
        let mut steps = Vec::new();
        let mut sampled = Vec::new();
        for ((k, (_, s)), &n) in running.iter_mut().enumerate().zip(&take) {
            if n == 0 {
                continue;
            }
            let at = s.cache.len();
            let (tokens, logits) = if at >= s.prompt.len() {
                (std::slice::from_ref(s.out.last().unwrap()), true)
            } else {
                (&s.prompt[at..at + n], at + n == s.prompt.len())
            };
            if logits {
                sampled.push(k);
            }
            steps.push(SeqStep {
                tokens,
                cache: &mut s.cache,
                logits,
            });
        }
        let logits = model.llama.step(&mut steps).unwrap();
        drop(steps);
        assert_eq!(logits.len(), sampled.len());
        for (k, l) in sampled.iter().zip(&logits) {
            running[*k].1.out.push(argmax(l));
        }
        running.retain_mut(|(i, s)| {
            let finished =
                s.out.len() >= s.want || s.out.last().is_some_and(|t| model.vocab.is_eog(*t));
            if finished {
                done[*i] = Some(std::mem::take(&mut s.out));
            }
            !finished
        });
    }
    for (i, got) in done.into_iter().enumerate() {
        assert_eq!(got.unwrap(), alone[i], "sequence {i}");
    }
}
