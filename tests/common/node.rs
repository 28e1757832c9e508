//! The test plane's node from the host side: its containerd (through `ctr`) and the kernel's view
//! of a container's process (`/proc/<pid>`), to check what the kubelet really enforced.
use std::path::PathBuf;
use std::process::Command;

use k8s_openapi::api::core::v1::Pod;

/// The plane's run directory (where `hack/k8s.sh` keeps its state): the kubeconfig's directory.
pub fn plane_dir() -> PathBuf {
    super::kubeconfig()
        .parent()
        .map(PathBuf::from)
        .expect("the kubeconfig lives in the plane's run dir")
}

/// `ctr` against the plane's containerd, in the kubelet's namespace.
pub fn ctr(args: &[&str]) -> String {
    let socket = plane_dir().join("containerd.sock");
    let out = Command::new("ctr")
        .arg("--address")
        .arg(&socket)
        .args(["-n", "k8s.io"])
        .args(args)
        .output()
        .expect("ctr runs");
    assert!(
        out.status.success(),
        "ctr {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The containerd ID of `pod`'s container `name`.
pub fn container_id(pod: &Pod, name: &str) -> Option<String> {
    pod.status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .iter()
        .find(|c| c.name == name)?
        .container_id
        .as_deref()?
        .strip_prefix("containerd://")
        .map(String::from)
}

/// The host PID of a running container's main process (`ctr tasks ls`: TASK PID STATUS).
pub fn container_pid(id: &str) -> Option<u32> {
    ctr(&["tasks", "ls"]).lines().find_map(|line| {
        let mut cols = line.split_whitespace();
        (cols.next()? == id)
            .then(|| cols.next()?.parse().ok())
            .flatten()
    })
}

/// A field of `/proc/<pid>/status` (`Uid`, `NoNewPrivs`, `Seccomp`, `CapEff`...).
pub fn proc_status(pid: u32, field: &str) -> String {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .map(|v| v.trim().to_string())
        .unwrap_or_default()
}

/// Mount options of the mount at `mount_point` as the process sees it (`/proc/<pid>/mountinfo`).
pub fn mount_options(pid: u32, mount_point: &str) -> Option<String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).ok()?;
    text.lines().rev().find_map(|line| {
        let cols: Vec<&str> = line.split_whitespace().collect();
        (cols.get(4) == Some(&mount_point)).then(|| cols.get(5).map(|s| s.to_string()))?
    })
}

/// A value of the process's cgroup (v1) controller, e.g. `("memory", "memory.limit_in_bytes")`.
pub fn cgroup_value(pid: u32, controller: &str, file: &str) -> Option<String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    let path = text.lines().find_map(|l| {
        let mut parts = l.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        controllers
            .split(',')
            .any(|c| c == controller)
            .then_some(path.to_string())
    })?;
    std::fs::read_to_string(format!("/sys/fs/cgroup/{controller}{path}/{file}"))
        .ok()
        .map(|v| v.trim().to_string())
}
