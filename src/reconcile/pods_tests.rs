use super::*;

fn pod(name: &str, status: &str) -> Pod {
    serde_yaml::from_str(&format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec: {{containers: []}}\nstatus: {status}\n"
    ))
    .expect("pod fixture")
}

fn one(p: &Pod) -> Option<Problem> {
    diagnose(&[p])
}

#[test]
fn healthy_and_starting_pods_have_no_problem() {
    let running = pod(
        "a",
        "{phase: Running, containerStatuses: [{name: server, ready: true, restartCount: 0, \
         image: i, imageID: '', state: {running: {}}}]}",
    );
    let creating = pod(
        "b",
        "{phase: Pending, containerStatuses: [{name: server, ready: false, restartCount: 0, \
         image: i, imageID: '', state: {waiting: {reason: ContainerCreating}}}]}",
    );
    let pending = pod("c", "{phase: Pending}");
    let recovered = pod(
        "d",
        "{phase: Running, containerStatuses: [{name: server, ready: true, restartCount: 1, \
         image: i, imageID: '', state: {running: {}}, \
         lastState: {terminated: {exitCode: 137, reason: OOMKilled}}}]}",
    );
    assert_eq!(diagnose(&[&running, &creating, &pending, &recovered]), None);
}

#[test]
fn crash_loop_names_the_last_log_lines() {
    let p = pod(
        "mnist-1-abc",
        "{phase: Running, containerStatuses: [{name: server, ready: false, restartCount: 3, \
         image: i, imageID: '', state: {waiting: {reason: CrashLoopBackOff, \
         message: 'back-off 40s restarting failed container=server pod=mnist-1-abc'}}, \
         lastState: {terminated: {exitCode: 1, reason: Error, message: \"INFO listening\\n\
         2026-12-01T00:55:35.661497Z ERROR model failed to load: reading /mnt/models/config.json: \
         No such file or directory\\n\"}}}]}",
    );
    let problem = one(&p).expect("a problem");
    assert_eq!(problem.reason, "CrashLoopBackOff");
    assert_eq!(
        problem.message,
        "pod mnist-1-abc container server: CrashLoopBackOff; last exit code 1: INFO listening | \
         ERROR model failed to load: reading /mnt/models/config.json: No such file or directory"
    );
}

#[test]
fn a_crash_before_the_back_off_is_reported_too() {
    let p = pod(
        "x",
        "{phase: Running, containerStatuses: [{name: server, ready: false, restartCount: 1, \
         image: i, imageID: '', state: {terminated: {exitCode: 1, reason: Error, message: 'boom'}}}]}",
    );
    let problem = one(&p).expect("a problem");
    assert_eq!(
        problem.reason, "CrashLoopBackOff",
        "restarted before: a crash loop"
    );
    assert_eq!(
        problem.message,
        "pod x container server: CrashLoopBackOff; last exit code 1: boom"
    );
    let first = pod(
        "z",
        "{phase: Running, containerStatuses: [{name: server, ready: false, restartCount: 0, \
         image: i, imageID: '', state: {terminated: {exitCode: 1, reason: Error, message: 'boom'}}}]}",
    );
    let problem = one(&first).expect("a problem");
    assert_eq!(problem.reason, "ContainerFailed");
    assert_eq!(
        problem.message,
        "pod z container server exited with code 1: boom"
    );
    let oom = pod(
        "y",
        "{phase: Running, containerStatuses: [{name: server, ready: false, restartCount: 0, \
         image: i, imageID: '', state: {terminated: {exitCode: 137, reason: OOMKilled}}}]}",
    );
    assert_eq!(one(&oom).expect("a problem").reason, "OOMKilled");
}

#[test]
fn config_errors_and_images_keep_the_kubelets_words() {
    let p = pod(
        "x",
        "{phase: Pending, containerStatuses: [{name: server, ready: false, restartCount: 0, \
         image: i, imageID: '', state: {waiting: {reason: CreateContainerConfigError, \
         message: 'secret \"missing\" not found'}}}]}",
    );
    let problem = one(&p).expect("a problem");
    assert_eq!(problem.reason, "CreateContainerConfigError");
    assert_eq!(
        problem.message,
        "pod x container server: CreateContainerConfigError: secret \"missing\" not found"
    );
    let never = pod(
        "y",
        "{phase: Pending, containerStatuses: [{name: server, ready: false, restartCount: 0, \
         image: i, imageID: '', state: {waiting: {reason: ErrImageNeverPull, \
         message: 'Container image \"x:1\" is not present with pull policy of Never'}}}]}",
    );
    let problem = one(&never).expect("a problem");
    assert_eq!(problem.reason, "ErrImageNeverPull");
    assert_eq!(
        problem.message,
        "pod y container server: ErrImageNeverPull: Container image \"x:1\" is not present with \
         pull policy of Never (the node does not have image \"i\" and cannot pull it: check \
         spec.runtime.image, or load the image onto the node)"
    );
}

#[test]
fn unschedulable_and_failed_pods() {
    let p = pod(
        "x",
        "{phase: Pending, conditions: [{type: PodScheduled, status: 'False', reason: Unschedulable, \
         message: '0/1 nodes are available: 1 node(s) didn''t match node selector.'}]}",
    );
    let problem = one(&p).expect("a problem");
    assert_eq!(problem.reason, "Unschedulable");
    assert_eq!(
        problem.message,
        "pod x cannot be scheduled: 0/1 nodes are available: 1 node(s) didn't match node selector."
    );
    let evicted = pod(
        "y",
        "{phase: Failed, reason: Evicted, message: 'The node was low on resource: memory.'}",
    );
    let problem = one(&evicted).expect("a problem");
    assert_eq!(problem.reason, "Evicted");
    assert_eq!(
        problem.message,
        "pod y failed: The node was low on resource: memory."
    );
}

#[test]
fn first_pod_by_name_and_a_count_of_the_others() {
    let bad = |name: &str| {
        pod(
            name,
            "{phase: Pending, conditions: [{type: PodScheduled, status: 'False', \
             reason: Unschedulable, message: 'no'}]}",
        )
    };
    let (b, a, c) = (bad("b"), bad("a"), bad("c"));
    let problem = diagnose(&[&b, &a, &c]).expect("a problem");
    assert_eq!(
        problem.message,
        "pod a cannot be scheduled: no (and 2 other pods)"
    );
    let mut gone = bad("0");
    gone.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
    ));
    let problem = diagnose(&[&gone, &b]).expect("a problem");
    assert_eq!(
        problem.message, "pod b cannot be scheduled: no",
        "terminating pods are ignored"
    );
}

#[test]
fn long_termination_messages_keep_their_end() {
    let long = format!("{}\nERROR the real cause", "x".repeat(1000));
    let text = excerpt(&long).expect("text");
    assert_eq!(text, "ERROR the real cause");
    let one_long_line = format!("start {} end", "y".repeat(1000));
    let text = excerpt(&one_long_line).expect("text");
    assert!(text.starts_with("...") && text.ends_with(" end"), "{text}");
    assert!(text.len() <= MAX_EXCERPT + 3);
    assert_eq!(excerpt("\n \n"), None);
}

#[test]
fn pods_creating_too_long_are_found_and_explained_by_their_events() {
    let t = |secs: i64| Timestamp::from_second(secs).expect("time");
    let creating = |name: &str, scheduled: &str| {
        pod(
            name,
            &format!(
                "{{phase: Pending, conditions: [{{type: PodScheduled, status: 'True', \
                 lastTransitionTime: '{scheduled}'}}], containerStatuses: [{{name: server, \
                 ready: false, restartCount: 0, image: i, imageID: '', \
                 state: {{waiting: {{reason: ContainerCreating}}}}}}]}}"
            ),
        )
    };
    let old = creating("old", "1970-01-01T00:00:10Z");
    let new = creating("new", "1970-01-01T00:00:55Z");
    let running = pod(
        "run",
        "{phase: Running, conditions: [{type: PodScheduled, status: 'True', \
         lastTransitionTime: '1970-01-01T00:00:00Z'}]}",
    );
    let stuck = stuck_creating(&[&old, &new, &running], t(60), Duration::from_secs(10));
    let names: Vec<_> = stuck
        .iter()
        .filter_map(|p| p.metadata.name.as_deref())
        .collect();
    assert_eq!(names, ["old"]);

    let events: Vec<Event> = serde_yaml::from_str(
        "- {metadata: {name: a}, involvedObject: {kind: Pod, name: old}, type: Normal, \
           reason: Scheduled, message: ok, lastTimestamp: '1970-01-01T00:00:11Z'}\n\
         - {metadata: {name: b}, involvedObject: {kind: Pod, name: old}, type: Warning, \
           reason: FailedMount, message: 'MountVolume.SetUp failed for volume \"model\" : \
           hostPath type check failed: /nope is not a directory', \
           lastTimestamp: '1970-01-01T00:00:20Z'}\n\
         - {metadata: {name: c}, involvedObject: {kind: Pod, name: old}, type: Warning, \
           reason: FailedScheduling, message: older, lastTimestamp: '1970-01-01T00:00:05Z'}\n\
         - {metadata: {name: d}, involvedObject: {kind: Pod, name: other}, type: Warning, \
           reason: BackOff, message: not this pod, lastTimestamp: '1970-01-01T00:00:30Z'}\n",
    )
    .expect("events");
    let problem = problem_from_events("old", &events).expect("a problem");
    assert_eq!(problem.reason, "FailedMount");
    assert_eq!(
        problem.message,
        "pod old: MountVolume.SetUp failed for volume \"model\" : hostPath type check failed: \
         /nope is not a directory"
    );
    assert_eq!(problem_from_events("new", &events), None);
}

#[test]
fn a_node_that_stopped_reporting_is_named() {
    let mut p = pod(
        "x",
        "{phase: Running, conditions: [{type: Ready, status: 'False'}], containerStatuses: \
         [{name: server, ready: true, restartCount: 0, image: i, imageID: '', state: {running: {}}}]}",
    );
    p.spec = Some(serde_yaml::from_str("{containers: [], nodeName: node-a}").expect("spec"));
    let problem = one(&p).expect("a problem");
    assert_eq!(problem.reason, "NodeNotReady");
    assert_eq!(
        problem.message,
        "pod x runs on node node-a, which is not ready (its kubelet stopped reporting); the pod \
         cannot serve"
    );
    // a failing readiness probe is the kubelet's own verdict, not a node fault
    let probe_failing = pod(
        "y",
        "{phase: Running, conditions: [{type: Ready, status: 'False'}], containerStatuses: \
         [{name: server, ready: false, restartCount: 0, image: i, imageID: '', state: {running: {}}}]}",
    );
    assert_eq!(one(&probe_failing), None);
}
