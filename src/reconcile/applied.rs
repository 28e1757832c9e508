//! What Sconce last applied, so a converged ModelDeployment costs the apiserver nothing.
//!
//! Server-side apply of unchanged content changes nothing on the server, but it is still a
//! PATCH request per child per reconcile; with a thousand ModelDeployments resynced, watched
//! pods and status updates, that is a steady stream of writes. A child is applied again only
//! when what Sconce would send changed, or the object changed since Sconce's last apply (its
//! `resourceVersion` moved: someone edited it, a controller wrote its status, it was
//! recreated), so drift is still reverted at once.
use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Mutex;

use serde::Serialize;

#[derive(Default)]
pub struct Applied {
    /// `kind/namespace/name` -> (fingerprint of what was sent, resourceVersion it produced).
    last: Mutex<HashMap<String, (u64, String)>>,
}

/// A fingerprint of the object Sconce would apply (stable within one process).
pub fn fingerprint<T: Serialize>(object: &T) -> Option<u64> {
    let bytes = serde_json::to_vec(object).ok()?;
    let mut hasher = DefaultHasher::new();
    bytes.hash(&mut hasher);
    Some(hasher.finish())
}

impl Applied {
    /// Whether applying `fingerprint` to an object now at `resource_version` would change
    /// nothing: the same content was applied and nobody wrote the object since.
    pub fn unchanged(&self, key: &str, fingerprint: u64, resource_version: Option<&str>) -> bool {
        let Some(rv) = resource_version else {
            return false;
        };
        let last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        last.get(key)
            .is_some_and(|(f, applied_rv)| *f == fingerprint && applied_rv == rv)
    }

    pub fn remember(&self, key: String, fingerprint: u64, resource_version: Option<String>) {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        match resource_version {
            Some(rv) => last.insert(key, (fingerprint, rv)),
            None => last.remove(&key),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skips_only_the_same_content_on_an_unwritten_object() {
        let applied = Applied::default();
        let a = fingerprint(&serde_json::json!({"spec": {"replicas": 1}})).expect("a");
        let b = fingerprint(&serde_json::json!({"spec": {"replicas": 2}})).expect("b");
        assert_ne!(a, b);
        assert!(
            !applied.unchanged("Deployment/ns/x", a, Some("5")),
            "never applied"
        );
        applied.remember("Deployment/ns/x".into(), a, Some("5".into()));
        assert!(applied.unchanged("Deployment/ns/x", a, Some("5")));
        assert!(
            !applied.unchanged("Deployment/ns/x", b, Some("5")),
            "new content"
        );
        assert!(
            !applied.unchanged("Deployment/ns/x", a, Some("6")),
            "written since"
        );
        assert!(!applied.unchanged("Deployment/ns/x", a, None), "no version");
        assert!(
            !applied.unchanged("Service/ns/x", a, Some("5")),
            "other kind"
        );
        applied.remember("Deployment/ns/x".into(), a, None);
        assert!(
            !applied.unchanged("Deployment/ns/x", a, Some("5")),
            "forgotten"
        );
    }
}
