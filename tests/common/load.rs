//! A steady V2 load through a Service's ClusterIP, as real clients would send it (kube-proxy
//! spreads connections over the ready pods): a few workers with keep-alive connections, each
//! sending one request after another. Every answer is counted by the version that served it and
//! its status; a request that gets no answer at all counts as a transport failure.
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Debug, Default, Clone)]
pub struct Tally {
    /// (served version, HTTP status) -> count
    pub answers: BTreeMap<(String, u16), u64>,
    /// Requests that got no HTTP answer (connection refused/reset, timeout).
    pub transport_failures: u64,
    /// The first few transport errors, for the test's message.
    pub errors: Vec<String>,
}

impl Tally {
    /// Add another load's counts to this one.
    pub fn merge(&mut self, other: &Tally) {
        for (key, n) in &other.answers {
            *self.answers.entry(key.clone()).or_default() += n;
        }
        self.transport_failures += other.transport_failures;
        self.errors.extend(other.errors.iter().take(5).cloned());
    }

    pub fn sent(&self) -> u64 {
        self.answers.values().sum::<u64>() + self.transport_failures
    }

    /// Requests that did not get a 2xx answer.
    pub fn failed(&self) -> u64 {
        self.transport_failures
            + self
                .answers
                .iter()
                .filter(|((_, code), _)| !(200..300).contains(code))
                .map(|(_, n)| n)
                .sum::<u64>()
    }

    pub fn failed_by(&self, version: &str) -> u64 {
        self.answers
            .iter()
            .filter(|((v, code), _)| v == version && !(200..300).contains(code))
            .map(|(_, n)| n)
            .sum()
    }

    pub fn served_by(&self, version: &str) -> u64 {
        self.answers
            .iter()
            .filter(|((v, _), _)| v == version)
            .map(|(_, n)| n)
            .sum()
    }
}

pub struct Load {
    stop: Arc<AtomicBool>,
    tally: Arc<Mutex<Tally>>,
    workers: Vec<tokio::task::JoinHandle<()>>,
    started: Instant,
}

impl Load {
    /// `workers` clients sending `input` (width of the model's input) to `base`/v2/models/`model`/infer.
    /// Half keep their connection alive (they stay on one pod until it closes the connection),
    /// half open a new one per request (kube-proxy picks a pod for each): both kinds of clients
    /// real services see, and the second gives a canary its share of requests.
    pub fn start(base: &str, model: &str, input_width: usize, workers: usize) -> Load {
        Self::start_paced(base, model, input_width, workers, Duration::from_millis(20))
    }

    /// As [`Load::start`], each worker waiting `pause` between an answer and its next request
    /// (zero: every worker always has one request in flight).
    pub fn start_paced(
        base: &str,
        model: &str,
        input_width: usize,
        workers: usize,
        pause: Duration,
    ) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let tally = Arc::new(Mutex::new(Tally::default()));
        let body = serde_json::json!({
            "inputs": [{"name": "input", "datatype": "FP32", "shape": [1, input_width],
                        "data": vec![0.5f32; input_width]}]
        });
        let url = format!("{base}/v2/models/{model}/infer");
        let workers = (0..workers)
            .map(|i| {
                let (stop, tally, body, url) =
                    (stop.clone(), tally.clone(), body.clone(), url.clone());
                let keep_alive = i % 2 == 0;
                tokio::spawn(async move {
                    let mut builder = reqwest::Client::builder().timeout(Duration::from_secs(10));
                    if !keep_alive {
                        builder = builder.pool_max_idle_per_host(0);
                    }
                    let client = builder.build().expect("client");
                    while !stop.load(Ordering::Relaxed) {
                        let answer = client.post(&url).json(&body).send().await;
                        let record = match answer {
                            Ok(response) => {
                                let code = response.status().as_u16();
                                let version = response
                                    .json::<serde_json::Value>()
                                    .await
                                    .ok()
                                    .and_then(|v| v["model_version"].as_str().map(String::from))
                                    .unwrap_or_else(|| "?".into());
                                Ok((version, code))
                            }
                            Err(e) => Err(format!("{e:?}")),
                        };
                        {
                            let mut t = tally.lock().unwrap_or_else(|p| p.into_inner());
                            match record {
                                Ok(key) => *t.answers.entry(key).or_default() += 1,
                                Err(e) => {
                                    t.transport_failures += 1;
                                    if t.errors.len() < 5 {
                                        t.errors.push(e);
                                    }
                                }
                            }
                        }
                        if !pause.is_zero() {
                            tokio::time::sleep(pause).await;
                        }
                    }
                })
            })
            .collect();
        Load {
            stop,
            tally,
            workers,
            started: Instant::now(),
        }
    }

    /// What has been counted so far.
    pub fn snapshot(&self) -> Tally {
        self.tally.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Stop the workers (after their current request) and return the final tally.
    pub async fn stop(self) -> (Tally, Duration) {
        self.stop.store(true, Ordering::Relaxed);
        for w in self.workers {
            let _ = w.await;
        }
        let tally = self.tally.lock().unwrap_or_else(|p| p.into_inner()).clone();
        (tally, self.started.elapsed())
    }
}
