//! OpenAI `POST /v1/chat/completions`, `POST /v1/completions` (streaming or not) and
//! for `gguf` models (`GET /v1/models` is in `openai.rs`). Chat messages go through the model's own chat template.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::generate::{
    Generation, Options, Piece, SamplingFields, engine_request, find_generator, options, sse_data,
    sse_response,
};
use super::openai_error::{AboutParam, OpenAiError};
use super::{SharedState, body, parse_json};
use crate::error::ApiError;
use crate::model::gguf::Message;

type Result<T> = std::result::Result<T, OpenAiError>;

#[derive(Deserialize)]
#[serde(untagged)]
enum Content {
    Text(String),
    Parts(Vec<ContentPart>),
}

#[derive(Deserialize)]
struct ContentPart {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    text: Option<String>,
}

#[derive(Deserialize)]
struct ChatMessage {
    role: String,
    #[serde(default)]
    content: Option<Content>,
}

#[derive(Deserialize)]
struct StreamOptions {
    #[serde(default)]
    include_usage: bool,
}

/// Fields both endpoints take; the unsupported ones are refused rather than ignored.
#[derive(Deserialize)]
struct Common {
    model: Option<String>,
    #[serde(flatten)]
    sampling: SamplingFields,
    #[serde(default)]
    stream: bool,
    stream_options: Option<StreamOptions>,
    presence_penalty: Option<f64>,
    frequency_penalty: Option<f64>,
    logprobs: Option<Value>,
    logit_bias: Option<serde_json::Map<String, Value>>,
    tools: Option<Vec<Value>>,
    response_format: Option<Value>,
    echo: Option<bool>,
    suffix: Option<String>,
    best_of: Option<i64>,
}

#[derive(Deserialize)]
struct ChatRequest {
    messages: Vec<ChatMessage>,
    #[serde(flatten)]
    common: Common,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Prompt {
    Text(String),
    Texts(Vec<String>),
    Tokens(Vec<u32>),
}

#[derive(Deserialize)]
struct CompletionRequest {
    prompt: Prompt,
    #[serde(flatten)]
    common: Common,
}

fn unsupported(param: &'static str, what: &str) -> OpenAiError {
    OpenAiError::param(ApiError::bad(format!("{what} is not supported")), param)
}

fn check_common(c: &Common) -> Result<Options> {
    if c.presence_penalty.is_some_and(|p| p != 0.0) {
        return Err(unsupported("presence_penalty", "presence_penalty"));
    }
    if c.frequency_penalty.is_some_and(|p| p != 0.0) {
        return Err(unsupported("frequency_penalty", "frequency_penalty"));
    }
    if matches!(&c.logprobs, Some(v) if !v.is_null() && *v != Value::Bool(false)) {
        return Err(unsupported("logprobs", "logprobs"));
    }
    if c.logit_bias.as_ref().is_some_and(|m| !m.is_empty()) {
        return Err(unsupported("logit_bias", "logit_bias"));
    }
    if c.tools.as_ref().is_some_and(|t| !t.is_empty()) {
        return Err(unsupported("tools", "tool calling"));
    }
    if matches!(&c.response_format, Some(f) if f.get("type").and_then(Value::as_str) != Some("text"))
    {
        return Err(unsupported(
            "response_format",
            "a response_format other than text",
        ));
    }
    if c.echo == Some(true) {
        return Err(unsupported("echo", "echo"));
    }
    if c.suffix.is_some() {
        return Err(unsupported("suffix", "suffix"));
    }
    if c.best_of.is_some_and(|b| b != 1) {
        return Err(unsupported("best_of", "best_of other than 1"));
    }
    options(&c.sampling)
}

/// The template's view of the messages: text content only, `developer` as `system`.
fn template_messages(messages: Vec<ChatMessage>) -> Result<Vec<Message>> {
    if messages.is_empty() {
        return Err(OpenAiError::param(
            ApiError::bad("messages must not be empty"),
            "messages",
        ));
    }
    messages
        .into_iter()
        .map(|m| {
            let role = match m.role.as_str() {
                "system" | "user" | "assistant" => m.role,
                "developer" => "system".to_string(),
                other => {
                    return Err(OpenAiError::param(
                        ApiError::bad(format!(
                            "unknown role {other:?}: use system, developer, user or assistant"
                        )),
                        "messages",
                    ));
                }
            };
            let content = match m.content {
                None => String::new(),
                Some(Content::Text(t)) => t,
                Some(Content::Parts(parts)) => {
                    let mut text = String::new();
                    for p in parts {
                        match (p.kind.as_str(), p.text) {
                            ("text", Some(t)) => text.push_str(&t),
                            (kind, _) => {
                                return Err(OpenAiError::param(
                                    ApiError::bad(format!(
                                        "content part {kind:?} is not supported: this model reads text"
                                    )),
                                    "messages",
                                ));
                            }
                        }
                    }
                    text
                }
            };
            Ok(Message { role, content })
        })
        .collect()
}

static IDS: AtomicU64 = AtomicU64::new(0);

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// `chatcmpl-…` / `cmpl-…`: unique in this process and across restarts.
fn new_id(prefix: &str) -> String {
    let n = IDS.fetch_add(1, Ordering::Relaxed);
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0);
    format!("{prefix}-{t:x}{n:06x}")
}

#[derive(Serialize, Clone, Copy)]
struct Usage {
    prompt_tokens: usize,
    completion_tokens: usize,
    total_tokens: usize,
}

fn usage(g: &Generation) -> Usage {
    Usage {
        prompt_tokens: g.prompt_tokens,
        completion_tokens: g.completion_tokens,
        total_tokens: g.prompt_tokens + g.completion_tokens,
    }
}

/// Which endpoint is answering: it decides the JSON shapes.
#[derive(Clone, Copy)]
enum Kind {
    Chat,
    Completion,
}

/// The parts every response and chunk carries.
#[derive(Clone)]
struct Header {
    id: String,
    created: u64,
    model: String,
    kind: Kind,
}

impl Header {
    fn whole(&self, text: String, finish: &str, usage: Usage) -> Value {
        let choice = match self.kind {
            Kind::Chat => json!({"index": 0, "message": {"role": "assistant", "content": text},
                "logprobs": null, "finish_reason": finish}),
            Kind::Completion => {
                json!({"index": 0, "text": text, "logprobs": null, "finish_reason": finish})
            }
        };
        json!({"id": self.id, "object": self.object(false), "created": self.created,
            "model": self.model, "system_fingerprint": null, "choices": [choice], "usage": usage})
    }

    fn object(&self, chunk: bool) -> &'static str {
        match (self.kind, chunk) {
            (Kind::Chat, false) => "chat.completion",
            (Kind::Chat, true) => "chat.completion.chunk",
            (Kind::Completion, _) => "text_completion",
        }
    }

    /// A stream chunk with `delta` (chat) or `text` (completions).
    fn chunk(&self, delta: Value, finish: Option<&str>, with_usage: bool) -> Value {
        let choice = match self.kind {
            Kind::Chat => {
                json!({"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish})
            }
            Kind::Completion => json!({"index": 0, "text": delta.get("content").cloned()
                .unwrap_or(json!("")), "logprobs": null, "finish_reason": finish}),
        };
        let mut v = json!({"id": self.id, "object": self.object(true), "created": self.created,
            "model": self.model, "system_fingerprint": null, "choices": [choice]});
        if with_usage {
            v["usage"] = Value::Null;
        }
        v
    }
}

async fn respond(
    header: Header,
    mut g: Generation,
    stream: bool,
    include_usage: bool,
) -> Result<Response> {
    if !stream {
        let (text, finish, g) = g.collect().await.map_err(OpenAiError::from)?;
        let u = usage(&g);
        return Ok(Json(header.whole(text, finish, u)).into_response());
    }
    // The first piece before the headers: a request refused in the queue still gets its 429.
    let first = match g.next().await {
        Some(p) => p.map_err(OpenAiError::from)?,
        None => return Err(ApiError::Inference("generation ended before it began".into()).into()),
    };
    let mut opening = Vec::new();
    if let Kind::Chat = header.kind {
        opening.push(sse_data(&header.chunk(
            json!({"role": "assistant", "content": ""}),
            None,
            include_usage,
        )));
    }
    let state = (g, Some(first), opening, false);
    let events = futures::stream::unfold(state, move |(mut g, pending, mut queued, ended)| {
        let header = header.clone();
        async move {
            if !queued.is_empty() {
                let e = queued.remove(0);
                return Some((e, (g, pending, queued, ended)));
            }
            if ended {
                return None;
            }
            let piece = match pending {
                Some(p) => Some(Ok(p)),
                None => g.next().await,
            };
            match piece {
                Some(Ok(Piece { text, finish })) => {
                    if !text.is_empty() {
                        queued.push(sse_data(&header.chunk(
                            json!({"content": text}),
                            None,
                            include_usage,
                        )));
                    }
                    if let Some(f) = finish {
                        queued.push(sse_data(&header.chunk(json!({}), Some(f), include_usage)));
                        if include_usage {
                            let mut u = header.chunk(json!({}), None, true);
                            u["choices"] = json!([]);
                            u["usage"] = json!(usage(&g));
                            queued.push(sse_data(&u));
                        }
                        queued.push(Bytes::from_static(b"data: [DONE]\n\n"));
                    }
                    let e = queued.remove(0);
                    Some((e, (g, None, queued, finish.is_some())))
                }
                Some(Err(e)) => {
                    let body = OpenAiError::from(e).body();
                    Some((sse_data(&body), (g, None, queued, true)))
                }
                None => None,
            }
        }
    });
    Ok(sse_response(events))
}

/// Starts the generation of `tokens` and answers it (both endpoints end here).
async fn generate(
    header: Header,
    generator: &crate::engine::generate::Generator,
    tokens: Vec<u32>,
    opts: Options,
    common: &Common,
) -> Result<Response> {
    let request = engine_request(&generator.model, tokens, &opts)?;
    let g = Generation::start(generator, request, opts.stop)?;
    let include_usage = common
        .stream_options
        .as_ref()
        .is_some_and(|o| o.include_usage);
    respond(header, g, common.stream, include_usage).await
}

fn header(state: &SharedState, requested: Option<&str>, kind: Kind) -> Result<Header> {
    let model = state.model_name.clone();
    if let Some(r) = requested
        && r != model
    {
        return Err(OpenAiError::param(
            ApiError::NotFound(format!(
                "the model {r:?} does not exist; this server serves {model:?}"
            )),
            "model",
        ));
    }
    let prefix = match kind {
        Kind::Chat => "chatcmpl",
        Kind::Completion => "cmpl",
    };
    Ok(Header {
        id: new_id(prefix),
        created: now(),
        model,
        kind,
    })
}

pub async fn chat_completions(
    State(s): State<SharedState>,
    raw: std::result::Result<Bytes, BytesRejection>,
) -> Result<Response> {
    let raw = body(raw)?;
    let req: ChatRequest = parse_json(&raw)?;
    let header = header(&s, req.common.model.as_deref(), Kind::Chat)?;
    let generator = find_generator(&s, &s.model_name, None).param("model")?;
    let opts = check_common(&req.common)?;
    let messages = template_messages(req.messages)?;
    let template = generator.model.template.as_ref().ok_or_else(|| {
        OpenAiError::from(ApiError::bad(
            "this model has no chat template (tokenizer.chat_template): use /v1/completions",
        ))
    })?;
    let prompt = template
        .render(&messages)
        .map_err(|e| OpenAiError::param(ApiError::bad(e), "messages"))?;
    let tokens = generator
        .model
        .vocab
        .encode(&prompt)
        .map_err(|e| ApiError::bad(format!("tokenizing the prompt: {e}")))?;
    generate(header, generator, tokens, opts, &req.common).await
}

pub async fn completions(
    State(s): State<SharedState>,
    raw: std::result::Result<Bytes, BytesRejection>,
) -> Result<Response> {
    let raw = body(raw)?;
    let req: CompletionRequest = parse_json(&raw)?;
    let header = header(&s, req.common.model.as_deref(), Kind::Completion)?;
    let generator = find_generator(&s, &s.model_name, None).param("model")?;
    let opts = check_common(&req.common)?;
    let vocab = &generator.model.vocab;
    let tokens = match req.prompt {
        Prompt::Text(t) => vocab.encode(&t),
        Prompt::Texts(mut t) if t.len() == 1 => vocab.encode(&t.remove(0)),
        Prompt::Texts(t) => {
            return Err(OpenAiError::param(
                ApiError::bad(format!("{} prompts in one request; give 1", t.len())),
                "prompt",
            ));
        }
        Prompt::Tokens(ids) => match ids.iter().find(|&&t| t as usize >= vocab.len()) {
            Some(bad) => Err(format!(
                "token {bad} is outside the vocabulary of {}",
                vocab.len()
            )),
            None => Ok(ids),
        },
    }
    .map_err(|e| OpenAiError::param(ApiError::bad(format!("prompt: {e}")), "prompt"))?;
    generate(header, generator, tokens, opts, &req.common).await
}
