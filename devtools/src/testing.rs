//! Helpers for integration tests that need a Kubernetes plane (hack/k8s.sh), built binaries and
//! model files the serving pods can read.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

/// The workspace root: the nearest directory above the current one (cargo runs tests in their
/// package's directory) holding `Cargo.lock`. Looked up at run time because a test binary can
/// outlive the checkout it was compiled in (a shared CARGO_TARGET_DIR reuses it from another
/// clone); the compile-time location is only the fallback.
pub fn workspace_root() -> PathBuf {
    std::env::current_dir()
        .ok()
        .and_then(|dir| {
            dir.ancestors()
                .find(|d| d.join("Cargo.lock").is_file())
                .map(Path::to_path_buf)
        })
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .parent()
                .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
        })
}

/// The cargo target directory (`CARGO_TARGET_DIR` or `<workspace>/target`).
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| workspace_root().join("target"), PathBuf::from)
}

/// Make a model directory readable by the serving pods' non-root user (65532): directories
/// 0755, files 0644. Temporary directories are created 0700.
pub fn make_world_readable(dir: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))?;
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            make_world_readable(&path)?;
        } else {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644))?;
        }
    }
    Ok(())
}

/// `cargo build -p <package> --bin <bin>` (a no-op when fresh) and the debug binary's path.
/// `SCONCE_<BIN>_BINARY` (e.g. `SCONCE_SERVER_BINARY` for `sconce-server`) skips the build.
pub fn build_binary(package: &str, bin: &str) -> Result<PathBuf> {
    let var = format!("{}_BINARY", bin.to_uppercase().replace('-', "_"));
    if let Some(path) = std::env::var_os(&var) {
        return Ok(PathBuf::from(path));
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "-p", package, "--bin", bin])
        .current_dir(workspace_root())
        .status()
        .with_context(|| format!("running cargo build -p {package}"))?;
    if !status.success() {
        bail!("cargo build -p {package} --bin {bin} failed: {status}");
    }
    let path = target_dir().join("debug").join(bin);
    if !path.is_file() {
        bail!("{} missing after the build", path.display());
    }
    Ok(path)
}

/// A Kubernetes plane for tests: `SCONCE_TEST_KUBECONFIG` when set, else a private one started
/// with `hack/k8s.sh start` in a temporary directory and stopped on drop.
pub struct TestCluster {
    pub kubeconfig: PathBuf,
    private: Option<tempfile::TempDir>,
}

impl TestCluster {
    pub fn from_env_or_start() -> Result<Self> {
        if let Some(path) = std::env::var_os("SCONCE_TEST_KUBECONFIG") {
            return Ok(Self {
                kubeconfig: PathBuf::from(path),
                private: None,
            });
        }
        Self::start_private()
    }

    /// A plane of the test's own (for tests that break it, e.g. stop its kubelet).
    pub fn start_private() -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("sconce-k8s-")
            .tempdir()
            .context("creating cluster dir")?;
        let output = Command::new("bash")
            .arg(workspace_root().join("hack/k8s.sh"))
            .arg("start")
            .arg(dir.path())
            .stderr(Stdio::inherit())
            .output()
            .context("running hack/k8s.sh start")?;
        // from here on, dropping `cluster` stops whatever did start
        let cluster = Self {
            kubeconfig: dir.path().join("kubeconfig"),
            private: Some(dir),
        };
        if !output.status.success() {
            bail!("hack/k8s.sh start failed: {}", output.status);
        }
        Ok(cluster)
    }

    pub async fn client(&self) -> Result<kube::Client> {
        client_from_kubeconfig(&self.kubeconfig).await
    }

    /// The plane's run directory (pid files, logs, the containerd socket).
    pub fn dir(&self) -> Option<&Path> {
        self.kubeconfig.parent()
    }
}

/// A client for the cluster a kubeconfig file describes (its current context).
pub async fn client_from_kubeconfig(path: &Path) -> Result<kube::Client> {
    let kubeconfig = kube::config::Kubeconfig::read_from(path)
        .with_context(|| format!("reading {}", path.display()))?;
    let config = kube::Config::from_custom_kubeconfig(
        kubeconfig,
        &kube::config::KubeConfigOptions::default(),
    )
    .await?;
    Ok(kube::Client::try_from(config)?)
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        if let Some(dir) = &self.private {
            let _ = Command::new("bash")
                .arg(workspace_root().join("hack/k8s.sh"))
                .arg("stop")
                .arg(dir.path())
                .status();
        }
    }
}
