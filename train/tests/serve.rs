//! A model written by the trainer, served unchanged by the real `sconce-server` binary, answers V2
//! inference requests with the same outputs as the trainer's own forward pass.
//!
//! The server binary is `$SCONCE_SERVER_BINARY` (set by hack/test.sh), else `target/debug/sconce-server` (built with
//! `cargo build -p sconce-server` here if it is missing).

mod common;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use sconce_train::data::{Dataset, TargetKind};
use sconce_train::pipeline;
use sconce_train::settings::TrainOptions;
use serde_json::{Value, json};

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn server_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("SCONCE_SERVER_BINARY") {
        return PathBuf::from(path);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| common::repo_root().join("target"), PathBuf::from);
    let binary = target.join("debug/sconce-server");
    if !binary.exists() {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "-p", "sconce-server"])
            .current_dir(common::repo_root())
            .status()
            .expect("run cargo build -p sconce-server");
        assert!(status.success(), "cargo build -p sconce-server failed");
    }
    binary
}

/// Starts the server on an ephemeral port and returns it with its base URL from the `listening on` line.
fn start_server(model_dir: &std::path::Path, name: &str) -> (KillOnDrop, String) {
    let mut child = Command::new(server_binary())
        .args([
            "--model-dir",
            &model_dir.to_string_lossy(),
            "--format",
            "sequential",
            "--model-name",
            name,
        ])
        .args(["--host", "127.0.0.1", "--port", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn sconce-server");
    let (sender, receiver) = mpsc::channel::<String>();
    let streams: [Box<dyn std::io::Read + Send>; 2] = [
        Box::new(child.stdout.take().expect("stdout")),
        Box::new(child.stderr.take().expect("stderr")),
    ];
    for stream in streams {
        let sender = sender.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                let _ = sender.send(line);
            }
        });
    }
    let server = KillOnDrop(child);
    let mut seen = Vec::new();
    loop {
        match receiver.recv_timeout(Duration::from_secs(60)) {
            Ok(line) => {
                if let Some(rest) = line.split("listening on ").nth(1) {
                    let url = rest
                        .split_whitespace()
                        .next()
                        .expect("url")
                        .trim_end_matches('/')
                        .to_owned();
                    return (server, url);
                }
                seen.push(line);
            }
            Err(_) => panic!(
                "sconce-server did not report its address; output:\n{}",
                seen.join("\n")
            ),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn served_predictions_equal_the_trainers_forward_pass() {
    let csv = common::digits_csv();
    let model_dir = tempfile::tempdir().expect("dir");
    let options = TrainOptions {
        data: Some(csv.clone()),
        label: Some("target".into()),
        out: Some(model_dir.path().to_owned()),
        epochs: Some(5),
        folds: Some(0),
        version: Some("served-7".into()),
        ..TrainOptions::default()
    };
    let settings = options.resolve().expect("settings");
    let outcome = tokio::task::spawn_blocking(move || pipeline::run(&settings))
        .await
        .expect("join")
        .expect("trains");

    let data = Dataset::load(&csv, "target", TargetKind::Classes).expect("data");
    let rows = 40;
    let features = data.features[..rows * data.n_features].to_vec();
    let expected = outcome.model.predict(&features).expect("predict");

    let (_server, url) = start_server(model_dir.path(), "digits");
    let client = reqwest::Client::new();
    let mut ready = false;
    for _ in 0..300 {
        if client
            .get(format!("{url}/v2/models/digits/ready"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ready, "model never became ready");

    let request = json!({
        "inputs": [{"name": "input", "datatype": "FP32", "shape": [rows, data.n_features], "data": features}]
    });
    let response = client
        .post(format!("{url}/v2/models/digits/infer"))
        .json(&request)
        .send()
        .await
        .expect("infer");
    let status = response.status();
    let body: Value = response.json().await.expect("json body");
    assert!(status.is_success(), "{status}: {body}");
    assert_eq!(body["model_version"], "served-7", "{body}");
    let output = &body["outputs"][0];
    assert_eq!(output["name"], "output");
    assert_eq!(output["shape"], json!([rows, 10]));
    let served: Vec<f64> = output["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|v| v.as_f64().expect("number"))
        .collect();
    let mut worst = 0f64;
    for (row, expected_row) in expected.iter().enumerate() {
        for (unit, &want) in expected_row.iter().enumerate() {
            worst = worst.max((served[row * 10 + unit] - f64::from(want)).abs());
        }
    }
    assert!(
        worst < 1e-5,
        "served outputs differ from the trainer's by up to {worst}"
    );
}
