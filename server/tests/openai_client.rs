//! The official `openai` Python client against the server: `/v1/embeddings` and `/v1/models`
//! (answers it decodes, errors it shows with the server's message, type, param and code), and
//! with SmolLM2 chat and completions, streaming and not, stop strings, seeds, errors.
//!
//! The client's interpreter comes from `SCONCE_OPENAI_PYTHON`, else `hack/fetch-openai.sh`
//! installs it (pip, cached under ~/.cache/sconce). Traffic stays on loopback.

mod common;

use std::path::PathBuf;

use common::TestServer;
use common::tiny_bert::{H, write_tiny_bert};

fn openai_python() -> PathBuf {
    common::fetched_dir("SCONCE_OPENAI_PYTHON", "fetch-openai.sh")
}

#[tokio::test]
async fn the_openai_client_reads_answers_and_errors() {
    let python = openai_python();
    let dir = tempfile::tempdir().unwrap();
    write_tiny_bert(dir.path());
    let keyfile = dir.path().join("api-key");
    std::fs::write(&keyfile, "sk-test-key\n").unwrap();
    let s = TestServer::start_ready(&[
        "--model-dir",
        dir.path().to_str().unwrap(),
        "--format",
        "bert",
        "--model-name",
        "tiny",
        "--api-key-file",
        keyfile.to_str().unwrap(),
    ])
    .await;
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/clients/openai_check.py");
    let base = s.url("/v1");
    let out = tokio::process::Command::new(&python)
        .arg(&script)
        .args([base.as_str(), "tiny", &H.to_string(), "sk-test-key"])
        // The client must not look for proxies or credentials of this machine.
        .env_remove("OPENAI_BASE_URL")
        .env_remove("OPENAI_API_KEY")
        .env("NO_PROXY", "*")
        .output()
        .await
        .expect("running the openai client");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "openai_check.py failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    let last = stdout.lines().last().unwrap_or_default();
    let n: usize = last
        .strip_prefix("openai client: ")
        .and_then(|r| r.strip_suffix(" checks passed"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("unexpected output {stdout:?}"));
    assert!(n >= 40, "only {n} checks ran");
    s.stop().await.unwrap();
}

#[tokio::test]
async fn official_openai_python_client() {
    let python = openai_python();
    let dir = common::smollm2_dir();
    let dir = dir.to_str().unwrap();
    let s = TestServer::start_ready(&[
        "--format",
        "gguf",
        "--model-dir",
        dir,
        "--model-name",
        "smol",
    ])
    .await;
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/clients/openai_client.py"
    );
    let out = tokio::process::Command::new(&python)
        .arg(script)
        .arg(format!("http://{}", s.addr))
        .arg("smol")
        .env_remove("OPENAI_BASE_URL")
        .env_remove("OPENAI_API_KEY")
        .env("NO_PROXY", "*")
        .output()
        .await
        .expect("running python3");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "openai client failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for check in ["chat", "chat-stream", "completions", "seed", "errors"] {
        assert!(
            stdout.lines().any(|l| l == format!("ok {check}")),
            "{stdout}"
        );
    }
    s.stop().await.unwrap();
}
