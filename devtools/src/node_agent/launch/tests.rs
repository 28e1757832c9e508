use super::*;

fn pod() -> Pod {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": "demo-abc", "namespace": "ml", "uid": "u-1"},
        "spec": {
            "containers": [{
                "name": "server",
                "image": "ghcr.io/sconce/sconce-server:dev",
                "args": ["--model-dir", "/models/demo", "--format", "sequential", "--model-name", "$(MODEL)"],
                "env": [
                    {"name": "MODEL", "value": "demo"},
                    {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                    {"name": "POD_NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
                    {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                    {"name": "CACHE", "value": "/cache/x"},
                    {"name": "GREETING", "value": "hi $(POD_NAME) $$(POD_NAME)"}
                ],
                "ports": [{"containerPort": 8080, "name": "http"}],
                "volumeMounts": [
                    {"name": "model", "mountPath": "/models"},
                    {"name": "cache", "mountPath": "/cache/"},
                    {"name": "token", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}
                ]
            }]
        }
    }))
    .expect("fixture parses")
}

fn volumes() -> BTreeMap<String, PathBuf> {
    BTreeMap::from([
        ("model".to_string(), PathBuf::from("/srv/model-store")),
        (
            "cache".to_string(),
            PathBuf::from("/tmp/sandbox/volumes/cache"),
        ),
    ])
}

fn plan(pod: &Pod) -> Result<LaunchSpec, LaunchRefusal> {
    let dirs = volumes();
    let ctx = LaunchContext {
        server_binary: Path::new("/build/sconce-server"),
        pod_ip: Ipv4Addr::new(127, 0, 1, 7),
        node_name: "sconce-local",
        volume_dirs: &dirs,
        sandbox_dir: Path::new("/tmp/sandbox"),
    };
    let container = pod.spec.as_ref().expect("spec").containers[0].clone();
    plan_launch(pod, &container, &ctx)
}

fn env_of<'a>(spec: &'a LaunchSpec, name: &str) -> Option<&'a str> {
    spec.env
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

#[test]
fn maps_args_env_and_mounts() {
    let spec = plan(&pod()).expect("launchable");
    assert_eq!(spec.program, PathBuf::from("/build/sconce-server"));
    assert_eq!(
        spec.args,
        vec![
            "--model-dir",
            "/srv/model-store/demo",
            "--format",
            "sequential",
            "--model-name",
            "demo"
        ]
    );
    assert_eq!(env_of(&spec, "POD_NAME"), Some("demo-abc"));
    assert_eq!(env_of(&spec, "POD_NS"), Some("ml"));
    assert_eq!(env_of(&spec, "POD_IP"), Some("127.0.1.7"));
    assert_eq!(env_of(&spec, "CACHE"), Some("/tmp/sandbox/volumes/cache/x"));
    assert_eq!(env_of(&spec, "GREETING"), Some("hi demo-abc $(POD_NAME)"));
    assert_eq!(env_of(&spec, "SCONCE_HOST"), Some("127.0.1.7"));
    assert_eq!(env_of(&spec, "SCONCE_PORT"), Some("8080"));
    assert_eq!(env_of(&spec, "HOSTNAME"), Some("demo-abc"));
    assert_eq!(spec.working_dir, PathBuf::from("/tmp/sandbox"));
}

#[test]
fn other_images_are_refused_honestly() {
    let mut pod = pod();
    pod.spec.as_mut().expect("spec").containers[0].image = Some("nginx:1.25".into());
    assert_eq!(
        plan(&pod).expect_err("nginx must not run").reason,
        "ImageNotSupportedLocally"
    );
}

#[test]
fn command_must_name_the_server() {
    let mut pod = pod();
    let c = &mut pod.spec.as_mut().expect("spec").containers[0];
    c.command = Some(vec![
        "/usr/local/bin/sconce-server".into(),
        "--port".into(),
        "9000".into(),
    ]);
    let spec = plan(&pod).expect("server command is fine");
    assert_eq!(spec.args[..2], ["--port".to_string(), "9000".to_string()]);
    assert_eq!(
        env_of(&spec, "SCONCE_PORT"),
        None,
        "--port in args wins over containerPort"
    );

    let c = &mut pod.spec.as_mut().expect("spec").containers[0];
    c.command = Some(vec!["sh".into(), "-c".into(), "sleep 1".into()]);
    assert_eq!(
        plan(&pod).expect_err("sh is not the server").reason,
        "CommandNotSupportedLocally"
    );
}

#[test]
fn host_flag_and_env_are_forced_to_the_pod_ip() {
    let mut pod = pod();
    let c = &mut pod.spec.as_mut().expect("spec").containers[0];
    c.args = Some(vec!["--host".into(), "0.0.0.0".into(), "--host=::".into()]);
    c.env = Some(vec![EnvVar {
        name: "SCONCE_HOST".into(),
        value: Some("0.0.0.0".into()),
        ..Default::default()
    }]);
    let spec = plan(&pod).expect("launchable");
    assert_eq!(spec.args, vec!["--host", "127.0.1.7", "--host=127.0.1.7"]);
    assert_eq!(env_of(&spec, "SCONCE_HOST"), Some("127.0.1.7"));
}

#[test]
fn unsupported_env_sources_are_config_errors() {
    let mut pod = pod();
    let c = &mut pod.spec.as_mut().expect("spec").containers[0];
    c.env = Some(vec![
        serde_json::from_value(serde_json::json!(
            {"name": "KEY", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}
        ))
        .expect("env parses"),
    ]);
    assert_eq!(
        plan(&pod).expect_err("secret refs unsupported").reason,
        "CreateContainerConfigError"
    );
}

#[test]
fn rewrites_only_whole_path_components() {
    let mounts = vec![
        ("/models/big".to_string(), PathBuf::from("/b")),
        ("/models".to_string(), PathBuf::from("/m")),
    ];
    assert_eq!(rewrite_mounted_path("/models", &mounts), "/m");
    assert_eq!(rewrite_mounted_path("/models/x", &mounts), "/m/x");
    assert_eq!(rewrite_mounted_path("/models/big/y", &mounts), "/b/y");
    assert_eq!(rewrite_mounted_path("/modelsX", &mounts), "/modelsX");
    assert_eq!(
        rewrite_mounted_path("--model-dir=/models/a", &mounts),
        "--model-dir=/m/a"
    );
    assert_eq!(
        rewrite_mounted_path("file:///models/a", &mounts),
        "file:///m/a"
    );
    assert_eq!(
        rewrite_mounted_path("a=/models", &mounts),
        "a=/models",
        "only flags split on '='"
    );
}

#[test]
fn sub_path_mounts_point_inside_the_volume() {
    let container: Container = serde_json::from_value(serde_json::json!({
        "name": "c",
        "volumeMounts": [{"name": "model", "mountPath": "/m", "subPath": "v1"}, {"name": "gone", "mountPath": "/g"}]
    }))
    .expect("container parses");
    assert_eq!(
        local_mounts(&container, &volumes()),
        vec![("/m".to_string(), PathBuf::from("/srv/model-store/v1"))]
    );
}

#[test]
fn expansion_leaves_unknown_references() {
    let env = vec![("A".to_string(), "1".to_string())];
    assert_eq!(
        expand_vars("$(A)-$(B)-$$(A)-$-$(", &env),
        "1-$(B)-$(A)-$-$("
    );
}
