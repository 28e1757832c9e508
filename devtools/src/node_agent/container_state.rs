//! What the agent knows about one container at a moment; `pod_status` turns it into API status.

use std::process::ExitStatus;

use k8s_openapi::jiff::Timestamp;

#[derive(Clone, Debug, PartialEq)]
pub struct Terminated {
    pub exit_code: i32,
    pub signal: Option<i32>,
    pub reason: String,
    pub message: Option<String>,
    pub started_at: Timestamp,
    pub finished_at: Timestamp,
}

impl Terminated {
    /// The kubelet's conventions: `Completed` for exit 0, else `Error`; a signal `n` is exit `128+n`.
    pub fn from_exit(status: ExitStatus, started_at: Timestamp, finished_at: Timestamp) -> Self {
        use std::os::unix::process::ExitStatusExt;
        let signal = status.signal();
        let exit_code = status.code().unwrap_or_else(|| 128 + signal.unwrap_or(0));
        Self::from_code(exit_code, signal, started_at, finished_at)
    }

    pub fn from_code(
        exit_code: i32,
        signal: Option<i32>,
        started_at: Timestamp,
        finished_at: Timestamp,
    ) -> Self {
        let reason = if exit_code == 0 { "Completed" } else { "Error" };
        Self {
            exit_code,
            signal,
            reason: reason.into(),
            message: None,
            started_at,
            finished_at,
        }
    }

    pub fn with_message(mut self, message: impl Into<String>) -> Self {
        self.message = Some(message.into());
        self
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum RunState {
    Waiting {
        reason: String,
        message: Option<String>,
    },
    Running {
        started_at: Timestamp,
    },
    Terminated(Terminated),
}

#[derive(Clone, Debug, PartialEq)]
pub struct ContainerSnapshot {
    pub name: String,
    pub image: String,
    pub state: RunState,
    pub last_terminated: Option<Terminated>,
    pub restart_count: i32,
    /// Running and the readiness probe (if any) passes.
    pub ready: bool,
    /// Running and the startup probe (if any) has passed.
    pub started: bool,
}

impl ContainerSnapshot {
    pub fn waiting(name: &str, image: &str, reason: &str, message: Option<String>) -> Self {
        Self {
            name: name.into(),
            image: image.into(),
            state: RunState::Waiting {
                reason: reason.into(),
                message,
            },
            last_terminated: None,
            restart_count: 0,
            ready: false,
            started: false,
        }
    }
}
