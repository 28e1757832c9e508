//! Pods on the test plane's real node (kubelet + containerd + the real server image): causes of
//! pods that cannot start reach the status within seconds, Ready means the Service serves, and
//! events say what happened in words that match it.
mod common;

use std::time::{Duration, Instant};

use common::*;
use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, Patch, PatchParams};

/// "Within seconds": the kubelet's back-off and the scheduler take a few; the Deployment's own
/// deadline (600 s) is what used to be the first sign.
const QUICK: Duration = Duration::from_secs(45);
const WAIT: Duration = Duration::from_secs(90);

fn manifest(name: &str, uri: &str, runtime: &str) -> String {
    format!(
        "apiVersion: sconce.dev/v1alpha1\nkind: ModelDeployment\nmetadata: {{name: {name}}}\n\
         spec:\n  replicas: 1\n  model: {{version: '1', uri: '{uri}', format: sequential}}\n\
         {runtime}"
    )
}

fn model_uri() -> String {
    format!("file://{}", shared_model_dir().display())
}

/// A model directory whose config.json is not valid: the server starts, fails to load it and
/// exits 1, so the kubelet restarts it (CrashLoopBackOff).
fn broken_model_dir() -> std::path::PathBuf {
    let dir = sconce_devtools::testing::target_dir()
        .join("sconce-test-models")
        .join(format!("broken-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    std::fs::write(
        dir.join("config.json"),
        "{\"format\": \"sequential\", \"layers\": 7}",
    )
    .expect("config");
    sconce_devtools::testing::make_world_readable(&dir).expect("chmod");
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_that_cannot_start_are_named_within_seconds() {
    install_crd();
    let client = client().await;
    let ns = namespace(&client, "nostart").await;
    let operator = Operator::start(&client, &ns).await;
    let broken = format!("file://{}", broken_model_dir().display());
    let cases = [
        (
            "missing-dir",
            manifest("missing-dir", "file:///nonexistent/sconce/model", ""),
            "FailedMount",
            "hostPath type check failed: /nonexistent/sconce/model is not a directory",
        ),
        (
            "crashing",
            manifest("crashing", &broken, ""),
            "CrashLoopBackOff",
            "config.json",
        ),
        (
            "secret",
            manifest(
                "secret",
                &model_uri(),
                "  runtime: {env: [{name: TOKEN, valueFrom: {secretKeyRef: {name: absent, key: k}}}]}\n",
            ),
            "CreateContainerConfigError",
            "secret \"absent\" not found",
        ),
        (
            "nowhere",
            manifest(
                "nowhere",
                &model_uri(),
                "  runtime: {nodeSelector: {sconce.dev/no-such-node: 'true'}}\n",
            ),
            "Unschedulable",
            "0/1 nodes are available: 1 node(s) didn't match",
        ),
        (
            "no-image",
            manifest(
                "no-image",
                &model_uri(),
                "  runtime: {image: 'localhost/sconce-server:not-loaded', imagePullPolicy: Never}\n",
            ),
            "ErrImageNeverPull",
            "the node does not have image \"localhost/sconce-server:not-loaded\" and cannot pull it",
        ),
    ];
    let started = Instant::now();
    for (name, manifest, _, _) in &cases {
        kubectl_ok(&["apply", "-n", &ns, "-f", "-"], Some(manifest));
        let _ = name;
    }
    for (name, _, reason, words) in &cases {
        let md = wait_status(&client, &ns, name, QUICK, reason, |md| {
            has_condition(md, "Degraded", "True", reason)
        })
        .await;
        let took = started.elapsed();
        let degraded = condition(&md, "Degraded").expect("Degraded");
        assert!(
            degraded.message.contains(words),
            "{name}: {reason}: {}",
            degraded.message
        );
        // Conditions agree with each other.
        assert!(has_condition(&md, "Progressing", "False", reason), "{name}");
        assert!(has_condition(&md, "Ready", "False", reason), "{name}");
        assert_eq!(
            md.status.as_ref().and_then(|s| s.phase.as_deref()),
            Some("Degraded")
        );
        let event = wait_event(&client, &ns, name, "Warning", reason).await;
        assert!(event.note.unwrap_or_default().contains(words));
        println!("{name}: {reason} after {took:?}\n{}", describe(&ns, name));
    }
    // The crash's cause is the server's own last log line (terminationMessagePolicy).
    let crashing = wait_status(&client, &ns, "crashing", QUICK, "CrashLoopBackOff", |md| {
        has_condition(md, "Degraded", "True", "CrashLoopBackOff")
    })
    .await;
    let message = &condition(&crashing, "Degraded").expect("Degraded").message;
    assert!(message.contains("last exit code 1"), "{message}");
    operator.stop();
    delete_namespace(&client, &ns).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_means_the_service_serves_and_its_selector_is_restored() {
    install_crd();
    let client = client().await;
    let ns = namespace(&client, "serving").await;
    let operator = Operator::start(&client, &ns).await;
    kubectl_ok(
        &["apply", "-n", &ns, "-f", "-"],
        Some(&example("mnist.yaml", None)),
    );
    wait_status(&client, &ns, "mnist", WAIT, "Ready", |md| {
        has_condition(md, "Ready", "True", "Available")
    })
    .await;

    // Someone points the Service elsewhere (a key another field manager adds).
    let services: Api<Service> = Api::namespaced(client.clone(), &ns);
    let patch = serde_json::json!({"spec": {"selector": {"app": "something-else"}}});
    services
        .patch("mnist", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("patching the Service");
    let restored = wait_event(&client, &ns, "mnist", "Warning", "ServiceSelectorRestored").await;
    let note = restored.note.unwrap_or_default();
    assert!(note.contains("app=something-else"), "{note}");
    let svc = wait_until(WAIT, "selector restored", || async {
        let svc = services.get("mnist").await.ok()?;
        let selector = svc.spec.as_ref()?.selector.clone()?;
        (selector.len() == 1
            && selector.get("sconce.dev/model-deployment") == Some(&"mnist".into()))
        .then_some(svc)
    })
    .await;
    assert!(svc.spec.is_some());
    let md = wait_status(&client, &ns, "mnist", WAIT, "Ready again", |md| {
        has_condition(md, "Ready", "True", "Available")
    })
    .await;
    assert_eq!(md.status.as_ref().map(|s| s.ready_replicas), Some(2));
    println!("{}", describe(&ns, "mnist"));
    operator.stop();
    delete_namespace(&client, &ns).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_are_warnings_only_for_failures_and_new_messages_are_new_events() {
    install_crd();
    let client = client().await;
    let ns = namespace(&client, "events").await;
    let operator = Operator::start(&client, &ns).await;
    let apply = |version: &str, replicas: i32| {
        kubectl_ok(
            &["apply", "-n", &ns, "-f", "-"],
            Some(&format!(
                "apiVersion: sconce.dev/v1alpha1\nkind: ModelDeployment\nmetadata: {{name: ev}}\n\
                 spec:\n  replicas: {replicas}\n  model: {{version: '{version}', uri: '{}', format: sequential}}\n",
                model_uri()
            )),
        );
    };
    let ready = |version: &'static str, n: i32| {
        move |md: &sconce::crd::ModelDeployment| {
            has_condition(md, "Ready", "True", "Available")
                && md.status.as_ref().is_some_and(|s| {
                    s.current_version.as_deref() == Some(version) && s.ready_replicas == n
                })
        }
    };
    apply("1", 1);
    wait_status(&client, &ns, "ev", WAIT, "v1 ready", ready("1", 1)).await;
    apply("1", 2);
    wait_status(&client, &ns, "ev", WAIT, "scaled to 2", ready("1", 2)).await;
    apply("3", 2);
    wait_status(&client, &ns, "ev", WAIT, "v3 ready", ready("3", 2)).await;
    // The version-1 Deployment goes once version 3 serves.
    wait_event(&client, &ns, "ev", "Normal", "VersionRetired").await;
    // A Ready that flapped at the promotion (the new version promoted on its endpoints while
    // its Deployment still counted a pod unready) showed as a third Ready event within seconds.
    tokio::time::sleep(Duration::from_secs(3)).await;

    let events = events_about(&client, &ns, "ev").await;
    let seen: Vec<(String, String, String)> = events
        .iter()
        .map(|e| {
            (
                e.type_.clone().unwrap_or_default(),
                e.reason.clone().unwrap_or_default(),
                e.note.clone().unwrap_or_default(),
            )
        })
        .collect();
    println!("{seen:#?}\n{}", describe(&ns, "ev"));
    assert!(
        seen.iter().all(|(t, _, _)| t == "Normal"),
        "a normal rollout and scale-up emitted warnings: {seen:#?}"
    );
    let has =
        |reason: &str, note: &str| seen.iter().any(|(_, r, n)| r == reason && n.contains(note));
    assert!(has("ScalingUp", "version 1"), "{seen:#?}");
    assert!(
        has("RolloutStarted", "rolling out version 3 beside version 1"),
        "{seen:#?}"
    );
    assert!(
        has(
            "RolloutSucceeded",
            "version 3 is stable; version 1 is retired"
        ),
        "{seen:#?}"
    );
    assert!(has("Ready", "version 1 serving: 1/1"), "{seen:#?}");
    assert!(has("Ready", "version 1 serving: 2/2"), "{seen:#?}");
    // Each Ready message is its own event, not a repeat count of the first; Ready stays True
    // while version 1 serves during the rollout, so the rollout adds none.
    let ready_events = events
        .iter()
        .filter(|e| e.reason.as_deref() == Some("Ready"))
        .count();
    assert_eq!(ready_events, 2, "{seen:#?}");
    operator.stop();
    delete_namespace(&client, &ns).await;
}
