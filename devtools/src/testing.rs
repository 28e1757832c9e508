//! Helpers for integration tests that need a control plane, the node agent and built binaries.
//! Used by this crate's tests; the operator's end-to-end tests can use them too.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

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

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| workspace_root().join("target"), PathBuf::from)
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

/// A control plane for tests: `SCONCE_TEST_KUBECONFIG` when set, else a private one started with
/// `hack/k8s.sh start` in a temporary directory and stopped on drop.
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

/// What to pass to `sconce-dev node-agent`.
#[derive(Clone, Debug)]
pub struct AgentOptions {
    pub kubeconfig: PathBuf,
    pub namespace: Option<String>,
    pub node_name: String,
    /// Distinct per concurrently running agent, e.g. `127.0.42`.
    pub ip_prefix: String,
    pub server_binary: Option<PathBuf>,
    pub log_dir: Option<PathBuf>,
}

/// A running node agent; SIGTERM (which stops its pods' processes) on drop.
pub struct AgentProcess {
    child: Child,
}

impl AgentProcess {
    pub fn spawn(agent_binary: &Path, options: &AgentOptions) -> Result<Self> {
        let mut command = Command::new(agent_binary);
        command
            .arg("node-agent")
            .arg("--kubeconfig")
            .arg(&options.kubeconfig)
            .args([
                "--node-name",
                &options.node_name,
                "--ip-prefix",
                &options.ip_prefix,
            ]);
        if let Some(ns) = &options.namespace {
            command.args(["--namespace", ns]);
        }
        if let Some(bin) = &options.server_binary {
            command.arg("--server-binary").arg(bin);
        }
        if let Some(dir) = &options.log_dir {
            command.arg("--log-dir").arg(dir);
        }
        let child = command
            .spawn()
            .with_context(|| format!("starting {}", agent_binary.display()))?;
        Ok(Self { child })
    }

    pub fn id(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        if let Ok(pid) = i32::try_from(self.child.id()) {
            // SAFETY: kill(2) on our own child, not yet reaped.
            unsafe {
                libc::kill(pid, libc::SIGTERM);
            }
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Pids of local processes started with `SCONCE_HOST=<ip>`, i.e. the servers of the pod with that IP.
pub fn pids_serving_ip(ip: &str) -> Vec<u32> {
    let needle = format!("SCONCE_HOST={ip}");
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|env| env.split(|b| *b == 0).any(|var| var == needle.as_bytes()))
        })
        .collect()
}
