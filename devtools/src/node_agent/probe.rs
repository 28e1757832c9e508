//! Readiness, liveness and startup probes: timing from the pod spec, a pure result tracker, and
//! the check itself (httpGet or tcpSocket against the pod IP; exec cannot run without the image).

use std::net::Ipv4Addr;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// Probe timing with the Kubernetes defaults filled in.
#[derive(Clone, Debug, PartialEq)]
pub struct ProbePlan {
    pub check: ProbeCheck,
    pub initial_delay: Duration,
    pub period: Duration,
    pub timeout: Duration,
    pub success_threshold: u32,
    pub failure_threshold: u32,
}

#[derive(Clone, Debug, PartialEq)]
pub enum ProbeCheck {
    Http {
        host: Option<String>,
        port: u16,
        path: String,
        https: bool,
        headers: Vec<(String, String)>,
    },
    Tcp {
        host: Option<String>,
        port: u16,
    },
    /// exec/grpc probes: always fail, with this message (the image is not there to exec in).
    Unsupported(String),
}

fn secs(v: Option<i32>, default: u64) -> Duration {
    Duration::from_secs(
        v.and_then(|s| u64::try_from(s).ok())
            .filter(|s| *s > 0)
            .unwrap_or(default),
    )
}

fn threshold(v: Option<i32>, default: u32) -> u32 {
    v.and_then(|s| u32::try_from(s).ok())
        .filter(|s| *s > 0)
        .unwrap_or(default)
}

fn resolve_port(port: &IntOrString, container: &Container) -> Option<u16> {
    match port {
        IntOrString::Int(n) => u16::try_from(*n).ok(),
        IntOrString::String(name) => container
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some(name.as_str()))
            .and_then(|p| u16::try_from(p.container_port).ok()),
    }
}

impl ProbePlan {
    pub fn from_spec(probe: &Probe, container: &Container) -> Self {
        let check = if let Some(http) = &probe.http_get {
            match resolve_port(&http.port, container) {
                Some(port) => ProbeCheck::Http {
                    host: http.host.clone().filter(|h| !h.is_empty()),
                    port,
                    path: http.path.clone().unwrap_or_else(|| "/".into()),
                    https: http
                        .scheme
                        .as_deref()
                        .is_some_and(|s| s.eq_ignore_ascii_case("https")),
                    headers: http
                        .http_headers
                        .iter()
                        .flatten()
                        .map(|h| (h.name.clone(), h.value.clone()))
                        .collect(),
                },
                None => ProbeCheck::Unsupported(format!(
                    "probe port {:?} is not a container port",
                    http.port
                )),
            }
        } else if let Some(tcp) = &probe.tcp_socket {
            match resolve_port(&tcp.port, container) {
                Some(port) => ProbeCheck::Tcp {
                    host: tcp.host.clone().filter(|h| !h.is_empty()),
                    port,
                },
                None => ProbeCheck::Unsupported(format!(
                    "probe port {:?} is not a container port",
                    tcp.port
                )),
            }
        } else {
            ProbeCheck::Unsupported(
                "only httpGet and tcpSocket probes run on the local node agent".into(),
            )
        };
        Self {
            check,
            initial_delay: Duration::from_secs(
                probe
                    .initial_delay_seconds
                    .and_then(|s| u64::try_from(s).ok())
                    .unwrap_or(0),
            ),
            period: secs(probe.period_seconds, 10),
            timeout: secs(probe.timeout_seconds, 1),
            success_threshold: threshold(probe.success_threshold, 1),
            failure_threshold: threshold(probe.failure_threshold, 3),
        }
    }
}

/// Consecutive-result bookkeeping: the verdict flips only after `threshold` equal results in a row.
#[derive(Clone, Debug, PartialEq)]
pub struct ProbeTracker {
    success_threshold: u32,
    failure_threshold: u32,
    successes: u32,
    failures: u32,
    verdict: bool,
}

impl ProbeTracker {
    /// Readiness starts as failed, liveness as passed (the kubelet's initial values).
    pub fn new(plan: &ProbePlan, initially_ok: bool) -> Self {
        Self {
            success_threshold: plan.success_threshold,
            failure_threshold: plan.failure_threshold,
            successes: 0,
            failures: 0,
            verdict: initially_ok,
        }
    }

    /// `failureThreshold` failures in a row: what ends a startup probe, which starts out failed.
    pub fn failure_threshold_reached(&self) -> bool {
        self.failures >= self.failure_threshold
    }

    /// Records one result and returns the (possibly new) verdict.
    pub fn record(&mut self, ok: bool) -> bool {
        if ok {
            self.successes += 1;
            self.failures = 0;
            if self.successes >= self.success_threshold {
                self.verdict = true;
            }
        } else {
            self.failures += 1;
            self.successes = 0;
            if self.failures >= self.failure_threshold {
                self.verdict = false;
            }
        }
        self.verdict
    }
}

/// Runs one check against the pod IP. `Err` carries a short reason for logs.
pub async fn run_check(
    check: &ProbeCheck,
    pod_ip: Ipv4Addr,
    timeout: Duration,
    http: &reqwest::Client,
) -> Result<(), String> {
    match check {
        ProbeCheck::Http {
            host,
            port,
            path,
            https,
            headers,
        } => {
            let scheme = if *https { "https" } else { "http" };
            let host = host.clone().unwrap_or_else(|| pod_ip.to_string());
            let mut request = http
                .get(format!("{scheme}://{host}:{port}{path}"))
                .timeout(timeout);
            for (name, value) in headers {
                request = request.header(name, value);
            }
            let response = request.send().await.map_err(|e| e.to_string())?;
            // the kubelet counts 200..400 as success
            let code = response.status().as_u16();
            if (200..400).contains(&code) {
                Ok(())
            } else {
                Err(format!("HTTP probe failed with statuscode: {code}"))
            }
        }
        ProbeCheck::Tcp { host, port } => {
            let host = host.clone().unwrap_or_else(|| pod_ip.to_string());
            match tokio::time::timeout(
                timeout,
                tokio::net::TcpStream::connect((host.as_str(), *port)),
            )
            .await
            {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err("tcp probe timed out".into()),
            }
        }
        ProbeCheck::Unsupported(why) => Err(why.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container() -> Container {
        serde_json::from_value(
            serde_json::json!({"name": "c", "ports": [{"name": "http", "containerPort": 8080}]}),
        )
        .expect("container parses")
    }

    fn probe(json: serde_json::Value) -> ProbePlan {
        ProbePlan::from_spec(
            &serde_json::from_value(json).expect("probe parses"),
            &container(),
        )
    }

    #[test]
    fn defaults_match_kubernetes() {
        let plan =
            probe(serde_json::json!({"httpGet": {"path": "/v2/health/ready", "port": "http"}}));
        assert_eq!(
            plan,
            ProbePlan {
                check: ProbeCheck::Http {
                    host: None,
                    port: 8080,
                    path: "/v2/health/ready".into(),
                    https: false,
                    headers: vec![]
                },
                initial_delay: Duration::ZERO,
                period: Duration::from_secs(10),
                timeout: Duration::from_secs(1),
                success_threshold: 1,
                failure_threshold: 3,
            }
        );
    }

    #[test]
    fn explicit_timing_and_unknown_ports() {
        let plan = probe(
            serde_json::json!({"tcpSocket": {"port": 9000}, "periodSeconds": 2,
            "initialDelaySeconds": 5, "failureThreshold": 1, "successThreshold": 2}),
        );
        assert_eq!(
            plan.check,
            ProbeCheck::Tcp {
                host: None,
                port: 9000
            }
        );
        assert_eq!(
            (plan.period, plan.initial_delay),
            (Duration::from_secs(2), Duration::from_secs(5))
        );
        assert_eq!((plan.success_threshold, plan.failure_threshold), (2, 1));
        let named = probe(serde_json::json!({"httpGet": {"port": "metrics"}}));
        assert!(matches!(named.check, ProbeCheck::Unsupported(_)));
        let exec = probe(serde_json::json!({"exec": {"command": ["true"]}}));
        assert!(matches!(exec.check, ProbeCheck::Unsupported(_)));
    }

    #[test]
    fn verdict_flips_only_after_thresholds() {
        let plan = probe(
            serde_json::json!({"tcpSocket": {"port": 1}, "successThreshold": 2, "failureThreshold": 3}),
        );
        let mut readiness = ProbeTracker::new(&plan, false);
        assert!(!readiness.record(true));
        assert!(readiness.record(true));
        assert!(readiness.record(false));
        assert!(readiness.record(false));
        assert!(readiness.record(true), "a success resets the failure run");
        assert!(readiness.record(false) && readiness.record(false));
        assert!(!readiness.record(false));
        assert!(readiness.failure_threshold_reached());
    }
}
