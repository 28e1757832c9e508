//! End to end: real control plane + the local node agent + real `sconce-server` processes +
//! the real `sconce` operator binary. A ModelDeployment of 2 replicas becomes Ready, both pods
//! answer V2 inference correctly, and a killed server process is noticed and recovered.
mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use sconce::crd::ModelDeployment;
use sconce::reconcile::status::is_ready;
use sconce_devtools::model_fixture::{ModelSpec, sample_input, write_model};
use sconce_devtools::reference_forward;
use sconce_devtools::testing::{AgentOptions, AgentProcess, build_binary, pids_serving_ip};

const WAIT: Duration = Duration::from_secs(120);

/// The operator binary as a child process, killed on drop.
struct OperatorProcess(Child);

impl Drop for OperatorProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn ready_replicas(md: &ModelDeployment) -> (bool, i32) {
    let status = md.status.clone().unwrap_or_default();
    (is_ready(&status), status.ready_replicas)
}

async fn infer(ip: &str, input: &[f32]) -> Vec<f32> {
    let body = serde_json::json!({
        "id": "e2e",
        "inputs": [{"name": "input", "datatype": "FP32", "shape": [1, input.len()], "data": input}]
    });
    let response = reqwest::Client::new()
        .post(format!("http://{ip}:8080/v2/models/mnist/infer"))
        .json(&body)
        .send()
        .await
        .expect("request to the pod");
    assert!(
        response.status().is_success(),
        "{ip}: HTTP {}",
        response.status()
    );
    let answer: serde_json::Value = response.json().await.expect("JSON answer");
    assert_eq!(answer["id"], "e2e");
    answer["outputs"][0]["data"]
        .as_array()
        .expect("output data")
        .iter()
        .map(|v| v.as_f64().expect("number") as f32)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_deployment_serves_real_predictions_and_heals() {
    install_crd();
    let client = client().await;
    let ns = namespace(&client, "e2e").await;
    let work = tempfile::tempdir().expect("tempdir");
    let model_dir: PathBuf = work.path().join("mnist");
    write_model(&model_dir, &ModelSpec::default()).expect("model written");

    let server = build_binary("sconce-server", "sconce-server").expect("sconce-server builds");
    let agent_bin = build_binary("sconce-devtools", "sconce-dev").expect("sconce-dev builds");
    let _agent = AgentProcess::spawn(
        &agent_bin,
        &AgentOptions {
            kubeconfig: kubeconfig(),
            namespace: Some(ns.clone()),
            node_name: format!("node-{ns}"),
            ip_prefix: "127.0.77".into(),
            server_binary: Some(server),
            log_dir: Some(work.path().join("logs")),
        },
    )
    .expect("node agent starts");
    let _operator = OperatorProcess(
        Command::new(env!("CARGO_BIN_EXE_sconce"))
            .args(["--namespace", &ns, "--admin-addr", "127.0.0.1:0"])
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
        (ready_replicas(&md) == (true, 2)).then_some(())
    })
    .await;

    // The real EndpointSlice controller lists both pods behind the Service. (The older Endpoints
    // controller refuses loopback pod IPs: "may not be in the loopback range"; EndpointSlices
    // accept them. 1.20 serves only discovery.k8s.io/v1beta1, so read them through kubectl.)
    let ips: Vec<String> = wait_until(WAIT, "2 ready endpoint addresses", || async {
        let out = kubectl(
            &[
                "get",
                "endpointslices",
                "-n",
                &ns,
                "-l",
                "kubernetes.io/service-name=mnist",
                "-o",
                "json",
            ],
            None,
        );
        let list: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        let mut ips: Vec<String> = list["items"]
            .as_array()?
            .iter()
            .flat_map(|slice| slice["endpoints"].as_array().cloned().unwrap_or_default())
            .filter(|ep| ep["conditions"]["ready"] == serde_json::Value::Bool(true))
            .flat_map(|ep| ep["addresses"].as_array().cloned().unwrap_or_default())
            .filter_map(|ip| ip.as_str().map(String::from))
            .collect();
        ips.sort();
        (ips.len() == 2).then_some(ips)
    })
    .await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let pod_ips: Vec<String> = pods
        .list(&ListParams::default().labels("sconce.dev/model-deployment=mnist"))
        .await
        .expect("pods")
        .items
        .into_iter()
        .filter_map(|p| p.status?.pod_ip)
        .collect();
    for ip in &ips {
        assert!(
            pod_ips.contains(ip),
            "endpoint {ip} is one of the pods {pod_ips:?}"
        );
    }

    // Each pod answers with what an independent forward pass computes.
    let input = sample_input(1000, 7);
    let expected = reference_forward(&model_dir, &input).expect("reference");
    for ip in &ips {
        let got = infer(ip, &input).await;
        assert_eq!(got.len(), expected.len());
        for (g, e) in got.iter().zip(&expected) {
            assert!((g - e).abs() < 1e-5, "{ip}: {got:?} vs {expected:?}");
        }
    }

    // Kill one pod's server process: the ModelDeployment reports it, then recovers.
    let victim = &ips[0];
    let pids = pids_serving_ip(victim);
    assert!(!pids.is_empty(), "no process serves {victim}");
    for pid in pids {
        let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
    }
    wait_until(
        WAIT,
        "the ModelDeployment to report a lost replica",
        || async {
            let md = mds.get("mnist").await.ok()?;
            (ready_replicas(&md) != (true, 2)).then_some(())
        },
    )
    .await;
    wait_until(WAIT, "recovery to 2 ready replicas", || async {
        let md = mds.get("mnist").await.ok()?;
        (ready_replicas(&md) == (true, 2)).then_some(())
    })
    .await;

    // A new version: Deployment mnist-2 rolls out beside mnist-1, which goes only once mnist-2 is
    // fully ready; the status then names the new current version.
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
    let deployments: Api<k8s_openapi::api::apps::v1::Deployment> =
        Api::namespaced(client.clone(), &ns);
    wait_until(WAIT, "version 2 current and mnist-1 removed", || async {
        let md = mds.get("mnist").await.ok()?;
        let status = md.status.clone()?;
        let old_gone = deployments.get_opt("mnist-1").await.ok()?.is_none();
        (status.current_version.as_deref() == Some("2")
            && ready_replicas(&md) == (true, 2)
            && old_gone)
            .then_some(())
    })
    .await;
    let new = deployments
        .get("mnist-2")
        .await
        .expect("Deployment mnist-2");
    assert_eq!(new.status.and_then(|s| s.ready_replicas), Some(2));

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
