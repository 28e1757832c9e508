//! Time from applying a ModelDeployment to its Deployment existing, on a real kube-apiserver
//! with the operator running, median of N (default 20). As a peer measured in the same run: a
//! plain ConfigMap create -> watch event round trip on the same API server, so the ratio shows
//! what the operator adds over the API server's own latency.
//!
//!   cargo bench --bench apply_latency            # uses SCONCE_TEST_KUBECONFIG or starts hack/k8s.sh
//!   APPLY_LATENCY_RUNS=50 cargo bench --bench apply_latency
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use kube::{Client, CustomResourceExt};
use sconce::crd::{ModelDeployment, ModelDeploymentSpec, ModelFormat, ModelSpec};
use sconce::metrics::Metrics;
use sconce::reconcile::{self, build::BuildConfig};
use tokio::sync::mpsc;

fn kubeconfig() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os("SCONCE_TEST_KUBECONFIG") {
        return Ok(PathBuf::from(path));
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new("bash")
        .arg(root.join("hack/k8s.sh"))
        .arg("ensure")
        .arg(root.join("target/sconce-test-cluster"))
        .output()?;
    anyhow::ensure!(out.status.success(), "hack/k8s.sh ensure failed");
    Ok(PathBuf::from(
        String::from_utf8(out.stdout)?
            .trim()
            .lines()
            .last()
            .unwrap_or_default(),
    ))
}

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
    let kubeconfig = kube::config::Kubeconfig::read_from(kubeconfig()?)?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await?;
    let client = Client::try_from(config)?;

    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.patch(
        "modeldeployments.sconce.dev",
        &PatchParams::apply("sconce-bench").force(),
        &Patch::Apply(ModelDeployment::crd()),
    )
    .await?;
    tokio::time::sleep(Duration::from_secs(2)).await; // Established

    let ns = format!("bench-latency-{}", std::process::id());
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let meta = ObjectMeta {
        name: Some(ns.clone()),
        ..Default::default()
    };
    namespaces
        .create(
            &PostParams::default(),
            &Namespace {
                metadata: meta,
                ..Default::default()
            },
        )
        .await?;

    let operator = tokio::spawn(reconcile::run(
        client.clone(),
        Some(ns.clone()),
        BuildConfig {
            server_image: "ghcr.io/sconce-dev/sconce-server:bench".into(),
        },
        Arc::new(Metrics::default()),
        Arc::new(AtomicBool::new(false)),
    ));
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
    operator.abort();
    namespaces.delete(&ns, &DeleteParams::background()).await?;
    Ok(())
}
