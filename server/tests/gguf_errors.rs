//! Model files the server must refuse at load, each with an error that says what is wrong: not
//! GGUF at all, truncated, another architecture, a quantization candle cannot read, no or
//! several .gguf files in the directory.

mod common;

use std::path::Path;

use candle_core::quantized::gguf_file::{self, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use common::TestServer;

/// The server's load error for the model directory `dir`.
async fn load_error(dir: &Path) -> String {
    let dir = dir.to_str().unwrap();
    let s = TestServer::start(&["--format", "gguf", "--model-dir", dir, "--model-name", "m"]).await;
    format!("{:#}", s.stop_when_done().await)
}

fn write_gguf(path: &Path, arch: &str) {
    let t = QTensor::quantize(
        &Tensor::zeros((2, 32), candle_core::DType::F32, &Device::Cpu).unwrap(),
        GgmlDType::F32,
    )
    .unwrap();
    let arch = Value::String(arch.into());
    let mut f = std::fs::File::create(path).unwrap();
    gguf_file::write(
        &mut f,
        &[("general.architecture", &arch)],
        &[("token_embd.weight", &t)],
    )
    .unwrap();
}

/// A GGUF v3 header declaring one tensor of ggml type `dtype` (the data is never reached).
fn write_header_with_type(path: &Path, dtype: u32) {
    let mut b = Vec::new();
    b.extend_from_slice(b"GGUF");
    b.extend_from_slice(&3u32.to_le_bytes());
    b.extend_from_slice(&1u64.to_le_bytes()); // tensors
    b.extend_from_slice(&1u64.to_le_bytes()); // metadata entries
    let s = |b: &mut Vec<u8>, t: &str| {
        b.extend_from_slice(&(t.len() as u64).to_le_bytes());
        b.extend_from_slice(t.as_bytes());
    };
    s(&mut b, "general.architecture");
    b.extend_from_slice(&8u32.to_le_bytes()); // string
    s(&mut b, "llama");
    s(&mut b, "blk.0.attn_q.weight");
    b.extend_from_slice(&2u32.to_le_bytes());
    b.extend_from_slice(&32u64.to_le_bytes());
    b.extend_from_slice(&32u64.to_le_bytes());
    b.extend_from_slice(&dtype.to_le_bytes());
    b.extend_from_slice(&0u64.to_le_bytes());
    b.resize(b.len() + 4096, 0);
    std::fs::write(path, b).unwrap();
}

#[tokio::test]
async fn refuses_files_it_cannot_serve() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = |name: &str| {
        let d = tmp.path().join(name);
        std::fs::create_dir(&d).unwrap();
        d
    };

    let d = dir("text");
    std::fs::write(d.join("model.gguf"), b"this is not a model").unwrap();
    let e = load_error(&d).await;
    assert!(e.contains("is not a GGUF file"), "{e}");

    let d = dir("qwen");
    write_gguf(&d.join("model.gguf"), "qwen2");
    let e = load_error(&d).await;
    assert!(e.contains("unsupported architecture \"qwen2\""), "{e}");

    let d = dir("iq4");
    write_header_with_type(&d.join("model.gguf"), 20);
    let e = load_error(&d).await;
    assert!(e.contains("unsupported quantization IQ4_NL"), "{e}");

    let d = dir("empty");
    let e = load_error(&d).await;
    assert!(e.contains("no .gguf file"), "{e}");

    let d = dir("two");
    write_gguf(&d.join("a.gguf"), "llama");
    write_gguf(&d.join("b.gguf"), "llama");
    let e = load_error(&d).await;
    assert!(e.contains("2 .gguf files (a.gguf, b.gguf)"), "{e}");

    // The real model cut in half: the header is intact, the weights are not.
    let real = sconce_server::model::gguf::find_file(&common::smollm2_dir()).unwrap();
    let bytes = std::fs::read(&real).unwrap();
    let d = dir("truncated");
    std::fs::write(d.join("model.gguf"), &bytes[..bytes.len() / 2]).unwrap();
    let e = load_error(&d).await;
    assert!(e.contains("the file is truncated"), "{e}");
}
