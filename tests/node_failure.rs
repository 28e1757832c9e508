//! A node that goes away: on a plane of its own (the shared one keeps serving other tests), the
//! kubelet is stopped under a serving ModelDeployment. The node lifecycle controller marks the
//! node and its pods not ready; the operator must say so in the status.
mod common;

use std::time::{Duration, Instant};

use common::{TEST_SERVER_IMAGE, has_condition, shared_model_dir, wait_until};
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, PostParams};
use sconce::crd::ModelDeployment;
use sconce_devtools::testing::TestCluster;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_kubelet_stops_is_reported() {
    let cluster = tokio::task::spawn_blocking(TestCluster::start_private)
        .await
        .expect("join")
        .expect("a private plane starts");
    let client = cluster.client().await.expect("client");
    let crd = sconce::crd::crd();
    let crds: Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> =
        Api::all(client.clone());
    crds.create(&PostParams::default(), &crd)
        .await
        .expect("CRD");
    let mds: Api<ModelDeployment> = Api::namespaced(client.clone(), "default");
    wait_until(Duration::from_secs(30), "CRD served", || async {
        mds.list(&Default::default()).await.ok().map(|_| ())
    })
    .await;
    let metrics = std::sync::Arc::new(sconce::metrics::Metrics::default());
    let config = sconce::reconcile::build::BuildConfig {
        server_image: TEST_SERVER_IMAGE.into(),
        ..Default::default()
    };
    let operator = tokio::spawn(sconce::reconcile::run(
        client.clone(),
        Some("default".into()),
        config,
        metrics,
        Default::default(),
    ));
    let md: ModelDeployment = serde_yaml::from_str(&format!(
        "apiVersion: sconce.dev/v1alpha1\nkind: ModelDeployment\nmetadata: {{name: lonely}}\n\
         spec: {{replicas: 1, model: {{version: '1', uri: 'file://{}', format: sequential}}}}\n",
        shared_model_dir().display()
    ))
    .expect("manifest");
    mds.create(&PostParams::default(), &md)
        .await
        .expect("create");
    let wait = Duration::from_secs(120);
    wait_until(wait, "Ready", || async {
        let md = mds.get("lonely").await.ok()?;
        has_condition(&md, "Ready", "True", "Available").then_some(())
    })
    .await;

    // Stop the kubelet (its pod keeps running, but nobody reports on it any more).
    let dir = cluster.dir().expect("plane dir").to_path_buf();
    let pid = std::fs::read_to_string(dir.join("kubelet.pid")).expect("kubelet pid");
    let status = std::process::Command::new("kill")
        .arg(pid.trim())
        .status()
        .expect("kill");
    assert!(status.success());
    let stopped = Instant::now();
    let md = wait_until(wait, "NodeNotReady in status", || async {
        let md = mds.get("lonely").await.ok()?;
        has_condition(&md, "Degraded", "True", "NodeNotReady").then_some(md)
    })
    .await;
    let took = stopped.elapsed();
    let degraded = md
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Degraded"))
        .expect("Degraded");
    assert!(
        degraded
            .message
            .contains("node sconce-node, which is not ready"),
        "{}",
        degraded.message
    );
    assert!(has_condition(&md, "Ready", "False", "NodeNotReady"));
    println!(
        "kubelet stopped; NodeNotReady reported after {took:?} (node-monitor-grace-period 16 s): {}",
        degraded.message
    );
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    assert!(
        deployments
            .get_opt("lonely-1")
            .await
            .expect("get")
            .is_some()
    );
    operator.abort();
    drop(cluster);
}
