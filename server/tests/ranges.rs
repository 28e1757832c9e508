//! Numbers a model cannot take: non-finite, or outside the declared datatype's range. Each is a
//! 400 naming the input and the element, over V2 JSON, V2 binary and V1.

mod common;

use common::TestServer;
use serde_json::json;

async fn serve() -> (TestServer, tempfile::TempDir) {
    common::serve_mlp(&common::small_mlp(), None, &[]).await
}

/// A V2 JSON body with `data` written verbatim (serde_json cannot write 1e999).
fn v2_text(datatype: &str, shape: &str, data: &str) -> String {
    format!(
        r#"{{"inputs": [{{"name": "input", "shape": {shape}, "datatype": "{datatype}", "data": {data}}}]}}"#
    )
}

async fn post_text(s: &TestServer, path: &str, body: String) -> (u16, serde_json::Value) {
    let r = s
        .client
        .post(s.url(path))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    let code = r.status().as_u16();
    (code, r.json().await.unwrap())
}

fn assert_refused(code: u16, body: &serde_json::Value, parts: &[&str]) {
    assert_eq!(code, 400, "{body}");
    let msg = body["error"].as_str().unwrap();
    for p in parts {
        assert!(msg.contains(p), "{msg:?} does not mention {p:?}");
    }
}

#[tokio::test]
async fn v2_json_out_of_range_is_400_with_the_element() {
    let (s, _dir) = serve().await;
    let url = "/v2/models/mlp/infer";
    let cases = [
        (
            "FP32",
            "[1, 4]",
            "[1e999, 0, 0, 0]",
            vec!["input input", "element 0", "FP32"],
        ),
        (
            "FP32",
            "[1, 4]",
            "[0, -1e999, 0, 0]",
            vec!["element 1", "FP32"],
        ),
        (
            "FP32",
            "[1, 4]",
            "[0, 0, 3.5e38, 0]",
            vec!["element 2", "3.5e38", "FP32"],
        ),
        (
            "FP32",
            "[2, 4]",
            "[[0, 0, 0, 0], [0, 0, 0, -4e38]]",
            vec!["element 7", "[1, 3]"],
        ),
        (
            "FP64",
            "[1, 4]",
            "[0, 0, 0, 1e300]",
            vec!["element 3", "FP32"],
        ),
        (
            "FP16",
            "[1, 4]",
            "[0, 70000, 0, 0]",
            vec!["element 1", "FP16"],
        ),
        (
            "INT8",
            "[1, 4]",
            "[0, 0, 1000, 0]",
            vec!["element 2", "1000", "INT8", "-128"],
        ),
        (
            "INT8",
            "[1, 4]",
            "[-129, 0, 0, 0]",
            vec!["element 0", "INT8"],
        ),
        (
            "UINT8",
            "[1, 4]",
            "[0, -1, 0, 0]",
            vec!["element 1", "-1", "UINT8"],
        ),
        (
            "UINT8",
            "[1, 4]",
            "[0, 0, 0, 256]",
            vec!["element 3", "UINT8"],
        ),
        (
            "INT16",
            "[1, 4]",
            "[0, 40000, 0, 0]",
            vec!["element 1", "INT16"],
        ),
        (
            "UINT16",
            "[1, 4]",
            "[0, 0, 70000, 0]",
            vec!["element 2", "UINT16"],
        ),
        (
            "INT32",
            "[1, 4]",
            "[0, 0, 0, 3000000000]",
            vec!["element 3", "INT32"],
        ),
        (
            "UINT32",
            "[1, 4]",
            "[-5, 0, 0, 0]",
            vec!["element 0", "UINT32"],
        ),
        (
            "UINT64",
            "[1, 4]",
            "[0, -1, 0, 0]",
            vec!["element 1", "UINT64"],
        ),
        ("BOOL", "[1, 4]", "[0, 1, 2, 0]", vec!["element 2", "BOOL"]),
    ];
    for (datatype, shape, data, parts) in cases {
        let (code, body) = post_text(&s, url, v2_text(datatype, shape, data)).await;
        assert_refused(code, &body, &parts);
    }
    // The visitor path (nested data mixed with booleans falls back from the fast scanner).
    let (code, body) =
        post_text(&s, url, v2_text("BOOL", "[1, 4]", "[true, false, 3, true]")).await;
    assert_refused(code, &body, &["element 2", "BOOL"]);
    // The limits themselves are accepted.
    for (datatype, data) in [
        ("INT8", "[-128, 127, 0, 1]"),
        ("UINT8", "[0, 255, 1, 2]"),
        ("INT16", "[-32768, 32767, 0, 0]"),
        ("UINT16", "[0, 65535, 0, 0]"),
        ("BOOL", "[0, 1, 1, 0]"),
        ("FP16", "[65504, -65504, 0, 0]"),
        ("FP32", "[3.4028234e38, -3.4028234e38, 1e-45, 0]"),
    ] {
        let (code, body) = post_text(&s, url, v2_text(datatype, "[1, 4]", data)).await;
        assert_eq!(code, 200, "{datatype} {data}: {body}");
    }
    s.stop().await.unwrap();
}

/// A binary request of one FP32/FP64/FP16/BOOL input holding `raw`.
async fn post_binary(s: &TestServer, datatype: &str, raw: Vec<u8>) -> (u16, serde_json::Value) {
    let header = json!({"inputs": [{"name": "input", "shape": [1, 4], "datatype": datatype,
                                     "parameters": {"binary_data_size": raw.len()}}]});
    let mut body = serde_json::to_vec(&header).unwrap();
    let n = body.len();
    body.extend_from_slice(&raw);
    let r = s
        .client
        .post(s.url("/v2/models/mlp/infer"))
        .header("Inference-Header-Content-Length", n.to_string())
        .header("content-type", "application/octet-stream")
        .body(body)
        .send()
        .await
        .unwrap();
    let code = r.status().as_u16();
    (code, r.json().await.unwrap())
}

#[tokio::test]
async fn v2_binary_non_finite_is_400_with_the_element() {
    let (s, _dir) = serve().await;
    let f32s = |v: [f32; 4]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
    let f64s = |v: [f64; 4]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
    let cases = [
        (
            "FP32",
            f32s([0.0, 0.0, 0.0, f32::NAN]),
            vec!["input input", "element 3", "NaN"],
        ),
        (
            "FP32",
            f32s([f32::INFINITY, 0.0, 0.0, 0.0]),
            vec!["element 0", "inf"],
        ),
        (
            "FP32",
            f32s([0.0, f32::NEG_INFINITY, 0.0, 0.0]),
            vec!["element 1", "-inf"],
        ),
        (
            "FP64",
            f64s([0.0, 0.0, f64::NAN, 0.0]),
            vec!["element 2", "NaN"],
        ),
        (
            "FP64",
            f64s([0.0, 1e300, 0.0, 0.0]),
            vec!["element 1", "FP32"],
        ),
        // FP16 +inf (0x7c00) at element 1.
        (
            "FP16",
            vec![0, 0, 0x00, 0x7c, 0, 0, 0, 0],
            vec!["element 1", "inf"],
        ),
        ("BOOL", vec![0, 1, 1, 7], vec!["element 3", "BOOL"]),
    ];
    for (datatype, raw, parts) in cases {
        let (code, body) = post_binary(&s, datatype, raw).await;
        assert_refused(code, &body, &parts);
    }
    let (code, body) = post_binary(&s, "FP32", f32s([f32::MAX, f32::MIN, 1e-45, 0.0])).await;
    assert_eq!(code, 200, "{body}");
    s.stop().await.unwrap();
}

#[tokio::test]
async fn v1_out_of_range_is_400_with_the_element() {
    let (s, _dir) = serve().await;
    let url = "/v1/models/mlp:predict";
    let cases = [
        (
            r#"{"instances": [[0, 0, 0, 1e999]]}"#,
            vec!["instances", "element 3", "FP32"],
        ),
        (
            r#"{"instances": [[0, 0, 0, 0], [0, -5e38, 0, 0]]}"#,
            vec!["instances", "element 5", "[1, 1]"],
        ),
        (
            r#"{"inputs": [[1e39, 0, 0, 0]]}"#,
            vec!["inputs", "element 0"],
        ),
        (
            r#"{"inputs": {"input": [[0, 0, -1e999, 0]]}}"#,
            vec!["inputs", "element 2"],
        ),
    ];
    for (body, parts) in cases {
        let (code, resp) = post_text(&s, url, body.to_string()).await;
        assert_refused(code, &resp, &parts);
    }
    s.stop().await.unwrap();
}
