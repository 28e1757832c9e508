//! hack/k8s.sh refuses at once, naming what is missing, on a machine that cannot run the plane.
use std::process::Command;

fn start(envs: &[(&str, &str)], as_nobody: bool) -> (bool, String) {
    let root = sconce_devtools::testing::workspace_root();
    let dir = tempfile::tempdir().expect("tempdir");
    let script = root.join("hack/k8s.sh");
    let mut cmd = if as_nobody {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups", "bash"]);
        c
    } else {
        Command::new("bash")
    };
    let started = std::time::Instant::now();
    let out = cmd
        .arg(&script)
        .arg("start")
        .arg(dir.path().join("plane"))
        .envs(envs.iter().copied())
        .output()
        .expect("bash runs");
    assert!(
        started.elapsed().as_secs() < 10,
        "not fast: {:?}",
        started.elapsed()
    );
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn without_root_it_says_so() {
    let (ok, stderr) = start(&[("SCONCE_CACHE", "/tmp")], true);
    assert!(!ok);
    assert!(
        stderr.contains("missing:") && stderr.contains("root"),
        "{stderr}"
    );
}

#[test]
fn without_the_kubernetes_binaries_it_names_them() {
    let (ok, stderr) = start(&[("SCONCE_K8S_HOME", "/nonexistent/k8s")], false);
    assert!(!ok);
    for name in [
        "kube-apiserver",
        "kubelet",
        "kube-proxy",
        "pause",
        "hack/k8s.sh setup",
    ] {
        assert!(stderr.contains(name), "{name} not named:\n{stderr}");
    }
    assert!(
        !std::path::Path::new("/run/netns/sconce-9").exists(),
        "nothing was created"
    );
}
