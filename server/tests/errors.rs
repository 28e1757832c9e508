//! Every error status, with its JSON `{"error": ...}` body, and bearer-token auth.

mod common;

use common::TestServer;
use serde_json::json;

fn req(rows: usize) -> serde_json::Value {
    json!({"inputs": [{"name": "input", "shape": [rows, 4], "datatype": "FP32", "data": vec![0.5f32; rows * 4]}]})
}

async fn serve(extra: &[&str]) -> (TestServer, tempfile::TempDir) {
    common::serve_mlp(&common::small_mlp(), None, extra).await
}

fn assert_error(code: u16, body: &serde_json::Value, want: u16, contains: &str) {
    assert_eq!(code, want, "{body}");
    let msg = body["error"]
        .as_str()
        .unwrap_or_else(|| panic!("no error field in {body}"));
    assert!(
        msg.contains(contains),
        "{msg:?} does not mention {contains:?}"
    );
}

/// OpenAI's shape: `{"error": {"message", "type", "param", "code"}}`.
fn assert_openai_error(
    code: u16,
    body: &serde_json::Value,
    want: u16,
    contains: &str,
    param: &str,
) {
    assert_eq!(code, want, "{body}");
    let msg = body["error"]["message"]
        .as_str()
        .unwrap_or_else(|| panic!("no error.message in {body}"));
    assert!(
        msg.contains(contains),
        "{msg:?} does not mention {contains:?}"
    );
    assert_eq!(body["error"]["param"], param, "{body}");
    assert!(body["error"]["type"].is_string(), "{body}");
}

#[tokio::test]
async fn bad_requests_are_400() {
    let (s, _dir) = serve(&[]).await;
    let url = "/v2/models/mlp/infer";
    let r = s
        .client
        .post(s.url(url))
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: serde_json::Value = r.json().await.unwrap();
    assert!(body["error"].as_str().unwrap().contains("invalid JSON"));

    let cases = [
        (
            json!({"inputs": [{"name": "input", "shape": [1, 5], "datatype": "FP32", "data": [1, 2, 3, 4, 5]}]}),
            "does not match",
        ),
        (
            json!({"inputs": [{"name": "input", "shape": [2, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]}),
            "needs 8 elements",
        ),
        (
            json!({"inputs": [{"name": "input", "shape": [1, 4], "datatype": "BYTES", "data": ["a", "b", "c", "d"]}]}),
            "numeric",
        ),
        (
            json!({"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": ["a", "b", "c", "d"]}]}),
            "needs numbers",
        ),
        (
            json!({"inputs": [{"name": "input", "shape": [1, 4], "datatype": "INT32", "data": [1.5, 2, 3, 4]}]}),
            "integers",
        ),
        (
            json!({"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP33", "data": [1, 2, 3, 4]}]}),
            "unknown datatype",
        ),
        (
            json!({"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]}),
            "unknown input",
        ),
        (
            json!({"inputs": [{"name": "input", "shape": [-1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]}),
            "negative",
        ),
        (
            json!({"inputs": [{"name": "input", "shape": [2, 4], "datatype": "FP32", "data": [[1, 2, 3, 4], [5, 6]]}]}),
            "ragged",
        ),
        (
            json!({"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32"}]}),
            "no data",
        ),
        (json!({"inputs": []}), "exactly one input"),
        (
            json!({"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}],
                "outputs": [{"name": "probabilities"}]}),
            "unknown output",
        ),
        (
            json!({"inputs": [{"name": "input", "shape": [0, 4], "datatype": "FP32", "data": []}]}),
            "no rows",
        ),
    ];
    for (body, msg) in cases {
        let (code, resp) = s.post_json(url, &body).await;
        assert_error(code, &resp, 400, msg);
    }
    let (code, resp) = s
        .post_json("/v1/models/mlp:predict", &json!({"instances": [[1, 2, 3]]}))
        .await;
    assert_error(code, &resp, 400, "4 numbers");
    let (code, resp) = s
        .post_json("/v1/models/mlp:predict", &json!({"foo": 1}))
        .await;
    assert_error(code, &resp, 400, "instances or inputs");
    let (code, resp) = s.post_json("/v1/embeddings", &json!({"input": "hi"})).await;
    assert_openai_error(code, &resp, 400, "not an embedding model", "model");
    // The server still works after all that.
    assert_eq!(s.post_json(url, &req(1)).await.0, 200);
    s.stop().await.unwrap();
}

#[tokio::test]
async fn unknown_things_are_404() {
    let (s, _dir) = serve(&[]).await;
    let (code, body) = s.post_json("/v2/models/other/infer", &req(1)).await;
    assert_error(code, &body, 404, "unknown model");
    let (code, body) = s
        .post_json("/v2/models/mlp/versions/9/infer", &req(1))
        .await;
    assert_error(code, &body, 404, "no version 9");
    let (code, body) = s.get_json("/v2/models/other").await;
    assert_error(code, &body, 404, "unknown model");
    let (code, body) = s.get_json("/v2/models/other/ready").await;
    assert_error(code, &body, 404, "unknown model");
    let (code, body) = s
        .post_json(
            "/v1/models/other:predict",
            &json!({"instances": [[1, 2, 3, 4]]}),
        )
        .await;
    assert_error(code, &body, 404, "unknown model");
    let (code, body) = s.get_json("/nope").await;
    assert_error(code, &body, 404, "no such route");
    let (code, body) = s.get_json("/v2/models/mlp/infer").await;
    assert_error(code, &body, 405, "method not allowed");
    let (code, body) = s
        .post_json("/v1/embeddings", &json!({"input": "hi", "model": "other"}))
        .await;
    assert_openai_error(code, &body, 404, "unknown model", "model");
    s.stop().await.unwrap();
}

#[tokio::test]
async fn oversized_body_is_413() {
    let (s, _dir) = serve(&["--max-body-bytes", "1000"]).await;
    let (code, body) = s.post_json("/v2/models/mlp/infer", &req(100)).await;
    assert_error(code, &body, 413, "larger than 1000 bytes");
    assert_eq!(s.post_json("/v2/models/mlp/infer", &req(1)).await.0, 200);
    s.stop().await.unwrap();
}

/// A client that sends headers and part of its body, then stalls, gets 408 once
/// `--body-timeout-ms` has passed, and its concurrency slot back.
#[tokio::test]
async fn stalled_body_is_408_and_frees_its_slot() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (s, _dir) = serve(&["--body-timeout-ms", "300", "--max-concurrency", "1"]).await;
    let mut stalled = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    stalled
        .write_all(
            b"POST /v2/models/mlp/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
              Content-Length: 100\r\n\r\n{\"inputs\": [",
        )
        .await
        .unwrap();
    // Read one response: headers, then Content-Length bytes (the connection may stay open).
    let read_response = async {
        let mut answer = Vec::new();
        let mut chunk = [0u8; 1024];
        loop {
            let n = stalled.read(&mut chunk).await.unwrap();
            assert!(n > 0, "connection closed without a full response");
            answer.extend_from_slice(&chunk[..n]);
            let text = String::from_utf8_lossy(&answer).to_string();
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let len: usize = head
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .map(|v| v.trim().parse().unwrap())
                    })
                    .unwrap();
                if body.len() >= len {
                    return (head.to_string(), body[..len].to_string());
                }
            }
        }
    };
    let (head, body) = tokio::time::timeout(std::time::Duration::from_secs(10), read_response)
        .await
        .expect("no answer to a stalled body");
    assert!(head.starts_with("HTTP/1.1 408"), "{head}");
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_error(408, &body, 408, "not received within 300 ms");
    // The only slot is free again.
    let (code, _) = s.post_json("/v2/models/mlp/infer", &req(1)).await;
    assert_eq!(code, 200);
}

/// A client that never finishes its headers is disconnected after `--header-timeout-ms`, and
/// does not hold up anyone else meanwhile.
#[tokio::test]
async fn stalled_headers_are_disconnected() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (s, _dir) = serve(&["--header-timeout-ms", "300"]).await;
    // Each check on a new connection: the server closes idle keep-alive connections on the same
    // 300 ms deadline, so reusing a pooled one could race with its close.
    let infer_on_new_connection = || async {
        let answer = reqwest::Client::new()
            .post(s.url("/v2/models/mlp/infer"))
            .json(&req(1))
            .send()
            .await
            .unwrap();
        answer.status().as_u16()
    };
    let started = std::time::Instant::now();
    let mut stalled = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    stalled
        .write_all(b"POST /v2/models/mlp/infer HTTP/1.1\r\nHost: x\r\nContent-Ty")
        .await
        .unwrap();
    assert_eq!(infer_on_new_connection().await, 200);
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        stalled.read_to_end(&mut rest),
    )
    .await
    .expect("a connection with unfinished headers stayed open");
    let waited = started.elapsed();
    // Closed (EOF or reset), with no request answered, and not before the deadline.
    assert!(closed.is_err() || !String::from_utf8_lossy(&rest).contains("200 OK"));
    assert!(
        waited >= std::time::Duration::from_millis(250),
        "closed after {waited:?}"
    );
    assert_eq!(infer_on_new_connection().await, 200);
    s.stop().await.unwrap();
}

#[tokio::test]
async fn over_capacity_is_429() {
    // One slot, and a batch delay that keeps the first request in the queue a while.
    let (s, _dir) = serve(&[
        "--max-concurrency",
        "1",
        "--max-batch-size",
        "64",
        "--max-batch-delay-ms",
        "1500",
    ])
    .await;
    let client = s.client.clone();
    let url = s.url("/v2/models/mlp/infer");
    let slow = tokio::spawn(async move {
        client
            .post(url)
            .json(&req(1))
            .send()
            .await
            .unwrap()
            .status()
    });
    common::wait_in_flight(&s.client, &s.url(""), 1).await;
    let (code, body) = s.post_json("/v2/models/mlp/infer", &req(1)).await;
    assert_error(code, &body, 429, "at capacity");
    assert_eq!(slow.await.unwrap(), 200);
    let text = s.metrics_text().await;
    assert!(
        text.contains(r#"sconce_requests_total{model="mlp",protocol="v2",code="429"} 1"#),
        "{text}"
    );
    s.stop().await.unwrap();
}

#[tokio::test]
async fn not_loaded_is_503() {
    let (addr, server) = common::unloaded_server().await;
    let client = reqwest::Client::new();
    let get = |p: &str| client.get(format!("http://{addr}{p}")).send();
    assert_eq!(get("/v2/health/live").await.unwrap().status(), 200);
    let r = get("/v2/health/ready").await.unwrap();
    assert_eq!(r.status(), 503);
    let r = get("/v2/models/mlp/ready").await.unwrap();
    assert_eq!(r.status(), 503);
    let r = client
        .post(format!("http://{addr}/v2/models/mlp/infer"))
        .json(&req(1))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    let body: serde_json::Value = r.json().await.unwrap();
    assert!(body["error"].as_str().unwrap().contains("not ready"));
    server.abort();
}

#[tokio::test]
async fn bearer_token_auth() {
    let keydir = tempfile::tempdir().unwrap();
    let keyfile = keydir.path().join("key");
    std::fs::write(&keyfile, "s3cret\n").unwrap();
    let k = keyfile.to_str().unwrap().to_string();
    let (s, _dir) = serve(&["--api-key-file", &k]).await;
    let infer = "/v2/models/mlp/infer";
    let r = s
        .client
        .post(s.url(infer))
        .json(&req(1))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let body: serde_json::Value = r.json().await.unwrap();
    assert!(body["error"].as_str().unwrap().contains("bearer token"));
    // Status of a request with an optional bearer token.
    let status = |method: reqwest::Method, path: &str, token: Option<&str>| {
        let mut r = s.client.request(method.clone(), s.url(path));
        if method == reqwest::Method::POST {
            r = r.json(&req(1));
        }
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        async move { r.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(
        status(reqwest::Method::POST, infer, Some("wrong")).await,
        401
    );
    assert_eq!(
        status(reqwest::Method::POST, infer, Some("s3cret")).await,
        200
    );
    assert_eq!(
        status(reqwest::Method::GET, "/v2/models/mlp", None).await,
        401
    );
    // health and metrics stay open
    for open in ["/v2/health/live", "/v2/health/ready", "/metrics"] {
        assert_eq!(
            status(reqwest::Method::GET, open, None).await,
            200,
            "{open}"
        );
    }
    s.stop().await.unwrap();
}
