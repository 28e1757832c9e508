//! Autoscaling end to end on the real node with the real server image: closed-loop clients
//! (each always has one request in flight) send V2 requests to a model slow enough that the
//! requests-in-flight the operator scrapes from each pod follow the number of clients. The
//! operator must scale with them, panic on a spike, come back to `minReplicas` after
//! `scaleDownDelay`, keep scaling during a canary, and no request may fail meanwhile.
mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::load::{Load, Tally};
use common::*;
use k8s_openapi::api::apps::v1::Deployment;
use kube::Client;
use kube::api::{Api, Patch, PatchParams};
use sconce::crd::{ModelDeployment, RolloutPhase, ScalingStatus};
use sconce_devtools::model_fixture::{ModelSpec, write_model};

const WAIT: Duration = Duration::from_secs(180);
/// 2048 -> 2048 -> 2048 -> 2048 -> 10: ~12.6 M multiply-adds, some milliseconds per request,
/// so a client's request spends nearly all its time in the server.
const INPUT: usize = 2048;
/// A light background load of both kinds of clients (keep-alive and a new connection per
/// request) that runs through every scale-down: it must never see a failure.
const TRICKLE_PAUSE: Duration = Duration::from_millis(100);

/// The tests measure load on a 2-core node: run side by side, the other test's busy clients
/// slowed this one's requests until one client looked like 1.9 in flight (a CI run failed on
/// it), so they take turns.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn slow_model(work: &Path, version: &str) -> PathBuf {
    let dir = work.join(format!("model-{version}"));
    let spec = ModelSpec {
        input_size: INPUT,
        hidden: vec![2048, 2048, 2048],
        outputs: 10,
        seed: 7,
    };
    write_model(&dir, &spec).expect("model");
    sconce_devtools::testing::make_world_readable(work).expect("chmod");
    dir
}

fn manifest(version: &str, uri: &Path, extra: &str) -> String {
    format!(
        "apiVersion: sconce.dev/v1alpha1\nkind: ModelDeployment\nmetadata: {{name: m}}\nspec:\n  replicas: 1\n\
         \x20 model: {{version: '{version}', uri: 'file://{}', format: sequential}}\n{extra}",
        uri.display()
    )
}

struct Cluster {
    client: Client,
    ns: String,
    operator: Option<Operator>,
    work: tempfile::TempDir,
    base: String,
    loads: Vec<Load>,
    started: Instant,
    /// `kubectl get mdep -w` for the whole run, printed at the end (docs/autoscaling.md).
    watch: std::process::Child,
}

impl Cluster {
    async fn start(prefix: &str, extra: &str) -> Cluster {
        install_crd();
        let client = client().await;
        let ns = namespace(&client, prefix).await;
        let operator = Operator::start(&client, &ns).await;
        let work = tempfile::tempdir().expect("tempdir");
        let v1 = slow_model(work.path(), "1");
        kubectl_ok(
            &["apply", "-n", &ns, "-f", "-"],
            Some(&manifest("1", &v1, extra)),
        );
        wait_status(&client, &ns, "m", WAIT, "version 1 Ready", |md| {
            has_condition(md, "Ready", "True", "Available")
        })
        .await;
        let base = format!("http://{}", cluster_ip(&client, &ns, "m").await);
        wait_until(WAIT, "kube-proxy to route the ClusterIP", || async {
            let r = reqwest::get(format!("{base}/v2/health/ready")).await.ok()?;
            r.status().is_success().then_some(())
        })
        .await;
        let trickle = Load::start_paced(&base, "m", INPUT, 2, TRICKLE_PAUSE);
        let watch = std::process::Command::new("kubectl")
            .args(["get", "mdep", "-n", &ns, "-w"])
            .env("KUBECONFIG", kubeconfig())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("kubectl get -w");
        Cluster {
            client,
            ns,
            operator: Some(operator),
            work,
            base,
            loads: vec![trickle],
            started: Instant::now(),
            watch,
        }
    }

    /// `n` more clients that always have a request in flight.
    fn add_busy_clients(&mut self, n: usize) {
        self.loads
            .push(Load::start_paced(&self.base, "m", INPUT, n, Duration::ZERO));
    }

    /// Stop every load but the trickle; returns their tally.
    async fn stop_busy_clients(&mut self) -> Tally {
        let mut total = Tally::default();
        for load in self.loads.drain(1..).collect::<Vec<_>>() {
            let (t, _) = load.stop().await;
            total.merge(&t);
        }
        total
    }

    async fn md(&self) -> ModelDeployment {
        let api: Api<ModelDeployment> = Api::namespaced(self.client.clone(), &self.ns);
        api.get("m").await.expect("md")
    }

    fn at(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    /// Wait until the autoscaler asks for `replicas` and they are ready; returns how long it
    /// took to ask for them and the scaling status at that moment.
    async fn wait_scaled_to(&self, replicas: i32, timeout: Duration) -> (Duration, ScalingStatus) {
        let t0 = Instant::now();
        let (asked, scaling) =
            wait_until(timeout, &format!("desiredReplicas {replicas}"), || async {
                let s = self.md().await.status.unwrap_or_default();
                if s.desired_replicas != Some(replicas) {
                    return None;
                }
                Some((t0.elapsed(), s.scaling?))
            })
            .await;
        self.wait_deployment_ready("m-1", replicas).await;
        println!(
            "[{:.1}s] desiredReplicas {replicas} after {:.1}s; {replicas} ready after {:.1}s: {:?}",
            self.at(),
            asked.as_secs_f64(),
            t0.elapsed().as_secs_f64(),
            scaling.reason
        );
        (asked, scaling)
    }

    async fn deployment(&self, name: &str) -> Option<Deployment> {
        let api: Api<Deployment> = Api::namespaced(self.client.clone(), &self.ns);
        api.get_opt(name).await.expect("get deployment")
    }

    async fn wait_deployment_ready(&self, name: &str, replicas: i32) {
        wait_until(WAIT, &format!("{name}: {replicas} ready"), || async {
            let d = self.deployment(name).await?;
            let ready = d.status.and_then(|s| s.ready_replicas).unwrap_or(0);
            (d.spec.replicas == Some(replicas) && ready == replicas).then_some(())
        })
        .await;
    }

    /// Stop everything; returns the trickle's and the given tallies together.
    async fn finish(mut self, mut tally: Tally) -> Tally {
        tally.merge(&self.stop_busy_clients().await);
        for load in self.loads.drain(..) {
            tally.merge(&load.stop().await.0);
        }
        let _ = self.watch.kill();
        if let Ok(out) = self.watch.wait_with_output() {
            println!(
                "$ kubectl get mdep -w\n{}",
                String::from_utf8_lossy(&out.stdout)
            );
        }
        println!("{}", describe(&self.ns, "m"));
        kubectl_ok(
            &[
                "get",
                "events",
                "-n",
                &self.ns,
                "--field-selector",
                "involvedObject.kind=ModelDeployment",
            ],
            None,
        )
        .lines()
        .for_each(|l| println!("  {l}"));
        if let Some(op) = self.operator.take() {
            op.stop();
        }
        delete_namespace(&self.client, &self.ns).await;
        tally
    }
}

fn assert_no_failures(tally: &Tally) {
    println!(
        "{} requests, {} failed ({} transport); by (version, code): {:?}; errors: {:?}",
        tally.sent(),
        tally.failed(),
        tally.transport_failures,
        tally.answers,
        tally.errors
    );
    assert!(tally.sent() > 100, "the load ran: {tally:?}");
    assert_eq!(tally.failed(), 0, "no request may fail: {tally:?}");
}

const SCALING: &str = "  scaling: {minReplicas: 1, maxReplicas: 5, metric: concurrency, target: 1.5, \
    stableWindow: 12s, panicWindow: 4s, panicThreshold: 2.2, scaleDownDelay: 10s}\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_follow_concurrency_panic_on_a_spike_and_return_to_min() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let mut c = Cluster::start("autoscale", SCALING).await;
    let stable_window = Duration::from_secs(12);

    // 1 busy client (~1 in flight): one replica is enough, and it stays one.
    c.add_busy_clients(1);
    let hold = Instant::now();
    while hold.elapsed() < stable_window {
        let s = c.md().await.status.unwrap_or_default();
        assert_eq!(
            s.desired_replicas,
            Some(1),
            "1 client needs 1 replica: {s:?}"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }

    // 2 busy clients (~2 in flight at 1.5 per replica): 2 replicas, by the stable window (the
    // ratio 2/1 is under the panic threshold).
    c.add_busy_clients(1);
    let (took, s) = c.wait_scaled_to(2, Duration::from_secs(60)).await;
    assert!(!s.panic, "a gentle rise is not a panic: {s:?}");
    assert!(
        took <= stable_window + Duration::from_secs(10),
        "took {took:?}"
    );

    // A spike to 10 busy clients: the panic window sees ~10 in flight, 7 replicas wanted on 2
    // ready (>= 2.2x): panic, up to maxReplicas well within a stable window.
    c.add_busy_clients(8);
    let (took, s) = c.wait_scaled_to(5, Duration::from_secs(90)).await;
    assert!(s.panic, "a spike is a panic: {s:?}");
    assert!(
        took < stable_window,
        "panic mode scales within the panic window, not the stable one: {took:?}"
    );

    // The load goes away (the trickle stays): back to 1, but not before scaleDownDelay.
    let busy = c.stop_busy_clients().await;
    let quiet = Instant::now();
    let mut first_down = None;
    loop {
        let desired = c
            .md()
            .await
            .status
            .unwrap_or_default()
            .desired_replicas
            .unwrap_or(0);
        if desired < 5 && first_down.is_none() {
            first_down = Some(quiet.elapsed());
        }
        if desired == 1 {
            break;
        }
        assert!(
            quiet.elapsed() < Duration::from_secs(120),
            "still {desired} replicas after 120 s"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let first_down = first_down.unwrap_or_default();
    println!(
        "[{:.1}s] first scale-down {:.1}s after the load stopped; desiredReplicas 1 after {:.1}s",
        c.at(),
        first_down.as_secs_f64(),
        quiet.elapsed().as_secs_f64()
    );
    assert!(
        first_down >= Duration::from_secs(10),
        "no scale-down before scaleDownDelay: {first_down:?}"
    );
    c.wait_deployment_ready("m-1", 1).await;
    // Scale-down drains: let the trickle run on over the removed pods' grace period.
    tokio::time::sleep(Duration::from_secs(8)).await;
    let tally = c.finish(busy).await;
    assert_no_failures(&tally);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_canary_gets_its_share_of_the_autoscaled_replicas() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let rollout = "  rollout: {steps: [{setWeight: 50}, {pause: {}}]}\n";
    let scaling = "  scaling: {minReplicas: 1, maxReplicas: 4, metric: concurrency, target: 1.5, \
        stableWindow: 8s, panicWindow: 4s, scaleDownDelay: 30s}\n";
    let mut c = Cluster::start("autoscale-canary", &format!("{scaling}{rollout}")).await;
    c.add_busy_clients(7);
    c.wait_scaled_to(4, Duration::from_secs(90)).await;

    let v2 = slow_model(c.work.path(), "2");
    kubectl_ok(
        &["apply", "-n", &c.ns, "-f", "-"],
        Some(&manifest("2", &v2, &format!("{scaling}{rollout}"))),
    );
    wait_status(&c.client, &c.ns, "m", WAIT, "canary paused at 50%", |md| {
        md.status.as_ref().is_some_and(|s| {
            s.rollout_phase == Some(RolloutPhase::Paused) && s.canary_weight == Some(50)
        })
    })
    .await;
    // 50% of 4 for the canary; stable keeps its 4 ready pods until the promotion.
    c.wait_deployment_ready("m-2", 2).await;
    let stable = c.deployment("m-1").await.and_then(|d| d.spec.replicas);
    assert_eq!(
        stable,
        Some(4),
        "stable never drops below its ready pods during a canary"
    );
    println!("[{:.1}s] canary 2 pods, stable 4", c.at());

    let api: Api<ModelDeployment> = Api::namespaced(c.client.clone(), &c.ns);
    let patch = serde_json::json!({"metadata": {"annotations": {"sconce.dev/promote": "1"}}});
    api.patch("m", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("promote");
    wait_status(
        &c.client,
        &c.ns,
        "m",
        WAIT,
        "version 2 serving alone",
        |md| {
            md.status.as_ref().is_some_and(|s| {
                s.stable_version.as_deref() == Some("2") && s.canary_version.is_none()
            }) && has_condition(md, "Ready", "True", "Available")
        },
    )
    .await;
    let desired = c
        .md()
        .await
        .status
        .and_then(|s| s.desired_replicas)
        .unwrap_or(0);
    c.wait_deployment_ready("m-2", desired).await;
    assert!(
        desired >= 3,
        "version 2 carries the load with the autoscaled count: {desired}"
    );
    assert!(c.deployment("m-1").await.is_none(), "version 1 retired");
    println!(
        "[{:.1}s] promoted: version 2 runs {desired} replicas",
        c.at()
    );
    let tally = c.finish(Tally::default()).await;
    assert_no_failures(&tally);
}
