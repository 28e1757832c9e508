//! End to end against a real control plane (kube-apiserver + kube-controller-manager) with the
//! node agent and real sconce-server processes: scheduling, readiness, inference, a killed
//! process being restarted, deletion through the Deployment/ReplicaSet/GC controllers, and the
//! honest failure modes (unschedulable pods, images that cannot run locally).
//!
//! Uses `SCONCE_TEST_KUBECONFIG` when set, else starts a private cluster with `hack/k8s.sh`.

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use sconce_devtools::model_fixture::{ModelSpec, sample_input, write_model};
use sconce_devtools::reference_forward;
use sconce_devtools::testing::{
    AgentOptions, AgentProcess, TestCluster, build_binary, pids_serving_ip,
};
use support::*;

const INPUT_SIZE: usize = 16;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_agent_runs_schedules_restarts_and_deletes_real_pods() -> Result<()> {
    let server =
        tokio::task::spawn_blocking(|| build_binary("sconce-server", "sconce-server")).await??;
    let cluster = tokio::task::spawn_blocking(TestCluster::from_env_or_start).await??;
    let client = cluster.client().await?;
    let ns = format!("node-agent-e2e-{}", std::process::id());
    create_namespace(&client, &ns).await?;

    let model = tempfile::tempdir()?;
    write_model(
        model.path(),
        &ModelSpec {
            input_size: INPUT_SIZE,
            hidden: vec![8],
            outputs: 3,
            seed: 7,
        },
    )?;
    let logs = tempfile::tempdir()?;
    let _agent = AgentProcess::spawn(
        std::path::Path::new(env!("CARGO_BIN_EXE_sconce-dev")),
        &AgentOptions {
            kubeconfig: cluster.kubeconfig.clone(),
            namespace: Some(ns.clone()),
            node_name: format!("sconce-e2e-{}", std::process::id()),
            ip_prefix: "127.0.201".into(),
            server_binary: Some(server),
            log_dir: Some(logs.path().to_path_buf()),
        },
    )?;
    let result = scenario(&client, &ns, model.path()).await;
    if result.is_err() {
        dump_logs(logs.path());
    }
    let _ = Api::<k8s_openapi::api::core::v1::Namespace>::all(client.clone())
        .delete(&ns, &DeleteParams::default())
        .await;
    result
}

async fn scenario(client: &kube::Client, ns: &str, model_dir: &std::path::Path) -> Result<()> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    wait_for_default_service_account(client, ns).await?;

    // pods the agent must refuse honestly, created first so they are checked alongside
    pods.create(
        &PostParams::default(),
        &bare_pod("wants-gpu", "sconce-server:dev", Some(("gpu", "a100"))),
    )
    .await?;
    pods.create(
        &PostParams::default(),
        &bare_pod("nginx", "nginx:1.25", None),
    )
    .await?;

    deployments
        .create(&PostParams::default(), &demo_deployment(model_dir))
        .await?;
    let ready = wait_until(
        Duration::from_secs(180),
        "2 demo pods Running and Ready",
        || async {
            let list = pods.list(&ListParams::default().labels("app=demo")).await?;
            let ready: Vec<Pod> = list
                .items
                .into_iter()
                .filter(is_running_and_ready)
                .collect();
            Ok((ready.len() == 2).then_some(ready))
        },
    )
    .await?;
    let ips: BTreeSet<String> = ready.iter().filter_map(pod_ip).collect();
    ensure!(ips.len() == 2, "pod IPs must be distinct: {ips:?}");
    ensure!(
        ips.iter().all(|ip| ip.starts_with("127.0.201.")),
        "pod IPs from the agent's prefix: {ips:?}"
    );

    let input = sample_input(INPUT_SIZE, 1);
    let expected = reference_forward(model_dir, &input)?;
    for ip in &ips {
        let got = infer(ip, &input).await?;
        ensure!(
            close(&got, &expected),
            "pod {ip} answered {got:?}, reference says {expected:?}"
        );
    }

    check_refused_pods(&pods).await?;
    check_killed_process_is_restarted(&pods, &ready[0]).await?;

    // deleting the Deployment: GC removes the ReplicaSet and pods, the agent stops the processes
    // and finishes each pod's deletion
    deployments
        .delete("demo", &DeleteParams::background())
        .await?;
    wait_until(Duration::from_secs(90), "demo pods gone", || async {
        let list = pods.list(&ListParams::default().labels("app=demo")).await?;
        Ok(list.items.is_empty().then_some(()))
    })
    .await?;
    for ip in &ips {
        ensure!(
            pids_serving_ip(ip).is_empty(),
            "a server for {ip} still runs after its pod was deleted"
        );
    }
    Ok(())
}

async fn check_refused_pods(pods: &Api<Pod>) -> Result<()> {
    wait_until(
        Duration::from_secs(30),
        "wants-gpu marked Unschedulable",
        || async {
            let pod = pods.get("wants-gpu").await?;
            let scheduled = condition(&pod, "PodScheduled");
            let unschedulable = scheduled.is_some_and(|c| {
                c.status == "False" && c.reason.as_deref() == Some("Unschedulable")
            });
            Ok((unschedulable && pod.spec.and_then(|s| s.node_name).is_none()).then_some(()))
        },
    )
    .await?;
    wait_until(
        Duration::from_secs(30),
        "nginx waiting with ImageNotSupportedLocally",
        || async {
            let pod = pods.get("nginx").await?;
            let status = pod.status.unwrap_or_default();
            let reason = status
                .container_statuses
                .unwrap_or_default()
                .first()
                .and_then(|c| c.state.as_ref()?.waiting.as_ref()?.reason.clone());
            Ok((reason.as_deref() == Some("ImageNotSupportedLocally")
                && status.phase.as_deref() == Some("Pending"))
            .then_some(()))
        },
    )
    .await?;
    // a pod that never ran is deleted promptly too
    pods.delete("nginx", &DeleteParams::default()).await?;
    wait_until(Duration::from_secs(30), "nginx pod deleted", || async {
        Ok(pods.get_opt("nginx").await?.is_none().then_some(()))
    })
    .await
}

async fn check_killed_process_is_restarted(pods: &Api<Pod>, victim: &Pod) -> Result<()> {
    let name = victim.metadata.name.clone().context("pod name")?;
    let ip = pod_ip(victim).context("pod ip")?;
    let ready_since = condition(victim, "Ready")
        .and_then(|c| c.last_transition_time.clone())
        .context("Ready time")?;
    let pids = pids_serving_ip(&ip);
    ensure!(
        pids.len() == 1,
        "expected one server process for {ip}, found {pids:?}"
    );
    // SAFETY: kill(2) on a pid we just found; the worst case is an ESRCH error
    unsafe {
        libc::kill(i32::try_from(pids[0])?, libc::SIGKILL);
    }
    let pod = wait_until(
        Duration::from_secs(60),
        "killed pod restarted and Ready again",
        || async {
            let pod = pods.get(&name).await?;
            let restarted = container_status(&pod).is_some_and(|c| c.restart_count == 1);
            Ok((restarted && is_running_and_ready(&pod)).then_some(pod))
        },
    )
    .await?;
    let cs = container_status(&pod).context("container status")?;
    let last = cs
        .last_state
        .as_ref()
        .and_then(|s| s.terminated.as_ref())
        .context("lastState.terminated")?;
    ensure!(
        last.exit_code == 137 && last.reason.as_deref() == Some("Error"),
        "lastState: {last:?}"
    );
    let ready_again = condition(&pod, "Ready")
        .and_then(|c| c.last_transition_time.clone())
        .context("Ready time")?;
    ensure!(
        ready_again.0 > ready_since.0,
        "Ready must have gone False and back to True"
    );
    ensure!(
        pod_ip(&pod).as_deref() == Some(ip.as_str()),
        "a restarted container keeps its pod IP"
    );
    let got = infer(&ip, &sample_input(INPUT_SIZE, 2)).await?;
    ensure!(got.len() == 3, "the restarted server answers");
    Ok(())
}
