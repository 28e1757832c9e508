//! Canary rollouts end to end on the real node with the real server image, while a load
//! generator sends steady V2 requests through the Service's ClusterIP (kube-proxy's real split).
//! Each scenario prints requests sent and failed and how long each phase took.
mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::load::{Load, Tally};
use common::*;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use kube::Client;
use kube::api::{Api, Patch, PatchParams};
use sconce::crd::{ModelDeployment, RolloutPhase};
use sconce_devtools::model_fixture::{ModelSpec, write_model};

const WAIT: Duration = Duration::from_secs(180);
const INPUT: usize = 1000;

/// A model directory for `version`: the same network, or one expecting another input size
/// (`bad`), which answers the load's requests with 400.
fn model_dir(work: &Path, version: &str, bad: bool) -> PathBuf {
    let dir = work.join(format!("model-{version}"));
    let spec = ModelSpec {
        input_size: if bad { 784 } else { INPUT },
        ..Default::default()
    };
    write_model(&dir, &spec).expect("model");
    sconce_devtools::testing::make_world_readable(work).expect("chmod");
    dir
}

fn manifest(version: &str, uri: &Path, rollout: &str) -> String {
    format!(
        "apiVersion: sconce.dev/v1alpha1\nkind: ModelDeployment\nmetadata: {{name: m}}\nspec:\n  replicas: 2\n\
         \x20 model: {{version: '{version}', uri: 'file://{}', format: sequential}}\n{rollout}",
        uri.display()
    )
}

const STEPS: &str = "  rollout:\n    steps: [{setWeight: 25}, {pause: {duration: 4s}}, {setWeight: 50}, {pause: {duration: 4s}}]\n\
    \x20   analysis: {interval: 3s, minRequests: 5, maxErrorRate: 0.05, failureLimit: 2}\n\
    \x20   progressDeadline: 60s\n";

/// The operator of a scenario: in this process, or the real binary (to SIGKILL it).
enum OperatorHandle {
    InProcess(Operator),
    Process(std::process::Child),
}

impl OperatorHandle {
    fn binary(ns: &str) -> OperatorHandle {
        let child = std::process::Command::new(operator_binary())
            .args(["--namespace", ns, "--admin-addr", "127.0.0.1:0"])
            .args(["--server-image", TEST_SERVER_IMAGE])
            .env("KUBECONFIG", kubeconfig())
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("operator starts");
        OperatorHandle::Process(child)
    }

    fn stop(self) {
        match self {
            OperatorHandle::InProcess(op) => op.stop(),
            OperatorHandle::Process(mut child) => {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// A namespace with an operator, version 1 serving and load flowing through the Service.
struct Scenario {
    client: Client,
    ns: String,
    operator: Option<OperatorHandle>,
    work: tempfile::TempDir,
    v1: PathBuf,
    load: Option<Load>,
    started: Instant,
    phases: Vec<(String, Duration)>,
}

impl Scenario {
    async fn start(prefix: &str, rollout: &str) -> Scenario {
        Self::start_with(prefix, rollout, false).await
    }

    async fn start_with(prefix: &str, rollout: &str, binary: bool) -> Scenario {
        install_crd();
        let client = client().await;
        let ns = namespace(&client, prefix).await;
        let operator = if binary {
            OperatorHandle::binary(&ns)
        } else {
            OperatorHandle::InProcess(Operator::start(&client, &ns).await)
        };
        let work = tempfile::tempdir().expect("tempdir");
        let v1 = model_dir(work.path(), "1", false);
        let mut s = Scenario {
            client,
            ns,
            operator: Some(operator),
            work,
            v1: v1.clone(),
            load: None,
            started: Instant::now(),
            phases: Vec::new(),
        };
        s.apply(&manifest("1", &v1, rollout));
        s.wait("version 1 Ready", |md| stable_is(md, "1") && ready(md))
            .await;
        let services: Api<Service> = Api::namespaced(s.client.clone(), &s.ns);
        let ip = services
            .get("m")
            .await
            .expect("Service")
            .spec
            .and_then(|x| x.cluster_ip)
            .expect("ClusterIP");
        let base = format!("http://{ip}");
        wait_until(WAIT, "kube-proxy to route the ClusterIP", || async {
            let r = reqwest::get(format!("{base}/v2/health/ready")).await.ok()?;
            r.status().is_success().then_some(())
        })
        .await;
        s.load = Some(Load::start(&base, "m", INPUT, 4));
        s
    }

    fn apply(&self, manifest: &str) {
        kubectl_ok(&["apply", "-n", &self.ns, "-f", "-"], Some(manifest));
    }

    fn model(&self, version: &str, bad: bool) -> PathBuf {
        model_dir(self.work.path(), version, bad)
    }

    async fn md(&self) -> ModelDeployment {
        let api: Api<ModelDeployment> = Api::namespaced(self.client.clone(), &self.ns);
        api.get("m").await.expect("md")
    }

    /// Wait for `check`, recording how long it took since the previous phase.
    async fn wait(
        &mut self,
        what: &str,
        check: impl Fn(&ModelDeployment) -> bool,
    ) -> ModelDeployment {
        let md = wait_status(&self.client, &self.ns, "m", WAIT, what, check).await;
        let at = self.started.elapsed();
        self.phases.push((what.to_string(), at));
        md
    }

    async fn annotate(&self, key: &str, value: &str) {
        let api: Api<ModelDeployment> = Api::namespaced(self.client.clone(), &self.ns);
        let patch = serde_json::json!({"metadata": {"annotations": {key: value}}});
        api.patch("m", &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .expect("annotate");
    }

    /// Stop the load and print the scenario's figures.
    async fn finish(mut self, name: &str) -> Tally {
        let load = self.load.take().expect("load running");
        let (tally, took) = load.stop().await;
        println!(
            "[{name}] {} requests sent in {took:?}, {} failed ({} transport); by (version, code): {:?}; errors: {:?}",
            tally.sent(),
            tally.failed(),
            tally.transport_failures,
            tally.answers,
            tally.errors
        );
        let mut last = Duration::ZERO;
        for (phase, at) in &self.phases {
            println!(
                "[{name}]   {phase}: +{:.1}s (at {:.1}s)",
                (*at - last).as_secs_f64(),
                at.as_secs_f64()
            );
            last = *at;
        }
        println!("{}", describe(&self.ns, "m"));
        if let Some(op) = self.operator.take() {
            op.stop();
        }
        delete_namespace(&self.client, &self.ns).await;
        tally
    }
}

fn ready(md: &ModelDeployment) -> bool {
    has_condition(md, "Ready", "True", "Available")
}

fn stable_is(md: &ModelDeployment, v: &str) -> bool {
    md.status.as_ref().and_then(|s| s.stable_version.as_deref()) == Some(v)
}

fn phase(md: &ModelDeployment) -> Option<RolloutPhase> {
    md.status.as_ref().and_then(|s| s.rollout_phase)
}

fn weight(md: &ModelDeployment) -> Option<i32> {
    md.status.as_ref().and_then(|s| s.canary_weight)
}

fn history(md: &ModelDeployment) -> Vec<(String, String)> {
    md.status
        .as_ref()
        .map(|s| {
            s.history
                .iter()
                .map(|h| (h.version.clone(), h.outcome.clone()))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_is_promoted_step_by_step_without_a_failed_request() {
    let mut s = Scenario::start("promote", STEPS).await;
    let v2 = s.model("2", false);
    s.apply(&manifest("2", &v2, STEPS));
    s.wait("canary at 25%", |md| weight(md) == Some(25)).await;
    s.wait("paused at 25%", |md| {
        phase(md) == Some(RolloutPhase::Paused) && weight(md) == Some(25)
    })
    .await;
    s.wait("canary at 50%", |md| weight(md) == Some(50)).await;
    s.wait("promoting", |md| {
        phase(md) == Some(RolloutPhase::Promoting) || stable_is(md, "2")
    })
    .await;
    let md = s
        .wait("version 2 stable", |md| {
            stable_is(md, "2") && phase(md) == Some(RolloutPhase::Succeeded) && ready(md)
        })
        .await;
    assert_eq!(history(&md), [("2".into(), "Succeeded".into())]);
    let analysis = md
        .status
        .as_ref()
        .and_then(|s| s.analysis.clone())
        .expect("analysis ran");
    assert_ne!(analysis.verdict, "Fail", "{analysis:?}");
    // version 1 goes only after version 2 serves with all its replicas
    let deployments: Api<Deployment> = Api::namespaced(s.client.clone(), &s.ns);
    wait_until(WAIT, "Deployment m-1 removed", || async {
        deployments
            .get_opt("m-1")
            .await
            .ok()?
            .is_none()
            .then_some(())
    })
    .await;
    let events = events_about(&s.client, &s.ns, "m").await;
    let retired = events
        .iter()
        .position(|e| e.reason.as_deref() == Some("VersionRetired"));
    let succeeded = events
        .iter()
        .position(|e| e.reason.as_deref() == Some("RolloutSucceeded"));
    assert!(
        succeeded.is_some() && retired.is_some(),
        "events: {events:?}"
    );
    // keep the load on a moment after the old pods are gone
    tokio::time::sleep(Duration::from_secs(8)).await;
    let tally = s.finish("promote").await;
    assert!(
        tally.served_by("2") > 0 && tally.served_by("1") > 0,
        "{tally:?}"
    );
    assert_eq!(tally.failed(), 0, "{tally:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_canary_is_rolled_back_by_analysis() {
    let mut s = Scenario::start("badcanary", STEPS).await;
    let v3 = s.model("3", true);
    s.apply(&manifest("3", &v3, STEPS));
    s.wait("canary at 25%", |md| weight(md) == Some(25)).await;
    let at_canary = s.load.as_ref().expect("load").snapshot();
    let md = s
        .wait("rolled back by analysis", |md| {
            phase(md) == Some(RolloutPhase::RolledBack)
        })
        .await;
    assert!(stable_is(&md, "1"));
    assert!(
        has_condition(&md, "Degraded", "True", "RolledBack"),
        "{:?}",
        md.status
    );
    let degraded = condition(&md, "Degraded").expect("Degraded");
    assert!(
        degraded.message.contains("canary error rate"),
        "{}",
        degraded.message
    );
    assert_eq!(history(&md), [("3".into(), "RolledBack".into())]);
    wait_event(&s.client, &s.ns, "m", "Warning", "AnalysisFailed").await;
    wait_event(&s.client, &s.ns, "m", "Warning", "RolledBack").await;
    // once the canary's pods are gone (they drain for a few seconds), nothing fails any more
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(s.client.clone(), &s.ns);
    wait_until(WAIT, "canary pods gone", || async {
        let list = pods
            .list(&kube::api::ListParams::default().labels("sconce.dev/version=3"))
            .await
            .ok()?;
        list.items.is_empty().then_some(())
    })
    .await;
    let after_rollback = s.load.as_ref().expect("load").snapshot();
    s.phases
        .push(("canary pods gone".into(), s.started.elapsed()));
    tokio::time::sleep(Duration::from_secs(8)).await;
    let tally = s.finish("bad canary").await;
    assert_eq!(
        tally.failed(),
        after_rollback.failed(),
        "failures after the rollback: {tally:?}"
    );
    // Only the canary failed: version 1 answered everything with 200, and the failures are the
    // bad model's 400s (its error answers carry no version).
    assert_eq!(tally.failed_by("1"), 0, "{tally:?}");
    assert_eq!(tally.transport_failures, 0, "{tally:?}");
    let bad_answers = tally
        .answers
        .get(&("?".to_string(), 400))
        .copied()
        .unwrap_or(0);
    assert!(
        bad_answers > 0 && bad_answers == tally.failed(),
        "{tally:?}"
    );
    // Bounded by the canary's share while it ran: 1 pod beside stable's 2, so at most a third
    // of new connections (and none of the kept-alive ones) reached it.
    let window = after_rollback.sent() - at_canary.sent();
    let share = tally.failed() as f64 / window.max(1) as f64;
    println!(
        "[bad canary] {} failed of {window} sent while the canary ran ({:.1}%)",
        tally.failed(),
        share * 100.0
    );
    assert!(
        share <= 0.34,
        "{share} of requests failed while the canary ran: {tally:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_that_never_becomes_ready_fails_at_its_deadline() {
    let rollout = STEPS.replace("progressDeadline: 60s", "progressDeadline: 15s");
    let mut s = Scenario::start("deadline", &rollout).await;
    let missing = s.work.path().join("no-such-model");
    s.apply(&manifest("4", &missing, &rollout));
    s.wait("canary started", |md| weight(md) == Some(25)).await;
    let md = s
        .wait("failed at the deadline", |md| {
            phase(md) == Some(RolloutPhase::Failed)
        })
        .await;
    assert!(stable_is(&md, "1"));
    assert!(
        has_condition(&md, "Degraded", "True", "RolloutFailed"),
        "{:?}",
        md.status
    );
    assert_eq!(history(&md), [("4".into(), "Failed".into())]);
    let tally = s.finish("deadline").await;
    assert_eq!(tally.failed(), 0, "{tally:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_rollouts_are_promoted_and_aborted_by_annotation() {
    let manual = "  rollout:\n    steps: [{setWeight: 50}, {pause: {}}]\n";
    let mut s = Scenario::start("manual", manual).await;
    let v2 = s.model("2", false);
    s.apply(&manifest("2", &v2, manual));
    s.wait("paused", |md| phase(md) == Some(RolloutPhase::Paused))
        .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        phase(&s.md().await),
        Some(RolloutPhase::Paused),
        "waits for a promote"
    );
    s.annotate("sconce.dev/promote", "yes").await;
    s.wait("promoted", |md| {
        stable_is(md, "2") && phase(md) == Some(RolloutPhase::Succeeded)
    })
    .await;
    wait_event(&s.client, &s.ns, "m", "Normal", "Promoted").await;

    let v3 = s.model("3", false);
    s.apply(&manifest("3", &v3, manual));
    s.wait("paused again", |md| phase(md) == Some(RolloutPhase::Paused))
        .await;
    s.annotate("sconce.dev/abort", "stop").await;
    let md = s
        .wait("aborted", |md| phase(md) == Some(RolloutPhase::RolledBack))
        .await;
    assert!(stable_is(&md, "2"));
    let rollout = md
        .status
        .as_ref()
        .and_then(|x| x.rollout.clone())
        .expect("rollout");
    assert_eq!(rollout.aborted_by.as_deref(), Some("stop"));
    assert_eq!(
        history(&md),
        [
            ("3".into(), "RolledBack".into()),
            ("2".into(), "Succeeded".into())
        ]
    );
    tokio::time::sleep(Duration::from_secs(6)).await;
    let tally = s.finish("annotations").await;
    assert_eq!(tally.failed(), 0, "{tally:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn setting_the_version_back_rolls_back_at_once() {
    let slow = "  rollout:\n    steps: [{setWeight: 50}, {pause: {duration: 10m}}]\n";
    let mut s = Scenario::start("setback", slow).await;
    let v2 = s.model("2", false);
    s.apply(&manifest("2", &v2, slow));
    s.wait("paused at 50%", |md| {
        phase(md) == Some(RolloutPhase::Paused)
    })
    .await;
    s.apply(&manifest("1", &s.v1, slow));
    let md = s
        .wait("rolled back", |md| {
            phase(md) == Some(RolloutPhase::RolledBack)
        })
        .await;
    assert!(stable_is(&md, "1"));
    assert!(
        !has_condition(&md, "Degraded", "True", "RolledBack"),
        "a rollback the user asked for is not a fault"
    );
    let h = md
        .status
        .as_ref()
        .map(|x| x.history[0].clone())
        .expect("history");
    assert_eq!(
        h.reason.as_deref(),
        Some("spec.model.version set back to the stable version 1")
    );
    tokio::time::sleep(Duration::from_secs(8)).await;
    let tally = s.finish("set back").await;
    assert_eq!(tally.failed(), 0, "{tally:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollout_survives_its_operator_being_killed() {
    let mut s = Scenario::start_with("killed", STEPS, true).await;
    let v2 = s.model("2", false);
    s.apply(&manifest("2", &v2, STEPS));
    s.wait("paused at 25%", |md| {
        phase(md) == Some(RolloutPhase::Paused)
    })
    .await;
    // SIGKILL mid-rollout: nothing is flushed, the next operator starts from the status
    if let Some(OperatorHandle::Process(mut child)) = s.operator.take() {
        let pid = child.id().to_string();
        let killed = std::process::Command::new("kill")
            .args(["-9", &pid])
            .status()
            .expect("kill");
        assert!(killed.success());
        let _ = child.wait();
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    s.phases
        .push(("operator killed and down 3 s".into(), s.started.elapsed()));
    s.operator = Some(OperatorHandle::binary(&s.ns));
    let md = s
        .wait("version 2 stable after the restart", |md| {
            stable_is(md, "2") && phase(md) == Some(RolloutPhase::Succeeded)
        })
        .await;
    assert_eq!(
        history(&md),
        [("2".into(), "Succeeded".into())],
        "completed exactly once"
    );
    let events = events_about(&s.client, &s.ns, "m").await;
    let count = |reason: &str| {
        events
            .iter()
            .filter(|e| e.reason.as_deref() == Some(reason))
            .count()
    };
    assert_eq!(count("RolloutStarted"), 1, "{events:?}");
    assert_eq!(count("RolloutSucceeded"), 1, "{events:?}");
    let steps: Vec<String> = events
        .iter()
        .filter(|e| e.reason.as_deref() == Some("CanaryStep"))
        .filter_map(|e| e.note.clone())
        .collect();
    let unique: std::collections::BTreeSet<&String> = steps.iter().collect();
    assert_eq!(unique.len(), steps.len(), "a step was repeated: {steps:#?}");
    assert_eq!(steps.len(), 3, "steps 2, 3 and 4 each once: {steps:#?}");
    tokio::time::sleep(Duration::from_secs(6)).await;
    let tally = s.finish("operator killed").await;
    assert_eq!(tally.failed(), 0, "{tally:?}");
}

/// A minimal HTTPRoute CRD (1.20 cannot take the upstream CRDs' CEL rules): enough for the
/// operator to own the backendRefs, with no Gateway controller behind it.
const HTTPROUTE_CRD: &str = r#"apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: httproutes.gateway.networking.k8s.io
  annotations: {api-approved.kubernetes.io: "https://github.com/kubernetes-sigs/gateway-api/pull/891"}
spec:
  group: gateway.networking.k8s.io
  names: {kind: HTTPRoute, plural: httproutes, listKind: HTTPRouteList, singular: httproute}
  scope: Namespaced
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            x-kubernetes-preserve-unknown-fields: true
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_httproute_carries_the_exact_weights() {
    kubectl_ok(&["apply", "-f", "-"], Some(HTTPROUTE_CRD));
    wait_crd_established("httproutes.gateway.networking.k8s.io");
    // No analysis here: nothing sends traffic through a Gateway in this test, and the route's
    // weights are the point.
    let rollout = "  rollout:\n    steps: [{setWeight: 25}, {pause: {duration: 3s}}, {setWeight: 50}, {pause: {duration: 3s}}]\n\
                   \x20 traffic: {httpRoute: m-route}\n";
    // Without the route the spec cannot be served: said so, nothing started.
    install_crd();
    let client = client().await;
    let ns = namespace(&client, "route").await;
    let operator = Operator::start(&client, &ns).await;
    let work = tempfile::tempdir().expect("tempdir");
    let v1 = model_dir(work.path(), "1", false);
    kubectl_ok(
        &["apply", "-n", &ns, "-f", "-"],
        Some(&manifest("1", &v1, rollout)),
    );
    wait_status(&client, &ns, "m", WAIT, "HTTPRouteNotFound", |md| {
        has_condition(md, "Degraded", "True", "HTTPRouteNotFound")
    })
    .await;
    let route = "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: m-route}\n\
                 spec:\n  parentRefs: [{name: gateway}]\n  rules:\n  - matches: [{path: {type: PathPrefix, value: /}}]\n";
    kubectl_ok(&["apply", "-n", &ns, "-f", "-"], Some(route));
    let routes: Api<kube::api::DynamicObject> = Api::namespaced_with(
        client.clone(),
        &ns,
        &sconce::reconcile::traffic::route_resource(),
    );
    let backends = || async {
        let r = routes.get("m-route").await.ok()?;
        let refs = r.data["spec"]["rules"][0]["backendRefs"]
            .as_array()?
            .clone();
        Some(
            refs.iter()
                .map(|b| {
                    (
                        b["name"].as_str().unwrap_or("").to_string(),
                        b["weight"].as_i64().unwrap_or(-1),
                    )
                })
                .collect::<Vec<_>>(),
        )
    };
    let wait_backends = |want: Vec<(&'static str, i64)>| {
        let want: Vec<(String, i64)> = want.into_iter().map(|(n, w)| (n.to_string(), w)).collect();
        async move {
            wait_until(WAIT, &format!("route backends {want:?}"), || async {
                let got = backends().await?;
                (got == want).then_some(())
            })
            .await
        }
    };
    wait_backends(vec![("m-1", 100)]).await;
    let v2 = model_dir(work.path(), "2", false);
    kubectl_ok(
        &["apply", "-n", &ns, "-f", "-"],
        Some(&manifest("2", &v2, rollout)),
    );
    wait_backends(vec![("m-1", 75), ("m-2", 25)]).await;
    wait_backends(vec![("m-1", 50), ("m-2", 50)]).await;
    wait_backends(vec![("m-2", 100)]).await;
    let md = wait_status(&client, &ns, "m", WAIT, "promoted", |md| stable_is(md, "2")).await;
    assert_eq!(history(&md), [("2".into(), "Succeeded".into())]);
    let services: Api<Service> = Api::namespaced(client.clone(), &ns);
    wait_until(WAIT, "per-version Service m-1 removed", || async {
        services.get_opt("m-1").await.ok()?.is_none().then_some(())
    })
    .await;
    assert!(services.get_opt("m-2").await.expect("get").is_some());
    println!("{}", describe(&ns, "m"));
    operator.stop();
    delete_namespace(&client, &ns).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_rollout_starts_nothing_and_deletes_nothing() {
    install_crd();
    let client = client().await;
    let ns = namespace(&client, "badplan").await;
    let operator = Operator::start(&client, &ns).await;
    let work = tempfile::tempdir().expect("tempdir");
    let v1 = model_dir(work.path(), "1", false);
    kubectl_ok(
        &["apply", "-n", &ns, "-f", "-"],
        Some(&manifest("1", &v1, STEPS)),
    );
    wait_status(&client, &ns, "m", WAIT, "Ready", ready).await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let before = deployments.get("m-1").await.expect("m-1");
    let v2 = model_dir(work.path(), "2", false);
    let bad = "  rollout:\n    steps: [{setWeight: 50}, {pause: {duration: soon}}]\n";
    kubectl_ok(
        &["apply", "-n", &ns, "-f", "-"],
        Some(&manifest("2", &v2, bad)),
    );
    let md = wait_status(&client, &ns, "m", WAIT, "InvalidRollout", |md| {
        has_condition(md, "Degraded", "True", "InvalidRollout")
    })
    .await;
    let message = &condition(&md, "Degraded").expect("Degraded").message;
    assert!(
        message.starts_with("spec.rollout.steps[1].pause.duration \"soon\""),
        "{message}"
    );
    let event = wait_event(&client, &ns, "m", "Warning", "InvalidRollout").await;
    assert_eq!(event.note.as_deref(), Some(message.as_str()));
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        deployments.get_opt("m-2").await.expect("get").is_none(),
        "no canary started"
    );
    let after = deployments.get("m-1").await.expect("m-1 still there");
    assert_eq!(
        after.metadata.generation, before.metadata.generation,
        "stable untouched"
    );
    assert_eq!(
        md.status.as_ref().and_then(|s| s.canary_version.clone()),
        None
    );
    operator.stop();
    delete_namespace(&client, &ns).await;
}
