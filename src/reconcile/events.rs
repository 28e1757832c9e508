//! events.k8s.io/v1 Events about ModelDeployments.
//!
//! kube's `Recorder` folds repeats into a series keyed without the note, so a changed message
//! showed up as another count of the first one (`Ready (x6) version 1 serving` while version 3
//! served). Here the note is part of the key: the same event again bumps its series, a new
//! message is a new event.
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::{Event, EventSeries};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::{Client, Resource, ResourceExt};
use serde_json::json;

use super::apply::FIELD_MANAGER;
use super::status::Transition;
use crate::crd::ModelDeployment;

/// Repeats within this window join the earlier event's series (kube's and client-go's value).
const SERIES_WINDOW: Duration = Duration::from_secs(6 * 60);
/// Longest note the API accepts is 1 kB.
const MAX_NOTE: usize = 1000;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    uid: String,
    warning: bool,
    reason: String,
    note: String,
}

#[derive(Debug, Clone)]
struct Sent {
    namespace: String,
    name: String,
    count: i32,
    at: Instant,
}

/// What to do for one event: create it, or bump the series of one sent before.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Action {
    Create,
    Bump {
        namespace: String,
        name: String,
        count: i32,
    },
}

pub struct Publisher {
    client: Client,
    controller: String,
    instance: String,
    sent: Mutex<HashMap<Key, Sent>>,
}

impl Publisher {
    pub fn new(client: Client) -> Self {
        let instance = std::env::var("POD_NAME").unwrap_or_else(|_| "sconce".into());
        Publisher {
            client,
            controller: "sconce.dev/operator".into(),
            instance,
            sent: Mutex::new(HashMap::new()),
        }
    }

    fn sent(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Sent>> {
        self.sent.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Decide, and record, what publishing `key` now means.
    fn plan(&self, key: &Key, now: Instant) -> Action {
        let mut sent = self.sent();
        sent.retain(|_, s| now.duration_since(s.at) < SERIES_WINDOW);
        match sent.get_mut(key) {
            Some(s) => {
                s.count += 1;
                s.at = now;
                Action::Bump {
                    namespace: s.namespace.clone(),
                    name: s.name.clone(),
                    count: s.count,
                }
            }
            None => Action::Create,
        }
    }

    /// Publish one event about `md`. Failures are logged, never returned: an event that cannot
    /// be written must not fail the reconcile.
    pub async fn publish(&self, md: &ModelDeployment, t: &Transition) {
        let namespace = md.namespace().unwrap_or_default();
        let key = Key {
            uid: md.uid().unwrap_or_default(),
            warning: t.warning,
            reason: t.reason.clone(),
            note: truncate(&t.note, MAX_NOTE),
        };
        let now = Timestamp::now();
        let result = match self.plan(&key, Instant::now()) {
            Action::Bump {
                namespace,
                name,
                count,
            } => {
                let api: Api<Event> = Api::namespaced(self.client.clone(), &namespace);
                let patch = json!({"series": {"count": count, "lastObservedTime": MicroTime(now)}});
                let params = PatchParams {
                    field_manager: Some(FIELD_MANAGER.into()),
                    ..Default::default()
                };
                api.patch(&name, &params, &Patch::Merge(&patch))
                    .await
                    .map(|_| ())
            }
            Action::Create => {
                let name = format!("{}.{:x}", md.name_any(), now.as_nanosecond());
                let event = self.event(md, &key, &namespace, &name, now);
                let api: Api<Event> = Api::namespaced(self.client.clone(), &namespace);
                let created = api.create(&PostParams::default(), &event).await;
                if created.is_ok() {
                    self.sent().insert(
                        key.clone(),
                        Sent {
                            namespace,
                            name,
                            count: 1,
                            at: Instant::now(),
                        },
                    );
                }
                created.map(|_| ())
            }
        };
        if let Err(e) = result {
            tracing::warn!(error = %e, reason = %t.reason, "publishing an event failed");
        }
    }

    fn event(
        &self,
        md: &ModelDeployment,
        key: &Key,
        namespace: &str,
        name: &str,
        now: Timestamp,
    ) -> Event {
        let regarding = ObjectReference {
            api_version: Some(ModelDeployment::api_version(&()).into_owned()),
            kind: Some(ModelDeployment::kind(&()).into_owned()),
            name: md.metadata.name.clone(),
            namespace: md.metadata.namespace.clone(),
            uid: md.metadata.uid.clone(),
            ..Default::default()
        };
        Event {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some(namespace.into()),
                ..Default::default()
            },
            action: Some("Reconcile".into()),
            reason: Some(key.reason.clone()),
            note: Some(key.note.clone()),
            type_: Some(if key.warning { "Warning" } else { "Normal" }.into()),
            event_time: Some(MicroTime(now)),
            regarding: Some(regarding),
            reporting_controller: Some(self.controller.clone()),
            reporting_instance: Some(self.instance.clone()),
            series: None::<EventSeries>,
            ..Default::default()
        }
    }
}

pub fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(note: &str) -> Key {
        Key {
            uid: "u".into(),
            warning: false,
            reason: "Ready".into(),
            note: note.into(),
        }
    }

    fn remember(p: &Publisher, k: &Key, at: Instant) {
        p.sent().insert(
            k.clone(),
            Sent {
                namespace: "ns".into(),
                name: "e1".into(),
                count: 1,
                at,
            },
        );
    }

    fn publisher() -> Publisher {
        // A client is only needed to send; planning never touches it.
        let config = kube::Config::new("http://127.0.0.1:1".parse().expect("uri"));
        let client = Client::try_from(config).expect("client");
        Publisher::new(client)
    }

    #[tokio::test]
    async fn a_changed_note_is_a_new_event_and_a_repeat_joins_the_series() {
        let p = publisher();
        let t0 = Instant::now();
        let first = key("version 1 serving: 2/2 replicas ready");
        assert_eq!(p.plan(&first, t0), Action::Create);
        remember(&p, &first, t0);
        assert_eq!(
            p.plan(&first, t0 + Duration::from_secs(1)),
            Action::Bump {
                namespace: "ns".into(),
                name: "e1".into(),
                count: 2
            }
        );
        let other = key("version 3 serving: 2/2 replicas ready");
        assert_eq!(p.plan(&other, t0 + Duration::from_secs(2)), Action::Create);
        // after the series window the same note starts a new event again
        assert_eq!(
            p.plan(&first, t0 + SERIES_WINDOW + Duration::from_secs(2)),
            Action::Create
        );
    }

    #[test]
    fn notes_are_cut_at_a_character_boundary() {
        assert_eq!(truncate("héllo", 2), "h");
        assert_eq!(truncate("abc", 10), "abc");
    }
}
