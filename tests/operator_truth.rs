//! What users of kubectl, Argo CD and Flux see: every field documented in `kubectl explain`,
//! apiserver refusals and name collisions reported in status and events, status written by
//! the `sconce` field manager. Against the real apiserver; each test has its own namespace.
mod common;

use std::time::Duration;

use common::*;
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::Api;
use sconce::crd::ModelDeployment;

const WAIT: Duration = Duration::from_secs(60);

fn manifest(name: &str, spec: &str) -> String {
    format!(
        "apiVersion: sconce.dev/v1alpha1\nkind: ModelDeployment\nmetadata: {{name: {name}}}\nspec:\n{spec}"
    )
}

fn model_spec(version: &str) -> String {
    format!(
        "  model: {{version: '{version}', uri: 'file://{}', format: sequential}}\n",
        shared_model_dir().display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_explain_shows_a_type_for_every_field() {
    install_crd();
    let recursive = kubectl_ok(&["explain", "modeldeployment", "--recursive"], None);
    assert!(
        !recursive.contains("<>"),
        "fields without a type in `kubectl explain --recursive`:\n{recursive}"
    );
    for field in ["runtime", "sha256", "name", "conditions", "currentVersion"] {
        assert!(
            recursive.contains(&format!("{field}\t<")) || recursive.contains(&format!("{field} <")),
            "{field} missing:\n{recursive}"
        );
    }
    // The former nullable wrappers list their fields and descriptions.
    let runtime = kubectl_ok(&["explain", "modeldeployment.spec.runtime"], None);
    assert!(runtime.contains("serviceAccountName"), "{runtime}");
    assert!(runtime.contains("How the serving pods run"), "{runtime}");
    let status = kubectl_ok(&["explain", "modeldeployment.status"], None);
    assert!(status.contains("observedGeneration"), "{status}");
    let sha = kubectl_ok(&["explain", "modeldeployment.spec.model.sha256"], None);
    assert!(sha.contains("<string>"), "{sha}");
}

/// A spec the apiserver refuses although Sconce's own checks pass (an extended resource
/// requested without a limit): reported at once with the apiserver's words, permanently.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_the_apiserver_refuses_is_reported_at_once() {
    install_crd();
    let client = client().await;
    let ns = namespace(&client, "refused").await;
    let operator = Operator::start(&client, &ns).await;
    let spec = format!(
        "{}  runtime: {{resources: {{requests: {{example.com/widget: '1'}}}}}}\n",
        model_spec("1")
    );
    kubectl_ok(
        &["apply", "-n", &ns, "-f", "-"],
        Some(&manifest("widgets", &spec)),
    );
    let md = wait_status(&client, &ns, "widgets", WAIT, "Degraded", |md| {
        has_condition(md, "Degraded", "True", "DeploymentRejected")
    })
    .await;
    let degraded = condition(&md, "Degraded").expect("Degraded");
    assert!(
        degraded
            .message
            .starts_with("the apiserver refused Deployment widgets-1: "),
        "{}",
        degraded.message
    );
    assert!(
        degraded
            .message
            .contains("Limit must be set for non overcommitable resources"),
        "the apiserver's own message: {}",
        degraded.message
    );
    assert!(has_condition(&md, "Ready", "False", "DeploymentRejected"));
    assert!(has_condition(
        &md,
        "Progressing",
        "False",
        "DeploymentRejected"
    ));
    let warning = wait_event(&client, &ns, "widgets", "Warning", "DeploymentRejected").await;
    assert_eq!(warning.note.as_deref(), Some(degraded.message.as_str()));

    // Permanent: nothing is retried until the spec changes.
    let before = operator.reconciliations();
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(
        operator.reconciliations() - before <= 1,
        "retried a refused spec"
    );

    // Fixing the spec recovers, and observedGeneration follows.
    let fixed = format!(
        "{}  runtime: {{resources: {{requests: {{example.com/widget: '1'}}, limits: {{example.com/widget: '1'}}}}}}\n",
        model_spec("1")
    );
    kubectl_ok(
        &["apply", "-n", &ns, "-f", "-"],
        Some(&manifest("widgets", &fixed)),
    );
    let md = wait_status(&client, &ns, "widgets", WAIT, "recovered", |md| {
        condition(md, "Degraded").is_some_and(|c| c.reason != "DeploymentRejected")
    })
    .await;
    assert_eq!(
        md.status.as_ref().and_then(|s| s.observed_generation),
        md.metadata.generation
    );
    println!("{}", describe(&ns, "widgets"));
    operator.stop();
    delete_namespace(&client, &ns).await;
}

/// Names Kubernetes would refuse in a child (the Service is `<metadata.name>`) and fields the
/// apiserver would refuse in the Deployment are named by the operator before applying.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fields_kubernetes_would_refuse_are_named_before_applying() {
    install_crd();
    let client = client().await;
    let ns = namespace(&client, "fields").await;
    let operator = Operator::start(&client, &ns).await;
    let cases = [
        (
            "1digits",
            model_spec("1"),
            "InvalidName",
            "metadata.name \"1digits\"",
        ),
        (
            "my.model",
            model_spec("1"),
            "InvalidName",
            "metadata.name \"my.model\"",
        ),
        (
            "cpu",
            format!(
                "{}  runtime: {{resources: {{requests: {{cpu: '1.5.5'}}}}}}\n",
                model_spec("1")
            ),
            "InvalidResources",
            "spec.runtime.resources.requests.cpu \"1.5.5\"",
        ),
        (
            "env",
            format!(
                "{}  runtime: {{env: [{{name: 'A=B', value: x}}]}}\n",
                model_spec("1")
            ),
            "InvalidEnv",
            "spec.runtime.env[0].name \"A=B\"",
        ),
        (
            "sa",
            format!(
                "{}  runtime: {{serviceAccountName: Not_A_Name}}\n",
                model_spec("1")
            ),
            "InvalidServiceAccount",
            "spec.runtime.serviceAccountName \"Not_A_Name\"",
        ),
    ];
    for (name, spec, _, _) in &cases {
        kubectl_ok(
            &["apply", "-n", &ns, "-f", "-"],
            Some(&manifest(name, spec)),
        );
    }
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    for (name, _, reason, field) in &cases {
        let md = wait_status(&client, &ns, name, WAIT, reason, |md| {
            has_condition(md, "Degraded", "True", reason)
        })
        .await;
        let message = &condition(&md, "Degraded").expect("Degraded").message;
        assert!(message.starts_with(field), "{name}: {message}");
        let event = wait_event(&client, &ns, name, "Warning", reason).await;
        assert_eq!(event.note.as_deref(), Some(message.as_str()));
    }
    let children = deployments.list(&Default::default()).await.expect("list");
    assert!(
        children.items.is_empty(),
        "nothing applied for invalid specs"
    );
    println!("{}", describe(&ns, "cpu"));
    operator.stop();
    delete_namespace(&client, &ns).await;
}

/// `col` at version `1-x` and `col-1` at version `x` both want Deployment `col-1-x`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_taken_by_another_model_deployment_is_never_adopted() {
    install_crd();
    let client = client().await;
    let ns = namespace(&client, "collide").await;
    let operator = Operator::start(&client, &ns).await;
    kubectl_ok(
        &["apply", "-n", &ns, "-f", "-"],
        Some(&manifest("col", &model_spec("1-x"))),
    );
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let first = wait_until(WAIT, "Deployment col-1-x", || async {
        deployments.get_opt("col-1-x").await.ok().flatten()
    })
    .await;
    let mds: Api<ModelDeployment> = Api::namespaced(client.clone(), &ns);
    let col_uid = mds.get("col").await.expect("col").metadata.uid;

    kubectl_ok(
        &["apply", "-n", &ns, "-f", "-"],
        Some(&manifest("col-1", &model_spec("x"))),
    );
    let md = wait_status(&client, &ns, "col-1", WAIT, "NameConflict", |md| {
        has_condition(md, "Degraded", "True", "NameConflict")
    })
    .await;
    let message = &condition(&md, "Degraded").expect("Degraded").message;
    assert!(
        message
            .starts_with("Deployment col-1-x already exists and belongs to ModelDeployment col;"),
        "{message}"
    );
    wait_event(&client, &ns, "col-1", "Warning", "NameConflict").await;

    let after = deployments.get("col-1-x").await.expect("still there");
    let owners = after.metadata.owner_references.clone().unwrap_or_default();
    assert_eq!(owners.len(), 1, "{owners:?}");
    assert_eq!(Some(owners[0].uid.clone()), col_uid);
    assert_eq!(
        after.spec, first.spec,
        "the other's Deployment was modified"
    );
    assert_eq!(
        after
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get("sconce.dev/model-deployment")),
        Some(&"col".to_string())
    );
    println!("{}", describe(&ns, "col-1"));
    operator.stop();
    delete_namespace(&client, &ns).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_is_written_by_the_sconce_field_manager() {
    install_crd();
    let client = client().await;
    let ns = namespace(&client, "manager").await;
    let operator = Operator::start(&client, &ns).await;
    kubectl_ok(
        &["apply", "-n", &ns, "-f", "-"],
        Some(&manifest("fm", &model_spec("1"))),
    );
    let md = wait_status(&client, &ns, "fm", WAIT, "a status", |md| {
        md.status.is_some()
    })
    .await;
    let managers: Vec<(String, Option<String>)> = md
        .metadata
        .managed_fields
        .unwrap_or_default()
        .into_iter()
        .map(|m| (m.manager.unwrap_or_default(), m.subresource))
        .collect();
    assert!(
        managers
            .iter()
            .all(|(m, _)| m != "unknown" && !m.is_empty()),
        "{managers:?}"
    );
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let d = wait_until(WAIT, "Deployment", || async {
        deployments.get_opt("fm-1").await.ok().flatten()
    })
    .await;
    assert!(
        d.metadata
            .managed_fields
            .unwrap_or_default()
            .iter()
            .any(|m| m.manager.as_deref() == Some("sconce")),
        "children applied by sconce"
    );
    let status_writer = kubectl_ok(
        &[
            "get",
            "-n",
            &ns,
            "modeldeployment",
            "fm",
            "--show-managed-fields",
            "-o",
            "jsonpath={.metadata.managedFields[?(@.manager==\"sconce\")].operation}",
        ],
        None,
    );
    assert!(status_writer.contains("Update"), "{status_writer}");
    operator.stop();
    delete_namespace(&client, &ns).await;
}
