use super::*;

fn record(holder: Option<&str>, duration_secs: u64, transitions: i32) -> Record {
    Record {
        holder: holder.map(String::from),
        acquire_time: Some(ts(7)),
        renew_time: None,
        lease_duration: Duration::from_secs(duration_secs),
        transitions,
    }
}

fn ts(second: i64) -> Timestamp {
    Timestamp::from_second(second).expect("timestamp")
}

#[test]
fn a_free_lease_is_taken_and_our_own_renewed() {
    let t0 = Instant::now();
    assert_eq!(decide(&record(None, 15, 0), "a", t0, t0), Step::Take);
    assert_eq!(decide(&record(Some("a"), 15, 3), "a", t0, t0), Step::Renew);
    // even long after the last change: it is ours
    let later = t0 + Duration::from_secs(60);
    assert_eq!(
        decide(&record(Some("a"), 15, 3), "a", t0, later),
        Step::Renew
    );
}

#[test]
fn another_holder_is_waited_for_until_its_record_stops_changing_for_a_lease_duration() {
    let t0 = Instant::now();
    let held = record(Some("b"), 15, 1);
    assert_eq!(decide(&held, "a", t0, t0), Step::Wait);
    assert_eq!(
        decide(&held, "a", t0, t0 + Duration::from_millis(14_999)),
        Step::Wait
    );
    assert_eq!(
        decide(&held, "a", t0, t0 + Duration::from_secs(15)),
        Step::Take
    );
    // a clock that seems to run backwards never takes early
    assert_eq!(
        decide(&held, "a", t0 + Duration::from_secs(5), t0),
        Step::Wait
    );
}

#[test]
fn a_released_lease_is_free_at_once() {
    let held = record(Some("a"), 15, 4);
    let spec = released(&held, ts(100));
    let after = Record::of(Some(&spec));
    assert_eq!(after.holder, None);
    assert_eq!(after.transitions, 4);
    assert_eq!(after.lease_duration, Duration::from_secs(1));
    let t0 = Instant::now();
    assert_eq!(decide(&after, "b", t0, t0), Step::Take);
}

#[test]
fn an_empty_holder_counts_as_none() {
    let spec = LeaseSpec {
        holder_identity: Some(String::new()),
        ..Default::default()
    };
    assert_eq!(Record::of(Some(&spec)).holder, None);
    assert_eq!(Record::of(None), Record::default());
}

#[test]
fn taking_from_another_counts_a_transition_and_sets_acquire_time() {
    let spec = claimed(
        &record(Some("b"), 15, 2),
        "a",
        Duration::from_secs(15),
        ts(50),
    );
    assert_eq!(spec.holder_identity.as_deref(), Some("a"));
    assert_eq!(spec.lease_transitions, Some(3));
    assert_eq!(spec.lease_duration_seconds, Some(15));
    assert_eq!(spec.acquire_time.map(|t| t.0), Some(ts(50)));
    assert_eq!(spec.renew_time.map(|t| t.0), Some(ts(50)));
}

#[test]
fn taking_a_free_lease_keeps_the_count_and_renewing_keeps_acquire_time() {
    let free = claimed(&record(None, 1, 2), "a", Duration::from_secs(15), ts(50));
    assert_eq!(free.lease_transitions, Some(2));
    assert!(free.acquire_time.is_some());
    let renewed = claimed(
        &record(Some("a"), 15, 2),
        "a",
        Duration::from_secs(15),
        ts(60),
    );
    assert_eq!(renewed.lease_transitions, Some(2));
    assert_eq!(renewed.acquire_time.map(|t| t.0), Some(ts(7)), "kept");
    assert_eq!(renewed.renew_time.map(|t| t.0), Some(ts(60)));
}

#[test]
fn sub_second_durations_round_up_to_one_second() {
    let spec = claimed(&record(None, 0, 0), "a", Duration::from_millis(300), ts(1));
    assert_eq!(spec.lease_duration_seconds, Some(1));
}

#[test]
fn timings_must_nest() {
    assert_eq!(Timings::default().check(), Ok(()));
    let t = |lease, renew, retry| Timings {
        lease_duration: Duration::from_secs(lease),
        renew_deadline: Duration::from_secs(renew),
        retry_period: Duration::from_secs(retry),
    };
    assert!(t(10, 10, 2).check().unwrap_err().contains("renew-deadline"));
    assert!(t(15, 10, 10).check().unwrap_err().contains("retry-period"));
    assert!(t(15, 10, 0).check().unwrap_err().contains("retry-period"));
}
