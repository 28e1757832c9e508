//! Reading the serving pods' own `/metrics` (no Prometheus needed): ready pods scraped in
//! parallel, each bounded by a short timeout, and a scrape younger than a second reused, so
//! canary analysis and the autoscaler share one scrape per pod. Each of them keeps its own
//! baseline (the counters it last looked at) to compute what happened since.
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures::future::join_all;
use k8s_openapi::api::core::v1::Pod;

use crate::rollout::analysis::{Counters, Traffic};

/// How long one pod may take to answer a scrape.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(2);
/// A scrape this recent is reused instead of asking the pod again.
const FRESH: Duration = Duration::from_secs(1);
/// A pod not scraped for this long is forgotten.
const FORGET_AFTER: Duration = Duration::from_secs(600);

/// One pod's counters at one moment.
#[derive(Debug, Clone)]
pub struct Reading {
    pub uid: String,
    pub counters: Counters,
    pub at: Instant,
}

pub struct Scraper {
    http: reqwest::Client,
    latest: Mutex<HashMap<String, Reading>>,
}

impl Default for Scraper {
    fn default() -> Self {
        Scraper {
            http: reqwest::Client::builder()
                .timeout(SCRAPE_TIMEOUT)
                .build()
                .unwrap_or_default(),
            latest: Mutex::new(HashMap::new()),
        }
    }
}

pub fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

impl Scraper {
    fn latest(&self) -> std::sync::MutexGuard<'_, HashMap<String, Reading>> {
        self.latest.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn fetch(&self, ip: &str, port: i32) -> Option<Counters> {
        let url = format!("http://{ip}:{port}/metrics");
        let response = self.http.get(&url).send().await.ok()?;
        if !response.status().is_success() {
            return None;
        }
        let text = response.text().await.ok()?;
        Some(Counters::from_text(&text))
    }

    /// The counters of every ready pod in `pods` that answers (or answered less than a second
    /// ago). Pods that do not answer are left out.
    pub async fn read(&self, pods: &[&Pod], port: i32) -> Vec<Reading> {
        let now = Instant::now();
        let (mut readings, mut ask) = (Vec::new(), Vec::new());
        {
            let latest = self.latest();
            for pod in pods.iter().filter(|p| is_ready(p)) {
                let Some(uid) = pod.metadata.uid.clone() else {
                    continue;
                };
                match latest.get(&uid) {
                    Some(r) if now.duration_since(r.at) < FRESH => readings.push(r.clone()),
                    _ => ask.push((uid, pod)),
                }
            }
        }
        let fetches = ask.into_iter().map(|(uid, pod)| async move {
            let ip = pod.status.as_ref()?.pod_ip.clone()?;
            let counters = self.fetch(&ip, port).await?;
            Some(Reading {
                uid,
                counters,
                at: Instant::now(),
            })
        });
        let fetched: Vec<Reading> = join_all(fetches).await.into_iter().flatten().collect();
        let mut latest = self.latest();
        latest.retain(|_, r| now.duration_since(r.at) < FORGET_AFTER);
        for r in &fetched {
            latest.insert(r.uid.clone(), r.clone());
        }
        readings.extend(fetched);
        readings
    }
}

/// The counters one consumer last looked at, per pod.
#[derive(Default)]
pub struct Baseline {
    last: Mutex<HashMap<String, Reading>>,
}

/// What happened on one pod since the consumer's last look, over `seconds`.
pub struct Delta {
    pub counters: Counters,
    pub seconds: f64,
}

impl Baseline {
    /// Deltas for the pods that have a previous reading; every reading becomes the new
    /// baseline. A pod's first reading gives no delta.
    pub fn deltas(&self, readings: &[Reading]) -> Vec<Delta> {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        last.retain(|_, r| now.duration_since(r.at) < FORGET_AFTER);
        let mut out = Vec::new();
        for r in readings {
            if let Some(before) = last.get(&r.uid)
                && r.at > before.at
            {
                out.push(Delta {
                    counters: r.counters.since(&before.counters),
                    seconds: r.at.duration_since(before.at).as_secs_f64(),
                });
            }
            if last.get(&r.uid).is_none_or(|b| r.at > b.at) {
                last.insert(r.uid.clone(), r.clone());
            }
        }
        out
    }
}

/// One version's traffic since `baseline`'s last look, for canary analysis; `baseline_only`
/// when pods answered but none had a previous look (the first scrape of a canary).
pub struct Scraped {
    pub traffic: Traffic,
    pub baseline_only: bool,
}

pub fn traffic(
    version: &str,
    pods_ready: usize,
    readings: &[Reading],
    baseline: &Baseline,
) -> Scraped {
    let deltas = baseline.deltas(readings);
    let mut total = Counters::default();
    for d in &deltas {
        total.add(&d.counters);
    }
    Scraped {
        baseline_only: !readings.is_empty() && deltas.is_empty(),
        traffic: Traffic {
            version: version.to_string(),
            counters: total,
            pods_scraped: deltas.len(),
            pods_ready,
        },
    }
}
