//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;

/// The workspace root. From cargo's run-time CARGO_MANIFEST_DIR: a test binary reused from
/// another checkout (shared CARGO_TARGET_DIR) would carry that checkout's compile-time path.
pub fn repo_root() -> PathBuf {
    package_dir().parent().expect("workspace root").to_owned()
}

/// This package's directory (see `repo_root`).
pub fn package_dir() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from)
}

/// The digits CSV: `$SCONCE_DIGITS_CSV`, else whatever `hack/fetch-digits.sh` prints (it exports the data
/// with scikit-learn once into ~/.cache/sconce).
pub fn digits_csv() -> PathBuf {
    if let Some(path) = std::env::var_os("SCONCE_DIGITS_CSV") {
        return PathBuf::from(path);
    }
    let output = Command::new("bash")
        .arg(repo_root().join("hack/fetch-digits.sh"))
        .output()
        .expect("run hack/fetch-digits.sh");
    assert!(
        output.status.success(),
        "hack/fetch-digits.sh failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8(output.stdout).expect("utf-8 path");
    PathBuf::from(stdout.lines().last().expect("a path").trim())
}
