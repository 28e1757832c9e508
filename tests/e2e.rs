//! End to end on the test plane's real node: the real `sconce` operator binary, the real
//! `localhost/sconce-server:dev` image run by kubelet + containerd, predictions through the
//! Service's ClusterIP (kube-proxy). Two replicas become Ready, answer like an independent
//! forward pass, run with the security context the operator sets (checked in the kernel's view
//! of the container's process), a killed container is restarted by the kubelet and reported, and
//! a new version rolls out beside the old one.
mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::node::*;
use common::*;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::{Api, ListParams};
use sconce::crd::ModelDeployment;
use sconce_devtools::model_fixture::{ModelSpec, sample_input, write_model};
use sconce_devtools::reference_forward;

const WAIT: Duration = Duration::from_secs(120);

/// The operator binary as a child process, killed on drop.
struct OperatorProcess(Child);

impl Drop for OperatorProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn ready(md: &ModelDeployment, version: &str, replicas: i32) -> bool {
    let s = md.status.clone().unwrap_or_default();
    has_condition(md, "Ready", "True", "Available")
        && s.ready_replicas == replicas
        && s.current_version.as_deref() == Some(version)
}

/// One V2 inference through `base` (http://host:port); returns the outputs and the version
/// the server reports.
async fn infer(base: &str, input: &[f32]) -> (Vec<f32>, String) {
    let body = serde_json::json!({
        "id": "e2e",
        "inputs": [{"name": "input", "datatype": "FP32", "shape": [1, input.len()], "data": input}]
    });
    let response = reqwest::Client::new()
        .post(format!("{base}/v2/models/mnist/infer"))
        .json(&body)
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .expect("request through the Service");
    assert!(response.status().is_success(), "HTTP {}", response.status());
    let answer: serde_json::Value = response.json().await.expect("JSON answer");
    assert_eq!(answer["id"], "e2e");
    let outputs = answer["outputs"][0]["data"]
        .as_array()
        .expect("output data")
        .iter()
        .map(|v| v.as_f64().expect("number") as f32)
        .collect();
    (
        outputs,
        answer["model_version"].as_str().unwrap_or("").to_string(),
    )
}

async fn check_predictions(base: &str, model_dir: &Path, version: &str) {
    let input = sample_input(1000, 7);
    let expected = reference_forward(model_dir, &input).expect("reference");
    // Several requests: kube-proxy spreads them over both pods.
    for _ in 0..10 {
        let (got, served_version) = infer(base, &input).await;
        assert_eq!(served_version, version);
        assert_eq!(got.len(), expected.len());
        for (g, e) in got.iter().zip(&expected) {
            assert!((g - e).abs() < 1e-5, "{got:?} vs {expected:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_deployment_serves_real_predictions_on_a_real_node_and_heals() {
    install_crd();
    let client = client().await;
    let ns = namespace(&client, "e2e").await;
    let work = tempfile::tempdir().expect("tempdir");
    let model_dir = work.path().join("mnist");
    write_model(&model_dir, &ModelSpec::default()).expect("model written");
    sconce_devtools::testing::make_world_readable(work.path()).expect("chmod");

    let _operator = OperatorProcess(
        Command::new(operator_binary())
            .args(["--namespace", &ns, "--admin-addr", "127.0.0.1:0"])
            .args(["--server-image", TEST_SERVER_IMAGE])
            .env("KUBECONFIG", kubeconfig())
            .stdout(Stdio::null())
            .spawn()
            .expect("operator starts"),
    );
    kubectl_ok(
        &["apply", "-n", &ns, "-f", "-"],
        Some(&example("mnist.yaml", Some(&model_dir))),
    );
    let mds: Api<ModelDeployment> = Api::namespaced(client.clone(), &ns);
    wait_until(WAIT, "Ready=True with 2 ready replicas", || async {
        let md = mds.get("mnist").await.ok()?;
        ready(&md, "1", 2).then_some(())
    })
    .await;

    // Through the Service's ClusterIP, as an in-cluster client would (kube-proxy's iptables).
    let services: Api<Service> = Api::namespaced(client.clone(), &ns);
    let cluster_ip = services
        .get("mnist")
        .await
        .expect("Service")
        .spec
        .and_then(|s| s.cluster_ip)
        .expect("ClusterIP");
    let base = format!("http://{cluster_ip}:80");
    // kube-proxy programs a new Service's rules a moment after the apiserver has it.
    wait_until(WAIT, "kube-proxy to route the ClusterIP", || async {
        let r = reqwest::get(format!("{base}/v2/health/ready")).await.ok()?;
        r.status().is_success().then_some(())
    })
    .await;
    check_predictions(&base, &model_dir, "1").await;

    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let serving = pods
        .list(&ListParams::default().labels("sconce.dev/model-deployment=mnist"))
        .await
        .expect("pods")
        .items;
    assert_eq!(serving.len(), 2);
    for pod in &serving {
        check_container_restrictions(pod);
    }

    // Kill one server container: the kubelet restarts it, the operator reports the lost
    // replica and then the recovery.
    let victim = &serving[0];
    let victim_name = victim.metadata.name.clone().expect("name");
    let id = container_id(victim, "server").expect("container id");
    ctr(&["tasks", "kill", "--signal", "SIGKILL", &id]);
    wait_until(
        WAIT,
        "the ModelDeployment to report a lost replica",
        || async {
            let md = mds.get("mnist").await.ok()?;
            (md.status?.ready_replicas < 2).then_some(())
        },
    )
    .await;
    wait_until(
        WAIT,
        "the kubelet's restart and recovery to 2/2",
        || async {
            let md = mds.get("mnist").await.ok()?;
            let pod = pods.get(&victim_name).await.ok()?;
            let restarts = pod.status?.container_statuses?.first()?.restart_count;
            (ready(&md, "1", 2) && restarts >= 1).then_some(())
        },
    )
    .await;
    check_predictions(&base, &model_dir, "1").await;

    // A new version rolls out beside the old one, which goes only once the new one serves.
    kubectl_ok(
        &[
            "patch",
            "-n",
            &ns,
            "modeldeployment",
            "mnist",
            "--type=merge",
            "-p",
            r#"{"spec":{"model":{"version":"2"}}}"#,
        ],
        None,
    );
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    wait_until(WAIT, "version 2 current and mnist-1 removed", || async {
        let md = mds.get("mnist").await.ok()?;
        let old_gone = deployments.get_opt("mnist-1").await.ok()?.is_none();
        (ready(&md, "2", 2) && old_gone).then_some(())
    })
    .await;
    let new = deployments
        .get("mnist-2")
        .await
        .expect("Deployment mnist-2");
    assert_eq!(new.status.and_then(|s| s.ready_replicas), Some(2));
    wait_until(WAIT, "only version 2 pods", || async {
        let list = pods.list(&ListParams::default()).await.ok()?;
        list.items
            .iter()
            .all(|p| {
                p.metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get("sconce.dev/version"))
                    == Some(&"2".into())
            })
            .then_some(())
    })
    .await;
    check_predictions(&base, &model_dir, "2").await;

    kubectl_ok(
        &[
            "delete",
            "-n",
            &ns,
            "modeldeployment",
            "mnist",
            "--wait=false",
        ],
        None,
    );
    wait_until(WAIT, "pods gone", || async {
        let list = pods.list(&ListParams::default()).await.ok()?;
        list.items.is_empty().then_some(())
    })
    .await;
    delete_namespace(&client, &ns).await;
}
