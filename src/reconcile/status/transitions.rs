//! Events worth publishing when conditions change. Warnings are for failures only; normal
//! operations (a rollout, a scale-up) get Normal events with their own reasons.
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

use super::{DEGRADED, PROGRESSING, READY};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    pub warning: bool,
    pub reason: String,
    pub note: String,
}

impl Transition {
    pub fn normal(reason: impl Into<String>, note: impl Into<String>) -> Self {
        Transition {
            warning: false,
            reason: reason.into(),
            note: note.into(),
        }
    }

    pub fn warning(reason: impl Into<String>, note: impl Into<String>) -> Self {
        Transition {
            warning: true,
            reason: reason.into(),
            note: note.into(),
        }
    }
}

fn find<'a>(list: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    list.iter().find(|c| c.type_ == type_)
}

fn is_true(c: Option<&Condition>) -> bool {
    c.is_some_and(|c| c.status == "True")
}

pub fn transitions(old: &[Condition], new: &[Condition]) -> Vec<Transition> {
    let mut events = Vec::new();
    let (degraded_before, degraded) = (find(old, DEGRADED), find(new, DEGRADED));
    if let Some(d) = degraded.filter(|d| d.status == "True") {
        // A different cause, or the same cause with new details, is news.
        let same = degraded_before
            .is_some_and(|b| b.status == "True" && b.reason == d.reason && b.message == d.message);
        if !same {
            events.push(Transition::warning(&d.reason, &d.message));
        }
    } else if degraded.is_some() && is_true(degraded_before) {
        events.push(Transition::normal(
            "Recovered",
            "the ModelDeployment is no longer degraded",
        ));
    }
    let (progressing_before, progressing) = (find(old, PROGRESSING), find(new, PROGRESSING));
    if let Some(p) = progressing.filter(|p| p.status == "True") {
        let same = progressing_before.is_some_and(|b| b.status == "True" && b.reason == p.reason);
        if !same {
            events.push(Transition::normal(&p.reason, &p.message));
        }
    }
    let (ready_before, ready) = (find(old, READY), find(new, READY));
    if let Some(r) = ready {
        let flipped = ready_before.is_none_or(|b| b.status != r.status);
        if flipped && r.status == "True" {
            events.push(Transition::normal("Ready", &r.message));
        } else if r.status == "False"
            && r.reason == "NoEndpoints"
            && ready_before.is_none_or(|b| b.reason != r.reason)
        {
            // The pods are ready but the Service does not reach them: someone changed it.
            events.push(Transition::warning("NoEndpoints", &r.message));
        }
    }
    events
}
