//! The scheduler half of the agent: which pods it may bind, and whether they fit its node.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{NodeSelectorRequirement, Pod};

pub const DEFAULT_SCHEDULER: &str = "default-scheduler";

/// A Pending pod nobody has bound yet that the default scheduler would own.
pub fn wants_default_scheduler(pod: &Pod) -> bool {
    let Some(spec) = &pod.spec else { return false };
    let pending = pod
        .status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .is_none_or(|p| p == "Pending");
    spec.node_name.as_deref().is_none_or(str::is_empty)
        && spec
            .scheduler_name
            .as_deref()
            .is_none_or(|s| s == DEFAULT_SCHEDULER)
        && pending
        && pod.metadata.deletion_timestamp.is_none()
}

/// `Ok(())` when the pod may run on a node with `labels`, else why not (the Unschedulable message).
pub fn check_fit(pod: &Pod, labels: &BTreeMap<String, String>) -> Result<(), String> {
    let Some(spec) = &pod.spec else {
        return Err("pod has no spec".into());
    };
    if let Some(selector) = &spec.node_selector {
        for (key, want) in selector {
            if labels.get(key) != Some(want) {
                return Err(format!(
                    "0/1 nodes are available: node selector {key}={want} does not match"
                ));
            }
        }
    }
    let required = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|n| {
            n.required_during_scheduling_ignored_during_execution
                .as_ref()
        });
    if let Some(required) = required {
        // terms are ORed, expressions within a term ANDed
        let any_term = required.node_selector_terms.iter().any(|term| {
            term.match_expressions
                .as_deref()
                .unwrap_or_default()
                .iter()
                .all(|e| requirement_holds(e, labels))
                && term.match_fields.as_deref().unwrap_or_default().is_empty()
        });
        if !any_term {
            return Err("0/1 nodes are available: node affinity does not match".into());
        }
    }
    Ok(())
}

fn requirement_holds(req: &NodeSelectorRequirement, labels: &BTreeMap<String, String>) -> bool {
    let value = labels.get(&req.key);
    let values = req.values.as_deref().unwrap_or_default();
    match req.operator.as_str() {
        "In" => value.is_some_and(|v| values.contains(v)),
        "NotIn" => value.is_none_or(|v| !values.contains(v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" | "Lt" => {
            let (Some(have), Some(bound)) = (
                value.and_then(|v| v.parse::<i64>().ok()),
                values.first().and_then(|v| v.parse::<i64>().ok()),
            ) else {
                return false;
            };
            if req.operator == "Gt" {
                have > bound
            } else {
                have < bound
            }
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(json: &str) -> Pod {
        serde_json::from_str(json).expect("fixture parses")
    }

    fn node_labels() -> BTreeMap<String, String> {
        BTreeMap::from([
            (
                "kubernetes.io/hostname".to_string(),
                "sconce-local".to_string(),
            ),
            ("kubernetes.io/os".to_string(), "linux".to_string()),
        ])
    }

    #[test]
    fn only_unbound_pending_default_scheduler_pods_are_wanted() {
        assert!(wants_default_scheduler(&pod(
            r#"{"spec":{"containers":[]},"status":{"phase":"Pending"}}"#
        )));
        assert!(wants_default_scheduler(&pod(
            r#"{"spec":{"containers":[],"schedulerName":"default-scheduler"}}"#
        )));
        assert!(!wants_default_scheduler(&pod(
            r#"{"spec":{"containers":[],"nodeName":"other"}}"#
        )));
        assert!(!wants_default_scheduler(&pod(
            r#"{"spec":{"containers":[],"schedulerName":"volcano"}}"#
        )));
        assert!(!wants_default_scheduler(&pod(
            r#"{"metadata":{"deletionTimestamp":"2024-01-01T00:00:00Z"},"spec":{"containers":[]}}"#
        )));
    }

    #[test]
    fn node_selector_must_match_every_label() {
        let fits = pod(r#"{"spec":{"containers":[],"nodeSelector":{"kubernetes.io/os":"linux"}}}"#);
        assert_eq!(check_fit(&fits, &node_labels()), Ok(()));
        let gpu = pod(
            r#"{"spec":{"containers":[],"nodeSelector":{"kubernetes.io/os":"linux","gpu":"a100"}}}"#,
        );
        let err = check_fit(&gpu, &node_labels()).expect_err("gpu pod must not fit");
        assert!(err.contains("gpu=a100"), "{err}");
    }

    #[test]
    fn required_node_affinity_is_evaluated() {
        let affinity = |op: &str, values: &str| {
            pod(&format!(
                r#"{{"spec":{{"containers":[],"affinity":{{"nodeAffinity":{{"requiredDuringSchedulingIgnoredDuringExecution":
                {{"nodeSelectorTerms":[{{"matchExpressions":[{{"key":"kubernetes.io/os","operator":"{op}","values":{values}}}]}}]}}}}}}}}}}"#
            ))
        };
        assert!(check_fit(&affinity("In", r#"["linux"]"#), &node_labels()).is_ok());
        assert!(check_fit(&affinity("NotIn", r#"["linux"]"#), &node_labels()).is_err());
        assert!(check_fit(&affinity("Exists", "[]"), &node_labels()).is_ok());
        assert!(check_fit(&affinity("DoesNotExist", "[]"), &node_labels()).is_err());
    }
}
