//! Time from applying a ModelDeployment to its Deployment existing, on a real kube-apiserver
//! with the operator running, median of N (default 20). As a peer measured in the same run: a
//! plain ConfigMap create -> watch event round trip on the same API server, so the ratio shows
//! what the operator adds over the API server's own latency.
//!
//!   cargo bench --bench apply_latency            # uses SCONCE_TEST_KUBECONFIG or starts hack/k8s.sh
//!   APPLY_LATENCY_RUNS=50 cargo bench --bench apply_latency
#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use common::{Operator, client, delete_namespace, install_crd, namespace};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::watcher;
use sconce::crd::{ModelDeployment, ModelDeploymentSpec, ModelFormat, ModelSpec};
use tokio::sync::mpsc;

/// Names of objects as their watch events arrive, with the arrival time.
fn watch_names<K>(api: Api<K>) -> mpsc::UnboundedReceiver<(String, Instant)>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut stream = watcher(api, watcher::Config::default()).boxed();
        while let Some(event) = stream.next().await {
            if let Ok(watcher::Event::Apply(obj)) = event {
                let name = obj.meta().name.clone().unwrap_or_default();
                if tx.send((name, Instant::now())).is_err() {
                    return;
                }
            }
        }
    });
    rx
}

async fn wait_for(
    rx: &mut mpsc::UnboundedReceiver<(String, Instant)>,
    name: &str,
) -> Result<Instant> {
    loop {
        let (seen, at) = tokio::time::timeout(Duration::from_secs(30), rx.recv())
            .await
            .context("no watch event within 30 s")?
            .context("watch ended")?;
        if seen == name {
            return Ok(at);
        }
    }
}

fn summary(label: &str, mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let median = samples[samples.len() / 2];
    let p90 = samples[(samples.len() * 9 / 10).min(samples.len() - 1)];
    println!(
        "{label:<44} n={:<3} min {:>7.1} ms  median {:>7.1} ms  p90 {:>7.1} ms  max {:>7.1} ms",
        samples.len(),
        ms(samples[0]),
        ms(median),
        ms(p90),
        ms(samples[samples.len() - 1])
    );
    median
}

#[tokio::main]
async fn main() -> Result<()> {
    let runs: usize = std::env::var("APPLY_LATENCY_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    // The integration tests' harness: SCONCE_TEST_KUBECONFIG or a local control plane, the
    // generated CRD, a fresh namespace and an in-process operator watching it.
    install_crd();
    let client = client().await;
    let ns = namespace(&client, "bench-latency").await;
    let operator = Operator::start(&client, &ns).await;
    let mut deployments = watch_names(Api::<Deployment>::namespaced(client.clone(), &ns));
    let mut configmaps = watch_names(Api::<ConfigMap>::namespaced(client.clone(), &ns));
    tokio::time::sleep(Duration::from_secs(2)).await; // watches established

    let mds: Api<ModelDeployment> = Api::namespaced(client.clone(), &ns);
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let (mut operator_samples, mut peer_samples) = (Vec::new(), Vec::new());
    for i in 0..runs {
        let name = format!("m{i}");
        let md = ModelDeployment::new(
            &name,
            ModelDeploymentSpec {
                model: ModelSpec {
                    name: None,
                    version: "1".into(),
                    uri: "file:///models/m".into(),
                    format: ModelFormat::Sequential,
                    sha256: None,
                },
                replicas: 1,
                runtime: None,
                rollout: None,
                traffic: None,
                scaling: None,
                auth: None,
                network_policy: None,
            },
        );
        let started = Instant::now();
        mds.patch(&name, &PatchParams::apply("kubectl"), &Patch::Apply(&md))
            .await?;
        let seen = wait_for(&mut deployments, &format!("{name}-1")).await?;
        operator_samples.push(seen - started);

        let cm = ConfigMap {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                ..Default::default()
            },
            ..Default::default()
        };
        let started = Instant::now();
        cms.patch(&name, &PatchParams::apply("kubectl"), &Patch::Apply(&cm))
            .await?;
        let seen = wait_for(&mut configmaps, &name).await?;
        peer_samples.push(seen - started);
    }
    println!(
        "apply -> object visible, real kube-apiserver 1.20.2 on loopback ({} cores)",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let operator_median = summary(
        "ModelDeployment apply -> Deployment created",
        operator_samples,
    );
    let peer_median = summary("peer: ConfigMap apply -> watch event", peer_samples);
    println!(
        "ratio (operator path / plain API round trip, medians): {:.2}x",
        operator_median.as_secs_f64() / peer_median.as_secs_f64().max(1e-9)
    );
    operator.stop();
    delete_namespace(&client, &ns).await;
    Ok(())
}
