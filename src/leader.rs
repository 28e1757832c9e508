//! Leader election through a `coordination.k8s.io/v1` Lease, so several operator replicas can
//! run and exactly one reconciles. client-go's algorithm, reduced to what Sconce needs:
//!
//! - the leader renews the Lease every `retry_period`; if it cannot for `renew_deadline`, or finds
//!   another holder, it has lost and the process exits (its pod restarts as a standby);
//! - a standby reads the Lease every `retry_period` and takes it once the holder left it
//!   (released on shutdown: a takeover within one retry period) or the record has not changed
//!   for `lease_duration` by the standby's own clock (a crashed leader). The holder's
//!   `renewTime` is only compared for change, never with the local clock, so clock skew between
//!   nodes cannot make two leaders;
//! - every write is an update with the read `resourceVersion`, so of two standbys racing for a
//!   free Lease exactly one wins (the other gets 409 Conflict and keeps waiting).
//!
//! The decisions are pure functions below; [`Elector`] is the thin glue.
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, PostParams};
use tracing::{info, warn};

/// How long a Lease is valid, how long a leader keeps trying to renew, how often everyone acts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timings {
    pub lease_duration: Duration,
    pub renew_deadline: Duration,
    pub retry_period: Duration,
}

impl Default for Timings {
    /// client-go's defaults.
    fn default() -> Self {
        Timings {
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

impl Timings {
    /// A renew deadline shorter than the lease (else a standby may take over while the leader
    /// still thinks it leads) and a retry period shorter than the deadline.
    pub fn check(&self) -> Result<(), String> {
        if self.renew_deadline >= self.lease_duration {
            return Err(format!(
                "--leader-election-renew-deadline ({:?}) must be shorter than --leader-election-lease-duration ({:?})",
                self.renew_deadline, self.lease_duration
            ));
        }
        if self.retry_period.is_zero() || self.retry_period >= self.renew_deadline {
            return Err(format!(
                "--leader-election-retry-period ({:?}) must be above zero and shorter than the renew deadline ({:?})",
                self.retry_period, self.renew_deadline
            ));
        }
        Ok(())
    }
}

/// The parts of a Lease's spec that tell who holds it and whether the holder is alive.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Record {
    pub holder: Option<String>,
    pub acquire_time: Option<Timestamp>,
    pub renew_time: Option<Timestamp>,
    pub lease_duration: Duration,
    pub transitions: i32,
}

impl Record {
    pub fn of(spec: Option<&LeaseSpec>) -> Record {
        let Some(spec) = spec else {
            return Record::default();
        };
        Record {
            holder: spec.holder_identity.clone().filter(|h| !h.is_empty()),
            acquire_time: spec.acquire_time.as_ref().map(|t| t.0),
            renew_time: spec.renew_time.as_ref().map(|t| t.0),
            lease_duration: Duration::from_secs(
                spec.lease_duration_seconds
                    .and_then(|s| u64::try_from(s).ok())
                    .unwrap_or(0),
            ),
            transitions: spec.lease_transitions.unwrap_or(0),
        }
    }
}

/// What to do with the Lease as read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Nobody holds it, or the holder stopped renewing: take it.
    Take,
    /// We hold it: renew it.
    Renew,
    /// Someone else holds it and renews it: wait.
    Wait,
}

/// Decide from the record, when it last changed by our clock (`changed_at`), and `now`.
pub fn decide(record: &Record, me: &str, changed_at: Instant, now: Instant) -> Step {
    match record.holder.as_deref() {
        None => Step::Take,
        Some(holder) if holder == me => Step::Renew,
        Some(_) if now.saturating_duration_since(changed_at) >= record.lease_duration => Step::Take,
        Some(_) => Step::Wait,
    }
}

/// The spec to write when we take or renew the Lease.
pub fn claimed(record: &Record, me: &str, duration: Duration, now: Timestamp) -> LeaseSpec {
    let ours = record.holder.as_deref() == Some(me);
    LeaseSpec {
        holder_identity: Some(me.to_string()),
        lease_duration_seconds: Some(seconds(duration)),
        acquire_time: Some(MicroTime(match record.acquire_time {
            Some(acquired) if ours => acquired,
            _ => now,
        })),
        renew_time: Some(MicroTime(now)),
        lease_transitions: Some(match &record.holder {
            Some(other) if other != me => record.transitions.saturating_add(1),
            _ => record.transitions,
        }),
        ..Default::default()
    }
}

/// The spec that hands the Lease back on shutdown: no holder, so a standby takes it at its next
/// look instead of waiting for the lease to run out.
pub fn released(record: &Record, now: Timestamp) -> LeaseSpec {
    LeaseSpec {
        holder_identity: None,
        lease_duration_seconds: Some(1),
        acquire_time: Some(MicroTime(now)),
        renew_time: Some(MicroTime(now)),
        lease_transitions: Some(record.transitions),
        ..Default::default()
    }
}

fn seconds(d: Duration) -> i32 {
    i32::try_from(d.as_secs().max(1)).unwrap_or(i32::MAX)
}

/// The last record seen and when it changed, by our clock.
#[derive(Clone, Debug)]
struct Observed {
    record: Record,
    changed_at: Instant,
}

/// Why a leader stopped leading.
#[derive(Debug, thiserror::Error)]
pub enum Lost {
    #[error("Lease {lease} is now held by {holder}")]
    TakenBy { lease: String, holder: String },
    #[error("could not renew Lease {lease} for {deadline:?}: {last_error}")]
    RenewDeadline {
        lease: String,
        deadline: Duration,
        last_error: String,
    },
}

/// One candidate for the Lease `namespace/name`.
pub struct Elector {
    api: Api<Lease>,
    name: String,
    identity: String,
    timings: Timings,
    observed: Option<Observed>,
}

/// The result of one look at the Lease.
enum Attempt {
    Leading,
    Standby {
        holder: Option<String>,
    },
    /// Someone wrote the Lease between our read and our write (409): look again.
    Conflict,
}

impl Elector {
    pub fn new(
        client: Client,
        namespace: &str,
        name: &str,
        identity: &str,
        timings: Timings,
    ) -> Self {
        Elector {
            api: Api::namespaced(client, namespace),
            name: name.to_string(),
            identity: identity.to_string(),
            timings,
            observed: None,
        }
    }

    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// Wait until we lead. `on_standby` runs once the Lease could be read (the API answers and
    /// RBAC allows it), so a standby can report itself healthy. API errors are logged and
    /// retried: a standby has nothing better to do.
    pub async fn acquire(&mut self, on_standby: impl Fn()) {
        let mut announced: Option<Option<String>> = None;
        loop {
            match self.attempt().await {
                Ok(Attempt::Leading) => {
                    info!(lease = %self.name, identity = %self.identity, "leading");
                    return;
                }
                Ok(Attempt::Conflict) => on_standby(),
                Ok(Attempt::Standby { holder }) => {
                    on_standby();
                    if announced.as_ref() != Some(&holder) {
                        info!(lease = %self.name, holder = holder.as_deref().unwrap_or("-"), "standing by");
                        announced = Some(holder);
                    }
                }
                Err(e) => warn!(lease = %self.name, error = %e, "reading the leader Lease failed"),
            }
            tokio::time::sleep(self.timings.retry_period).await;
        }
    }

    /// Renew every retry period; returns when leadership is lost.
    pub async fn keep_leading(&mut self) -> Lost {
        let mut last_renewal = Instant::now();
        loop {
            tokio::time::sleep(self.timings.retry_period).await;
            let last_error = match self.attempt().await {
                Ok(Attempt::Leading) => {
                    last_renewal = Instant::now();
                    continue;
                }
                Ok(Attempt::Standby {
                    holder: Some(holder),
                }) => {
                    return Lost::TakenBy {
                        lease: self.name.clone(),
                        holder,
                    };
                }
                Ok(Attempt::Standby { holder: None }) => "the Lease was released".to_string(),
                Ok(Attempt::Conflict) => "the Lease changed while renewing it".to_string(),
                Err(e) => e.to_string(),
            };
            warn!(lease = %self.name, error = %last_error, "renewing the leader Lease failed");
            if last_renewal.elapsed() >= self.timings.renew_deadline {
                return Lost::RenewDeadline {
                    lease: self.name.clone(),
                    deadline: self.timings.renew_deadline,
                    last_error,
                };
            }
        }
    }

    /// Hand the Lease back if we still hold it (on shutdown).
    pub async fn release(&self) {
        let result = async {
            let Some(lease) = self.api.get_opt(&self.name).await? else {
                return Ok(false);
            };
            let record = Record::of(lease.spec.as_ref());
            if record.holder.as_deref() != Some(self.identity.as_str()) {
                return Ok(false);
            }
            let mut updated = lease;
            updated.spec = Some(released(&record, Timestamp::now()));
            self.api
                .replace(&self.name, &PostParams::default(), &updated)
                .await
                .map(|_| true)
        }
        .await;
        match result {
            Ok(true) => info!(lease = %self.name, "released the leader Lease"),
            Ok(false) => {}
            Err(e) => warn!(lease = %self.name, error = %e, "releasing the leader Lease failed"),
        }
    }

    /// Read the Lease and take or renew it when the rules allow.
    async fn attempt(&mut self) -> Result<Attempt, kube::Error> {
        let now = Instant::now();
        let Some(lease) = self.api.get_opt(&self.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.name.clone()),
                    ..Default::default()
                },
                spec: Some(claimed(
                    &Record::default(),
                    &self.identity,
                    self.timings.lease_duration,
                    Timestamp::now(),
                )),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(Attempt::Leading),
                // another candidate created it first
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(Attempt::Conflict),
                Err(e) => Err(e),
            };
        };
        let record = Record::of(lease.spec.as_ref());
        let changed_at = match &self.observed {
            Some(o) if o.record == record => o.changed_at,
            _ => now,
        };
        self.observed = Some(Observed {
            record: record.clone(),
            changed_at,
        });
        match decide(&record, &self.identity, changed_at, now) {
            Step::Wait => Ok(Attempt::Standby {
                holder: record.holder,
            }),
            Step::Take | Step::Renew => {
                let mut updated = lease;
                updated.spec = Some(claimed(
                    &record,
                    &self.identity,
                    self.timings.lease_duration,
                    Timestamp::now(),
                ));
                // resourceVersion from the read: a concurrent writer makes this a 409
                match self
                    .api
                    .replace(&self.name, &PostParams::default(), &updated)
                    .await
                {
                    Ok(_) => Ok(Attempt::Leading),
                    Err(kube::Error::Api(s)) if s.code == 409 => Ok(Attempt::Conflict),
                    Err(e) => Err(e),
                }
            }
        }
    }
}

#[cfg(test)]
#[path = "leader_tests.rs"]
mod tests;
