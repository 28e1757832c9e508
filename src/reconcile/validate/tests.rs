use super::*;

fn md(yaml: &str) -> ModelDeployment {
    serde_yaml::from_str(yaml).expect("fixture parses")
}

fn with_model(model: &str) -> ModelDeployment {
    md(&format!(
        "apiVersion: sconce.dev/v1alpha1\nkind: ModelDeployment\n\
         metadata: {{name: mnist, namespace: ml}}\nspec:\n  model: {model}\n"
    ))
}

#[test]
fn valid_file_model() {
    let m = validate(&with_model(
        "{version: '1.2', uri: 'file:///models/mnist/', format: sequential}",
    ))
    .expect("valid");
    assert_eq!(m.deployment_name, "mnist-1-2");
    assert_eq!(m.served_name, "mnist");
    assert_eq!(m.namespace, "ml");
    assert_eq!(
        m.source,
        ModelSource::HostPath {
            path: "/models/mnist".into()
        }
    );
}

#[test]
fn pvc_and_download_sources() {
    let m = validate(&with_model(
        "{name: digits, version: v2, uri: 'pvc://models/digits/v2', format: sequential}",
    ))
    .expect("valid");
    assert_eq!(m.served_name, "digits");
    assert_eq!(
        m.source,
        ModelSource::Pvc {
            claim: "models".into(),
            sub_path: "digits/v2".into()
        }
    );
    let sha = "A".repeat(64);
    let m = validate(&with_model(&format!(
        "{{version: '3', uri: 's3://bucket/minilm', format: bert, sha256: {sha}}}"
    )))
    .expect("valid");
    assert_eq!(
        m.source,
        ModelSource::Download {
            uri: "s3://bucket/minilm".into(),
            sha256: Some("a".repeat(64))
        }
    );
}

#[test]
fn version_slugs() {
    assert_eq!(version_slug("1.0.0"), "1-0-0");
    assert_eq!(version_slug("V2__beta"), "v2-beta");
    assert_eq!(version_slug("--x--"), "x");
    assert_eq!(version_slug("..."), "");
}

#[test]
fn rejects_bad_inputs_with_reasons() {
    let cases = [
        (
            "{version: '...', uri: 'file:///m', format: sequential}",
            "InvalidVersion",
        ),
        (
            "{version: '1', uri: 'ftp://host/m', format: sequential}",
            "UnsupportedUriScheme",
        ),
        (
            "{version: '1', uri: '/models/m', format: sequential}",
            "UnsupportedUriScheme",
        ),
        (
            "{version: '1', uri: 'file://relative/m', format: sequential}",
            "MalformedUri",
        ),
        (
            "{version: '1', uri: 'file:///a/../etc', format: sequential}",
            "MalformedUri",
        ),
        (
            "{version: '1', uri: 'pvc://Bad_Claim/m', format: sequential}",
            "MalformedUri",
        ),
        (
            "{version: '1', uri: 'https:///m', format: sequential}",
            "MalformedUri",
        ),
        (
            "{version: '1', uri: 'https://h/model.h5', format: sequential}",
            "FormatMismatch",
        ),
        (
            "{version: '1', uri: 'file:///m/model.onnx', format: bert}",
            "FormatMismatch",
        ),
        (
            "{version: '1', uri: 'file:///m', format: sequential, sha256: 'ab'}",
            "Sha256NotApplicable",
        ),
    ];
    for (model, reason) in cases {
        let err = validate(&with_model(model)).expect_err(model);
        assert_eq!(err.reason(), reason, "{model}: {err}");
        assert!(!err.to_string().is_empty());
    }
}

#[test]
fn rejects_names_that_would_break_pod_names() {
    let mut m = with_model(
        "{version: 'a-very-long-version-label-2024', uri: 'file:///m', format: sequential}",
    );
    m.metadata.name = Some("a-rather-long-model-deployment".into());
    let err = validate(&m).expect_err("too long");
    assert_eq!(err.reason(), "NameTooLong");
    assert!(err.to_string().contains("at most 47"), "{err}");
}

#[test]
fn names_that_cannot_name_the_service_are_refused() {
    for name in ["1digits", "my.model", "Digits", "a_b"] {
        let mut m = with_model("{version: '1', uri: 'file:///m', format: sequential}");
        m.metadata.name = Some(name.into());
        let err = validate(&m).expect_err(name);
        assert_eq!(err.reason(), "InvalidName", "{name}: {err}");
        let text = err.to_string();
        assert!(
            text.contains("metadata.name") && text.contains(name),
            "{text}"
        );
        assert!(text.contains("DNS-1035"), "{text}");
    }
}

#[test]
fn versions_follow_the_documented_pattern() {
    for ok in ["1", "1.0", "1_0", "2024-06-01", "v2", "a.b-c_d"] {
        let m = with_model(&format!(
            "{{version: '{ok}', uri: 'file:///m', format: sequential}}"
        ));
        assert!(validate(&m).is_ok(), "{ok}");
    }
    for bad in ["V2", "1.0-", ".1", "-1", "1 0", "v2/3", "é"] {
        let m = with_model(&format!(
            "{{version: '{bad}', uri: 'file:///m', format: sequential}}"
        ));
        let err = validate(&m).expect_err(bad);
        assert_eq!(err.reason(), "InvalidVersion", "{bad}: {err}");
    }
}

fn with_runtime(runtime: &str) -> ModelDeployment {
    md(&format!(
        "apiVersion: sconce.dev/v1alpha1\nkind: ModelDeployment\n\
         metadata: {{name: mnist, namespace: ml}}\nspec:\n  \
         model: {{version: '1', uri: 'file:///m', format: sequential}}\n  runtime: {runtime}\n"
    ))
}

#[test]
fn runtime_fields_kubernetes_would_refuse_name_the_field() {
    let cases = [
        (
            "{resources: {requests: {cpu: '1.5.5'}}}",
            "InvalidResources",
            "spec.runtime.resources.requests.cpu",
        ),
        (
            "{resources: {limits: {memory: '-1Gi'}}}",
            "InvalidResources",
            "spec.runtime.resources.limits.memory",
        ),
        (
            "{resources: {requests: {cpu: '2'}, limits: {cpu: '1'}}}",
            "InvalidResources",
            "spec.runtime.resources.requests.cpu",
        ),
        (
            "{resources: {requests: {gpu: '1'}}}",
            "InvalidResources",
            "spec.runtime.resources.requests",
        ),
        (
            "{env: [{name: OK, value: x}, {name: 'A=B', value: x}]}",
            "InvalidEnv",
            "spec.runtime.env[1].name",
        ),
        (
            "{env: [{name: A, value: x, valueFrom: {fieldRef: {fieldPath: metadata.name}}}]}",
            "InvalidEnv",
            "spec.runtime.env[0].valueFrom",
        ),
        (
            "{env: [{name: A, valueFrom: {}}]}",
            "InvalidEnv",
            "spec.runtime.env[0].valueFrom",
        ),
        (
            "{serviceAccountName: Bad_SA}",
            "InvalidServiceAccount",
            "spec.runtime.serviceAccountName",
        ),
        (
            "{nodeSelector: {'bad key!': x}}",
            "InvalidScheduling",
            "spec.runtime.nodeSelector",
        ),
        (
            "{nodeSelector: {disk: 'has space'}}",
            "InvalidScheduling",
            "spec.runtime.nodeSelector.disk",
        ),
        (
            "{tolerations: [{key: k, operator: Exists, value: v}]}",
            "InvalidScheduling",
            "spec.runtime.tolerations[0].value",
        ),
        (
            "{tolerations: [{key: k, operator: Maybe}]}",
            "InvalidScheduling",
            "spec.runtime.tolerations[0].operator",
        ),
        (
            "{tolerations: [{key: k, effect: NoSchedule, tolerationSeconds: 5}]}",
            "InvalidScheduling",
            "spec.runtime.tolerations[0].effect",
        ),
        (
            "{image: 'sconce server:1'}",
            "InvalidImage",
            "spec.runtime.image",
        ),
    ];
    for (runtime, reason, field) in cases {
        let err = validate(&with_runtime(runtime)).expect_err(runtime);
        assert_eq!(err.reason(), reason, "{runtime}: {err}");
        assert!(
            err.to_string().starts_with(&format!("{field} ")),
            "{runtime}: {err}"
        );
    }
}

#[test]
fn ordinary_runtime_settings_pass() {
    let m = with_runtime(
        "{resources: {requests: {cpu: 500m, memory: 256Mi}, limits: {cpu: '1', memory: 1Gi, \
         nvidia.com/gpu: '1'}}, env: [{name: SCONCE_MAX_BATCH_SIZE, value: '16'}, \
         {name: POD, valueFrom: {fieldRef: {fieldPath: metadata.name}}}], \
         serviceAccountName: model-reader, nodeSelector: {kubernetes.io/arch: amd64}, \
         tolerations: [{operator: Exists}, {key: gpu, value: 'true', effect: NoExecute, \
         tolerationSeconds: 30}]}",
    );
    validate(&m).expect("valid");
}

fn with_rollout(rollout: &str) -> ModelDeployment {
    md(&format!(
        "apiVersion: sconce.dev/v1alpha1\nkind: ModelDeployment\n\
         metadata: {{name: mnist, namespace: ml}}\nspec:\n  \
         model: {{version: '1', uri: 'file:///m', format: sequential}}\n{rollout}"
    ))
}

#[test]
fn rollout_plans() {
    use super::rollout::Step;
    use std::time::Duration;
    let m = validate(&with_rollout("")).expect("valid");
    assert!(!m.rollout.is_canary(), "Immediate without steps");
    assert_eq!(m.rollout.progress_deadline, Duration::from_secs(600));
    let m = validate(&with_rollout(
        "  rollout:\n    steps: [{setWeight: 10}, {pause: {duration: 1m30s}}, {setWeight: 60}, {pause: {}}]\n\
         \x20   analysis: {interval: 10s, maxErrorRate: 0.02}\n    progressDeadline: 5m\n\
         \x20   revisionHistoryLimit: 3\n  traffic: {httpRoute: mnist-route}\n",
    ))
    .expect("valid");
    assert_eq!(
        m.rollout.steps,
        [
            Step::SetWeight(10),
            Step::Pause(Some(Duration::from_secs(90))),
            Step::SetWeight(60),
            Step::Pause(None)
        ]
    );
    let a = m.rollout.analysis.expect("analysis");
    assert_eq!(
        (a.interval, a.min_requests, a.failure_limit),
        (Duration::from_secs(10), 10, 2)
    );
    assert_eq!(m.rollout.progress_deadline, Duration::from_secs(300));
    assert_eq!(m.rollout.history_limit, 3);
    assert_eq!(m.rollout.http_route.as_deref(), Some("mnist-route"));
}

#[test]
fn bad_rollouts_name_the_field() {
    let cases = [
        (
            "  rollout: {steps: [{setWeight: 120}]}\n",
            "spec.rollout.steps[0].setWeight",
        ),
        (
            "  rollout: {steps: [{setWeight: -5}]}\n",
            "spec.rollout.steps[0].setWeight",
        ),
        (
            "  rollout: {steps: [{setWeight: 50}, {setWeight: 50}]}\n",
            "spec.rollout.steps[1].setWeight",
        ),
        (
            "  rollout: {steps: [{setWeight: 50}, {pause: {}}, {setWeight: 20}]}\n",
            "spec.rollout.steps[2].setWeight",
        ),
        (
            "  rollout: {steps: [{setWeight: 10, pause: {}}]}\n",
            "spec.rollout.steps[0]",
        ),
        ("  rollout: {steps: [{}]}\n", "spec.rollout.steps[0]"),
        (
            "  rollout: {steps: [{pause: {duration: soon}}]}\n",
            "spec.rollout.steps[0].pause.duration",
        ),
        (
            "  rollout: {steps: [{setWeight: 10}], progressDeadline: 10}\n",
            "spec.rollout.progressDeadline",
        ),
        ("  rollout: {strategy: Canary}\n", "spec.rollout.steps"),
        (
            "  rollout: {strategy: Immediate, steps: [{setWeight: 10}]}\n",
            "spec.rollout.steps",
        ),
        (
            "  rollout: {analysis: {maxErrorRate: 0.1}}\n",
            "spec.rollout.analysis",
        ),
        (
            "  rollout: {steps: [{setWeight: 10}], analysis: {interval: 30s}}\n",
            "spec.rollout.analysis",
        ),
        (
            "  rollout: {steps: [{setWeight: 10}], analysis: {interval: 100ms, maxErrorRate: 0.1}}\n",
            "spec.rollout.analysis.interval",
        ),
        (
            "  rollout: {steps: [{setWeight: 10}], analysis: {maxErrorRate: 2}}\n",
            "spec.rollout.analysis.maxErrorRate",
        ),
        (
            "  rollout: {steps: [{setWeight: 10}], analysis: {maxLatencyP99: fast}}\n",
            "spec.rollout.analysis.maxLatencyP99",
        ),
        (
            "  rollout: {steps: [{setWeight: 10}], analysis: {maxLatencyRatio: 0.5}}\n",
            "spec.rollout.analysis.maxLatencyRatio",
        ),
        (
            "  traffic: {httpRoute: Not_A_Route}\n",
            "spec.traffic.httpRoute",
        ),
    ];
    for (rollout, field) in cases {
        let err = validate(&with_rollout(rollout)).expect_err(rollout);
        assert_eq!(err.reason(), "InvalidRollout", "{rollout}: {err}");
        assert!(
            err.to_string().starts_with(&format!("{field} ")),
            "{rollout}: {err}"
        );
    }
}
