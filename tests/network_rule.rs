//! The network rule, checked on the running test plane: the plane's network namespace and its
//! pods have no default route, so nothing in them can reach the machine's resolver or any
//! outside address (a connect fails locally with ENETUNREACH: no packet leaves); pods get no
//! resolver but the plane's own cluster DNS address; every image on the node is a local one.
mod common;

use std::process::Command;
use std::time::Duration;

use common::node::*;
use common::*;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};

/// `nsenter --net=<netns> <cmd...>` and its combined output.
fn in_netns(netns: &str, cmd: &[&str]) -> (bool, String) {
    let out = Command::new("nsenter")
        .arg(format!("--net={netns}"))
        .args(cmd)
        .output()
        .expect("nsenter runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// The machine's own resolver and an outside address must be unreachable from `netns`.
fn assert_sealed(netns: &str, what: &str) {
    let (_, routes) = in_netns(netns, &["ip", "route"]);
    assert!(
        !routes.contains("default"),
        "{what} has a default route:\n{routes}"
    );
    let resolver = std::fs::read_to_string("/etc/resolv.conf")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("nameserver ").map(|s| s.trim().to_string()))
        .unwrap_or_else(|| "10.255.255.53".into());
    for target in [
        format!("{resolver}:53"),
        "1.1.1.1:443".into(),
        "169.254.169.254:80".into(),
    ] {
        let script = format!(
            "import socket,errno\ns=socket.socket()\ns.settimeout(2)\n\
             try:\n  s.connect(('{}',{}))\n  print('CONNECTED')\n\
             except OSError as e:\n  print(errno.errorcode.get(e.errno, e))",
            target.split(':').next().unwrap_or_default(),
            target.split(':').nth(1).unwrap_or_default()
        );
        let (_, out) = in_netns(netns, &["python3", "-c", &script]);
        assert_eq!(out.trim(), "ENETUNREACH", "{what} -> {target}: {out}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_in_the_plane_can_reach_outside() {
    install_crd();
    let slot = std::fs::read_to_string(plane_dir().join("slot")).expect("the plane's slot");
    let plane_netns = format!("/run/netns/sconce-{}", slot.trim());
    assert_sealed(&plane_netns, "the plane");

    // A running pod: its own network namespace, seen through its container's process.
    let client = client().await;
    let ns = namespace(&client, "netrule").await;
    let operator = Operator::start(&client, &ns).await;
    kubectl_ok(
        &["apply", "-n", &ns, "-f", "-"],
        Some(&example("mnist.yaml", None)),
    );
    wait_status(
        &client,
        &ns,
        "mnist",
        Duration::from_secs(90),
        "Ready",
        |md| has_condition(md, "Ready", "True", "Available"),
    )
    .await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let pod = pods
        .list(&ListParams::default())
        .await
        .expect("pods")
        .items
        .remove(0);
    let pid = container_pid(&container_id(&pod, "server").expect("id")).expect("pid");
    assert_sealed(&format!("/proc/{pid}/ns/net"), "a pod");
    // Its nameserver is the plane's cluster DNS address (where nothing answers), never the
    // machine's resolver.
    let resolv = std::fs::read_to_string(format!("/proc/{pid}/root/etc/resolv.conf"))
        .expect("the pod's resolv.conf");
    let servers: Vec<&str> = resolv
        .lines()
        .filter_map(|l| l.strip_prefix("nameserver "))
        .collect();
    assert_eq!(servers, [format!("10.96.{}.10", slot.trim())], "{resolv}");

    // Every image on the node is a local one: nothing was pulled from a registry.
    let images = ctr(&["images", "ls", "-q"]);
    for image in images.lines().filter(|l| !l.starts_with("sha256:")) {
        assert!(
            image.starts_with("localhost/"),
            "image from a registry: {image}"
        );
    }
    operator.stop();
    delete_namespace(&client, &ns).await;
}
