//! Shared harness for tests against a real kube-apiserver (see hack/k8s.sh).
#![allow(dead_code)] // each test binary uses a different subset

pub mod load;
pub mod node;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Client;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use sconce::crd::ModelDeployment;
use sconce::metrics::Metrics;
use sconce::reconcile;

pub fn repo_root() -> PathBuf {
    sconce_devtools::testing::workspace_root()
}

/// `SCONCE_TEST_KUBECONFIG` if set (kind, k3d, a real cluster, or the one `hack/test.sh` started);
/// otherwise a local control plane under `target/`, started once and left running for reruns.
pub fn kubeconfig() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        if let Some(path) = std::env::var_os("SCONCE_TEST_KUBECONFIG") {
            return PathBuf::from(path);
        }
        let run_dir = repo_root().join("target/sconce-test-cluster");
        let out = Command::new("bash")
            .arg(repo_root().join("hack/k8s.sh"))
            .arg("ensure")
            .arg(&run_dir)
            .output()
            .expect("running hack/k8s.sh");
        assert!(
            out.status.success(),
            "hack/k8s.sh ensure failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let path = String::from_utf8_lossy(&out.stdout)
            .trim()
            .lines()
            .last()
            .unwrap_or_default()
            .to_string();
        PathBuf::from(path)
    })
    .clone()
}

pub async fn client() -> Client {
    sconce_devtools::testing::client_from_kubeconfig(&kubeconfig())
        .await
        .expect("a client for the test cluster")
}

/// Real kubectl against the test cluster. Version-skew warnings go to stderr and are ignored.
pub fn kubectl(args: &[&str], stdin: Option<&str>) -> Output {
    use std::io::Write;
    let mut child = Command::new("kubectl")
        .args(args)
        .env("KUBECONFIG", kubeconfig())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("kubectl is installed");
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("writing stdin");
    }
    drop(child.stdin.take());
    child.wait_with_output().expect("kubectl runs")
}

pub fn kubectl_ok(args: &[&str], stdin: Option<&str>) -> String {
    let out = kubectl(args, stdin);
    assert!(
        out.status.success(),
        "kubectl {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Install the generated CRD (once per test binary) and wait until it is Established.
pub fn install_crd() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        let crd = repo_root().join("crds/modeldeployments.sconce.dev.yaml");
        kubectl_ok(&["apply", "-f", crd.to_str().expect("utf-8 path")], None);
        wait_crd_established("modeldeployments.sconce.dev");
    });
}

/// Poll until a CRD reports `Established=True`, at most 60 s. `kubectl wait --for=condition`
/// (1.20) fails at once with "status.conditions accessor error" when it reads a CRD the
/// apiserver has not given any conditions yet, which happened in CI right after `apply`.
pub fn wait_crd_established(name: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let jsonpath = r#"jsonpath={.status.conditions[?(@.type=="Established")].status}"#;
    loop {
        let out = kubectl(&["get", &format!("crd/{name}"), "-o", jsonpath], None);
        if out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "True" {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "crd/{name} not Established within 60 s: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A fresh namespace per test, so tests run in parallel without seeing each other.
pub async fn namespace(client: &Client, prefix: &str) -> String {
    let suffix = format!(
        "{:x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos()
            & 0xffffff
    );
    let name = format!("{prefix}-{suffix}");
    let api: Api<Namespace> = Api::all(client.clone());
    let ns = Namespace {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            labels: Some([("sconce.dev/test".to_string(), "true".to_string())].into()),
            ..Default::default()
        },
        ..Default::default()
    };
    api.create(&PostParams::default(), &ns)
        .await
        .expect("creating namespace");
    // Pods need the namespace's default ServiceAccount and, on 1.20, its token secret (both made
    // by the controller-manager).
    let sa: Api<k8s_openapi::api::core::v1::ServiceAccount> =
        Api::namespaced(client.clone(), &name);
    wait_until(
        Duration::from_secs(30),
        "default ServiceAccount token",
        || async {
            let sa = sa.get_opt("default").await.ok().flatten()?;
            sa.secrets.filter(|s| !s.is_empty()).map(|_| ())
        },
    )
    .await;
    name
}

pub async fn delete_namespace(client: &Client, name: &str) {
    let api: Api<Namespace> = Api::all(client.clone());
    let _ = api.delete(name, &DeleteParams::background()).await;
}

/// The operator binary: `SCONCE_OPERATOR_BINARY` when set (a private copy, for machines where
/// other checkouts build into the same target dir), else the one cargo built for this test.
pub fn operator_binary() -> PathBuf {
    std::env::var_os("SCONCE_OPERATOR_BINARY").map_or_else(
        || PathBuf::from(env!("CARGO_BIN_EXE_sconce")),
        PathBuf::from,
    )
}

/// The server image `hack/images.sh` builds and the test plane's node has loaded.
pub const TEST_SERVER_IMAGE: &str = "localhost/sconce-server:dev";

/// A `sequential` model directory the serving pods (uid 65532) can read, made once per test
/// binary under the target dir (hostPath volumes mount it into the pods).
pub fn shared_model_dir() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = sconce_devtools::testing::target_dir()
            .join("sconce-test-models")
            .join(format!("mnist-{}", std::process::id()));
        sconce_devtools::model_fixture::write_model(&dir, &Default::default())
            .expect("writing the test model");
        sconce_devtools::testing::make_world_readable(&dir).expect("chmod model");
        dir
    })
    .clone()
}

/// An in-process operator watching one namespace.
pub struct Operator {
    pub metrics: Arc<Metrics>,
    handle: tokio::task::JoinHandle<()>,
}

impl Operator {
    pub async fn start(client: &Client, namespace: &str) -> Operator {
        let metrics = Arc::new(Metrics::default());
        let config = reconcile::build::BuildConfig {
            server_image: TEST_SERVER_IMAGE.into(),
            ..Default::default()
        };
        let (c, ns, m) = (client.clone(), namespace.to_string(), metrics.clone());
        let handle = tokio::spawn(async move {
            if let Err(e) =
                reconcile::run(c, Some(ns), config, m, Arc::new(AtomicBool::new(false))).await
            {
                panic!("operator failed: {e}");
            }
        });
        Operator { metrics, handle }
    }

    pub fn reconciliations(&self) -> u64 {
        self.metrics.reconciliations.get()
    }

    pub fn stop(self) {
        self.handle.abort();
    }
}

/// Poll `check` until it yields `Some`, or panic naming `what` after `timeout`.
pub async fn wait_until<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// An example manifest ready for `kubectl apply -f -` on the test plane: its model uri points at
/// `uri` (default: [`shared_model_dir`]) and its image at the locally built one, so no pod
/// ever tries to pull from a registry.
pub fn example(name: &str, uri: Option<&Path>) -> String {
    let text =
        std::fs::read_to_string(repo_root().join("examples").join(name)).expect("example exists");
    let dir = uri.map_or_else(shared_model_dir, Path::to_path_buf);
    text.replace(
        "file:///var/lib/sconce/models/mnist",
        &format!("file://{}", dir.display()),
    )
    .replace("ghcr.io/sconce-dev/sconce-server:0.1.0", TEST_SERVER_IMAGE)
}

/// A condition of a ModelDeployment's status.
pub fn condition<'a>(md: &'a ModelDeployment, type_: &str) -> Option<&'a Condition> {
    md.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
}

/// Waits until `name`'s status describes its current generation and satisfies `check`.
pub async fn wait_status(
    client: &Client,
    ns: &str,
    name: &str,
    timeout: Duration,
    what: &str,
    check: impl Fn(&ModelDeployment) -> bool,
) -> ModelDeployment {
    let mds: Api<ModelDeployment> = Api::namespaced(client.clone(), ns);
    wait_until(timeout, what, || async {
        let md = mds.get(name).await.ok()?;
        let current = md.status.as_ref()?.observed_generation == md.metadata.generation;
        (current && check(&md)).then_some(md)
    })
    .await
}

/// `type` is `status` with `reason`.
pub fn has_condition(md: &ModelDeployment, type_: &str, status: &str, reason: &str) -> bool {
    condition(md, type_).is_some_and(|c| c.status == status && c.reason == reason)
}

/// events.k8s.io events about the ModelDeployment named `name`, oldest first.
pub async fn events_about(client: &Client, ns: &str, name: &str) -> Vec<Event> {
    let api: Api<Event> = Api::namespaced(client.clone(), ns);
    let mut events: Vec<Event> = api
        .list(&ListParams::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default()
        .into_iter()
        // The ModelDeployment's own events: its Service's Endpoints share its name, and the
        // endpoints controller's conflict retries are Warnings about them, not about it.
        .filter(|e| {
            e.regarding.as_ref().is_some_and(|r| {
                r.name.as_deref() == Some(name) && r.kind.as_deref() == Some("ModelDeployment")
            })
        })
        .collect();
    events.sort_by_key(|e| e.event_time.as_ref().map(|t| t.0));
    events
}

/// Waits for an event about `name` with `type_` and `reason`, and returns it.
pub async fn wait_event(client: &Client, ns: &str, name: &str, type_: &str, reason: &str) -> Event {
    wait_until(
        Duration::from_secs(60),
        &format!("{type_} event {reason} about {name}"),
        || async {
            events_about(client, ns, name)
                .await
                .into_iter()
                .find(|e| e.type_.as_deref() == Some(type_) && e.reason.as_deref() == Some(reason))
        },
    )
    .await
}

/// `kubectl describe` of a ModelDeployment (printed by tests, for humans reading the log).
pub fn describe(ns: &str, name: &str) -> String {
    kubectl_ok(&["describe", "-n", ns, "modeldeployment", name], None)
}

/// The ClusterIP of Service `name` (the host reaches it through the plane's kube-proxy).
pub async fn cluster_ip(client: &Client, ns: &str, name: &str) -> String {
    let services: Api<k8s_openapi::api::core::v1::Service> = Api::namespaced(client.clone(), ns);
    services
        .get(name)
        .await
        .expect("Service")
        .spec
        .and_then(|s| s.cluster_ip)
        .expect("ClusterIP")
}
