//! Keras import against real files written by Keras itself (PyPI `keras` + `jax[cpu]`, installed into
//! ~/.cache/sconce/pip/keras by `train/scripts/keras-env.sh`, or `$SCONCE_KERAS_PYTHONPATH`): the
//! imported model's outputs equal Keras's `predict` to 1e-5, for `.h5` and `.keras` alike.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use candle_core::{DType, Tensor};
use sconce_train::model::SavedModel;

fn keras_pythonpath() -> String {
    if let Ok(path) = std::env::var("SCONCE_KERAS_PYTHONPATH") {
        return path;
    }
    let script = common::repo_root().join("train/scripts/keras-env.sh");
    let output = Command::new("bash")
        .arg(script)
        .output()
        .expect("run keras-env.sh");
    assert!(
        output.status.success(),
        "keras-env.sh failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .expect("utf-8")
        .lines()
        .last()
        .expect("a path")
        .trim()
        .to_owned()
}

/// Runs the fixture generator once into a temp dir and returns it.
fn keras_fixtures() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("dir");
    let script = common::package_dir().join("tests/fixtures/make_keras_models.py");
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".to_owned());
    let output = Command::new(python)
        .arg(script)
        .arg(dir.path())
        .env("PYTHONPATH", keras_pythonpath())
        .env("KERAS_BACKEND", "jax")
        .env("JAX_PLATFORMS", "cpu")
        .output()
        .expect("run make_keras_models.py");
    assert!(
        output.status.success(),
        "make_keras_models.py failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    dir
}

fn read_matrix(path: &Path) -> (usize, Vec<f32>) {
    let tensor = Tensor::read_npy(path)
        .expect("npy")
        .to_dtype(DType::F32)
        .expect("f32");
    let rows = tensor.dims()[0];
    (
        rows,
        tensor
            .flatten_all()
            .and_then(|t| t.to_vec1::<f32>())
            .expect("values"),
    )
}

#[test]
fn imported_keras_models_predict_like_keras() {
    let fixtures = keras_fixtures();
    let manifest: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixtures.path().join("manifest.json")).expect("manifest"),
    )
    .expect("json");
    let models = manifest["models"].as_array().expect("models");
    assert_eq!(models.len(), 3);
    for entry in models {
        let name = entry["name"].as_str().expect("name");
        let (rows, inputs) = read_matrix(&fixtures.path().join(format!("{name}.inputs.npy")));
        let (_, expected) = read_matrix(&fixtures.path().join(format!("{name}.expected.npy")));
        for extension in ["h5", "keras"] {
            let file: PathBuf = fixtures.path().join(format!("{name}.{extension}"));
            let model = sconce_train::keras::import(&file)
                .unwrap_or_else(|e| panic!("{name}.{extension}: {e}"));
            assert_eq!(
                model.network.input_size as u64,
                entry["inputs"].as_u64().expect("inputs")
            );
            let predicted: Vec<f32> = model
                .predict(&inputs)
                .expect("predict")
                .into_iter()
                .flatten()
                .collect();
            assert_eq!(
                predicted.len(),
                expected.len(),
                "{name}.{extension}: {rows} rows"
            );
            let worst = predicted
                .iter()
                .zip(&expected)
                .map(|(p, e)| (p - e).abs())
                .fold(0f32, f32::max);
            assert!(
                worst <= 1e-5,
                "{name}.{extension}: max |difference| {worst} from Keras predict"
            );
        }
    }

    // The CLI writes a directory the loader (and so the server) accepts, with version and labels.
    let out = fixtures.path().join("imported");
    let status = Command::new(env!("CARGO_BIN_EXE_sconce-train"))
        .arg("import-keras")
        .arg(fixtures.path().join("digits_mlp.keras"))
        .args([
            "--out",
            &out.to_string_lossy(),
            "--version",
            "keras-1",
            "--labels",
            "0,1,2,3,4,5,6,7,8,9",
        ])
        .status()
        .expect("run sconce-train");
    assert!(status.success());
    let loaded = SavedModel::load(&out, DType::F32).expect("loads");
    assert_eq!(loaded.version.as_deref(), Some("keras-1"));
    assert_eq!(loaded.labels.as_ref().map(Vec::len), Some(10));
    assert!(loaded.standardizer.is_none());
    let config = loaded.config();
    assert_eq!(
        config.layers.iter().map(|l| l.units).collect::<Vec<_>>(),
        [64, 64, 10]
    );
}

/// Keras 2 `.h5` files (tf.keras / tf_keras) name weights `dense/kernel:0`. TensorFlow is too heavy to
/// install on every run, so this runs only when `$SCONCE_TF_KERAS_PYTHONPATH` points at an install of
/// `tensorflow-cpu tf_keras` (e.g. `pip install --target DIR tensorflow-cpu tf_keras`).
#[test]
fn keras2_legacy_h5_predicts_like_keras_when_tf_keras_is_available() {
    let Ok(pythonpath) = std::env::var("SCONCE_TF_KERAS_PYTHONPATH") else {
        eprintln!("SCONCE_TF_KERAS_PYTHONPATH not set: Keras 2 file check not run");
        return;
    };
    let dir = tempfile::tempdir().expect("dir");
    let script = common::package_dir().join("tests/fixtures/make_tf_keras_model.py");
    let output = Command::new(std::env::var("PYTHON").unwrap_or_else(|_| "python3".to_owned()))
        .arg(script)
        .arg(dir.path())
        .env("PYTHONPATH", pythonpath)
        .env("TF_CPP_MIN_LOG_LEVEL", "3")
        .output()
        .expect("run make_tf_keras_model.py");
    assert!(
        output.status.success(),
        "make_tf_keras_model.py failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let (_, inputs) = read_matrix(&dir.path().join("keras2.inputs.npy"));
    let (_, expected) = read_matrix(&dir.path().join("keras2.expected.npy"));
    let model = sconce_train::keras::import(&dir.path().join("keras2.h5")).expect("imports");
    let predicted: Vec<f32> = model
        .predict(&inputs)
        .expect("predict")
        .into_iter()
        .flatten()
        .collect();
    let worst = predicted
        .iter()
        .zip(&expected)
        .map(|(p, e)| (p - e).abs())
        .fold(0f32, f32::max);
    assert_eq!(predicted.len(), expected.len());
    assert!(
        worst <= 1e-5,
        "max |difference| {worst} from Keras 2 predict"
    );
}

#[test]
fn non_keras_files_are_rejected_clearly() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("model.h5");
    std::fs::write(&path, b"not a model").expect("write");
    let message = sconce_train::keras::import(&path)
        .expect_err("rejects")
        .to_string();
    assert!(message.contains("neither an HDF5"), "{message}");
}
