//! The autoscaler on simulated traces: one sample and one decision per second, pods ready a
//! few seconds after they are asked for.
use std::time::Duration;

use super::*;
use crate::crd::ScalingMetric;

fn plan() -> ScalingPlan {
    ScalingPlan {
        min: 1,
        max: 20,
        metric: ScalingMetric::Concurrency,
        target: 10.0,
        stable_window: Duration::from_secs(60),
        panic_window: Duration::from_secs(6),
        panic_threshold: 2.0,
        max_scale_up_rate: 1000.0,
        scale_down_delay: Duration::from_secs(30),
    }
}

/// Runs `seconds` of `load(t)` (None: no sample that second); pods become ready `startup`
/// seconds after they are asked for. Returns (second, desired, panic) per second.
fn simulate(
    plan: &ScalingPlan,
    start: i32,
    seconds: i32,
    startup: usize,
    load: impl Fn(i32) -> Option<f64>,
) -> Vec<(i32, i32, bool)> {
    let mut h = History::default();
    let mut desired = start;
    let mut asked: Vec<i32> = vec![start; startup + 1];
    let mut out = Vec::new();
    for t in 0..seconds {
        let ready = asked[asked.len() - 1 - startup];
        if let Some(v) = load(t) {
            h.record(Sample {
                at: f64::from(t),
                value: v,
            });
        }
        let d = decide(plan, &mut h, f64::from(t), desired, ready);
        desired = d.desired;
        asked.push(desired);
        out.push((t, desired, d.panic));
    }
    out
}

fn at(trace: &[(i32, i32, bool)], t: i32) -> i32 {
    trace[t as usize].1
}

#[test]
fn a_step_in_load_is_followed_within_the_stable_window() {
    // 1 -> 45 concurrent requests at t=10: 5 replicas at target 10.
    let trace = simulate(&plan(), 1, 120, 2, |t| {
        Some(if t < 10 { 1.0 } else { 45.0 })
    });
    assert_eq!(at(&trace, 9), 1);
    // A 45x step is a spike too: panic mode gets there within the panic window.
    let reached = trace.iter().find(|(_, d, _)| *d >= 5).expect("reached 5").0;
    assert!(reached <= 16, "5 replicas at {reached}s");
    assert_eq!(at(&trace, 119), 5, "settles at 5");
    assert!(
        trace.iter().all(|(_, d, _)| *d <= 5),
        "never overshoots a steady load"
    );
}

#[test]
fn a_gentle_rise_scales_on_the_stable_window_without_panic() {
    // From 30 to 50 over 120 s on 3 replicas: no spike (panic needs 2x the ready replicas).
    let trace = simulate(&plan(), 3, 240, 2, |t| {
        Some(30.0 + f64::from(t.min(120)) / 6.0)
    });
    assert!(
        trace.iter().all(|(_, _, p)| !p),
        "no panic on a gentle rise"
    );
    assert_eq!(at(&trace, 239), 5);
    let mut last = 0;
    for (t, d, _) in &trace {
        assert!(*d >= last, "went down at {t}s while the load rose");
        last = *d;
    }
}

#[test]
fn a_spike_triggers_panic_and_panic_only_scales_up() {
    // 20 steady (2 replicas), then 200 for 5 s, then 20 again.
    let trace = simulate(&plan(), 2, 200, 2, |t| {
        Some(if (60..65).contains(&t) { 200.0 } else { 20.0 })
    });
    let panic_start = trace.iter().find(|(_, _, p)| *p).expect("panic").0;
    assert!((60..=62).contains(&panic_start), "panic at {panic_start}");
    assert!(
        at(&trace, 64) >= 10,
        "scaled up in the spike: {}",
        at(&trace, 64)
    );
    // in panic (a stable window after the last spike sample) it never goes down
    let peak = at(&trace, 64);
    for t in 64..120 {
        assert!(at(&trace, t) >= peak, "scaled down in panic at {t}s");
    }
    // then back to what the stable window asks, once panic has ended and after the delay
    assert_eq!(at(&trace, 199), 2);
}

#[test]
fn load_that_stops_returns_to_min_after_the_delay() {
    let trace = simulate(&plan(), 1, 200, 2, |t| {
        Some(if t < 60 { 50.0 } else { 0.0 })
    });
    assert_eq!(at(&trace, 59), 5);
    // the stable window still remembers the load, then the delay holds a while
    assert!(at(&trace, 80) > 1, "{}", at(&trace, 80));
    assert_eq!(at(&trace, 199), 1, "back to minReplicas");
}

#[test]
fn slow_decay_steps_down_without_flapping() {
    let trace = simulate(&plan(), 1, 460, 2, |t| {
        Some((100.0 - f64::from(t) / 4.0).max(5.0))
    });
    let mut changes = 0;
    for w in trace.windows(2) {
        if w[0].1 != w[1].1 {
            changes += 1;
            assert!(
                w[1].1 < w[0].1 || w[0].0 < 70,
                "went up during the decay at {}s",
                w[1].0
            );
        }
    }
    assert!(changes <= 12, "{changes} changes");
    assert_eq!(at(&trace, 459), 1);
}

#[test]
fn noisy_metrics_do_not_flap() {
    // 30 +- 12, deterministic noise
    let noise = |t: i32| f64::from((t * 7919) % 25 - 12);
    let trace = simulate(&plan(), 3, 300, 2, |t| Some(30.0 + noise(t)));
    let after_warmup: Vec<i32> = trace[60..].iter().map(|x| x.1).collect();
    let distinct: std::collections::BTreeSet<i32> = after_warmup.iter().copied().collect();
    assert!(distinct.len() <= 2, "flapped between {distinct:?}");
    assert!(
        after_warmup.iter().all(|d| (3..=4).contains(d)),
        "{distinct:?}"
    );
}

#[test]
fn missing_samples_hold_rather_than_scale_to_min_or_up() {
    // the pods stop answering at t=60 (no samples at all): hold at 5 for as long as it lasts
    let trace = simulate(&plan(), 1, 300, 2, |t| (t < 60).then_some(50.0));
    assert_eq!(at(&trace, 59), 5);
    for t in 60..300 {
        assert_eq!(at(&trace, t), 5, "moved without samples at {t}s");
    }
}

#[test]
fn a_metric_that_never_arrives_holds_the_starting_count() {
    let trace = simulate(&plan(), 3, 120, 2, |_| None);
    assert!(trace.iter().all(|(_, d, _)| *d == 3));
    let mut h = History::default();
    let d = decide(&plan(), &mut h, 0.0, 50, 50);
    assert_eq!(d.desired, 20, "clamped to maxReplicas even without samples");
    assert!(
        d.reason.starts_with("no concurrency from the pods yet"),
        "{}",
        d.reason
    );
}

#[test]
fn bounds_and_rate_limits() {
    let mut p = plan();
    p.max_scale_up_rate = 2.0;
    p.panic_threshold = 1000.0;
    p.stable_window = Duration::from_secs(6);
    // 1000 concurrent requests on 1 ready pod: at most 2x the ready pods per decision
    let mut h = History::default();
    h.record(Sample {
        at: 0.0,
        value: 1000.0,
    });
    let d = decide(&p, &mut h, 0.0, 1, 1);
    assert_eq!(d.desired, 2);
    assert!(
        d.reason.contains("capped at 2 by maxScaleUpRate"),
        "{}",
        d.reason
    );
    let d = decide(&p, &mut h, 1.0, 2, 2);
    assert_eq!(d.desired, 4);
    // never beyond maxReplicas, never below minReplicas
    let trace = simulate(&plan(), 1, 100, 0, |_| Some(10_000.0));
    assert_eq!(at(&trace, 99), 20);
    let mut q = plan();
    q.min = 3;
    let trace = simulate(&q, 3, 100, 0, |_| Some(0.0));
    assert_eq!(at(&trace, 99), 3);
}

#[test]
fn silent_pods_carry_the_average_of_the_others() {
    assert_eq!(extrapolate(&[4.0, 6.0], 3), Some(15.0));
    assert_eq!(extrapolate(&[4.0, 6.0], 2), Some(10.0));
    assert_eq!(extrapolate(&[], 3), None, "nobody answered: no sample");
}
