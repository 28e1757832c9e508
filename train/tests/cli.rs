//! The `sconce-train` binary: bad input gives a clear error naming the line; a config file works.

use std::process::Command;

fn sconce_train(args: &[&str]) -> (bool, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_sconce-train"))
        .args(args)
        .output()
        .expect("run sconce-train");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into(),
        String::from_utf8_lossy(&output.stderr).into(),
    )
}

fn fit_error(csv: &str, label: &str) -> String {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("data.csv");
    std::fs::write(&path, csv).expect("write");
    let out = dir.path().join("model");
    let (ok, _, stderr) = sconce_train(&[
        "fit",
        "--data",
        &path.to_string_lossy(),
        "--label",
        label,
        "--out",
        &out.to_string_lossy(),
    ]);
    assert!(!ok, "should fail: {stderr}");
    assert!(!out.exists(), "no model directory on failure");
    stderr
}

#[test]
fn bad_input_errors_name_the_line() {
    let stderr = fit_error("a,b\n1,2\n", "target");
    assert!(
        stderr.contains("line 1") && stderr.contains("no label column `target`"),
        "{stderr}"
    );
    let stderr = fit_error("a,b,target\n1,2,0\n3,x,1\n", "target");
    assert!(
        stderr.contains("line 3, column `b`: `x` is not a number"),
        "{stderr}"
    );
    let stderr = fit_error("a,b,target\n1,2,0\n3,nan,1\n", "target");
    assert!(
        stderr.contains("line 3, column `b`") && stderr.contains("NaN"),
        "{stderr}"
    );
    let stderr = fit_error("", "target");
    assert!(stderr.contains("line 1: the file is empty"), "{stderr}");
}

#[test]
fn config_file_with_flag_override_trains_and_writes_the_model() {
    let dir = tempfile::tempdir().expect("dir");
    let csv: String = std::iter::once("x0,x1,label\n".to_owned())
        .chain((0..60).map(|i| {
            let x0 = (i % 7) as f32 - 3.0;
            let x1 = (i % 5) as f32 - 2.0;
            format!("{x0},{x1},{}\n", if x0 + x1 > 0.0 { "yes" } else { "no" })
        }))
        .collect();
    let data = dir.path().join("data.csv");
    std::fs::write(&data, csv).expect("write");
    let config = dir.path().join("train.json");
    std::fs::write(&config, r#"{"hidden": [6], "activation": "tanh", "optimizer": "momentum", "epochs": 3, "folds": 2}"#)
        .expect("write");
    let out = dir.path().join("model");
    let (ok, _, stderr) = sconce_train(&[
        "fit",
        "--config",
        &config.to_string_lossy(),
        "--data",
        &data.to_string_lossy(),
        "--label",
        "label",
        "--epochs",
        "4",
        "--version",
        "v9",
        "--out",
        &out.to_string_lossy(),
    ]);
    assert!(ok, "{stderr}");
    assert!(
        stderr.contains("epoch 4/4"),
        "per-epoch log lines: {stderr}"
    );
    assert!(
        stderr.contains("2-fold cross-validation: accuracy"),
        "{stderr}"
    );
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).expect("config"))
            .expect("json");
    assert_eq!(config["version"], "v9");
    assert_eq!(config["layers"][0]["units"], 6);
    assert_eq!(config["layers"][0]["activation"], "tanh");
    assert_eq!(config["labels"], serde_json::json!(["no", "yes"]));
    assert!(out.join("metrics.json").exists() && out.join("model.safetensors").exists());
}

#[test]
fn trains_from_npy_with_a_separate_labels_file() {
    use candle_core::{Device, Tensor};
    let dir = tempfile::tempdir().expect("dir");
    let rows = 80;
    let features: Vec<f32> = (0..rows * 3)
        .map(|i| ((i * 7919 % 23) as f32 - 11.0) / 4.0)
        .collect();
    let labels: Vec<i64> = (0..rows)
        .map(|r| i64::from(features[r * 3] > 0.0))
        .collect();
    let x = dir.path().join("x.npy");
    let y = dir.path().join("y.npy");
    Tensor::from_vec(features, (rows, 3), &Device::Cpu)
        .and_then(|t| t.write_npy(&x))
        .expect("x.npy");
    Tensor::from_vec(labels, rows, &Device::Cpu)
        .and_then(|t| t.write_npy(&y))
        .expect("y.npy");
    let out = dir.path().join("model");
    let (ok, _, stderr) = sconce_train(&[
        "fit",
        "--data",
        &x.to_string_lossy(),
        "--label",
        &y.to_string_lossy(),
        "--hidden",
        "4",
        "--epochs",
        "2",
        "--folds",
        "0",
        "--out",
        &out.to_string_lossy(),
    ]);
    assert!(ok, "{stderr}");
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).expect("config"))
            .expect("json");
    assert_eq!(config["input_size"], 3);
    assert_eq!(config["labels"], serde_json::json!(["0", "1"]));
}
