//! `Content-Encoding: gzip / deflate` request bodies (with `--max-body-bytes` applied to the
//! decoded size) and compressed answers on `Accept-Encoding`, for JSON and the binary extension.

mod common;

use std::io::{Read, Write};

use common::{Mlp, Rng, TestServer, assert_close, floats};
use flate2::Compression;
use flate2::read::{GzDecoder, ZlibDecoder};
use flate2::write::{DeflateEncoder, GzEncoder, ZlibEncoder};
use serde_json::json;

const IN: usize = 16;

async fn serve(extra: &[&str]) -> (TestServer, Mlp, tempfile::TempDir) {
    let m = Mlp::random(4, IN, &[(8, "relu"), (3, "softmax")], false);
    let (s, dir) = common::serve_mlp(&m, None, extra).await;
    (s, m, dir)
}

fn gzip(b: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), Compression::default());
    e.write_all(b).unwrap();
    e.finish().unwrap()
}

fn zlib(b: &[u8]) -> Vec<u8> {
    let mut e = ZlibEncoder::new(Vec::new(), Compression::default());
    e.write_all(b).unwrap();
    e.finish().unwrap()
}

fn raw_deflate(b: &[u8]) -> Vec<u8> {
    let mut e = DeflateEncoder::new(Vec::new(), Compression::default());
    e.write_all(b).unwrap();
    e.finish().unwrap()
}

/// An answer's body decoded from its `Content-Encoding`.
fn decoded(encoding: Option<&str>, raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    match encoding {
        Some("gzip") => GzDecoder::new(raw).read_to_end(&mut out).unwrap(),
        Some("deflate") => ZlibDecoder::new(raw).read_to_end(&mut out).unwrap(),
        None => return raw.to_vec(),
        Some(other) => panic!("unexpected Content-Encoding {other}"),
    };
    out
}

fn rows(n: usize) -> Vec<f32> {
    Rng::new(7).vec(n * IN, 1.0)
}

fn v2_body(x: &[f32]) -> Vec<u8> {
    serde_json::to_vec(
        &json!({"inputs": [{"name": "input", "shape": [x.len() / IN, IN],
        "datatype": "FP32", "data": x}]}),
    )
    .unwrap()
}

fn reference(m: &Mlp, x: &[f32]) -> Vec<f32> {
    x.chunks(IN).flat_map(|r| m.reference(r)).collect()
}

#[tokio::test]
async fn compressed_requests_are_decoded() {
    let (s, m, _dir) = serve(&[]).await;
    let x = rows(20);
    let want = reference(&m, &x);
    let plain = v2_body(&x);
    for (encoding, body) in [
        ("gzip", gzip(&plain)),
        ("x-gzip", gzip(&plain)),
        ("deflate", zlib(&plain)),
        // Some clients send raw DEFLATE for `deflate`; it is accepted too.
        ("deflate", raw_deflate(&plain)),
        ("identity", plain.clone()),
        ("GZIP", gzip(&plain)),
    ] {
        assert!(encoding == "identity" || body.len() < plain.len());
        let r = s
            .client
            .post(s.url("/v2/models/mlp/infer"))
            .header("content-type", "application/json")
            .header("content-encoding", encoding)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{encoding}");
        let v: serde_json::Value = r.json().await.unwrap();
        assert_close(&floats(&v["outputs"][0]["data"]), &want, 1e-5);
    }
    // V1 too.
    let v1 = serde_json::to_vec(&json!({"instances": x.chunks(IN).collect::<Vec<_>>()})).unwrap();
    let r = s
        .client
        .post(s.url("/v1/models/mlp:predict"))
        .header("content-encoding", "gzip")
        .body(gzip(&v1))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_close(&floats(&v["predictions"]), &want, 1e-5);

    // The binary extension: Inference-Header-Content-Length counts decoded bytes.
    let header = serde_json::to_vec(&json!({"inputs": [{"name": "input", "shape": [20, IN],
        "datatype": "FP32", "parameters": {"binary_data_size": x.len() * 4}}]}))
    .unwrap();
    let mut body = header.clone();
    body.extend(x.iter().flat_map(|v| v.to_le_bytes()));
    let r = s
        .client
        .post(s.url("/v2/models/mlp/infer"))
        .header("Inference-Header-Content-Length", header.len().to_string())
        .header("content-encoding", "gzip")
        .body(gzip(&body))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_close(&floats(&v["outputs"][0]["data"]), &want, 1e-5);
    s.stop().await.unwrap();
}

#[tokio::test]
async fn bad_and_oversized_compressed_bodies() {
    let (s, _m, _dir) = serve(&["--max-body-bytes", "100000"]).await;
    let post = |encoding: &'static str, body: Vec<u8>| {
        let r = s
            .client
            .post(s.url("/v2/models/mlp/infer"))
            .header("content-encoding", encoding)
            .body(body);
        async move {
            let r = r.send().await.unwrap();
            let code = r.status().as_u16();
            (code, r.json::<serde_json::Value>().await.unwrap())
        }
    };
    // A gzip bomb: 50 MB of spaces in ~50 kB, far over the limit once decoded.
    let bomb = {
        let mut e = GzEncoder::new(Vec::new(), Compression::best());
        let chunk = vec![b' '; 1 << 20];
        for _ in 0..50 {
            e.write_all(&chunk).unwrap();
        }
        e.finish().unwrap()
    };
    assert!(bomb.len() < 100_000, "{} bytes", bomb.len());
    let (code, body) = post("gzip", bomb).await;
    assert_eq!(code, 413, "{body}");
    assert!(body["error"].as_str().unwrap().contains("100000 bytes"));
    // Just over the limit when decoded, well under it compressed.
    let over = gzip(&vec![b' '; 100_001]);
    assert_eq!(post("gzip", over).await.0, 413);
    let (code, body) = post("gzip", b"not gzip at all".to_vec()).await;
    assert_eq!(code, 400, "{body}");
    assert!(body["error"].as_str().unwrap().contains("gzip"), "{body}");
    let (code, body) = post("deflate", b"\x00\x01garbage".to_vec()).await;
    assert_eq!(code, 400, "{body}");
    let (code, body) = post("br", b"whatever".to_vec()).await;
    assert_eq!(code, 415, "{body}");
    assert!(body["error"].as_str().unwrap().contains("br"), "{body}");
    let (code, _) = post("gzip, gzip", gzip(&gzip(b"{}"))).await;
    assert_eq!(code, 415);
    // Still serving.
    let (code, _) = post("gzip", gzip(&v2_body(&rows(1)))).await;
    assert_eq!(code, 200);
    s.stop().await.unwrap();
}

#[tokio::test]
async fn answers_are_compressed_when_asked() {
    let (s, m, _dir) = serve(&[]).await;
    // reqwest is built without its decompression features, so it shows the raw encoding.
    let x = rows(40);
    let want = reference(&m, &x);
    let plain_len = {
        let r = s
            .client
            .post(s.url("/v2/models/mlp/infer"))
            .body(v2_body(&x))
            .send()
            .await
            .unwrap();
        assert!(r.headers().get("content-encoding").is_none());
        r.bytes().await.unwrap().len()
    };
    for (accept, want_encoding) in [
        ("gzip", Some("gzip")),
        ("deflate", Some("deflate")),
        ("gzip;q=0.5, deflate;q=0.9", Some("deflate")),
        ("deflate;q=0, gzip", Some("gzip")),
        ("*", Some("gzip")),
        ("br, identity", None),
        ("gzip;q=0", None),
        ("identity", None),
    ] {
        let r = s
            .client
            .post(s.url("/v2/models/mlp/infer"))
            .header("accept-encoding", accept)
            .body(v2_body(&x))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let got = r
            .headers()
            .get("content-encoding")
            .map(|v| v.to_str().unwrap().to_string());
        assert_eq!(got.as_deref(), want_encoding, "{accept}");
        let raw = r.bytes().await.unwrap().to_vec();
        if want_encoding.is_some() {
            assert!(raw.len() < plain_len, "{accept}: not smaller");
        }
        let text = decoded(want_encoding, &raw);
        let v: serde_json::Value = serde_json::from_slice(&text).unwrap();
        assert_close(&floats(&v["outputs"][0]["data"]), &want, 1e-5);
    }
    // Binary outputs: header + raw floats, compressed whole; the header length is of the
    // decoded body.
    let body = json!({"inputs": [{"name": "input", "shape": [40, IN], "datatype": "FP32", "data": x}],
                      "outputs": [{"name": "output", "parameters": {"binary_data": true}}]});
    let r = s
        .client
        .post(s.url("/v2/models/mlp/infer"))
        .header("accept-encoding", "gzip")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-encoding"], "gzip");
    assert_eq!(r.headers()["content-type"], "application/octet-stream");
    let header_len: usize = r.headers()["inference-header-content-length"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let raw = r.bytes().await.unwrap();
    let body = decoded(Some("gzip"), &raw);
    let (head, blob) = body.split_at(header_len);
    let head: serde_json::Value = serde_json::from_slice(head).unwrap();
    assert_eq!(
        head["outputs"][0]["parameters"]["binary_data_size"],
        blob.len()
    );
    let got: Vec<f32> = blob
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    assert_close(&got, &want, 1e-5);
    // Errors are compressed like answers when large enough; small ones may stay plain but are
    // always readable JSON.
    let r = s
        .client
        .post(s.url("/v2/models/mlp/infer"))
        .header("accept-encoding", "gzip")
        .body("{bad")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let enc = r
        .headers()
        .get("content-encoding")
        .map(|v| v.to_str().unwrap().to_string());
    let raw = r.bytes().await.unwrap();
    let text = decoded(enc.as_deref(), &raw);
    let v: serde_json::Value = serde_json::from_slice(&text).unwrap();
    assert!(v["error"].as_str().unwrap().contains("invalid JSON"));
    s.stop().await.unwrap();
}
