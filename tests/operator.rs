//! The operator against a real kube-apiserver + controller-manager, with its pods on the test
//! plane's real node. Each test has its own namespace and its own operator.
mod common;

use std::time::Duration;

use common::*;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ListParams};
use sconce::crd::ModelDeployment;

const WAIT: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crd_installs_and_is_established() {
    install_crd();
    let client = client().await;
    let crds: Api<CustomResourceDefinition> = Api::all(client);
    let crd = crds
        .get("modeldeployments.sconce.dev")
        .await
        .expect("CRD exists");
    let established = crd
        .status
        .and_then(|s| s.conditions)
        .unwrap_or_default()
        .into_iter()
        .any(|c| c.type_ == "Established" && c.status == "True");
    assert!(established);
    let version = &crd.spec.versions[0];
    assert!(
        version
            .subresources
            .as_ref()
            .and_then(|s| s.scale.as_ref())
            .is_some()
    );
    let explain = kubectl_ok(&["explain", "modeldeployment.spec.model"], None);
    assert!(
        explain.contains("Where the model directory lives"),
        "{explain}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn example_manifest_creates_children_that_follow_the_spec() {
    install_crd();
    let client = client().await;
    let ns = namespace(&client, "example").await;
    let operator = Operator::start(&client, &ns).await;
    kubectl_ok(
        &["apply", "-n", &ns, "-f", "-"],
        Some(&example("mnist.yaml", None)),
    );

    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let services: Api<Service> = Api::namespaced(client.clone(), &ns);
    let mds: Api<ModelDeployment> = Api::namespaced(client.clone(), &ns);
    let d = wait_until(WAIT, "Deployment mnist-1", || async {
        deployments.get_opt("mnist-1").await.ok().flatten()
    })
    .await;
    let md = mds.get("mnist").await.expect("ModelDeployment");

    let spec = d.spec.clone();
    assert_eq!(spec.replicas, Some(2));
    let pod = spec.template.spec.clone().expect("pod spec");
    let c = &pod.containers[0];
    assert_eq!(c.image.as_deref(), Some(TEST_SERVER_IMAGE));
    let args = c.args.clone().expect("args");
    assert!(
        args.windows(2).any(|w| w == ["--model-dir", "/mnt/models"]),
        "{args:?}"
    );
    assert!(
        args.windows(2).any(|w| w == ["--format", "sequential"]),
        "{args:?}"
    );
    assert_eq!(
        c.readiness_probe
            .as_ref()
            .and_then(|p| p.http_get.as_ref())
            .and_then(|h| h.path.as_deref()),
        Some("/v2/health/ready")
    );
    assert_eq!(
        c.liveness_probe
            .as_ref()
            .and_then(|p| p.http_get.as_ref())
            .and_then(|h| h.path.as_deref()),
        Some("/v2/health/live")
    );
    let labels = d.metadata.labels.clone().expect("labels");
    assert_eq!(labels["app.kubernetes.io/managed-by"], "sconce");
    assert_eq!(labels["app.kubernetes.io/instance"], "mnist");
    let owner = &d.metadata.owner_references.clone().expect("owner")[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str()),
        ("ModelDeployment", "mnist")
    );
    assert_eq!(Some(owner.uid.clone()), md.metadata.uid);
    let svc = wait_until(WAIT, "Service mnist", || async {
        services.get_opt("mnist").await.ok().flatten()
    })
    .await;
    assert_eq!(
        svc.spec.and_then(|s| s.selector).expect("selector")["sconce.dev/model-deployment"],
        "mnist"
    );

    // Status: observedGeneration + conditions; the pods run on the test plane's node.
    let md = wait_until(WAIT, "status Ready", || async {
        let md = mds.get("mnist").await.ok()?;
        let s = md.status.as_ref()?;
        (s.observed_generation == md.metadata.generation
            && condition(&md, "Ready")?.status == "True")
            .then_some(md)
    })
    .await;
    assert_eq!(md.status.as_ref().map(|s| s.ready_replicas), Some(2));
    assert_eq!(
        condition(&md, "Degraded").map(|c| c.status.as_str()),
        Some("False")
    );
    let status = md.status.clone().expect("status");
    assert_eq!(
        status.url.as_deref(),
        Some(format!("http://mnist.{ns}.svc.cluster.local").as_str())
    );
    assert_eq!(
        status.selector.as_deref(),
        Some("sconce.dev/model-deployment=mnist,sconce.dev/version=1")
    );

    // Scaling the ModelDeployment scales the Deployment.
    kubectl_ok(
        &[
            "patch",
            "-n",
            &ns,
            "modeldeployment",
            "mnist",
            "--type=merge",
            "-p",
            r#"{"spec":{"replicas":3}}"#,
        ],
        None,
    );
    wait_until(WAIT, "Deployment scaled to 3", || async {
        let d = deployments.get("mnist-1").await.ok()?;
        (d.spec.replicas == Some(3)).then_some(())
    })
    .await;
    // ...and so does the scale subresource (kubectl scale, HPA).
    kubectl_ok(
        &["scale", "-n", &ns, "modeldeployment/mnist", "--replicas=1"],
        None,
    );
    wait_until(WAIT, "Deployment scaled to 1", || async {
        let d = deployments.get("mnist-1").await.ok()?;
        (d.spec.replicas == Some(1)).then_some(())
    })
    .await;

    // Deleting the ModelDeployment lets the real garbage collector remove the children.
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
    wait_until(WAIT, "children garbage-collected", || async {
        let gone = deployments.get_opt("mnist-1").await.ok()?.is_none()
            && services.get_opt("mnist").await.ok()?.is_none();
        gone.then_some(())
    })
    .await;
    operator.stop();
    delete_namespace(&client, &ns).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reapplying_the_same_manifest_writes_nothing() {
    install_crd();
    let client = client().await;
    let ns = namespace(&client, "noop").await;
    let operator = Operator::start(&client, &ns).await;
    let manifest = example("mnist.yaml", None);
    kubectl_ok(&["apply", "-n", &ns, "-f", "-"], Some(&manifest));
    let mds: Api<ModelDeployment> = Api::namespaced(client.clone(), &ns);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let services: Api<Service> = Api::namespaced(client.clone(), &ns);

    // Let the pods become ready, so nothing changes any more.
    let settled = || async {
        let md = mds.get("mnist").await.ok()?;
        let d = deployments.get("mnist-1").await.ok()?;
        let ds = d.status.clone()?;
        let ok = md.status.as_ref()?.observed_generation == md.metadata.generation
            && ds.observed_generation == d.metadata.generation
            && condition(&md, "Ready")?.status == "True";
        ok.then_some(())
    };
    wait_until(WAIT, "settled", settled).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let versions = || async {
        (
            mds.get("mnist")
                .await
                .expect("md")
                .metadata
                .resource_version,
            deployments
                .get("mnist-1")
                .await
                .expect("deployment")
                .metadata
                .resource_version,
            services
                .get("mnist")
                .await
                .expect("service")
                .metadata
                .resource_version,
        )
    };
    let before = versions().await;

    // The user re-applies, and a fresh operator reconciles everything.
    kubectl_ok(&["apply", "-n", &ns, "-f", "-"], Some(&manifest));
    operator.stop();
    let fresh = Operator::start(&client, &ns).await;
    wait_until(WAIT, "a full reconcile", || async {
        (fresh.reconciliations() >= 1).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = versions().await;
    assert_eq!(
        before, after,
        "resourceVersions (md, deployment, service) changed"
    );
    assert!(fresh.reconciliations() >= 1);
    fresh.stop();
    delete_namespace(&client, &ns).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_spec_is_degraded_with_a_warning_and_touches_nothing() {
    install_crd();
    let client = client().await;
    let ns = namespace(&client, "invalid").await;
    let operator = Operator::start(&client, &ns).await;
    let mds: Api<ModelDeployment> = Api::namespaced(client.clone(), &ns);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);

    // A good one first, then break it: its Deployment must stay as it was.
    kubectl_ok(
        &["apply", "-n", &ns, "-f", "-"],
        Some(&example("mnist.yaml", None)),
    );
    // Wait until the pods serve, so the Deployment's status stops changing.
    wait_until(WAIT, "mnist Ready", || async {
        let md = mds.get("mnist").await.ok()?;
        (condition(&md, "Ready")?.status == "True").then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let d = deployments.get("mnist-1").await.expect("deployment");
    // And a second, malformed object beside it from the start.
    let broken = "apiVersion: sconce.dev/v1alpha1\nkind: ModelDeployment\nmetadata: {name: broken}\n\
                  spec: {model: {version: '1', uri: 'ftp://models/x', format: sequential}}\n";
    kubectl_ok(&["apply", "-n", &ns, "-f", "-"], Some(broken));
    kubectl_ok(
        &[
            "patch",
            "-n",
            &ns,
            "modeldeployment",
            "mnist",
            "--type=merge",
            "-p",
            r#"{"spec":{"model":{"uri":"https://models.example/mnist/model.h5"},"replicas":5}}"#,
        ],
        None,
    );

    for (name, reason) in [
        ("broken", "UnsupportedUriScheme"),
        ("mnist", "FormatMismatch"),
    ] {
        let md = wait_until(WAIT, "Degraded", || async {
            let md = mds.get(name).await.ok()?;
            (condition(&md, "Degraded")?.status == "True"
                && md.status.as_ref()?.observed_generation == md.metadata.generation)
                .then_some(md)
        })
        .await;
        let degraded = condition(&md, "Degraded").expect("Degraded");
        assert_eq!(degraded.reason, reason);
        assert!(
            degraded.message.contains("spec.model"),
            "{}",
            degraded.message
        );
        assert_eq!(
            md.status.as_ref().and_then(|s| s.phase.as_deref()),
            Some("Degraded")
        );

        let events: Api<Event> = Api::namespaced(client.clone(), &ns);
        let warning = wait_until(WAIT, "Warning event", || async {
            let list = events.list(&ListParams::default()).await.ok()?;
            list.items.into_iter().find(|e| {
                e.type_.as_deref() == Some("Warning")
                    && e.reason.as_deref() == Some(reason)
                    && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name)
            })
        })
        .await;
        assert!(warning.note.unwrap_or_default().contains("spec.model.uri"));
    }
    assert!(
        deployments
            .get_opt("broken-1")
            .await
            .expect("get")
            .is_none(),
        "no children for an invalid spec"
    );
    let unchanged = deployments.get("mnist-1").await.expect("deployment");
    assert_eq!(
        unchanged.metadata.resource_version, d.metadata.resource_version,
        "Deployment untouched"
    );
    assert_eq!(unchanged.spec.replicas, Some(2));

    // No hot loop: the invalid objects are not reconciled again and again.
    let before = (
        operator.reconciliations(),
        mds.get("broken")
            .await
            .expect("md")
            .metadata
            .resource_version,
    );
    tokio::time::sleep(Duration::from_secs(5)).await;
    let after = (
        operator.reconciliations(),
        mds.get("broken")
            .await
            .expect("md")
            .metadata
            .resource_version,
    );
    assert_eq!(before.1, after.1, "status rewritten while nothing changed");
    assert!(
        after.0 - before.0 <= 2,
        "reconciled {} times in 5 s",
        after.0 - before.0
    );

    // Fixing the spec recovers.
    kubectl_ok(
        &[
            "patch",
            "-n",
            &ns,
            "modeldeployment",
            "broken",
            "--type=merge",
            "-p",
            r#"{"spec":{"model":{"uri":"file:///models/x"}}}"#,
        ],
        None,
    );
    wait_until(WAIT, "fixed object gets its Deployment", || async {
        deployments.get_opt("broken-1").await.ok().flatten()
    })
    .await;
    operator.stop();
    delete_namespace(&client, &ns).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_rejects_out_of_range_values() {
    install_crd();
    let client = client().await;
    let ns = namespace(&client, "schema").await;
    let cases = [
        ("replicas: 5000", "spec.replicas"),
        ("replicas: -1", "spec.replicas"),
        (
            "model: {version: '1', uri: 'file:///m', format: onnx}",
            "spec.model.format",
        ),
        (
            "model: {version: '', uri: 'file:///m', format: bert}",
            "spec.model.version",
        ),
        ("runtime: {port: 70000}", "spec.runtime.port"),
        (
            "model: {version: 'V2', uri: 'file:///m', format: bert}",
            "spec.model.version",
        ),
        (
            "model: {version: '1.0-', uri: 'file:///m', format: bert}",
            "spec.model.version",
        ),
    ];
    for (fragment, field) in cases {
        let model = if fragment.starts_with("model") {
            ""
        } else {
            "\n  model: {version: '1', uri: 'file:///m', format: sequential}"
        };
        let manifest = format!(
            "apiVersion: sconce.dev/v1alpha1\nkind: ModelDeployment\nmetadata: {{name: bad}}\nspec:\n  {fragment}{model}\n"
        );
        let out = kubectl(&["apply", "-n", &ns, "-f", "-"], Some(&manifest));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{fragment} was accepted");
        assert!(stderr.contains(field), "{fragment}: {stderr}");
    }
    let mds: Api<ModelDeployment> = Api::namespaced(client.clone(), &ns);
    assert!(mds.get_opt("bad").await.expect("get").is_none());
    delete_namespace(&client, &ns).await;
}
