//! The operator at scale, against the real kube-apiserver 1.20 with no node (pods stay
//! Pending): 1000 ModelDeployments created at once. Reports the time until every one has its
//! Deployment, Service and a current `observedGeneration`; the operator's apiserver requests
//! (from its own metrics); its peak RSS; its writes during 60 s of steady state; and the
//! p50/p99 time from an apply to the Deployment existing, next to a ConfigMap apply -> watch
//! event on the same apiserver in the same run (a floor no operator can beat).
//!
//!   cargo bench --bench operator_scale           # root: starts its own node-less plane
//!   SCALE_MODELS=200 SCALE_STEADY_SECONDS=20 cargo bench --bench operator_scale
//!
//! The operator is the release binary, run as its own process (as in a pod), so its RSS and
//! its requests are its own.
#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures::{StreamExt, stream};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Node, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::runtime::watcher;
use sconce::crd::{ModelDeployment, ModelDeploymentSpec, ModelFormat, ModelSpec};
use tokio::sync::mpsc;

const ADMIN_ADDR: &str = "127.0.0.1:18481";

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn model(name: &str) -> ModelDeployment {
    ModelDeployment::new(
        name,
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
    )
}

/// A node-less plane of our own (stopped on drop), unless SCONCE_TEST_KUBECONFIG names one.
struct Plane {
    run_dir: Option<PathBuf>,
}

impl Plane {
    fn start() -> Result<Plane> {
        if std::env::var_os("SCONCE_TEST_KUBECONFIG").is_some() {
            return Ok(Plane { run_dir: None });
        }
        let run_dir = std::env::temp_dir().join(format!("sconce-scale-{}", std::process::id()));
        let out = Command::new("bash")
            .arg(common::repo_root().join("hack/k8s.sh"))
            .arg("start")
            .arg(&run_dir)
            .env("SCONCE_NO_NODE", "1")
            .stderr(Stdio::inherit())
            .output()
            .context("running hack/k8s.sh start")?;
        let plane = Plane {
            run_dir: Some(run_dir),
        };
        if !out.status.success() {
            bail!("hack/k8s.sh start failed");
        }
        let kubeconfig = String::from_utf8_lossy(&out.stdout)
            .lines()
            .last()
            .unwrap_or_default()
            .trim()
            .to_string();
        // SAFETY: set before the runtime and any other thread starts.
        unsafe { std::env::set_var("SCONCE_TEST_KUBECONFIG", kubeconfig) };
        Ok(plane)
    }
}

impl Drop for Plane {
    fn drop(&mut self) {
        if let Some(dir) = &self.run_dir {
            let _ = Command::new("bash")
                .arg(common::repo_root().join("hack/k8s.sh"))
                .arg("stop")
                .arg(dir)
                .status();
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// The operator binary, running as its own process.
struct OperatorProcess {
    child: Child,
}

impl OperatorProcess {
    fn start(namespace: &str) -> Result<OperatorProcess> {
        let child = Command::new(env!("CARGO_BIN_EXE_sconce"))
            .args(["--namespace", namespace, "--admin-addr", ADMIN_ADDR])
            .env("KUBECONFIG", common::kubeconfig())
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting the operator")?;
        Ok(OperatorProcess { child })
    }

    /// Peak resident set size (VmHWM), bytes.
    fn peak_rss(&self) -> Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))?;
        let kib: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .context("VmHWM in /proc/PID/status")?;
        Ok(kib * 1024)
    }
}

impl Drop for OperatorProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `sconce_operator_apiserver_requests_total` by (verb, resource).
async fn api_requests() -> Result<BTreeMap<(String, String), f64>> {
    let text = reqwest::get(format!("http://{ADMIN_ADDR}/metrics"))
        .await?
        .text()
        .await?;
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("sconce_operator_apiserver_requests_total{") else {
            continue;
        };
        let Some((labels, value)) = rest.split_once("} ") else {
            continue;
        };
        let label = |key: &str| {
            labels
                .split(',')
                .find_map(|kv| kv.strip_prefix(&format!("{key}=\"")))
                .map(|v| v.trim_end_matches('"').to_string())
                .unwrap_or_default()
        };
        out.insert((label("verb"), label("resource")), value.trim().parse()?);
    }
    Ok(out)
}

fn is_write(verb: &str) -> bool {
    !matches!(verb, "get" | "list" | "watch")
}

fn delta(
    after: &BTreeMap<(String, String), f64>,
    before: &BTreeMap<(String, String), f64>,
) -> BTreeMap<(String, String), f64> {
    after
        .iter()
        .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0.0)))
        .filter(|(_, v)| *v > 0.0)
        .collect()
}

fn print_requests(title: &str, requests: &BTreeMap<(String, String), f64>) {
    // 0.0 + ...: an empty f64 sum is -0.0, printed "-0".
    let total: f64 = 0.0 + requests.values().sum::<f64>();
    let writes: f64 = 0.0
        + requests
            .iter()
            .filter(|((verb, _), _)| is_write(verb))
            .map(|(_, v)| v)
            .sum::<f64>();
    println!("{title}: {total:.0} requests, {writes:.0} writes");
    for ((verb, resource), n) in requests {
        println!("    {verb:<8} {resource:<28} {n:>7.0}");
    }
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

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// p50/p99 of apply -> Deployment created, and of the ConfigMap floor, interleaved.
/// The operator's Deployment for `name`, as a plain object under another name (no owner, no
/// Sconce labels): what the apiserver costs to store exactly what the operator stores.
async fn peer_deployment(
    client: &kube::Client,
    ns: &str,
    from: &str,
    name: &str,
) -> Result<Deployment> {
    let theirs = Api::<Deployment>::namespaced(client.clone(), ns)
        .get(from)
        .await?;
    let labels = std::collections::BTreeMap::from([("bench".to_string(), name.to_string())]);
    let mut spec = theirs.spec;
    spec.selector.match_labels = Some(labels.clone());
    if let Some(meta) = spec.template.metadata.as_mut() {
        meta.labels = Some(labels.clone());
    }
    Ok(Deployment {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            labels: Some(labels),
            ..Default::default()
        },
        spec,
        status: None,
    })
}

/// Apply -> Deployment created through the operator, next to two floors on the same
/// apiserver, interleaved: a ConfigMap apply -> its watch event (the cheapest write), and the
/// operator's own Deployment applied directly -> its watch event.
async fn apply_latency(client: &kube::Client, ns: &str, runs: usize) -> Result<[Vec<Duration>; 3]> {
    let mut deployments = watch_names(Api::<Deployment>::namespaced(client.clone(), ns));
    let mut configmaps = watch_names(Api::<ConfigMap>::namespaced(client.clone(), ns));
    tokio::time::sleep(Duration::from_secs(2)).await; // watches established
    let mds: Api<ModelDeployment> = Api::namespaced(client.clone(), ns);
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let deploys: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let (mut operator, mut floor, mut direct) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..runs {
        let name = format!("latency-{i}");
        let started = Instant::now();
        mds.patch(
            &name,
            &PatchParams::apply("kubectl"),
            &Patch::Apply(&model(&name)),
        )
        .await?;
        operator.push(wait_for(&mut deployments, &format!("{name}-1")).await? - started);
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
        floor.push(wait_for(&mut configmaps, &name).await? - started);
        let peer_name = format!("peer-{i}");
        let peer = peer_deployment(client, ns, &format!("{name}-1"), &peer_name).await?;
        let started = Instant::now();
        deploys
            .patch(
                &peer_name,
                &PatchParams::apply("kubectl"),
                &Patch::Apply(&peer),
            )
            .await?;
        direct.push(wait_for(&mut deployments, &peer_name).await? - started);
    }
    for samples in [&mut operator, &mut floor, &mut direct] {
        samples.sort();
    }
    Ok([operator, floor, direct])
}

/// How many of the `models` have a Deployment, a Service and a current observedGeneration.
async fn converged(client: &kube::Client, ns: &str, models: usize) -> Result<usize> {
    let lp = ListParams::default();
    let deployments: std::collections::HashSet<String> =
        Api::<Deployment>::namespaced(client.clone(), ns)
            .list_metadata(&lp)
            .await?
            .items
            .into_iter()
            .filter_map(|d| d.metadata.name)
            .collect();
    let services: std::collections::HashSet<String> =
        Api::<Service>::namespaced(client.clone(), ns)
            .list_metadata(&lp)
            .await?
            .items
            .into_iter()
            .filter_map(|s| s.metadata.name)
            .collect();
    let mds = Api::<ModelDeployment>::namespaced(client.clone(), ns)
        .list(&lp)
        .await?;
    Ok(mds
        .items
        .iter()
        .filter(|md| {
            let name = md.metadata.name.clone().unwrap_or_default();
            name.starts_with("scale-")
                && deployments.contains(&format!("{name}-1"))
                && services.contains(&name)
                && md
                    .status
                    .as_ref()
                    .and_then(|s| s.observed_generation)
                    .is_some_and(|g| Some(g) == md.metadata.generation)
        })
        .count()
        .min(models))
}

fn main() -> Result<()> {
    let _plane = Plane::start()?;
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run())
}

async fn run() -> Result<()> {
    let models: usize = env_or("SCALE_MODELS", 1000);
    let steady_seconds: u64 = env_or("SCALE_STEADY_SECONDS", 60);
    let latency_runs: usize = env_or("SCALE_LATENCY_RUNS", 50);
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());

    common::install_crd();
    let client = common::client().await;
    let nodes = Api::<Node>::all(client.clone())
        .list_metadata(&ListParams::default())
        .await?;
    if !nodes.items.is_empty() {
        bail!(
            "this benchmark needs a plane without nodes (pods must stay Pending); unset \
             SCONCE_TEST_KUBECONFIG to let it start one"
        );
    }
    let ns = common::namespace(&client, "bench-scale").await;
    let operator = OperatorProcess::start(&ns)?;
    common::wait_until(
        Duration::from_secs(30),
        "the operator's metrics",
        || async { api_requests().await.ok() },
    )
    .await;

    // 1. Latency on an idle operator, next to the apiserver's own floor.
    let [latency, floor, direct] = apply_latency(&client, &ns, latency_runs).await?;

    // 2. Many at once, as `kubectl apply -f dir/` or a GitOps sync would.
    let before_burst = api_requests().await?;
    let mds: Arc<Api<ModelDeployment>> = Arc::new(Api::namespaced(client.clone(), &ns));
    let started = Instant::now();
    let results: Vec<Result<ModelDeployment, kube::Error>> = stream::iter(0..models)
        .map(|i| {
            let mds = mds.clone();
            async move {
                let name = format!("scale-{i}");
                mds.patch(
                    &name,
                    &PatchParams::apply("kubectl"),
                    &Patch::Apply(&model(&name)),
                )
                .await
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    let created = started.elapsed();
    if let Some(Err(e)) = results.into_iter().find(|r| r.is_err()) {
        bail!("creating ModelDeployments: {e}");
    }
    let mut last_report = Instant::now();
    let converge_time = loop {
        let done = converged(&client, &ns, models).await?;
        if done == models {
            break started.elapsed();
        }
        if last_report.elapsed() > Duration::from_secs(5) {
            println!(
                "  ... {done}/{models} converged after {:.1} s",
                started.elapsed().as_secs_f64()
            );
            last_report = Instant::now();
        }
        if started.elapsed() > Duration::from_secs(600) {
            bail!("only {done}/{models} converged after 600 s");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let after_burst = api_requests().await?;

    // 3. Steady state. Converged is not yet quiet: the pods the Deployments create are then
    // found unschedulable and reported. Wait until the operator has written nothing for 10 s,
    // then count what it sends.
    let writes = |m: &BTreeMap<(String, String), f64>| -> f64 {
        0.0 + m
            .iter()
            .filter(|((verb, _), _)| is_write(verb))
            .map(|(_, v)| v)
            .sum::<f64>()
    };
    let mut last_writes = writes(&api_requests().await?);
    let mut quiet_since = Instant::now();
    let quiet_at = loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = writes(&api_requests().await?);
        if now != last_writes {
            last_writes = now;
            quiet_since = Instant::now();
        }
        if quiet_since.elapsed() >= Duration::from_secs(10) {
            break quiet_since - started;
        }
        if started.elapsed() > Duration::from_secs(900) {
            bail!("the operator kept writing for 900 s");
        }
    };
    let settled = delta(&api_requests().await?, &before_burst);
    let steady_before = api_requests().await?;
    tokio::time::sleep(Duration::from_secs(steady_seconds)).await;
    let steady = delta(&api_requests().await?, &steady_before);
    let peak_rss = operator.peak_rss()?;

    let p50 = percentile(&latency, 0.5);
    let p99 = percentile(&latency, 0.99);
    let floor50 = percentile(&floor, 0.5);
    let floor99 = percentile(&floor, 0.99);
    let ratio = p50.as_secs_f64() / floor50.as_secs_f64().max(1e-9);
    let steady_writes: f64 = writes(&steady);
    let verdict = |ok: bool| if ok { "PASS" } else { "MISS" };

    println!();
    println!(
        "operator at scale: {models} ModelDeployments, real kube-apiserver 1.20.2 + etcd, no node, {cores} cores"
    );
    println!(
        "  created (16 concurrent applies)      {:>8.1} s",
        created.as_secs_f64()
    );
    println!(
        "  converged (Deployment, Service, observedGeneration)  {:>8.1} s   target < 30 s   {}",
        converge_time.as_secs_f64(),
        verdict(converge_time < Duration::from_secs(30))
    );
    println!(
        "  last write (pods found Pending, reported)  {:>5.1} s after the first apply",
        quiet_at.as_secs_f64()
    );
    println!(
        "  peak RSS                              {:>8.1} MiB target < 64 MiB {}",
        peak_rss as f64 / 1048576.0,
        verdict(peak_rss < 64 * 1048576)
    );
    println!(
        "  writes in {steady_seconds} s of steady state          {:>8.0}     target 0        {}",
        steady_writes,
        verdict(steady_writes == 0.0)
    );
    println!(
        "  apply -> Deployment  p50 {:>7.1} ms  p99 {:>7.1} ms  (n={latency_runs}, idle operator)",
        ms(p50),
        ms(p99)
    );
    println!(
        "  floor: ConfigMap apply -> watch event  p50 {:>7.1} ms  p99 {:>7.1} ms",
        ms(floor50),
        ms(floor99)
    );
    let direct50 = percentile(&direct, 0.5);
    println!(
        "  the operator's Deployment applied directly -> watch event  p50 {:>7.1} ms  p99 {:>7.1} ms",
        ms(direct50),
        ms(percentile(&direct, 0.99))
    );
    println!(
        "  bound: an operator needs at least the ModelDeployment's write and event (~ the floor) \
         and then the Deployment's: {:.1} ms = {:.2}x the floor",
        ms(floor50 + direct50),
        (floor50 + direct50).as_secs_f64() / floor50.as_secs_f64().max(1e-9)
    );
    println!(
        "  p50 ratio {ratio:.2}x                       target <= 2.5x  {}",
        verdict(ratio <= 2.5)
    );
    print_requests(
        "  apiserver requests until converged",
        &delta(&after_burst, &before_burst),
    );
    print_requests("  apiserver requests until the last write", &settled);
    print_requests(
        &format!("  apiserver requests in {steady_seconds} s of steady state"),
        &steady,
    );

    drop(operator);
    common::delete_namespace(&client, &ns).await;
    Ok(())
}
