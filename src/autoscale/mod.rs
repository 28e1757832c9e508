//! The autoscaler: a pure function over a metric history (Knative KPA's model). A stable window
//! average sets the replica count; a short panic window catches spikes (in panic the count only
//! goes up, until a whole stable window passes without one); scale-ups are capped at a rate of
//! the ready replicas; scale-downs wait until they have been asked for over `scaleDownDelay`.
//! No samples: hold (never scale to min, never up) on a metric that stops or never arrives.
use std::collections::VecDeque;

use crate::reconcile::validate::duration;
use crate::reconcile::validate::scaling::ScalingPlan;

/// One observation: the metric summed over the serving pods, at `at` (seconds, any epoch).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    pub at: f64,
    pub value: f64,
}

/// What the autoscaler remembers between decisions (in the operator's memory: after a restart
/// it starts empty and holds until it has seen the pods again).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct History {
    samples: VecDeque<Sample>,
    /// Recommendations before the scale-down delay: (time, replicas).
    recommendations: VecDeque<(f64, i32)>,
    /// Panic mode lasts until then.
    panic_until: Option<f64>,
}

impl History {
    pub fn record(&mut self, sample: Sample) {
        self.samples.push_back(sample);
    }

    pub fn len(&self) -> usize {
        self.samples.len()
    }

    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub desired: i32,
    pub stable_average: Option<f64>,
    pub panic_average: Option<f64>,
    pub panic: bool,
    pub reason: String,
}

fn mean(values: impl Iterator<Item = f64>) -> Option<f64> {
    let (sum, n) = values.fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    (n > 0).then(|| sum / n as f64)
}

/// Replicas for `value` of the metric at `target` per replica.
fn replicas_for(value: f64, target: f64) -> i32 {
    let r = (value / target).ceil();
    if r.is_finite() {
        r.clamp(0.0, 1e6) as i32
    } else {
        0
    }
}

/// Decide the replica count at `now`, given the count in effect (`current`) and the ready pods.
pub fn decide(plan: &ScalingPlan, h: &mut History, now: f64, current: i32, ready: i32) -> Decision {
    let stable_w = plan.stable_window.as_secs_f64();
    let panic_w = plan.panic_window.as_secs_f64();
    let metric = plan.metric.as_str();
    while h.samples.front().is_some_and(|s| s.at <= now - stable_w) {
        h.samples.pop_front();
    }
    let in_window = |w: f64| {
        h.samples
            .iter()
            .filter(move |s| s.at > now - w && s.at <= now)
    };
    let clamped = current.clamp(plan.min, plan.max);
    let Some(stable_avg) = mean(in_window(stable_w).map(|s| s.value)) else {
        return Decision {
            desired: clamped,
            stable_average: None,
            panic_average: None,
            panic: false,
            reason: format!("no {metric} from the pods yet: holding {clamped}"),
        };
    };
    let panic_avg = mean(in_window(panic_w).map(|s| s.value)).unwrap_or(stable_avg);
    let ready_n = ready.max(1);
    let want_stable = replicas_for(stable_avg, plan.target);
    let want_panic = replicas_for(panic_avg, plan.target);
    if f64::from(want_panic) / f64::from(ready_n) >= plan.panic_threshold {
        h.panic_until = Some(now + stable_w);
    }
    let panic = h.panic_until.is_some_and(|until| now < until);
    if !panic {
        h.panic_until = None;
    }
    let (mut want, mut reason) = if panic {
        (
            want_panic.max(current),
            format!(
                "panic: {metric} {panic_avg:.1} over {} wants {want_panic} at {} per replica",
                duration::format(plan.panic_window),
                plan.target
            ),
        )
    } else {
        (
            want_stable,
            format!(
                "{metric} {stable_avg:.1} over {} at {} per replica",
                duration::format(plan.stable_window),
                plan.target
            ),
        )
    };
    let cap = (f64::from(ready_n) * plan.max_scale_up_rate)
        .ceil()
        .min(1e6) as i32;
    if want > cap.max(current) {
        want = cap.max(current);
        reason.push_str(&format!(" (capped at {cap} by maxScaleUpRate)"));
    }
    // Scale down only to what has been asked for throughout the delay.
    let delay = plan.scale_down_delay.as_secs_f64();
    h.recommendations.push_back((now, want));
    while h
        .recommendations
        .front()
        .is_some_and(|(at, _)| *at <= now - delay)
    {
        h.recommendations.pop_front();
    }
    if want < current {
        let held = h
            .recommendations
            .iter()
            .map(|(_, r)| *r)
            .max()
            .unwrap_or(want);
        let held = held.min(current);
        if held > want.max(plan.min) {
            reason.push_str(&format!(
                " (holding {held} for the {} scale-down delay)",
                duration::format(plan.scale_down_delay)
            ));
            want = held;
        }
    }
    let desired = want.clamp(plan.min, plan.max);
    Decision {
        desired,
        stable_average: Some(stable_avg),
        panic_average: Some(panic_avg),
        panic,
        reason: format!("{reason}: {desired}"),
    }
}

/// The metric summed over all ready pods, from the pods that answered: each silent pod is
/// assumed to carry the average of the others (a pod that stops answering neither drops the
/// load nor inflates it). None when no pod answered.
pub fn extrapolate(answered: &[f64], ready_pods: usize) -> Option<f64> {
    let per_pod = mean(answered.iter().copied())?;
    Some(per_pod * ready_pods.max(answered.len()) as f64)
}

#[cfg(test)]
mod tests;
