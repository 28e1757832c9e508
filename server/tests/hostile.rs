//! Hostile and broken clients: stalled uploads must not take inference capacity, and requests
//! hyper refuses before routing (malformed request line, oversized headers, conflicting
//! Content-Length) or the router cannot decode (bad percent-encoding) get a JSON error and are
//! counted in `sconce_http_rejections_total`.

mod common;

use std::time::Duration;

use common::TestServer;
use common::raw::{read_response, send_raw};
use serde_json::json;
use tokio::io::AsyncWriteExt;

fn req(rows: usize) -> serde_json::Value {
    json!({"inputs": [{"name": "input", "shape": [rows, 4], "datatype": "FP32", "data": vec![0.5f32; rows * 4]}]})
}

async fn serve(extra: &[&str]) -> (TestServer, tempfile::TempDir) {
    common::serve_mlp(&common::small_mlp(), None, extra).await
}

/// The value of the metric line starting with `prefix` (0 when absent).
fn metric(text: &str, prefix: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .map_or(0.0, |v| v.parse().unwrap())
}

/// As many stalled uploads as `--max-concurrency`: they wait for their bodies outside
/// admission, so every normal request still gets 200 while they hang.
#[tokio::test]
async fn stalled_uploads_do_not_take_inference_slots() {
    const N: usize = 4;
    let n = N.to_string();
    let (s, _dir) = serve(&["--max-concurrency", &n, "--body-timeout-ms", "30000"]).await;
    let mut stalled = Vec::new();
    for kind in 0..N + 2 {
        let mut c = tokio::net::TcpStream::connect(s.addr).await.unwrap();
        // Half announce their length, half are chunked; all send the start of a body and stop.
        let head = if kind % 2 == 0 {
            "POST /v2/models/mlp/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
             Content-Length: 100000\r\n\r\n{\"inputs\": ["
        } else {
            "POST /v1/models/mlp:predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n\
             5\r\n{\"ins\r\n"
        };
        c.write_all(head.as_bytes()).await.unwrap();
        stalled.push(c);
    }
    // Give the server time to start reading every stalled body.
    tokio::time::sleep(Duration::from_millis(300)).await;
    for _ in 0..20 {
        let (code, body) = s.post_json("/v2/models/mlp/infer", &req(1)).await;
        assert_eq!(code, 200, "{body}");
        let (code, body) = s
            .post_json(
                "/v1/models/mlp:predict",
                &json!({"instances": [[1, 2, 3, 4]]}),
            )
            .await;
        assert_eq!(code, 200, "{body}");
    }
    // Concurrent requests up to the limit are admitted too.
    let body = req(2);
    let answers =
        futures::future::join_all((0..N).map(|_| s.post_json("/v2/models/mlp/infer", &body))).await;
    for (code, body) in answers {
        assert_eq!(code, 200, "{body}");
    }
    let text = s.metrics_text().await;
    assert_eq!(
        metric(&text, "sconce_requests_in_flight{"),
        0.0,
        "stalled uploads count as in flight:\n{text}"
    );
    assert_eq!(
        metric(
            &text,
            r#"sconce_requests_total{model="mlp",protocol="v2",code="429"}"#
        ),
        0.0,
        "{text}"
    );
    drop(stalled);
    s.stop().await.unwrap();
}

/// Requests refused before routing answer JSON with the right status, and are counted.
#[tokio::test]
async fn http_layer_rejections_are_json_and_counted() {
    let (s, _dir) = serve(&[]).await;
    let many_headers: String = (0..150).map(|i| format!("X-H{i}: v\r\n")).collect();
    let huge_header = format!("X-Big: {}\r\n", "a".repeat(600_000));
    let cases: Vec<(&str, String, u16, &str, &str)> = vec![
        (
            "malformed request line",
            "GARBAGE\r\n\r\n".into(),
            400,
            "malformed",
            "malformed_request",
        ),
        (
            "bad HTTP version",
            "GET /v2/health/live HTTP/7.1\r\nHost: x\r\n\r\n".into(),
            400,
            "malformed",
            "malformed_request",
        ),
        (
            "conflicting Content-Length",
            "POST /v2/models/mlp/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\
             Content-Length: 6\r\n\r\nhello!"
                .into(),
            400,
            "malformed",
            "malformed_request",
        ),
        (
            "too many headers",
            format!("GET /v2/health/live HTTP/1.1\r\nHost: x\r\n{many_headers}\r\n"),
            431,
            "too large",
            "headers_too_large",
        ),
        (
            "a huge header",
            format!("GET /v2/health/live HTTP/1.1\r\nHost: x\r\n{huge_header}\r\n"),
            431,
            "too large",
            "headers_too_large",
        ),
        (
            "invalid UTF-8 in a percent-encoded path",
            "GET /v2/models/%ff%fe/ready HTTP/1.1\r\nHost: x\r\n\r\n".into(),
            400,
            "percent-encoded",
            "bad_path_encoding",
        ),
        (
            "invalid UTF-8 in a percent-encoded inference path",
            "POST /v2/models/ml%c3p/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}"
                .into(),
            400,
            "percent-encoded",
            "bad_path_encoding",
        ),
    ];
    for (what, request, status, message, reason) in cases {
        let before = metric(
            &s.metrics_text().await,
            &format!(r#"sconce_http_rejections_total{{model="mlp",reason="{reason}"}}"#),
        );
        let r = send_raw(s.addr, request.into_bytes()).await;
        assert_eq!(r.status, status, "{what}: {r:?}");
        assert_eq!(
            r.header("content-type"),
            Some("application/json"),
            "{what}: {r:?}"
        );
        let body = r.json();
        let error = body["error"]
            .as_str()
            .unwrap_or_else(|| panic!("{what}: {body}"));
        assert!(error.contains(message), "{what}: {error:?}");
        let after = metric(
            &s.metrics_text().await,
            &format!(r#"sconce_http_rejections_total{{model="mlp",reason="{reason}"}}"#),
        );
        assert_eq!(after, before + 1.0, "{what}: not counted");
    }
    // A keep-alive connection whose second request is malformed gets the JSON answer too.
    let mut c = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    c.write_all(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(read_response(&mut c).await.status, 200);
    c.write_all(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n")
        .await
        .unwrap();
    let r = read_response(&mut c).await;
    assert_eq!(r.status, 400, "{r:?}");
    assert!(r.json()["error"].as_str().unwrap().contains("malformed"));
    // Still serving.
    assert_eq!(s.post_json("/v2/models/mlp/infer", &req(1)).await.0, 200);
    s.stop().await.unwrap();
}
