//! The Helm chart `charts/sconce`, installed, upgraded and uninstalled by real Helm (v4, the Go
//! library in the PyPI wheel helm-sdkpy, driven by hack/helm.py) on the test plane. The operator
//! then runs in-cluster on the real node from its image `localhost/sconce:dev` under the
//! chart's ServiceAccount: it serves a model through its Service, can do exactly what the chart's
//! RBAC lists (`kubectl auth can-i --list`), and a standby takes over within seconds when the
//! leader's pod is deleted.
mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::node::{cgroup_value, check_container_restrictions, check_restricted_process};
use common::*;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Pod, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::api::{Api, ListParams};
use sconce::crd::ModelDeployment;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(120);
/// The operator image hack/images.sh builds and the test plane's node has loaded.
const OPERATOR_IMAGE: (&str, &str) = ("localhost/sconce", "dev");

fn chart() -> PathBuf {
    repo_root().join("charts/sconce")
}

/// PYTHONPATH holding helm-sdkpy: `SCONCE_HELM_PYTHONPATH` (hack/test.sh sets it), else what
/// hack/fetch-helm.sh installs (cached).
fn helm_pythonpath() -> String {
    static PATH: OnceLock<String> = OnceLock::new();
    PATH.get_or_init(|| {
        if let Ok(path) = std::env::var("SCONCE_HELM_PYTHONPATH") {
            return path;
        }
        let out = Command::new("bash")
            .arg(repo_root().join("hack/fetch-helm.sh"))
            .output()
            .expect("running hack/fetch-helm.sh");
        assert!(
            out.status.success(),
            "hack/fetch-helm.sh failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .last()
            .unwrap_or_default()
            .to_string()
    })
    .clone()
}

/// Real Helm through hack/helm.py; returns its exit status and stdout (stderr is printed).
fn helm_run(args: &[&str]) -> (bool, String) {
    let out = Command::new("python3")
        .arg(repo_root().join("hack/helm.py"))
        .args(args)
        .arg("--kubeconfig")
        .arg(kubeconfig())
        .env("PYTHONPATH", helm_pythonpath())
        .output()
        .expect("python3 runs");
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// A release action (install, upgrade, uninstall) that must succeed; its summary.
fn helm(action: &str, release: &str, namespace: &str, values: &Value) -> Value {
    let chart = chart();
    let values = values.to_string();
    let mut args = vec![action, release];
    if action != "uninstall" {
        args.push(chart.to_str().expect("utf-8 path"));
    }
    args.extend(["--namespace", namespace, "--values-json", &values]);
    args.extend(["--timeout", "180"]);
    let (ok, stdout) = helm_run(&args);
    assert!(ok, "helm {action} {release} failed: {stdout}");
    serde_json::from_str(stdout.trim()).expect("helm.py prints JSON")
}

fn values(watch_namespace: &str, replicas: i32) -> Value {
    json!({
        "replicaCount": replicas,
        "image": {"repository": OPERATOR_IMAGE.0, "tag": OPERATOR_IMAGE.1},
        "server": {"image": TEST_SERVER_IMAGE},
        "watchNamespace": watch_namespace,
    })
}

#[test]
fn chart_crds_are_the_generated_crds() {
    let generated =
        std::fs::read_to_string(repo_root().join("crds/modeldeployments.sconce.dev.yaml"))
            .expect("crds/");
    let in_chart = std::fs::read_to_string(chart().join("crds/modeldeployments.sconce.dev.yaml"))
        .expect("charts/sconce/crds/");
    assert!(
        generated == in_chart,
        "charts/sconce/crds/ differs from crds/: cp crds/modeldeployments.sconce.dev.yaml charts/sconce/crds/"
    );
}

#[test]
fn chart_lints_clean() {
    let (ok, stdout) = helm_run(&["lint", chart().to_str().expect("utf-8 path")]);
    println!("{stdout}");
    assert!(ok, "helm lint found warnings or errors:\n{stdout}");
    assert!(stdout.contains("worst severity"), "{stdout}");
}

/// `kubectl auth can-i --list` of a ServiceAccount in `namespace`: resource -> (resource names,
/// verbs), non-resource URLs left out (Kubernetes grants discovery to every authenticated user).
fn can_i_list(sa: &str, namespace: &str) -> (String, BTreeMap<String, String>) {
    let text = kubectl_ok(
        &["auth", "can-i", "--list", "--as", sa, "-n", namespace],
        None,
    );
    let rows = text
        .lines()
        .skip(1)
        .filter(|l| !l.starts_with(' '))
        .filter_map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            let (resource, rest) = cols.split_first()?;
            // Non-Resource URLs [] | Resource Names [..] | Verbs [..]
            let joined = rest.join(" ");
            let names = joined.split(']').nth(1)?.trim().trim_start_matches('[');
            let verbs = joined.rsplit('[').next()?.trim_end_matches(']');
            Some((
                resource.to_string(),
                format!("names=[{names}] verbs=[{verbs}]"),
            ))
        })
        .collect();
    (text, rows)
}

fn can_i(sa: &str, args: &[&str]) -> bool {
    let mut all = vec!["auth", "can-i", "--as", sa];
    all.extend(args);
    kubectl(&all, None).status.success()
}

/// What the operator needs where it reconciles (src/reconcile) and nothing else.
fn expected_operator_rules() -> Vec<(&'static str, &'static str)> {
    vec![
        ("deployments.apps", "get list watch create patch delete"),
        ("endpoints", "list watch"),
        ("events", "list"),
        ("events.events.k8s.io", "create patch"),
        ("httproutes.gateway.networking.k8s.io", "get update"),
        ("modeldeployments.sconce.dev", "get list watch"),
        ("modeldeployments.sconce.dev/status", "patch"),
        (
            "networkpolicies.networking.k8s.io",
            "get list watch create patch delete",
        ),
        ("pods", "list watch"),
        ("services", "get list watch create patch delete"),
    ]
}

/// Rows every authenticated user has (system:basic-user).
const SELF_REVIEWS: [&str; 2] = [
    "selfsubjectaccessreviews.authorization.k8s.io",
    "selfsubjectrulesreviews.authorization.k8s.io",
];

fn check_rules(rows: &BTreeMap<String, String>, extra: &[(&str, &str)], matrix: &str) {
    let mut expected: BTreeMap<String, String> = expected_operator_rules()
        .into_iter()
        .chain(extra.iter().copied())
        .map(|(r, v)| (r.to_string(), format!("names=[] verbs=[{v}]")))
        .collect();
    for review in SELF_REVIEWS {
        expected.insert(review.into(), "names=[] verbs=[create]".into());
    }
    let mut got = rows.clone();
    // leases appear twice (create; get/update by name): compared below
    got.retain(|k, _| k != "leases.coordination.k8s.io");
    assert_eq!(got, expected, "can-i matrix:\n{matrix}");
    assert!(
        rows.iter()
            .all(|(r, v)| !r.contains('*') && !v.contains('*')),
        "a wildcard:\n{matrix}"
    );
}

/// `kubectl scale mdep/mnist` and wait until that many replicas serve.
async fn scale(client: &kube::Client, ns: &str, replicas: i32, what: &str) {
    let count = format!("--replicas={replicas}");
    kubectl_ok(&["scale", "-n", ns, "mdep/mnist", &count], None);
    wait_status(client, ns, "mnist", WAIT, what, |md| {
        has_condition(md, "Ready", "True", "Available")
            && md
                .status
                .as_ref()
                .is_some_and(|s| s.ready_replicas == replicas)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helm_installs_an_in_cluster_operator_with_least_privilege_that_serves_and_fails_over() {
    install_crd();
    let client = client().await;
    let system = namespace(&client, "helm-sys").await;
    let models = namespace(&client, "helm-models").await;
    let release = "sconce";

    // --- install: two replicas, one leads ------------------------------------------------------
    let installed = helm("install", release, &system, &values(&models, 2));
    assert_eq!(installed["status"], "deployed", "{installed}");
    assert_eq!(installed["revision"], 1);
    assert!(
        installed["notes"]
            .as_str()
            .is_some_and(|n| n.contains("kubectl wait --for=condition=Ready mdep/mnist")),
        "NOTES tell what to apply next: {installed}"
    );
    let pods: Api<Pod> = Api::namespaced(client.clone(), &system);
    let operator_pods = || async {
        pods.list(&ListParams::default().labels("app.kubernetes.io/component=operator"))
            .await
            .expect("operator pods")
            .items
    };
    let running = operator_pods().await;
    assert_eq!(running.len(), 2);
    for pod in &running {
        let spec = pod.spec.as_ref().expect("spec");
        assert_eq!(spec.service_account_name.as_deref(), Some("sconce"));
        assert_eq!(
            spec.containers[0].image.as_deref(),
            Some("localhost/sconce:dev")
        );
        check_restricted_process(pod, "operator");
    }
    let leases: Api<Lease> = Api::namespaced(client.clone(), &system);
    let holder = || async {
        leases
            .get_opt("sconce")
            .await
            .ok()
            .flatten()
            .and_then(|l| l.spec?.holder_identity)
    };
    let leader = wait_until(WAIT, "a leader", holder).await;
    let names: Vec<String> = running
        .iter()
        .filter_map(|p| p.metadata.name.clone())
        .collect();
    assert!(names.contains(&leader), "{leader} not in {names:?}");
    // the standby says so in its metrics, the leader too
    for pod in &running {
        let ip = pod
            .status
            .as_ref()
            .and_then(|s| s.pod_ip.clone())
            .expect("pod IP");
        let metrics = reqwest::get(format!("http://{ip}:8081/metrics"))
            .await
            .expect("operator /metrics")
            .text()
            .await
            .expect("text");
        let leading = pod.metadata.name.as_deref() == Some(leader.as_str());
        let line = format!("sconce_operator_leader {}", u8::from(leading));
        assert!(metrics.contains(&line), "{line} in:\n{metrics}");
    }

    // --- it serves a model in the watched namespace ---------------------------------------------
    kubectl_ok(
        &["apply", "-n", &models, "-f", "-"],
        Some(&example("mnist.yaml", None)),
    );
    wait_status(&client, &models, "mnist", WAIT, "mnist Ready", |md| {
        has_condition(md, "Ready", "True", "Available")
    })
    .await;
    let cluster_ip = cluster_ip(&client, &models, "mnist").await;
    let predict = || async {
        let body = json!({"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 1000],
                                      "data": vec![0.5f32; 1000]}]});
        let r = reqwest::Client::new()
            .post(format!("http://{cluster_ip}/v2/models/mnist/infer"))
            .json(&body)
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .ok()?;
        let answer: Value = r.json().await.ok()?;
        let outputs = answer["outputs"][0]["data"].as_array()?.len();
        (outputs == 10).then_some(())
    };
    wait_until(WAIT, "a prediction through the Service", predict).await;
    let server_pods: Api<Pod> = Api::namespaced(client.clone(), &models);
    for pod in server_pods
        .list(&ListParams::default().labels("sconce.dev/model-deployment=mnist"))
        .await
        .expect("server pods")
        .items
    {
        check_container_restrictions(&pod);
    }

    // a ModelDeployment without resources gets the chart's server.resources (2Gi memory limit)
    let bare = example("mnist.yaml", None)
        .replacen("name: mnist\n", "name: bare\n", 1)
        .replace("replicas: 2", "replicas: 1");
    let bare = bare
        .split("    resources:")
        .next()
        .expect("the example without its resources")
        .to_string();
    kubectl_ok(&["apply", "-n", &models, "-f", "-"], Some(&bare));
    wait_status(&client, &models, "bare", WAIT, "bare Ready", |md| {
        has_condition(md, "Ready", "True", "Available")
    })
    .await;
    let bare_pod = server_pods
        .list(&ListParams::default().labels("sconce.dev/model-deployment=bare"))
        .await
        .expect("pods")
        .items
        .into_iter()
        .next()
        .expect("a bare pod");
    let pid = check_restricted_process(&bare_pod, "server");
    assert_eq!(
        cgroup_value(pid, "memory", "memory.limit_in_bytes").as_deref(),
        Some("2147483648"),
        "the chart's default memory limit reached the cgroup"
    );
    kubectl_ok(&["delete", "-n", &models, "mdep/bare"], None);

    // spec.networkPolicy lets the chart's operator pods in (they scrape the serving pods)
    kubectl_ok(
        &[
            "patch",
            "-n",
            &models,
            "mdep/mnist",
            "--type=merge",
            "-p",
            r#"{"spec":{"networkPolicy":{"allowFrom":[{"podSelector":{"matchLabels":{"role":"client"}}}]}}}"#,
        ],
        None,
    );
    let policies: Api<NetworkPolicy> = Api::namespaced(client.clone(), &models);
    let from = wait_until(WAIT, "the NetworkPolicy", || async {
        let policy = policies.get_opt("mnist").await.ok()??;
        policy.spec?.ingress?.first()?.from.clone()
    })
    .await;
    assert_eq!(from.len(), 2, "{from:?}");
    let operator_peer = &from[1];
    let selector =
        |s: &Option<LabelSelector>| s.clone().and_then(|s| s.match_labels).unwrap_or_default();
    assert_eq!(
        selector(&operator_peer.namespace_selector).get("kubernetes.io/metadata.name"),
        Some(&system)
    );
    assert_eq!(
        selector(&operator_peer.pod_selector),
        running[0]
            .metadata
            .labels
            .clone()
            .unwrap_or_default()
            .into_iter()
            .filter(|(k, _)| [
                "app.kubernetes.io/name",
                "app.kubernetes.io/instance",
                "app.kubernetes.io/component"
            ]
            .contains(&k.as_str()))
            .collect::<BTreeMap<_, _>>(),
        "the operator's own pods"
    );

    // --- least privilege: exactly the chart's rules, only where it works -------------------------
    let sa = format!("system:serviceaccount:{system}:sconce");
    let (matrix, rows) = can_i_list(&sa, &models);
    println!("kubectl auth can-i --list --as={sa} -n {models}:\n{matrix}");
    check_rules(&rows, &[], &matrix);
    let (lease_matrix, _) = can_i_list(&sa, &system);
    println!("kubectl auth can-i --list --as={sa} -n {system}:\n{lease_matrix}");
    let lease_rows: Vec<&str> = lease_matrix
        .lines()
        .filter(|l| l.starts_with("leases."))
        .collect();
    assert_eq!(lease_rows.len(), 2, "{lease_matrix}");
    assert!(can_i(&sa, &["create", "leases", "-n", &system]));
    assert!(can_i(&sa, &["update", "leases/sconce", "-n", &system]));
    assert!(!can_i(&sa, &["update", "leases/other", "-n", &system]));
    assert!(
        !can_i(&sa, &["list", "deployments", "-n", &system]),
        "only the watched namespace"
    );
    for denied in [
        vec!["get", "secrets", "-n", &models],
        vec!["list", "secrets", "--all-namespaces"],
        vec!["list", "modeldeployments", "--all-namespaces"],
        vec!["update", "modeldeployments", "-n", &models],
        vec!["patch", "modeldeployments", "-n", &models],
        vec!["create", "pods", "-n", &models],
        vec!["get", "nodes"],
        vec!["create", "clusterrolebindings"],
    ] {
        assert!(!can_i(&sa, &denied), "{sa} must not {denied:?}");
    }

    // --- failover: delete the leader's pod, the standby takes over -------------------------------
    let standby = names
        .iter()
        .find(|n| **n != leader)
        .expect("a standby")
        .clone();
    let started = Instant::now();
    kubectl_ok(
        &["delete", "pod", "-n", &system, &leader, "--wait=false"],
        None,
    );
    let new_leader = wait_until(Duration::from_secs(60), "a new leader", || async {
        holder().await.filter(|h| *h != leader)
    })
    .await;
    let takeover = started.elapsed();
    // The standby, or the pod replacing the old leader if it starts and looks first: the
    // standby's next look may be up to a retry period away, the new pod's first is at once.
    let by = if new_leader == standby {
        "the standby"
    } else {
        "the leader's replacement pod"
    };
    // the new leader reconciles: a scale is carried out
    scale(&client, &models, 1, "scaled to 1 by the new leader").await;
    let reconciling = started.elapsed();
    println!(
        "leader failover: Lease taken over by {by} ({new_leader}) {takeover:.2?} after the \
         leader's pod was deleted; the scale it then carried out was Ready {reconciling:.2?} \
         after the delete"
    );
    // released on SIGTERM: well before the 15 s a crashed leader's Lease would take
    assert!(
        takeover < Duration::from_secs(5),
        "takeover took {takeover:?}"
    );

    // --- upgrade: values change the Deployment, the release counts a revision --------------------
    let mut upgraded_values = values(&models, 2);
    upgraded_values["logLevel"] = json!("debug,kube=warn");
    upgraded_values["leaderElection"] =
        json!({"retryPeriod": 1, "renewDeadline": 8, "leaseDuration": 12});
    let upgraded = helm("upgrade", release, &system, &upgraded_values);
    assert_eq!(upgraded["status"], "deployed", "{upgraded}");
    assert_eq!(upgraded["revision"], 2);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &system);
    let container = deployments
        .get("sconce")
        .await
        .expect("operator Deployment")
        .spec
        .template
        .spec
        .map(|s| s.containers[0].clone())
        .expect("container");
    let args = container.args.unwrap_or_default();
    assert!(
        args.contains(&"--leader-election-retry-period=1".to_string()),
        "{args:?}"
    );
    let rust_log = container
        .env
        .unwrap_or_default()
        .into_iter()
        .find(|e| e.name == "RUST_LOG")
        .and_then(|e| e.value);
    assert_eq!(rust_log.as_deref(), Some("debug,kube=warn"));
    // the upgraded replicas lead and reconcile
    scale(&client, &models, 2, "scaled to 2 after the upgrade").await;

    // --- uninstall: the operator and its RBAC go; CRD and models stay ---------------------------
    let uninstalled = helm("uninstall", release, &system, &json!({}));
    assert_eq!(uninstalled["status"], "uninstalled", "{uninstalled}");
    wait_until(WAIT, "operator pods gone", || async {
        operator_pods().await.is_empty().then_some(())
    })
    .await;
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), &system);
    assert!(sas.get_opt("sconce").await.expect("get").is_none());
    let roles: Api<Role> = Api::namespaced(client.clone(), &models);
    assert!(roles.get_opt("sconce").await.expect("get").is_none());
    let bindings: Api<RoleBinding> = Api::namespaced(client.clone(), &models);
    assert!(bindings.get_opt("sconce").await.expect("get").is_none());
    assert!(deployments.get_opt("sconce").await.expect("get").is_none());
    kubectl_ok(&["get", "crd", "modeldeployments.sconce.dev"], None);
    let mds: Api<ModelDeployment> = Api::namespaced(client.clone(), &models);
    assert!(mds.get_opt("mnist").await.expect("get").is_some());

    delete_namespace(&client, &models).await;
    delete_namespace(&client, &system).await;
}

/// Cluster-wide mode (no watchNamespace): a ClusterRole with the same rules, still no secrets
/// and no wildcards. Installed without replicas: an operator watching every namespace would
/// reconcile the other tests' objects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_wide_rbac_is_the_same_least_privilege() {
    install_crd();
    let client = client().await;
    let system = namespace(&client, "helm-cw").await;
    let release = "sconce-cw";
    let installed = helm("install", release, &system, &values("", 0));
    assert_eq!(installed["status"], "deployed", "{installed}");
    let sa = format!("system:serviceaccount:{system}:sconce-cw");
    let elsewhere = namespace(&client, "helm-cw-any").await;
    let (matrix, rows) = can_i_list(&sa, &elsewhere);
    println!("kubectl auth can-i --list --as={sa} -n {elsewhere}:\n{matrix}");
    check_rules(&rows, &[], &matrix);
    assert!(can_i(
        &sa,
        &["list", "modeldeployments", "--all-namespaces"]
    ));
    assert!(can_i(&sa, &["watch", "pods", "--all-namespaces"]));
    for denied in [
        vec!["list", "secrets", "--all-namespaces"],
        vec!["get", "secrets", "-n", &system],
        vec!["get", "configmaps", "--all-namespaces"],
        vec!["update", "modeldeployments", "--all-namespaces"],
        vec!["create", "leases", "-n", &elsewhere],
    ] {
        assert!(!can_i(&sa, &denied), "{sa} must not {denied:?}");
    }
    let uninstalled = helm("uninstall", release, &system, &json!({}));
    assert_eq!(uninstalled["status"], "uninstalled");
    let cluster_role = format!("{system}-sconce-cw");
    let gone = kubectl(&["get", "clusterrole", &cluster_role], None);
    assert!(
        !gone.status.success(),
        "ClusterRole {cluster_role} left behind"
    );
    delete_namespace(&client, &elsewhere).await;
    delete_namespace(&client, &system).await;
}

/// Every key of `used` exists in `defined` (values.yaml): an example never sets a value the
/// chart ignores.
fn unknown_keys(used: &serde_yaml::Value, defined: &serde_yaml::Value, path: &str) -> Vec<String> {
    let (Some(used), Some(defined)) = (used.as_mapping(), defined.as_mapping()) else {
        return Vec::new();
    };
    used.iter()
        .flat_map(|(k, v)| {
            let key = format!("{path}.{}", k.as_str().unwrap_or("?"));
            match defined.get(k) {
                None => vec![key],
                Some(d) => unknown_keys(v, d, &key),
            }
        })
        .collect()
}

#[test]
fn flux_example_installs_this_chart_with_values_it_has() {
    let defined: serde_yaml::Value = serde_yaml::from_str(
        &std::fs::read_to_string(chart().join("values.yaml")).expect("values"),
    )
    .expect("values.yaml parses");
    let text = std::fs::read_to_string(repo_root().join("gitops/flux/sconce.yaml")).expect("flux");
    let release = serde_yaml::Deserializer::from_str(&text)
        .map(|d| serde::Deserialize::deserialize(d).expect("a YAML document"))
        .find(|d: &serde_yaml::Value| d["kind"] == "HelmRelease")
        .expect("a HelmRelease");
    let chart_path = release["spec"]["chart"]["spec"]["chart"]
        .as_str()
        .expect("chart path");
    assert!(
        repo_root().join(chart_path).join("Chart.yaml").exists(),
        "{chart_path}"
    );
    let unknown = unknown_keys(&release["spec"]["values"], &defined, "values");
    assert!(
        unknown.is_empty(),
        "not in charts/sconce/values.yaml: {unknown:?}"
    );
    let models =
        std::fs::read_to_string(repo_root().join("gitops/flux/models.yaml")).expect("flux");
    let kinds: Vec<String> = serde_yaml::Deserializer::from_str(&models)
        .map(|d| {
            let v: serde_yaml::Value = serde::Deserialize::deserialize(d).expect("a YAML document");
            v["kind"].as_str().unwrap_or_default().to_string()
        })
        .collect();
    assert_eq!(kinds, ["GitRepository", "Namespace", "Kustomization"]);
}
