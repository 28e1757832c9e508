//! Reading the serving pods' own `/metrics` (no Prometheus needed): one scrape per ready pod,
//! in parallel, each bounded by a short timeout. The last scrape of every pod is kept, so the
//! next one yields what happened in between. Canary analysis reads it; so can the autoscaler.
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures::future::join_all;
use k8s_openapi::api::core::v1::Pod;

use crate::rollout::analysis::{Counters, Traffic};

/// How long one pod may take to answer a scrape.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(2);
/// A pod not scraped for this long is forgotten.
const FORGET_AFTER: Duration = Duration::from_secs(600);

#[derive(Debug, Clone)]
struct Last {
    counters: Counters,
    at: Instant,
}

pub struct Scraper {
    http: reqwest::Client,
    last: Mutex<HashMap<String, Last>>,
}

impl Default for Scraper {
    fn default() -> Self {
        Scraper {
            http: reqwest::Client::builder()
                .timeout(SCRAPE_TIMEOUT)
                .build()
                .unwrap_or_default(),
            last: Mutex::new(HashMap::new()),
        }
    }
}

/// One version's pods to scrape.
pub struct Target {
    pub version: String,
    pub pods: Vec<Pod>,
    pub port: i32,
}

/// What a scrape of one version gave: its traffic since each pod's previous scrape, and
/// whether any pod had a previous scrape at all (the first scrape is only a baseline).
pub struct Scraped {
    pub traffic: Traffic,
    pub baseline_only: bool,
}

fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

impl Scraper {
    fn last(&self) -> std::sync::MutexGuard<'_, HashMap<String, Last>> {
        self.last.lock().unwrap_or_else(|p| p.into_inner())
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

    /// Scrape the ready pods of `target`; pods that do not answer are left out (and counted).
    pub async fn scrape(&self, target: &Target) -> Scraped {
        let ready: Vec<&Pod> = target.pods.iter().filter(|p| is_ready(p)).collect();
        let fetches = ready.iter().map(|pod| async move {
            let uid = pod.metadata.uid.clone()?;
            let ip = pod.status.as_ref()?.pod_ip.clone()?;
            let counters = self.fetch(&ip, target.port).await?;
            Some((uid, counters))
        });
        let answers: Vec<(String, Counters)> =
            join_all(fetches).await.into_iter().flatten().collect();
        let now = Instant::now();
        let mut last = self.last();
        last.retain(|_, l| now.duration_since(l.at) < FORGET_AFTER);
        let mut total = Counters::default();
        let mut with_delta = 0;
        let answered = answers.len();
        for (uid, counters) in answers {
            if let Some(previous) = last.get(&uid) {
                total.add(&counters.since(&previous.counters));
                with_delta += 1;
            }
            last.insert(uid, Last { counters, at: now });
        }
        Scraped {
            baseline_only: answered > 0 && with_delta == 0,
            traffic: Traffic {
                version: target.version.clone(),
                counters: total,
                pods_scraped: with_delta,
                pods_ready: ready.len(),
            },
        }
    }
}
