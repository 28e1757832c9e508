//! The Argo CD health check for ModelDeployments (`gitops/argocd/modeldeployment-health.lua`),
//! run by a real Lua 5.1 interpreter (the language version Argo CD's gopher-lua speaks) on
//! status objects the operator really wrote on the test plane: Progressing while a version rolls
//! out, Healthy when it serves, Suspended while a canary waits at a pause, Healthy again once it is
//! promoted, Degraded for a spec it cannot serve.
mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use common::*;
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(120);

fn health_script() -> PathBuf {
    repo_root().join("gitops/argocd/modeldeployment-health.lua")
}

/// `value` as a Lua table constructor, the way Argo CD hands `obj` to the script (JSON null
/// becomes nil, arrays 1-based tables).
fn lua_literal(value: &Value) -> String {
    match value {
        Value::Null => "nil".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => {
            let mut out = String::from("\"");
            for byte in s.bytes() {
                match byte {
                    b'"' | b'\\' => {
                        out.push('\\');
                        out.push(byte as char);
                    }
                    0x20..=0x7e => out.push(byte as char),
                    _ => out.push_str(&format!("\\{byte}")),
                }
            }
            out.push('"');
            out
        }
        Value::Array(items) => format!(
            "{{{}}}",
            items.iter().map(lua_literal).collect::<Vec<_>>().join(", ")
        ),
        Value::Object(map) => format!(
            "{{{}}}",
            map.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| format!(
                    "[{}] = {}",
                    lua_literal(&Value::String(k.clone())),
                    lua_literal(v)
                ))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Run the health check on `object` with lua5.1; (status, message).
fn health(object: &Value) -> (String, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let harness = dir.path().join("harness.lua");
    let script = health_script();
    std::fs::write(
        &harness,
        format!(
            "obj = {}\nlocal check = assert(loadfile({}))\nlocal hs = check()\nprint(hs.status)\nprint(hs.message)\n",
            lua_literal(object),
            lua_literal(&Value::String(script.display().to_string())),
        ),
    )
    .expect("harness written");
    let out = Command::new("lua5.1")
        .arg(&harness)
        .output()
        .expect("lua5.1 runs (apt-get install lua5.1; hack/test.sh installs it)");
    assert!(
        out.status.success(),
        "lua5.1: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut lines = text.lines();
    (
        lines.next().unwrap_or_default().to_string(),
        lines.next().unwrap_or_default().to_string(),
    )
}

/// The ModelDeployment as `kubectl get -o json` shows it.
fn object(ns: &str, name: &str) -> Value {
    let text = kubectl_ok(
        &["get", "-n", ns, "modeldeployment", name, "-o", "json"],
        None,
    );
    serde_json::from_str(&text).expect("JSON")
}

fn manifest(name: &str, uri: &str, version: &str) -> String {
    format!(
        "apiVersion: sconce.dev/v1alpha1\nkind: ModelDeployment\nmetadata: {{name: {name}}}\n\
         spec:\n  replicas: 1\n  model: {{version: \"{version}\", uri: \"{uri}\", format: sequential}}\n\
         \x20 runtime: {{image: {TEST_SERVER_IMAGE}}}\n\
         \x20 rollout: {{steps: [{{setWeight: 50}}, {{pause: {{}}}}]}}\n"
    )
}

#[test]
fn the_interpreter_sees_what_argo_cd_would() {
    let (status, message) = health(&serde_json::json!({"metadata": {"name": "m"}}));
    assert_eq!(status, "Progressing");
    assert_eq!(
        message,
        "Waiting for the Sconce operator to report a status"
    );
    // strings with quotes, backslashes and UTF-8 survive the trip
    let odd = serde_json::json!({
        "metadata": {"name": "m", "generation": 1},
        "status": {"observedGeneration": 1, "conditions": [
            {"type": "Degraded", "status": "True", "reason": "CrashLoopBackOff",
             "message": "last log: \"model.safetensors\" not found in C:\\models — ünïcode"}]}
    });
    let (status, message) = health(&odd);
    assert_eq!(status, "Degraded");
    assert_eq!(
        message,
        "CrashLoopBackOff: last log: \"model.safetensors\" not found in C:\\models — ünïcode"
    );
}

#[test]
fn docs_show_the_same_health_check() {
    let docs = std::fs::read_to_string(repo_root().join("docs/gitops.md")).expect("docs/gitops.md");
    let script = std::fs::read_to_string(health_script()).expect("health.lua");
    // in the argocd-cm example, indented under its key
    let indented: String = script
        .lines()
        .map(|l| {
            if l.is_empty() {
                "\n".to_string()
            } else {
                format!("    {l}\n")
            }
        })
        .collect();
    assert!(
        docs.contains(&indented),
        "docs/gitops.md must show gitops/argocd/modeldeployment-health.lua verbatim (4 spaces in)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_of_real_status_objects() {
    install_crd();
    let client = client().await;
    let ns = namespace(&client, "argocd").await;
    let operator = Operator::start(&client, &ns).await;
    let uri = format!("file://{}", shared_model_dir().display());

    kubectl_ok(
        &["apply", "-n", &ns, "-f", "-"],
        Some(&manifest("mnist", &uri, "1")),
    );
    // the first status: pods starting
    wait_status(&client, &ns, "mnist", WAIT, "Progressing", |md| {
        has_condition(md, "Progressing", "True", "RollingOut")
    })
    .await;
    let starting = object(&ns, "mnist");
    let (status, message) = health(&starting);
    println!("starting: {status}: {message}");
    assert_eq!(status, "Progressing", "{message}");
    assert!(message.starts_with("RollingOut: "), "{message}");

    wait_status(&client, &ns, "mnist", WAIT, "Ready", |md| {
        has_condition(md, "Ready", "True", "Available")
    })
    .await;
    let ready = object(&ns, "mnist");
    let (status, message) = health(&ready);
    println!("ready: {status}: {message}");
    assert_eq!(status, "Healthy", "{message}");
    assert_eq!(message, "Available: version 1 serving: 1/1 replicas ready");

    // a status about an older generation does not count
    let mut stale = ready.clone();
    stale["metadata"]["generation"] = Value::from(
        ready["metadata"]["generation"]
            .as_i64()
            .expect("generation")
            + 1,
    );
    let (status, message) = health(&stale);
    assert_eq!(status, "Progressing", "{message}");
    assert!(message.starts_with("Waiting for the Sconce operator to observe generation"));

    // version 2 as a canary: 50 %, then a pause without a duration waits for a promote
    kubectl_ok(
        &["apply", "-n", &ns, "-f", "-"],
        Some(&manifest("mnist", &uri, "2")),
    );
    wait_status(&client, &ns, "mnist", WAIT, "the canary paused", |md| {
        md.status
            .as_ref()
            .and_then(|s| s.rollout_phase)
            .is_some_and(|p| format!("{p:?}") == "Paused")
    })
    .await;
    let paused = object(&ns, "mnist");
    let (status, message) = health(&paused);
    println!("paused: {status}: {message}");
    assert_eq!(status, "Suspended", "{message}");
    assert!(
        message.starts_with("CanaryPaused: version 2 paused"),
        "{message}"
    );

    // promoted: it finishes and serves version 2
    kubectl_ok(
        &["annotate", "-n", &ns, "mdep/mnist", "sconce.dev/promote=1"],
        None,
    );
    wait_status(&client, &ns, "mnist", WAIT, "version 2 serving", |md| {
        let s = md.status.clone().unwrap_or_default();
        has_condition(md, "Ready", "True", "Available")
            && s.current_version.as_deref() == Some("2")
            && s.canary_version.is_none()
    })
    .await;
    let (status, message) = health(&object(&ns, "mnist"));
    println!("promoted: {status}: {message}");
    assert_eq!(status, "Healthy", "{message}");
    assert_eq!(message, "Available: version 2 serving: 1/1 replicas ready");

    // a spec that cannot be served
    kubectl_ok(
        &["apply", "-n", &ns, "-f", "-"],
        Some(&manifest("broken", "ftp://models/mnist", "1")),
    );
    wait_status(&client, &ns, "broken", WAIT, "Degraded", |md| {
        has_condition(md, "Degraded", "True", "UnsupportedUriScheme")
    })
    .await;
    let (status, message) = health(&object(&ns, "broken"));
    println!("broken: {status}: {message}");
    assert_eq!(status, "Degraded", "{message}");
    assert!(message.starts_with("UnsupportedUriScheme: "), "{message}");

    operator.stop();
    delete_namespace(&client, &ns).await;
}
