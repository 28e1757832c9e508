//! What Sconce last applied, so a converged ModelDeployment costs the apiserver nothing.
//!
//! Server-side apply of unchanged content changes nothing on the server, but it is still a
//! PATCH request per child per reconcile; with a thousand ModelDeployments resynced, watched
//! pods and status updates, that is a steady stream of writes. A child is applied again only
//! when what Sconce would send changed, or the object's spec, labels, annotations or owners
//! changed since Sconce's last apply (someone edited it, it was recreated), so drift is still
//! reverted at once. Status updates (a Deployment's ready count) do not count: comparing
//! `resourceVersion` instead cost three applies per Deployment while its pods started.
use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Mutex;

use serde::Serialize;

#[derive(Default)]
pub struct Applied {
    /// `kind/namespace/name` -> (fingerprint of what was sent, of the object it produced).
    last: Mutex<HashMap<String, (u64, u64)>>,
}

/// A fingerprint of the object Sconce would apply (stable within one process).
pub fn fingerprint<T: Serialize>(object: &T) -> Option<u64> {
    let bytes = serde_json::to_vec(object).ok()?;
    let mut hasher = DefaultHasher::new();
    bytes.hash(&mut hasher);
    Some(hasher.finish())
}

/// A fingerprint of what others could change in a live object: everything but its status and
/// the metadata the apiserver maintains (resourceVersion, managedFields, generation...).
pub fn live_fingerprint<T: Serialize>(object: &T) -> Option<u64> {
    let mut value = serde_json::to_value(object).ok()?;
    let map = value.as_object_mut()?;
    map.remove("status");
    if let Some(meta) = map.get_mut("metadata").and_then(|m| m.as_object_mut()) {
        meta.retain(|key, _| {
            matches!(
                key.as_str(),
                "name" | "namespace" | "uid" | "labels" | "annotations" | "ownerReferences"
            )
        });
    }
    fingerprint(&value)
}

impl Applied {
    /// Whether applying `sent` to an object whose live fingerprint is `live` would change
    /// nothing: the same content was applied and nobody changed the object since.
    pub fn unchanged(&self, key: &str, sent: u64, live: Option<u64>) -> bool {
        let Some(live) = live else {
            return false;
        };
        let last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        last.get(key).is_some_and(|(s, l)| *s == sent && *l == live)
    }

    pub fn remember(&self, key: String, sent: u64, live: Option<u64>) {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        match live {
            Some(live) => last.insert(key, (sent, live)),
            None => last.remove(&key),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skips_only_the_same_content_on_an_unchanged_object() {
        let applied = Applied::default();
        let a = fingerprint(&serde_json::json!({"spec": {"replicas": 1}})).expect("a");
        let b = fingerprint(&serde_json::json!({"spec": {"replicas": 2}})).expect("b");
        assert_ne!(a, b);
        assert!(
            !applied.unchanged("Deployment/ns/x", a, Some(7)),
            "never applied"
        );
        applied.remember("Deployment/ns/x".into(), a, Some(7));
        assert!(applied.unchanged("Deployment/ns/x", a, Some(7)));
        assert!(
            !applied.unchanged("Deployment/ns/x", b, Some(7)),
            "new content"
        );
        assert!(
            !applied.unchanged("Deployment/ns/x", a, Some(8)),
            "changed since"
        );
        assert!(
            !applied.unchanged("Deployment/ns/x", a, None),
            "not comparable"
        );
        assert!(!applied.unchanged("Service/ns/x", a, Some(7)), "other kind");
        applied.remember("Deployment/ns/x".into(), a, None);
        assert!(
            !applied.unchanged("Deployment/ns/x", a, Some(7)),
            "forgotten"
        );
    }

    #[test]
    fn a_live_object_changes_with_its_spec_and_metadata_but_not_its_status() {
        let live = |replicas: i64, label: &str, ready: i64, rv: &str| {
            live_fingerprint(&serde_json::json!({
                "metadata": {"name": "x", "labels": {"a": label}, "resourceVersion": rv,
                             "generation": replicas, "managedFields": [{"manager": rv}]},
                "spec": {"replicas": replicas},
                "status": {"readyReplicas": ready},
            }))
            .expect("fingerprint")
        };
        let base = live(1, "x", 0, "5");
        assert_eq!(
            base,
            live(1, "x", 1, "6"),
            "status and server metadata do not count"
        );
        assert_ne!(base, live(2, "x", 0, "6"), "spec drift");
        assert_ne!(base, live(1, "y", 0, "6"), "label drift");
    }
}
