use super::*;

fn counters(ok: f64, errors: &[(u16, f64)], buckets: &[(f64, f64)]) -> Counters {
    let mut by_code = BTreeMap::from([(200, ok)]);
    by_code.extend(errors.iter().copied());
    Counters {
        by_code,
        buckets: buckets.to_vec(),
        in_flight: 0.0,
    }
}

fn plan() -> AnalysisPlan {
    AnalysisPlan {
        interval: Duration::from_secs(5),
        min_requests: 10,
        max_error_rate: Some(0.05),
        max_latency_p99: Some(Duration::from_millis(500)),
        failure_limit: 2,
        max_error_rate_increase: None,
        max_latency_ratio: None,
    }
}

fn traffic(version: &str, c: Counters) -> Traffic {
    Traffic {
        version: version.into(),
        counters: c,
        pods_scraped: 1,
        pods_ready: 1,
    }
}

#[test]
fn parses_the_servers_metrics() {
    let text = "sconce_requests_total{model=\"m\",protocol=\"v2\",code=\"200\"} 90\n\
                sconce_requests_total{model=\"m\",protocol=\"v1\",code=\"200\"} 5\n\
                sconce_requests_total{model=\"m\",protocol=\"v2\",code=\"400\"} 5\n\
                sconce_request_duration_seconds_bucket{model=\"m\",protocol=\"v2\",le=\"0.001\"} 50\n\
                sconce_request_duration_seconds_bucket{model=\"m\",protocol=\"v2\",le=\"0.01\"} 95\n\
                sconce_request_duration_seconds_bucket{model=\"m\",protocol=\"v2\",le=\"+Inf\"} 95\n\
                sconce_request_duration_seconds_bucket{model=\"m\",protocol=\"v1\",le=\"0.001\"} 5\n\
                sconce_request_duration_seconds_bucket{model=\"m\",protocol=\"v1\",le=\"0.01\"} 5\n\
                sconce_request_duration_seconds_bucket{model=\"m\",protocol=\"v1\",le=\"+Inf\"} 5\n\
                sconce_requests_in_flight{model=\"m\"} 2\n";
    let c = Counters::from_text(text);
    assert_eq!(c.by_code, BTreeMap::from([(200, 95.0), (400, 5.0)]));
    assert_eq!(
        c.buckets,
        vec![(0.001, 55.0), (0.01, 100.0), (f64::INFINITY, 100.0)]
    );
    assert_eq!(c.in_flight, 2.0);
}

#[test]
fn deltas_survive_restarts() {
    let before = counters(
        100.0,
        &[(500, 10.0)],
        &[(0.1, 110.0), (f64::INFINITY, 110.0)],
    );
    let after = counters(
        150.0,
        &[(500, 12.0)],
        &[(0.1, 162.0), (f64::INFINITY, 162.0)],
    );
    let d = after.since(&before);
    assert_eq!(d.by_code, BTreeMap::from([(200, 50.0), (500, 2.0)]));
    assert_eq!(d.buckets, vec![(0.1, 52.0), (f64::INFINITY, 52.0)]);
    // The server restarted: its counters started again from zero.
    let restarted = counters(7.0, &[], &[(0.1, 7.0), (f64::INFINITY, 7.0)]);
    assert_eq!(restarted.since(&after), restarted);
}

#[test]
fn quantiles_interpolate_like_prometheus() {
    let buckets = [
        (0.01, 50.0),
        (0.1, 90.0),
        (1.0, 100.0),
        (f64::INFINITY, 100.0),
    ];
    let p50 = quantile(0.5, &buckets).expect("p50");
    assert!((p50.as_secs_f64() - 0.01).abs() < 1e-9, "{p50:?}");
    let p99 = quantile(0.99, &buckets).expect("p99");
    assert!((p99.as_secs_f64() - 0.91).abs() < 1e-9, "{p99:?}");
    // beyond the last finite bound: that bound
    let slow = [(0.01, 0.0), (f64::INFINITY, 10.0)];
    assert_eq!(quantile(0.99, &slow), Some(Duration::from_millis(10)));
    assert_eq!(quantile(0.99, &[(0.1, 0.0), (f64::INFINITY, 0.0)]), None);
}

#[test]
fn verdicts() {
    let fast = [(0.01, 100.0), (f64::INFINITY, 100.0)];
    let healthy = traffic("3", counters(100.0, &[], &fast));
    assert!(matches!(judge(&plan(), &healthy, None), Verdict::Pass(_)));

    let broken = traffic("3", counters(70.0, &[(400, 30.0)], &fast));
    match judge(&plan(), &broken, None) {
        Verdict::Fail(m) => assert_eq!(m, "canary error rate 30.0% > 5.0%"),
        other => panic!("{other:?}"),
    }
    let shed = traffic("3", counters(70.0, &[(429, 30.0)], &fast));
    assert!(
        matches!(judge(&plan(), &shed, None), Verdict::Pass(_)),
        "429 is not an error"
    );

    let slow = traffic(
        "3",
        counters(
            100.0,
            &[],
            &[(0.1, 0.0), (1.0, 100.0), (f64::INFINITY, 100.0)],
        ),
    );
    match judge(&plan(), &slow, None) {
        Verdict::Fail(m) => assert!(m.starts_with("canary p99 latency 991ms > 500ms"), "{m}"),
        other => panic!("{other:?}"),
    }

    let quiet = traffic("3", counters(3.0, &[], &fast));
    assert!(matches!(
        judge(&plan(), &quiet, None),
        Verdict::Inconclusive(_)
    ));
    let mut unreachable = healthy.clone();
    unreachable.pods_scraped = 0;
    unreachable.counters = Counters::default();
    match judge(&plan(), &unreachable, None) {
        Verdict::Inconclusive(m) => assert!(m.contains("answered a scrape"), "{m}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn comparisons_with_stable() {
    let mut p = plan();
    p.max_error_rate = None;
    p.max_latency_p99 = None;
    p.max_error_rate_increase = Some(0.02);
    p.max_latency_ratio = Some(2.0);
    let buckets = |le: f64| vec![(le, 100.0), (f64::INFINITY, 100.0)];
    let stable = traffic("2", counters(95.0, &[(500, 5.0)], &buckets(0.01)));
    let same = traffic("3", counters(94.0, &[(500, 6.0)], &buckets(0.01)));
    assert!(matches!(judge(&p, &same, Some(&stable)), Verdict::Pass(_)));
    let worse = traffic("3", counters(80.0, &[(500, 20.0)], &buckets(0.05)));
    match judge(&p, &worse, Some(&stable)) {
        Verdict::Fail(m) => {
            assert!(m.contains("exceeds stable's 5.0% by more than 2.0%"), "{m}");
            assert!(m.contains("more than 2x stable's"), "{m}");
        }
        other => panic!("{other:?}"),
    }
    // no stable traffic: nothing to compare with, so no failure from comparisons
    let idle = traffic("2", Counters::default());
    assert!(matches!(judge(&p, &worse, Some(&idle)), Verdict::Pass(_)));
}
