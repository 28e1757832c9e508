//! The official `openai` Python client (`hack/fetch-openai.sh`) against the server with
//! SmolLM2: chat and completions, streaming and not, stop strings, seeds, models, errors.

mod common;

use common::TestServer;

#[tokio::test]
async fn official_openai_python_client() {
    let pythonpath = common::fetched_dir("SCONCE_OPENAI_PYTHONPATH", "fetch-openai.sh");
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
    let out = tokio::process::Command::new("python3")
        .arg(script)
        .arg(format!("http://{}", s.addr))
        .arg("smol")
        .env("PYTHONPATH", &pythonpath)
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
