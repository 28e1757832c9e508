//! Inference statistics in the shape of Triton's statistics extension
//! (`GET /v2/models/{name}/stats`): counts and cumulative nanoseconds of successful and failed
//! requests, of time spent queued, and of the model's input merging, compute and output split.
//! Updated with relaxed atomics (one request adds a handful); read rarely.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;

/// A count and a cumulative duration.
#[derive(Default)]
pub struct Tally {
    count: AtomicU64,
    ns: AtomicU64,
}

impl Tally {
    pub fn add(&self, n: u64, d: Duration) {
        self.count.fetch_add(n, Ordering::Relaxed);
        self.ns.fetch_add(
            u64::try_from(d.as_nanos()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    fn snapshot(&self) -> StatDuration {
        StatDuration {
            count: self.count.load(Ordering::Relaxed),
            ns: self.ns.load(Ordering::Relaxed),
        }
    }
}

/// Triton's `StatisticDuration`.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct StatDuration {
    pub count: u64,
    pub ns: u64,
}

/// Time spent on one batch (one model execution).
#[derive(Debug, Clone, Copy, Default)]
pub struct BatchTimes {
    /// Merging the requests' inputs into one batch.
    pub input: Duration,
    /// The forward pass.
    pub infer: Duration,
    /// Splitting the outputs per request.
    pub output: Duration,
}

#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct BatchStat {
    pub batch_size: u64,
    pub compute_input: StatDuration,
    pub compute_infer: StatDuration,
    pub compute_output: StatDuration,
}

/// Everything `/stats` reports for the served model.
#[derive(Default)]
pub struct InferenceStats {
    success: Tally,
    fail: Tally,
    queue: Tally,
    compute_input: Tally,
    compute_infer: Tally,
    compute_output: Tally,
    /// Examples (rows, sentences) inferred.
    inference_count: AtomicU64,
    /// Batches run.
    execution_count: AtomicU64,
    /// Per batch size (in examples): executions and their times; when the last batch began
    /// (an `Instant`: turned into wall-clock time only when read).
    batches: Mutex<(BTreeMap<u64, BatchStat>, Option<Instant>)>,
}

impl InferenceStats {
    /// A request answered: `ok` for 2xx. `d` runs from admission to the answer.
    pub fn request(&self, ok: bool, d: Duration) {
        if ok { &self.success } else { &self.fail }.add(1, d);
    }

    /// A batch the model thread ran: `jobs` requests with `examples` rows in total, each of
    /// which waited `queued` in the queue (summed), in `times`. Triton counts compute per
    /// request: every request of the batch is charged the whole batch's time.
    pub fn batch(
        &self,
        jobs: u64,
        examples: u64,
        began: Instant,
        queued: Duration,
        times: BatchTimes,
    ) {
        self.queue.add(jobs, queued);
        self.compute_input.add(jobs, times.input * jobs as u32);
        self.compute_infer.add(jobs, times.infer * jobs as u32);
        self.compute_output.add(jobs, times.output * jobs as u32);
        self.inference_count.fetch_add(examples, Ordering::Relaxed);
        self.execution_count.fetch_add(1, Ordering::Relaxed);
        let nanos = |d: Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        let mut guard = self
            .batches
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (batches, last) = &mut *guard;
        *last = Some(began);
        let b = batches.entry(examples).or_insert(BatchStat {
            batch_size: examples,
            ..BatchStat::default()
        });
        for (stat, d) in [
            (&mut b.compute_input, times.input),
            (&mut b.compute_infer, times.infer),
            (&mut b.compute_output, times.output),
        ] {
            stat.count += 1;
            stat.ns = stat.ns.saturating_add(nanos(d));
        }
    }

    /// The `model_stats` entry for `name` / `version`, as Triton writes it.
    pub fn to_json(&self, name: &str, version: &str) -> serde_json::Value {
        let (batches, last): (Vec<BatchStat>, Option<Instant>) = self
            .batches
            .lock()
            .map(|g| (g.0.values().copied().collect(), g.1))
            .unwrap_or_default();
        // Milliseconds since the epoch, 0 before the first batch.
        let last_inference = last
            .and_then(|t| SystemTime::now().checked_sub(t.elapsed()))
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_millis() as u64);
        serde_json::json!({
            "name": name,
            "version": version,
            "last_inference": last_inference,
            "inference_count": self.inference_count.load(Ordering::Relaxed),
            "execution_count": self.execution_count.load(Ordering::Relaxed),
            "inference_stats": {
                "success": self.success.snapshot(),
                "fail": self.fail.snapshot(),
                "queue": self.queue.snapshot(),
                "compute_input": self.compute_input.snapshot(),
                "compute_infer": self.compute_infer.snapshot(),
                "compute_output": self.compute_output.snapshot(),
                "cache_hit": StatDuration::default(),
                "cache_miss": StatDuration::default(),
            },
            "batch_stats": batches,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_requests_batches_and_sizes() {
        let s = InferenceStats::default();
        s.request(true, Duration::from_micros(5));
        s.request(true, Duration::from_micros(7));
        s.request(false, Duration::from_micros(1));
        let t = BatchTimes {
            input: Duration::from_nanos(10),
            infer: Duration::from_nanos(100),
            output: Duration::from_nanos(20),
        };
        let now = Instant::now();
        s.batch(2, 5, now, Duration::from_nanos(300), t);
        s.batch(1, 5, now, Duration::from_nanos(50), t);
        s.batch(1, 1, now, Duration::from_nanos(50), t);
        let v = s.to_json("m", "1");
        assert_eq!(v["inference_count"], 11);
        assert_eq!(v["execution_count"], 3);
        assert!(v["last_inference"].as_u64().unwrap() > 1_600_000_000_000);
        let st = &v["inference_stats"];
        assert_eq!(st["success"], serde_json::json!({"count": 2, "ns": 12000}));
        assert_eq!(st["fail"], serde_json::json!({"count": 1, "ns": 1000}));
        assert_eq!(st["queue"], serde_json::json!({"count": 4, "ns": 400}));
        // Each request is charged its batch's time.
        assert_eq!(
            st["compute_infer"],
            serde_json::json!({"count": 4, "ns": 400})
        );
        assert_eq!(st["cache_hit"], serde_json::json!({"count": 0, "ns": 0}));
        let b = v["batch_stats"].as_array().unwrap();
        assert_eq!(b.len(), 2);
        assert_eq!(b[0]["batch_size"], 1);
        assert_eq!(b[1]["batch_size"], 5);
        assert_eq!(
            b[1]["compute_infer"],
            serde_json::json!({"count": 2, "ns": 200})
        );
    }
}
