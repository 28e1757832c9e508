//! `spec.auth` and `spec.networkPolicy` on the test plane's real node and apiserver.
//!
//! API keys: the Secret's key reaches the server only as a read-only file (checked in the
//! container's own view: mode, group, not in its environment or command line), the server
//! refuses calls without it through the Service, and the key appears in no object, event or
//! status. A missing Secret is a `FailedMount` condition, not a crash loop.
//!
//! NetworkPolicy: the object the operator keeps (selector, peers, port), restored when deleted,
//! removed with the field. Enforcement is the network plugin's job: the plane's CNI bridge does
//! not enforce NetworkPolicies, so no test here claims that traffic is blocked.
mod common;

use std::os::unix::fs::MetadataExt;
use std::time::Duration;

use common::node::{container_id, container_pid};
use common::*;
use k8s_openapi::api::core::v1::{Pod, Secret};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, ListParams, PostParams};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(120);
/// Made up by the test; it must never show up anywhere but inside the server.
const KEY: &str = "sk-test-7f3c9d2a1b8e4f60";

fn manifest(name: &str, extra: &str) -> String {
    format!(
        "apiVersion: sconce.dev/v1alpha1\nkind: ModelDeployment\nmetadata: {{name: {name}}}\n\
         spec:\n  replicas: 1\n  model: {{name: mnist, version: '1', uri: 'file://{}', format: sequential}}\n\
         \x20 runtime: {{image: {TEST_SERVER_IMAGE}}}\n{extra}",
        shared_model_dir().display()
    )
}

async fn post_infer(base: &str, key: Option<&str>) -> u16 {
    let body = json!({"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 1000],
                                  "data": vec![0.25f32; 1000]}]});
    let mut request = reqwest::Client::new()
        .post(format!("{base}/v2/models/mnist/infer"))
        .json(&body)
        .timeout(Duration::from_secs(5));
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    request
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_keys_come_from_a_secret_file_and_guard_the_service() {
    install_crd();
    let client = client().await;
    let ns = namespace(&client, "auth").await;
    let operator = Operator::start(&client, &ns).await;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "mnist-keys"},
        "stringData": {"token": format!("{KEY}\n")}
    }))
    .expect("secret");
    secrets
        .create(&PostParams::default(), &secret)
        .await
        .expect("secret created");
    kubectl_ok(
        &["apply", "-n", &ns, "-f", "-"],
        Some(&manifest(
            "guarded",
            "  auth: {apiKeySecret: {name: mnist-keys, key: token}}\n",
        )),
    );
    wait_status(&client, &ns, "guarded", WAIT, "Ready", |md| {
        has_condition(md, "Ready", "True", "Available")
    })
    .await;

    let ip = cluster_ip(&client, &ns, "guarded").await;
    let base = format!("http://{ip}");
    wait_until(WAIT, "the key accepted through the Service", || async {
        (post_infer(&base, Some(KEY)).await == 200).then_some(())
    })
    .await;
    assert_eq!(post_infer(&base, None).await, 401, "no key");
    assert_eq!(post_infer(&base, Some("sk-wrong")).await, 401, "wrong key");
    // probes and the operator's scrape need no key
    for open in ["/v2/health/ready", "/v2/health/live", "/metrics"] {
        let r = reqwest::get(format!("{base}{open}")).await.expect(open);
        assert_eq!(r.status().as_u16(), 200, "{open}");
    }

    // in the container: a 0440 file of the server's group, not in its environment or arguments
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let pod = pods
        .list(&ListParams::default().labels("sconce.dev/model-deployment=guarded"))
        .await
        .expect("pods")
        .items
        .into_iter()
        .next()
        .expect("a serving pod");
    let id = container_id(&pod, "server").expect("container id");
    let pid = container_pid(&id).expect("container process");
    let file = format!("/proc/{pid}/root/etc/sconce/auth/api-key");
    let meta = std::fs::metadata(&file).expect("the key file in the container");
    assert_eq!(meta.mode() & 0o777, 0o440, "{file}");
    assert_eq!(meta.gid(), 65532, "{file}");
    assert_eq!(std::fs::read_to_string(&file).expect("key").trim(), KEY);
    let environ = std::fs::read(format!("/proc/{pid}/environ")).expect("environ");
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).expect("cmdline");
    for (what, bytes) in [("environment", environ), ("command line", cmdline)] {
        assert!(
            !String::from_utf8_lossy(&bytes).contains(KEY),
            "the key is in the server's {what}"
        );
    }
    // ... and in no object the operator wrote or reported
    let mut seen = String::new();
    for kind in ["deployments", "pods", "services", "replicasets"] {
        seen.push_str(&kubectl_ok(&["get", kind, "-n", &ns, "-o", "json"], None));
    }
    seen.push_str(&kubectl_ok(
        &["get", "modeldeployments", "-n", &ns, "-o", "json"],
        None,
    ));
    seen.push_str(&kubectl_ok(
        &["get", "events.events.k8s.io", "-n", &ns, "-o", "json"],
        None,
    ));
    seen.push_str(&describe(&ns, "guarded"));
    assert!(!seen.contains(KEY), "the key leaked into an object");
    assert!(
        seen.contains("--api-key-file"),
        "the pod spec names the file"
    );

    // a Secret that does not exist: a condition naming it, no crash loop
    kubectl_ok(
        &["apply", "-n", &ns, "-f", "-"],
        Some(&manifest(
            "orphan",
            "  auth: {apiKeySecret: {name: no-such-secret}}\n",
        )),
    );
    let md = wait_status(&client, &ns, "orphan", WAIT, "FailedMount", |md| {
        has_condition(md, "Degraded", "True", "FailedMount")
    })
    .await;
    let message = condition(&md, "Degraded")
        .map(|c| c.message.clone())
        .unwrap_or_default();
    assert!(message.contains("no-such-secret"), "{message}");

    operator.stop();
    delete_namespace(&client, &ns).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_network_policy_follows_the_spec() {
    install_crd();
    let client = client().await;
    let ns = namespace(&client, "netpol").await;
    let operator = Operator::start(&client, &ns).await;
    let with_policy = manifest(
        "fenced",
        "  runtime: {image: localhost/sconce-server:dev, port: 8080}\n  networkPolicy:\n    allowFrom:\n    - podSelector: {matchLabels: {role: client}}\n",
    )
    .replace(&format!("  runtime: {{image: {TEST_SERVER_IMAGE}}}\n"), "");
    kubectl_ok(&["apply", "-n", &ns, "-f", "-"], Some(&with_policy));
    let policies: Api<NetworkPolicy> = Api::namespaced(client.clone(), &ns);
    let policy = wait_until(WAIT, "NetworkPolicy fenced", || async {
        policies.get_opt("fenced").await.ok().flatten()
    })
    .await;
    let spec = policy.spec.clone().expect("spec");
    assert_eq!(
        spec.pod_selector
            .and_then(|s| s.match_labels)
            .and_then(|l| l.get("sconce.dev/model-deployment").cloned())
            .as_deref(),
        Some("fenced")
    );
    let rule = spec.ingress.expect("ingress")[0].clone();
    let from = rule.from.expect("from");
    assert_eq!(
        from.len(),
        1,
        "the client only: this operator runs outside the cluster"
    );
    assert_eq!(
        rule.ports.expect("ports")[0].port,
        Some(IntOrString::Int(8080))
    );
    let owner = policy.metadata.owner_references.expect("owner")[0].clone();
    assert_eq!(
        (owner.kind.as_str(), owner.controller),
        ("ModelDeployment", Some(true))
    );
    wait_status(&client, &ns, "fenced", WAIT, "Ready", |md| {
        has_condition(md, "Ready", "True", "Available")
    })
    .await;

    // deleted by someone: put back
    let first_uid = policy.metadata.uid.clone();
    kubectl_ok(&["delete", "networkpolicy", "-n", &ns, "fenced"], None);
    wait_until(WAIT, "the NetworkPolicy restored", || async {
        let p = policies.get_opt("fenced").await.ok().flatten()?;
        (p.metadata.uid != first_uid).then_some(())
    })
    .await;

    // a peer the apiserver refuses: a condition, not a crash loop
    kubectl_ok(
        &[
            "patch",
            "-n",
            &ns,
            "mdep/fenced",
            "--type=merge",
            "-p",
            r#"{"spec":{"networkPolicy":{"allowFrom":[{"ipBlock":{"cidr":"not-a-cidr"}}]}}}"#,
        ],
        None,
    );
    let md = wait_status(
        &client,
        &ns,
        "fenced",
        WAIT,
        "NetworkPolicyRejected",
        |md| has_condition(md, "Degraded", "True", "NetworkPolicyRejected"),
    )
    .await;
    println!(
        "{}",
        condition(&md, "Degraded")
            .map(|c| c.message.clone())
            .unwrap_or_default()
    );

    // the field removed: the policy goes
    kubectl_ok(
        &[
            "patch",
            "-n",
            &ns,
            "mdep/fenced",
            "--type=json",
            "-p",
            r#"[{"op":"remove","path":"/spec/networkPolicy"}]"#,
        ],
        None,
    );
    wait_until(WAIT, "the NetworkPolicy removed", || async {
        policies
            .get_opt("fenced")
            .await
            .ok()
            .and_then(|p| p.is_none().then_some(()))
    })
    .await;
    wait_status(&client, &ns, "fenced", WAIT, "Ready again", |md| {
        has_condition(md, "Ready", "True", "Available")
    })
    .await;

    operator.stop();
    delete_namespace(&client, &ns).await;
}
