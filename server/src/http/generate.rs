//! What the text generation routes (OpenAI chat/completions, KServe generate) share: sampling
//! parameters and their checks, turning a prompt into an engine request, reading the engine's
//! events as text, server-sent events, and the admission layer that holds a
//! `--max-concurrency` slot for as long as a stream runs.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde::Deserialize;
use serde_json::Value;
use tokio::sync::mpsc::UnboundedReceiver;

use super::SharedState;
use super::openai_error::OpenAiError;
use super::track::read_body;
use crate::engine::generate::text::TextStream;
use crate::engine::generate::{
    Event, Finish, Generator, Request as GenRequest, SamplingParams, SubmitError, TextModel,
};
use crate::error::ApiError;

/// Why tensor routes refuse a `gguf` model.
pub const USE_GENERATE: &str = "this model generates text: use POST /v1/chat/completions, /v1/completions or /v2/models/{name}/generate";

/// Most stop strings a request may give (OpenAI's limit).
const MAX_STOPS: usize = 4;

/// Sampling fields as the requests carry them (OpenAI names; KServe's `parameters` too).
#[derive(Debug, Default, Deserialize)]
pub struct SamplingFields {
    pub max_tokens: Option<i64>,
    pub max_completion_tokens: Option<i64>,
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub top_k: Option<i64>,
    pub seed: Option<i64>,
    pub stop: Option<Value>,
    pub n: Option<i64>,
}

/// Checked generation options.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    pub max_tokens: Option<usize>,
    pub sampling: SamplingParams,
    pub stop: Vec<String>,
}

fn bad(param: &'static str, msg: impl Into<String>) -> OpenAiError {
    OpenAiError::param(ApiError::bad(msg), param)
}

/// `stop`: a string or a list of up to 4 non-empty strings.
pub fn stop_strings(v: Option<&Value>) -> Result<Vec<String>, OpenAiError> {
    let msg = "stop must be a string or a list of up to 4 non-empty strings";
    let stops = match v {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) => items
            .iter()
            .map(|i| {
                i.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| bad("stop", msg))
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(bad("stop", msg)),
    };
    if stops.len() > MAX_STOPS || stops.iter().any(String::is_empty) {
        return Err(bad("stop", msg));
    }
    Ok(stops)
}

/// Validates the sampling fields. Defaults are OpenAI's: temperature 1, top_p 1.
pub fn options(f: &SamplingFields) -> Result<Options, OpenAiError> {
    if let Some(n) = f.n
        && n != 1
    {
        return Err(bad(
            "n",
            format!("n = {n} is not supported; only 1 completion per request"),
        ));
    }
    let max_tokens = match f.max_completion_tokens.or(f.max_tokens) {
        None => None,
        Some(m) if m < 1 => {
            return Err(bad(
                "max_tokens",
                format!("max_tokens must be at least 1 (got {m})"),
            ));
        }
        Some(m) => Some(usize::try_from(m).unwrap_or(usize::MAX)),
    };
    let temperature = f.temperature.unwrap_or(1.0);
    if !(0.0..=2.0).contains(&temperature) {
        return Err(bad(
            "temperature",
            format!("temperature must be between 0 and 2 (got {temperature})"),
        ));
    }
    let top_p = f.top_p.unwrap_or(1.0);
    if !(top_p > 0.0 && top_p <= 1.0) {
        return Err(bad(
            "top_p",
            format!("top_p must be in (0, 1] (got {top_p})"),
        ));
    }
    let top_k = match f.top_k {
        None => 0,
        Some(k) if k < 0 => {
            return Err(bad(
                "top_k",
                format!("top_k must be 0 (off) or positive (got {k})"),
            ));
        }
        Some(k) => usize::try_from(k).unwrap_or(usize::MAX),
    };
    Ok(Options {
        max_tokens,
        sampling: SamplingParams {
            temperature: temperature as f32,
            top_p: top_p as f32,
            top_k,
            seed: f.seed.map(|s| s as u64),
        },
        stop: stop_strings(f.stop.as_ref())?,
    })
}

/// The engine request for `prompt`: refused when it cannot fit the context or the KV cache;
/// `max_tokens` defaults to the room left.
pub fn engine_request(
    model: &TextModel,
    prompt: Vec<u32>,
    opts: &Options,
) -> Result<GenRequest, OpenAiError> {
    let limit = model.context_length.min(model.kv_capacity_tokens);
    if prompt.is_empty() {
        return Err(bad("prompt", "the prompt is empty"));
    }
    if prompt.len() >= limit {
        return Err(bad(
            "messages",
            format!(
                "the prompt has {} tokens; this model accepts at most {} (context {}, KV cache {} tokens) including at least 1 generated",
                prompt.len(),
                limit - 1,
                model.context_length,
                model.kv_capacity_tokens
            ),
        ));
    }
    let room = limit - prompt.len();
    let max_tokens = match opts.max_tokens {
        None => room,
        Some(m) if m <= room => m,
        Some(m) => {
            return Err(bad(
                "max_tokens",
                format!(
                    "max_tokens {m} plus the prompt's {} tokens exceeds the limit of {limit} tokens (context {}, KV cache {})",
                    prompt.len(),
                    model.context_length,
                    model.kv_capacity_tokens
                ),
            ));
        }
    };
    Ok(GenRequest {
        prompt,
        max_tokens,
        sampling: opts.sampling,
    })
}

/// The loaded model's generation engine, or 400 for the other formats.
pub fn find_generator<'a>(
    state: &'a SharedState,
    name: &str,
    version: Option<&str>,
) -> Result<&'a Generator, ApiError> {
    let loaded = state.model(name, version)?;
    loaded.engine.generator().ok_or_else(|| {
        ApiError::bad(format!(
            "model {name} does not generate text (format {})",
            loaded.info.format.as_str()
        ))
    })
}

/// A piece of the output: text to send, and the finish reason on the last one.
#[derive(Debug)]
pub struct Piece {
    pub text: String,
    pub finish: Option<&'static str>,
}

/// A running generation read as text.
pub struct Generation {
    events: UnboundedReceiver<Event>,
    text: TextStream,
    model: Arc<TextModel>,
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    done: bool,
}

impl Generation {
    pub fn start(
        generator: &Generator,
        req: GenRequest,
        stop: Vec<String>,
    ) -> Result<Self, ApiError> {
        let prompt_tokens = req.prompt.len();
        let events = generator.submit(req).map_err(|e| match e {
            SubmitError::QueueFull => ApiError::Overloaded("generation queue is full"),
            SubmitError::Stopped => ApiError::Inference("the generation engine has stopped".into()),
        })?;
        Ok(Generation {
            events,
            text: TextStream::new(stop),
            model: generator.model.clone(),
            prompt_tokens,
            completion_tokens: 0,
            done: false,
        })
    }

    /// The next non-empty piece (or the last one); `None` after the last.
    pub async fn next(&mut self) -> Option<Result<Piece, ApiError>> {
        if self.done {
            return None;
        }
        loop {
            let piece = match self.events.recv().await {
                Some(Event::Token(t)) => {
                    self.completion_tokens += 1;
                    let d = self.text.push(self.model.vocab.piece(t));
                    Piece {
                        text: d.text,
                        finish: d.stopped.then_some("stop"),
                    }
                }
                Some(Event::Finished(f)) => Piece {
                    text: self.text.finish(),
                    finish: Some(match f {
                        Finish::EndOfSequence => "stop",
                        Finish::Length => "length",
                    }),
                },
                Some(Event::Overloaded) => {
                    self.done = true;
                    return Some(Err(ApiError::Overloaded(
                        "no KV cache space or batch slot freed up within --queue-timeout-ms",
                    )));
                }
                Some(Event::Failed(e)) => {
                    self.done = true;
                    return Some(Err(ApiError::Inference(e)));
                }
                None => {
                    self.done = true;
                    return Some(Err(ApiError::Inference(
                        "the generation engine stopped".into(),
                    )));
                }
            };
            if piece.finish.is_some() {
                // Dropping the receiver frees the sequence at the next step if the engine has
                // not finished it (a stop string).
                self.done = true;
                self.events.close();
                return Some(Ok(piece));
            }
            if !piece.text.is_empty() {
                return Some(Ok(piece));
            }
        }
    }

    /// Runs to the end: the whole text and the finish reason.
    pub async fn collect(mut self) -> Result<(String, &'static str, Self), ApiError> {
        let mut out = String::new();
        while let Some(p) = self.next().await {
            let p = p?;
            out.push_str(&p.text);
            if let Some(f) = p.finish {
                return Ok((out, f, self));
            }
        }
        Err(ApiError::Inference(
            "generation ended without a finish".into(),
        ))
    }
}

/// One server-sent event carrying `json`.
pub fn sse_data(json: &impl serde::Serialize) -> Bytes {
    let mut out = b"data: ".to_vec();
    // Serializing our own response types cannot fail.
    let _ = serde_json::to_writer(&mut out, json);
    out.extend_from_slice(b"\n\n");
    Bytes::from(out)
}

/// A `text/event-stream` response from a stream of ready-made events.
pub fn sse_response(events: impl futures::Stream<Item = Bytes> + Send + 'static) -> Response {
    let mut resp = Body::from_stream(events.map(Ok::<_, Infallible>)).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    resp
}

/// Held while a generation request is answered: its concurrency slot, the in-flight gauge and
/// its request metrics, recorded when a stream ends (or its client leaves), not when headers
/// are sent.
struct InFlight {
    state: SharedState,
    protocol: &'static str,
    status: u16,
    started: Instant,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.state.metrics.in_flight().dec();
        self.state.metrics.record_request(
            self.protocol,
            self.status,
            self.started.elapsed().as_secs_f64(),
        );
    }
}

async fn track(
    state: SharedState,
    protocol: &'static str,
    openai: bool,
    req: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let error = |e: ApiError| match openai {
        true => OpenAiError::from(e).into_response(),
        false => e.into_response(),
    };
    // The body first, as for every inference route: a slow upload holds no slot.
    let req = match read_body(&state, req).await {
        Ok(req) => req,
        Err(e) => {
            let resp = error(e);
            state.metrics.record_request(
                protocol,
                resp.status().as_u16(),
                started.elapsed().as_secs_f64(),
            );
            return resp;
        }
    };
    let Ok(permit) = state.limiter.clone().try_acquire_owned() else {
        let resp = error(ApiError::Overloaded("too many concurrent requests"));
        state.metrics.record_request(
            protocol,
            resp.status().as_u16(),
            started.elapsed().as_secs_f64(),
        );
        return resp;
    };
    state.metrics.in_flight().inc();
    let resp = next.run(req).await;
    let guard = InFlight {
        state,
        protocol,
        status: resp.status().as_u16(),
        started,
        _permit: permit,
    };
    let streaming = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
    if !streaming {
        return resp;
    }
    let (parts, body) = resp.into_parts();
    let body = Body::from_stream(body.into_data_stream().map(move |chunk| {
        let _held = &guard;
        chunk
    }));
    Response::from_parts(parts, body)
}

pub async fn track_openai(State(s): State<SharedState>, req: Request, next: Next) -> Response {
    track(s, "openai", true, req, next).await
}

pub async fn track_v2(State(s): State<SharedState>, req: Request, next: Next) -> Response {
    track(s, "v2", false, req, next).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fields(v: Value) -> SamplingFields {
        serde_json::from_value(v).unwrap()
    }

    fn err(v: Value) -> String {
        let e = options(&fields(v)).unwrap_err();
        format!("{} [{}]", e.error, e.param.unwrap_or(""))
    }

    #[test]
    fn defaults_and_values() {
        let o = options(&fields(json!({}))).unwrap();
        assert_eq!(o.max_tokens, None);
        assert_eq!(o.sampling, SamplingParams::default());
        assert!(o.stop.is_empty());
        let o = options(&fields(json!({"max_tokens": 5, "max_completion_tokens": 7,
            "temperature": 0, "top_p": 0.5, "top_k": 40, "seed": -1, "stop": "\n", "n": 1})))
        .unwrap();
        assert_eq!(o.max_tokens, Some(7));
        assert_eq!(o.sampling.temperature, 0.0);
        assert_eq!(o.sampling.top_k, 40);
        assert_eq!(o.sampling.seed, Some(u64::MAX));
        assert_eq!(o.stop, ["\n"]);
    }

    #[test]
    fn refusals_name_the_parameter() {
        assert!(err(json!({"max_tokens": 0})).contains("[max_tokens]"));
        assert!(err(json!({"n": 2})).contains("[n]"));
        assert!(err(json!({"temperature": 2.5})).contains("[temperature]"));
        assert!(err(json!({"top_p": 0})).contains("[top_p]"));
        assert!(err(json!({"top_k": -1})).contains("[top_k]"));
        for stop in [
            json!(""),
            json!(["a", ""]),
            json!([1]),
            json!(3),
            json!(["a", "b", "c", "d", "e"]),
        ] {
            assert!(err(json!({"stop": stop})).contains("[stop]"), "{stop}");
        }
        assert_eq!(stop_strings(Some(&json!(["a", "b"]))).unwrap(), ["a", "b"]);
        assert!(stop_strings(Some(&Value::Null)).unwrap().is_empty());
    }
}
