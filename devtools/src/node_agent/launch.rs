//! Turning a pod's container into a local process: which binary, which args and env.
//!
//! Mapping rules (a stand-in for a container runtime, for sconce-server images only):
//! - the image must look like a sconce-server image (its name contains `sconce-server`); the image's
//!   entrypoint, or `command[0]` when it names `sconce-server`, becomes `--server-binary`;
//! - env: plain values, `valueFrom.fieldRef` (`metadata.name|namespace|uid`, `spec.nodeName`,
//!   `spec.serviceAccountName`, `status.podIP|hostIP`), `$(VAR)` expansion like the kubelet's;
//! - the pod IP stands in for the pod's network namespace: `SCONCE_HOST=<podIP>` always, `--host`
//!   values are replaced by the pod IP, and `SCONCE_PORT` comes from the first containerPort unless
//!   env or `--port` already set one;
//! - volumes: every arg or env value that starts with a volumeMount's `mountPath` (also after
//!   `--flag=` or `file://`) is rewritten to the volume's local directory (a `hostPath` path as is,
//!   an `emptyDir` in the pod's sandbox). This is how "the model is mounted from a local path".

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{Container, EnvVar, Pod};

pub const HOST_IP: &str = "127.0.0.1";

/// What the agent needs besides the pod to plan a container.
pub struct LaunchContext<'a> {
    pub server_binary: &'a Path,
    pub pod_ip: Ipv4Addr,
    pub node_name: &'a str,
    /// Local directory of every volume the agent could provide, by volume name.
    pub volume_dirs: &'a BTreeMap<String, PathBuf>,
    pub sandbox_dir: &'a Path,
}

#[derive(Clone, Debug, PartialEq)]
pub struct LaunchSpec {
    pub program: PathBuf,
    pub args: Vec<String>,
    /// The complete environment (the agent's own env is not inherited, except PATH).
    pub env: Vec<(String, String)>,
    pub working_dir: PathBuf,
}

/// Why a container cannot run here; becomes its `state.waiting` reason and message.
#[derive(Clone, Debug, PartialEq)]
pub struct LaunchRefusal {
    pub reason: &'static str,
    pub message: String,
}

fn refuse(reason: &'static str, message: impl Into<String>) -> LaunchRefusal {
    LaunchRefusal {
        reason,
        message: message.into(),
    }
}

pub fn is_server_image(image: &str) -> bool {
    image.contains("sconce-server")
}

pub fn plan_launch(
    pod: &Pod,
    container: &Container,
    ctx: &LaunchContext<'_>,
) -> Result<LaunchSpec, LaunchRefusal> {
    let image = container.image.as_deref().unwrap_or_default();
    if !is_server_image(image) {
        return Err(refuse(
            "ImageNotSupportedLocally",
            format!("the local node agent only runs sconce-server images, not {image:?}"),
        ));
    }
    let mut args: Vec<String> = match container.command.as_deref() {
        Some([program, rest @ ..]) => {
            let base = Path::new(program)
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            if !base.contains("sconce-server") {
                return Err(refuse(
                    "CommandNotSupportedLocally",
                    format!(
                        "command {program:?} is not sconce-server; only the server binary runs locally"
                    ),
                ));
            }
            rest.to_vec()
        }
        _ => Vec::new(),
    };
    args.extend(container.args.iter().flatten().cloned());
    if container.env_from.as_ref().is_some_and(|e| !e.is_empty()) {
        return Err(refuse(
            "CreateContainerConfigError",
            "envFrom is not supported by the local node agent",
        ));
    }

    let mut env: Vec<(String, String)> = Vec::new();
    for var in container.env.iter().flatten() {
        let value = env_value(pod, var, ctx)?;
        let expanded = expand_vars(&value, &env);
        set_env(&mut env, &var.name, expanded);
    }
    let args: Vec<String> = args.iter().map(|a| expand_vars(a, &env)).collect();

    let mounts = local_mounts(container, ctx.volume_dirs);
    let mut args: Vec<String> = args
        .iter()
        .map(|a| rewrite_mounted_path(a, &mounts))
        .collect();
    for (_, value) in env.iter_mut() {
        *value = rewrite_mounted_path(value, &mounts);
    }

    let pod_ip = ctx.pod_ip.to_string();
    rewrite_flag_value(&mut args, "--host", &pod_ip);
    set_env(&mut env, "SCONCE_HOST", pod_ip);
    let has_port = env.iter().any(|(k, _)| k == "SCONCE_PORT") || has_flag(&args, "--port");
    if !has_port && let Some(port) = container.ports.iter().flatten().next() {
        set_env(&mut env, "SCONCE_PORT", port.container_port.to_string());
    }
    let pod_name = pod.metadata.name.clone().unwrap_or_default();
    if !env.iter().any(|(k, _)| k == "HOSTNAME") {
        env.push(("HOSTNAME".into(), pod_name));
    }
    if let Ok(path) = std::env::var("PATH") {
        env.push(("PATH".into(), path));
    }

    let working_dir = match container.working_dir.as_deref() {
        Some(dir) => PathBuf::from(rewrite_mounted_path(dir, &mounts)),
        None => ctx.sandbox_dir.to_path_buf(),
    };
    Ok(LaunchSpec {
        program: ctx.server_binary.to_path_buf(),
        args,
        env,
        working_dir,
    })
}

fn set_env(env: &mut Vec<(String, String)>, name: &str, value: String) {
    match env.iter_mut().find(|(k, _)| k == name) {
        Some(slot) => slot.1 = value,
        None => env.push((name.to_string(), value)),
    }
}

fn env_value(pod: &Pod, var: &EnvVar, ctx: &LaunchContext<'_>) -> Result<String, LaunchRefusal> {
    let Some(source) = &var.value_from else {
        return Ok(var.value.clone().unwrap_or_default());
    };
    let Some(field) = &source.field_ref else {
        return Err(refuse(
            "CreateContainerConfigError",
            format!(
                "env {}: only valueFrom.fieldRef is supported by the local node agent",
                var.name
            ),
        ));
    };
    let meta = &pod.metadata;
    let spec = pod.spec.as_ref();
    let value = match field.field_path.as_str() {
        "metadata.name" => meta.name.clone(),
        "metadata.namespace" => meta.namespace.clone(),
        "metadata.uid" => meta.uid.clone(),
        "spec.nodeName" => Some(ctx.node_name.to_string()),
        "spec.serviceAccountName" => spec.and_then(|s| s.service_account_name.clone()),
        "status.podIP" => Some(ctx.pod_ip.to_string()),
        "status.hostIP" => Some(HOST_IP.to_string()),
        other => {
            return Err(refuse(
                "CreateContainerConfigError",
                format!(
                    "env {}: fieldRef {other:?} is not supported by the local node agent",
                    var.name
                ),
            ));
        }
    };
    Ok(value.unwrap_or_default())
}

/// The kubelet's `$(VAR)` expansion: defined names are replaced, `$$` escapes, anything else stays.
pub fn expand_vars(input: &str, env: &[(String, String)]) -> String {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(inner) = after.strip_prefix('(')
            && let Some(end) = inner.find(')')
            && let Some((_, value)) = env.iter().find(|(k, _)| k == &inner[..end])
        {
            out.push_str(value);
            rest = &inner[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// `(mountPath, local dir)` for the container's mounts the agent can provide, longest path first.
pub fn local_mounts(
    container: &Container,
    volume_dirs: &BTreeMap<String, PathBuf>,
) -> Vec<(String, PathBuf)> {
    let mut mounts: Vec<(String, PathBuf)> = container
        .volume_mounts
        .iter()
        .flatten()
        .filter_map(|m| {
            let dir = volume_dirs.get(&m.name)?;
            let local = match m.sub_path.as_deref() {
                Some(sub) if !sub.is_empty() => dir.join(sub),
                _ => dir.clone(),
            };
            let path = m.mount_path.trim_end_matches('/').to_string();
            (!path.is_empty()).then_some((path, local))
        })
        .collect();
    mounts.sort_by_key(|(path, _)| std::cmp::Reverse(path.len()));
    mounts
}

/// Rewrites `value` when it is (or contains after `--flag=` / `file://`) a path under a mount.
pub fn rewrite_mounted_path(value: &str, mounts: &[(String, PathBuf)]) -> String {
    let (head, path) = match value.split_once('=') {
        Some((flag, rest)) if flag.starts_with('-') => (format!("{flag}="), rest),
        _ => (String::new(), value),
    };
    let (scheme, path) = match path.strip_prefix("file://") {
        Some(rest) => ("file://", rest),
        None => ("", path),
    };
    for (mount, local) in mounts {
        let Some(rest) = path.strip_prefix(mount.as_str()) else {
            continue;
        };
        if rest.is_empty() || rest.starts_with('/') {
            return format!("{head}{scheme}{}{rest}", local.display());
        }
    }
    value.to_string()
}

fn has_flag(args: &[String], flag: &str) -> bool {
    args.iter()
        .any(|a| a == flag || a.strip_prefix(flag).is_some_and(|r| r.starts_with('=')))
}

/// Replaces the value of `flag` (`--flag v` or `--flag=v`) wherever it appears.
fn rewrite_flag_value(args: &mut [String], flag: &str, value: &str) {
    let mut i = 0;
    while i < args.len() {
        if args[i] == flag && i + 1 < args.len() {
            args[i + 1] = value.to_string();
            i += 1;
        } else if args[i]
            .strip_prefix(flag)
            .is_some_and(|r| r.starts_with('='))
        {
            args[i] = format!("{flag}={value}");
        }
        i += 1;
    }
}

#[cfg(test)]
mod tests;
