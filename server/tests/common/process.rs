//! The real `sconce-server` binary as a child process.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// The server binary: `SCONCE_SERVER_BINARY` if set (hack/test.sh sets it), else the one cargo
/// built for these tests. Give a private copy when other worktrees build into the same target
/// directory: their builds replace `target/debug/sconce-server` while tests run.
pub fn binary() -> std::ffi::OsString {
    std::env::var_os("SCONCE_SERVER_BINARY")
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_sconce-server").into())
}

/// A running server binary, killed when dropped.
pub struct Proc {
    pub child: Child,
    pub lines: mpsc::Receiver<String>,
    /// `HOST:PORT` from its `listening on` line.
    pub addr: String,
}

impl Proc {
    pub fn spawn(args: &[&str], env: &[(&str, &str)]) -> Child {
        let mut cmd = Command::new(binary());
        cmd.args(args).stdout(Stdio::null()).stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.spawn().unwrap()
    }

    /// Starts the binary and waits for `listening on http://...` and `model ready`.
    pub fn start(args: &[&str], env: &[(&str, &str)]) -> Proc {
        let mut child = Self::spawn(args, env);
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("server: {line}");
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut addr = None;
        loop {
            let line = lines
                .recv_timeout(Duration::from_secs(60))
                .expect("server log ended");
            if let Some(rest) = line.split("listening on http://").nth(1) {
                addr = Some(rest.split_whitespace().next().unwrap().to_string());
            }
            if line.contains("model ready") {
                break;
            }
        }
        Proc {
            child,
            lines,
            addr: addr.expect("no listening line before model ready"),
        }
    }

    pub fn sigterm(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Serve a `sequential` model as `mlp` on a free loopback port.
pub const MLP_ON_FREE_PORT: [&str; 8] = [
    "--format",
    "sequential",
    "--model-name",
    "mlp",
    "--host",
    "127.0.0.1",
    "--port",
    "0",
];
