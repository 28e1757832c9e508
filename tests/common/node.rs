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

/// What the kubelet enforced on a restricted container (non-root 65532, no privilege escalation,
/// seccomp RuntimeDefault, no capabilities, read-only root), read from its process; its PID.
pub fn check_restricted_process(pod: &Pod, container: &str) -> u32 {
    let name = pod.metadata.name.clone().unwrap_or_default();
    let id = container_id(pod, container).expect("container id");
    let pid = container_pid(&id).unwrap_or_else(|| panic!("{name}: no task for {id}"));
    let uid = proc_status(pid, "Uid");
    assert!(
        uid.split_whitespace().all(|u| u == "65532"),
        "{name}: Uid {uid}"
    );
    assert_eq!(
        proc_status(pid, "NoNewPrivs"),
        "1",
        "{name}: privilege escalation"
    );
    assert_eq!(
        proc_status(pid, "Seccomp"),
        "2",
        "{name}: seccomp filter (RuntimeDefault)"
    );
    assert_eq!(
        proc_status(pid, "CapEff"),
        "0000000000000000",
        "{name}: capabilities"
    );
    assert_eq!(
        proc_status(pid, "CapPrm"),
        "0000000000000000",
        "{name}: capabilities"
    );
    let root = mount_options(pid, "/").expect("root mount");
    assert!(
        root.split(',').any(|o| o == "ro"),
        "{name}: root filesystem {root}"
    );
    pid
}

/// What the kubelet enforced on one server container of examples/mnist.yaml, read from its
/// process.
pub fn check_container_restrictions(pod: &Pod) {
    let name = pod.metadata.name.clone().unwrap_or_default();
    let pid = check_restricted_process(pod, "server");
    let model = mount_options(pid, "/mnt/models").expect("model mount");
    assert!(
        model.split(',').any(|o| o == "ro"),
        "{name}: model mount {model}"
    );
    // examples/mnist.yaml: limits.memory 512Mi, requests.cpu 100m
    assert_eq!(
        cgroup_value(pid, "memory", "memory.limit_in_bytes").as_deref(),
        Some("536870912"),
        "{name}: memory limit"
    );
    assert_eq!(
        cgroup_value(pid, "cpu", "cpu.shares").as_deref(),
        Some("102"),
        "{name}: cpu request"
    );
    let policy = pod
        .spec
        .as_ref()
        .map(|s| s.containers[0].termination_message_policy.clone());
    assert_eq!(policy.flatten().as_deref(), Some("FallbackToLogsOnError"));
}
