//! Text generation over real HTTP with the real SmolLM2-135M-Instruct Q4_1: OpenAI chat and
//! completions (streaming and not), KServe generate, stop strings, seeds, errors in OpenAI's
//! shape, metrics, client disconnects, the KV cache budget's bounded wait and 429, and
//! concurrent (batched) requests against the same requests one at a time.

mod common;

use std::time::{Duration, Instant};

use common::TestServer;
use futures::StreamExt;
use serde_json::{Value, json};

async fn start(extra: &[&str]) -> TestServer {
    let dir = common::smollm2_dir();
    let dir = dir.to_str().unwrap().to_string();
    let mut flags = vec![
        "--format",
        "gguf",
        "--model-dir",
        &dir,
        "--model-name",
        "smol",
    ];
    flags.extend_from_slice(extra);
    TestServer::start_ready(&flags).await
}

/// `data:` payloads of a server-sent event stream, in order.
fn sse_payloads(body: &str) -> Vec<String> {
    body.split("\n\n")
        .filter_map(|e| e.strip_prefix("data: "))
        .map(str::to_string)
        .collect()
}

async fn post_text(s: &TestServer, path: &str, body: &Value) -> (u16, String) {
    let r = s.client.post(s.url(path)).json(body).send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.text().await.unwrap())
}

async fn complete(s: &TestServer, prompt: &str, max_tokens: u32) -> (String, String) {
    let (status, v) = s
        .post_json(
            "/v1/completions",
            &json!({"prompt": prompt, "max_tokens": max_tokens, "temperature": 0}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let c = &v["choices"][0];
    (
        c["text"].as_str().unwrap().to_string(),
        c["finish_reason"].as_str().unwrap().to_string(),
    )
}

#[tokio::test]
async fn chat_completion_non_streaming_and_streaming_agree() {
    let s = start(&[]).await;
    let body = json!({"model": "smol", "messages": [{"role": "user", "content": "What is 12 times 7?"}],
        "max_tokens": 8, "temperature": 0});
    let (status, v) = s.post_json("/v1/chat/completions", &body).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["object"], "chat.completion");
    assert!(v["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert_eq!(v["model"], "smol");
    let choice = &v["choices"][0];
    assert_eq!(choice["message"]["role"], "assistant");
    let text = choice["message"]["content"].as_str().unwrap().to_string();
    assert!(!text.is_empty());
    let u = &v["usage"];
    assert_eq!(u["completion_tokens"], 8);
    assert_eq!(choice["finish_reason"], "length");
    assert_eq!(
        u["total_tokens"].as_u64().unwrap(),
        u["prompt_tokens"].as_u64().unwrap() + 8
    );

    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    streamed["stream_options"] = json!({"include_usage": true});
    let (status, text_body) = post_text(&s, "/v1/chat/completions", &streamed).await;
    assert_eq!(status, 200, "{text_body}");
    let events = sse_payloads(&text_body);
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let mut content = String::new();
    let mut finish = None;
    for c in &chunks {
        assert_eq!(c["object"], "chat.completion.chunk");
        if let Some(choice) = c["choices"].get(0) {
            content.push_str(choice["delta"]["content"].as_str().unwrap_or(""));
            if let Some(f) = choice["finish_reason"].as_str() {
                finish = Some(f.to_string());
            }
        }
    }
    assert_eq!(content, text);
    assert_eq!(finish.as_deref(), Some("length"));
    let usage = chunks.last().unwrap();
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(usage["usage"], *u);
    s.stop().await.unwrap();
}

#[tokio::test]
async fn stop_strings_across_token_boundaries() {
    let s = start(&[]).await;
    let (full, _) = complete(&s, "The quick brown fox", 12).await;
    // Greedy: " with a quick brown bear. ..." — "own be" spans " brown" and " bear".
    let cut = full
        .find("own be")
        .expect("the reference continuation changed");
    for stream in [false, true] {
        let body = json!({"prompt": "The quick brown fox", "max_tokens": 12, "temperature": 0,
            "stop": ["zzz", "own be"], "stream": stream});
        let (status, text) = post_text(&s, "/v1/completions", &body).await;
        assert_eq!(status, 200, "{text}");
        let (got, finish) = if stream {
            let mut got = String::new();
            let mut finish = String::new();
            for e in sse_payloads(&text) {
                if e == "[DONE]" {
                    continue;
                }
                let v: Value = serde_json::from_str(&e).unwrap();
                got.push_str(v["choices"][0]["text"].as_str().unwrap());
                if let Some(f) = v["choices"][0]["finish_reason"].as_str() {
                    finish = f.to_string();
                }
            }
            (got, finish)
        } else {
            let v: Value = serde_json::from_str(&text).unwrap();
            (
                v["choices"][0]["text"].as_str().unwrap().to_string(),
                v["choices"][0]["finish_reason"]
                    .as_str()
                    .unwrap()
                    .to_string(),
            )
        };
        assert_eq!(got, full[..cut], "stream={stream}");
        assert_eq!(finish, "stop");
    }
    s.stop().await.unwrap();
}

#[tokio::test]
async fn seeds_make_sampling_deterministic() {
    let s = start(&[]).await;
    let sample = |seed: u64| {
        let body = json!({"prompt": "Once upon a time", "max_tokens": 12, "temperature": 1.0,
            "top_p": 0.95, "seed": seed});
        let s = &s;
        async move {
            let (status, v) = s.post_json("/v1/completions", &body).await;
            assert_eq!(status, 200, "{v}");
            v["choices"][0]["text"].as_str().unwrap().to_string()
        }
    };
    let a = sample(7).await;
    assert_eq!(a, sample(7).await);
    let mut others = Vec::new();
    for seed in [8, 9, 10] {
        others.push(sample(seed).await);
    }
    assert!(
        others.iter().any(|o| *o != a),
        "three other seeds all gave {a:?}"
    );
    s.stop().await.unwrap();
}

#[tokio::test]
async fn kserve_generate_and_generate_stream() {
    let s = start(&[]).await;
    let (want, _) = complete(&s, "The quick brown fox", 8).await;
    let body = json!({"text_input": "The quick brown fox", "parameters": {"max_tokens": 8, "temperature": 0}});
    let (status, v) = s.post_json("/v2/models/smol/generate", &body).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["model_name"], "smol");
    assert_eq!(v["model_version"], "1");
    assert_eq!(v["text_output"], want.as_str());
    assert_eq!(v["finish_reason"], "length");
    let (status, text) = post_text(&s, "/v2/models/smol/generate_stream", &body).await;
    assert_eq!(status, 200, "{text}");
    let events: Vec<Value> = sse_payloads(&text)
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    let joined: String = events
        .iter()
        .map(|e| e["text_output"].as_str().unwrap())
        .collect();
    assert_eq!(joined, want);
    assert_eq!(events.last().unwrap()["finish_reason"], "length");
    assert_eq!(events.last().unwrap()["usage"]["completion_tokens"], 8);
    // Metadata names the generate fields; tensor inference is refused with a pointer.
    let (status, meta) = s.get_json("/v2/models/smol").await;
    assert_eq!(status, 200);
    assert_eq!(meta["inputs"][0]["name"], "text_input");
    let (status, err) = s
        .post_json(
            "/v2/models/smol/infer",
            &json!({"inputs": [{"name": "text_input", "datatype": "BYTES", "shape": [1], "data": ["x"]}]}),
        )
        .await;
    assert_eq!(status, 400);
    assert!(err["error"].as_str().unwrap().contains("generate"), "{err}");
    let (status, models) = s.get_json("/v1/models").await;
    assert_eq!(status, 200);
    assert_eq!(models["data"][0]["id"], "smol");
    s.stop().await.unwrap();
}

#[tokio::test]
async fn bad_requests_get_openai_errors() {
    let s = start(&[]).await;
    let long_prompt = "word ".repeat(9000);
    let msg = |c: &str| json!([{"role": "user", "content": c}]);
    let cases: Vec<(&str, Value, u16, Option<&str>)> = vec![
        (
            "/v1/chat/completions",
            json!({"messages": []}),
            400,
            Some("messages"),
        ),
        (
            "/v1/chat/completions",
            json!({"messages": [{"role": "wizard", "content": "hi"}]}),
            400,
            Some("messages"),
        ),
        (
            "/v1/chat/completions",
            json!({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]}),
            400,
            Some("messages"),
        ),
        (
            "/v1/chat/completions",
            json!({"messages": msg("hi"), "n": 2}),
            400,
            Some("n"),
        ),
        (
            "/v1/chat/completions",
            json!({"messages": msg("hi"), "max_tokens": 0}),
            400,
            Some("max_tokens"),
        ),
        (
            "/v1/chat/completions",
            json!({"messages": msg("hi"), "max_tokens": 1_000_000_000u64}),
            400,
            Some("max_tokens"),
        ),
        (
            "/v1/chat/completions",
            json!({"messages": msg("hi"), "stop": ["a", ""]}),
            400,
            Some("stop"),
        ),
        (
            "/v1/chat/completions",
            json!({"messages": msg("hi"), "stop": 5}),
            400,
            Some("stop"),
        ),
        (
            "/v1/chat/completions",
            json!({"messages": msg("hi"), "temperature": 3}),
            400,
            Some("temperature"),
        ),
        (
            "/v1/chat/completions",
            json!({"messages": msg("hi"), "logprobs": true}),
            400,
            Some("logprobs"),
        ),
        (
            "/v1/chat/completions",
            json!({"messages": msg("hi"), "model": "gpt-4"}),
            404,
            Some("model"),
        ),
        (
            "/v1/chat/completions",
            json!({"messages": msg(&long_prompt)}),
            400,
            Some("messages"),
        ),
        (
            "/v1/completions",
            json!({"prompt": ""}),
            400,
            Some("prompt"),
        ),
        (
            "/v1/completions",
            json!({"prompt": [1, 99999999]}),
            400,
            Some("prompt"),
        ),
        (
            "/v1/completions",
            json!({"prompt": ["a", "b"]}),
            400,
            Some("prompt"),
        ),
        (
            "/v2/models/smol/generate",
            json!({"text_input": "hi", "parameters": {"max_tokens": 0}}),
            400,
            None,
        ),
        (
            "/v2/models/nope/generate",
            json!({"text_input": "hi"}),
            404,
            None,
        ),
    ];
    for (path, body, want, param) in cases {
        let (status, v) = s.post_json(path, &body).await;
        assert_eq!(status, want, "{path} {body}: {v}");
        if path.starts_with("/v1/") {
            let e = &v["error"];
            assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
            assert!(e["type"].is_string(), "{v}");
            assert_eq!(e["param"].as_str(), param, "{path} {body}: {v}");
        } else {
            assert!(v["error"].is_string(), "{v}");
        }
    }
    // Not JSON at all.
    let r = s
        .client
        .post(s.url("/v1/chat/completions"))
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert!(
        v["error"]["message"].as_str().unwrap().contains("JSON"),
        "{v}"
    );
    s.stop().await.unwrap();
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(name) && !l.starts_with('#'))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in\n{text}"))
}

#[tokio::test]
async fn metrics_and_a_disconnect_freeing_its_sequence() {
    let s = start(&[]).await;
    complete(&s, "Hello", 4).await;
    let text = s.metrics_text().await;
    assert!(metric(&text, "sconce_prompt_tokens_total{") >= 1.0);
    assert_eq!(metric(&text, "sconce_generation_tokens_total{"), 4.0);
    assert_eq!(
        metric(&text, "sconce_time_to_first_token_seconds_count{"),
        1.0
    );
    assert_eq!(
        metric(&text, "sconce_inter_token_latency_seconds_count{"),
        3.0
    );
    assert_eq!(metric(&text, "sconce_sequences_running{"), 0.0);
    assert_eq!(metric(&text, "sconce_kv_cache_usage_ratio{"), 0.0);
    assert!(
        text.contains("sconce_requests_total{model=\"smol\",protocol=\"openai\",code=\"200\"} 1")
    );

    // A stream that would run for 4000 tokens; the client reads one event and leaves.
    let r = s
        .client
        .post(s.url("/v1/completions"))
        .json(&json!({"prompt": "Count to a thousand:", "max_tokens": 4000, "temperature": 0, "stream": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let mut body = r.bytes_stream();
    assert!(body.next().await.is_some());
    let running = metric(&s.metrics_text().await, "sconce_sequences_running{");
    assert_eq!(running, 1.0);
    assert!(metric(&s.metrics_text().await, "sconce_kv_cache_usage_ratio{") > 0.0);
    drop(body);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = s.metrics_text().await;
        if metric(&text, "sconce_sequences_running{") == 0.0 {
            assert_eq!(metric(&text, "sconce_kv_cache_usage_ratio{"), 0.0);
            assert!(metric(&text, "sconce_generation_tokens_total{") < 1000.0);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the sequence kept running:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    s.stop().await.unwrap();
}

/// A KV cache of 300 tokens: one 250-token request fills it; the next waits
/// --queue-timeout-ms and gets 429; one that could never fit gets 400 at once.
#[tokio::test]
async fn full_kv_cache_waits_then_refuses() {
    // 23,040 bytes per token: 30 layers × 2 × 192 f16 values.
    let bytes = (23_040 * 300).to_string();
    let s = start(&["--kv-cache-bytes", &bytes, "--queue-timeout-ms", "400"]).await;
    let hold = s
        .client
        .post(s.url("/v1/completions"))
        .json(&json!({"prompt": "Count to a thousand:", "max_tokens": 250, "temperature": 0, "stream": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(hold.status(), 200);
    let started = Instant::now();
    let (status, v) = s
        .post_json(
            "/v1/completions",
            &json!({"prompt": "Hi", "max_tokens": 200}),
        )
        .await;
    assert_eq!(status, 429, "{v}");
    assert_eq!(v["error"]["code"], "rate_limit_exceeded");
    assert!(
        started.elapsed() >= Duration::from_millis(350),
        "{:?}",
        started.elapsed()
    );
    let (status, v) = s
        .post_json(
            "/v1/completions",
            &json!({"prompt": "Hi", "max_tokens": 400}),
        )
        .await;
    assert_eq!(status, 400, "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("KV cache"),
        "{v}"
    );
    drop(hold);
    s.stop().await.unwrap();
}

/// Requests arriving while others run join the batch; each still gets the tokens it gets alone.
#[tokio::test]
async fn concurrent_requests_get_their_sequential_answers() {
    let s = start(&["--max-batch-tokens", "16"]).await;
    let prompts = [
        ("The quick brown fox", 10),
        ("def fibonacci(n):\n", 6),
        ("To make a good cup of tea, first", 12),
        ("Three facts about the Moon:\n1.", 4),
    ];
    let mut alone = Vec::new();
    for (p, n) in prompts {
        alone.push(complete(&s, p, n).await.0);
    }
    let steps_alone = metric(&s.metrics_text().await, "sconce_step_tokens_count{");
    let tasks: Vec<_> = prompts
        .iter()
        .enumerate()
        .map(|(i, (p, n))| {
            let client = s.client.clone();
            let url = s.url("/v1/completions");
            let body = json!({"prompt": p, "max_tokens": n, "temperature": 0});
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(40 * i as u64)).await;
                let v: Value = client
                    .post(url)
                    .json(&body)
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                v["choices"][0]["text"].as_str().unwrap().to_string()
            })
        })
        .collect();
    for (i, t) in tasks.into_iter().enumerate() {
        assert_eq!(t.await.unwrap(), alone[i], "prompt {i}");
    }
    // The same work in fewer model steps: the sequences shared steps.
    let steps_together = metric(&s.metrics_text().await, "sconce_step_tokens_count{") - steps_alone;
    assert!(
        steps_together < steps_alone,
        "{steps_together} steps together vs {steps_alone} alone"
    );
    s.stop().await.unwrap();
}
