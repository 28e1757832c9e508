//! Pure readings of the cluster for one ModelDeployment: whose a child name is, how many of the
//! Service's endpoints serve the current version, whether someone changed the Service.
use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{Endpoints, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::build::selector_string;
use super::status::Problem;

/// Ready addresses of `endpoints` that belong to `pods` (the current version's).
pub fn serving_endpoints<'a>(
    endpoints: Option<&Endpoints>,
    pods: impl IntoIterator<Item = &'a Pod>,
) -> i32 {
    let names: BTreeSet<&str> = pods
        .into_iter()
        .filter_map(|p| p.metadata.name.as_deref())
        .collect();
    let ready = endpoints
        .and_then(|e| e.subsets.as_ref())
        .into_iter()
        .flatten()
        .flat_map(|s| s.addresses.iter().flatten());
    let serving = ready
        .filter(|a| {
            a.target_ref.as_ref().is_some_and(|r| {
                r.kind.as_deref() == Some("Pod")
                    && r.name.as_deref().is_some_and(|n| names.contains(n))
            })
        })
        .count();
    i32::try_from(serving).unwrap_or(i32::MAX)
}

/// Ready pods of a Deployment that run its current template, as its controller last reported
/// (a scale it has not seen yet does not change them).
pub fn deployment_ready(d: Option<&k8s_openapi::api::apps::v1::Deployment>) -> i32 {
    let Some(status) = d.and_then(|d| d.status.as_ref()) else {
        return 0;
    };
    status
        .ready_replicas
        .unwrap_or(0)
        .min(status.updated_replicas.unwrap_or(0))
}

/// Some pod became ready less than `window` ago: the endpoints controller may not have added
/// it to the Service yet, so missing endpoints are expected, not a fault.
pub fn endpoints_may_lag<'a>(
    pods: impl IntoIterator<Item = &'a Pod>,
    now: k8s_openapi::jiff::Timestamp,
    window: std::time::Duration,
) -> bool {
    pods.into_iter().any(|p| {
        p.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .into_iter()
            .flatten()
            .any(|c| {
                c.type_ == "Ready"
                    && c.status == "True"
                    && c.last_transition_time.as_ref().is_some_and(|t| {
                        now.duration_since(t.0).as_secs_f64() < window.as_secs_f64()
                    })
            })
    })
}

/// Why `existing` (an object named like the child we want) must not be applied: it belongs to
/// another owner or to nobody. Sconce never adopts or modifies such an object.
pub fn ownership_problem(kind: &str, existing: &ObjectMeta, our_uid: &str) -> Option<Problem> {
    let name = existing.name.as_deref().unwrap_or("?");
    let controller = existing
        .owner_references
        .iter()
        .flatten()
        .find(|r| r.controller == Some(true));
    let message = match controller {
        Some(owner) if owner.uid == our_uid => return None,
        Some(owner) => format!(
            "{kind} {name} already exists and belongs to {} {}; Sconce will not take it over: \
             rename this ModelDeployment or change spec.model.version",
            owner.kind, owner.name
        ),
        None => format!(
            "{kind} {name} already exists and is not managed by this ModelDeployment; Sconce will \
             not adopt it: delete it or rename this ModelDeployment"
        ),
    };
    Some(Problem::new("NameConflict", message))
}

/// The note of a Warning event when the live Service selects something else than Sconce set.
pub fn selector_drift(
    service: &str,
    live: Option<&BTreeMap<String, String>>,
    desired: &BTreeMap<String, String>,
) -> Option<String> {
    let live_text = live.map(selector_string).unwrap_or_default();
    (live != Some(desired)).then(|| {
        format!(
            "Service {service} selected {{{live_text}}}, which is not what Sconce manages; \
             restored the selector {{{}}}",
            selector_string(desired)
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yaml<T: serde::de::DeserializeOwned>(text: &str) -> T {
        serde_yaml::from_str(text).expect("fixture parses")
    }

    #[test]
    fn only_ready_addresses_of_current_pods_count() {
        let endpoints: Endpoints = yaml(
            "metadata: {name: mnist}\nsubsets:\n\
             - addresses:\n\
             \x20 - {ip: 10.0.0.1, targetRef: {kind: Pod, name: mnist-2-a}}\n\
             \x20 - {ip: 10.0.0.2, targetRef: {kind: Pod, name: mnist-1-a}}\n\
             \x20 - {ip: 10.0.0.3}\n\
             \x20 notReadyAddresses:\n\
             \x20 - {ip: 10.0.0.4, targetRef: {kind: Pod, name: mnist-2-b}}\n",
        );
        let pods: Vec<Pod> = ["mnist-2-a", "mnist-2-b"]
            .iter()
            .map(|n| yaml(&format!("metadata: {{name: {n}}}")))
            .collect();
        assert_eq!(serving_endpoints(Some(&endpoints), &pods), 1);
        assert_eq!(serving_endpoints(None, &pods), 0);
    }

    #[test]
    fn freshly_ready_pods_may_not_be_endpoints_yet() {
        let pod = |ready_at: &str| -> Pod {
            yaml(&format!(
                "metadata: {{name: p}}\nstatus: {{conditions: [{{type: Ready, status: 'True', \
                 lastTransitionTime: '{ready_at}'}}]}}"
            ))
        };
        let now = k8s_openapi::jiff::Timestamp::from_second(100).expect("time");
        let window = std::time::Duration::from_secs(10);
        assert!(endpoints_may_lag(
            &[pod("1970-01-01T00:01:35Z")],
            now,
            window
        ));
        assert!(!endpoints_may_lag(
            &[pod("1970-01-01T00:01:00Z")],
            now,
            window
        ));
        assert!(!endpoints_may_lag(&[], now, window));
    }

    #[test]
    fn children_of_others_are_conflicts() {
        let ours: ObjectMeta = yaml(
            "name: col-1-x\nownerReferences: [{apiVersion: sconce.dev/v1alpha1, kind: ModelDeployment, \
             name: col-1, uid: me, controller: true}]",
        );
        assert_eq!(ownership_problem("Deployment", &ours, "me"), None);
        let theirs: ObjectMeta = yaml(
            "name: col-1-x\nownerReferences: [{apiVersion: sconce.dev/v1alpha1, kind: ModelDeployment, \
             name: col, uid: other, controller: true}]",
        );
        let p = ownership_problem("Deployment", &theirs, "me").expect("conflict");
        assert_eq!(p.reason, "NameConflict");
        assert!(
            p.message.starts_with(
                "Deployment col-1-x already exists and belongs to ModelDeployment col;"
            ),
            "{}",
            p.message
        );
        let orphan: ObjectMeta = yaml("name: mnist");
        let p = ownership_problem("Service", &orphan, "me").expect("conflict");
        assert!(
            p.message
                .contains("Service mnist already exists and is not managed"),
            "{}",
            p.message
        );
    }

    #[test]
    fn selector_drift_is_noticed() {
        let desired =
            BTreeMap::from([("sconce.dev/model-deployment".to_string(), "m".to_string())]);
        assert_eq!(selector_drift("m", Some(&desired), &desired), None);
        let mut changed = desired.clone();
        changed.insert("app".into(), "other".into());
        let note = selector_drift("m", Some(&changed), &desired).expect("drift");
        assert_eq!(
            note,
            "Service m selected {app=other,sconce.dev/model-deployment=m}, which is not what \
             Sconce manages; restored the selector {sconce.dev/model-deployment=m}"
        );
        assert!(selector_drift("m", None, &desired).is_some());
    }
}
