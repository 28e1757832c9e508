//! Reconcile errors. Each knows whether retrying can help (transient) or the user must change the
//! spec first (permanent), and which metric/event category it belongs to.
use thiserror::Error;

#[derive(Debug, Error)]
pub enum Error {
    /// The spec cannot be served as written; nothing changes until the user edits it.
    #[error("invalid spec: {0}")]
    InvalidSpec(#[from] crate::reconcile::validate::ValidationError),

    /// The Kubernetes API refused or failed a request.
    #[error("kubernetes API error: {0}")]
    Kube(#[from] kube::Error),

    /// An object lacked a field the API server always sets (namespace, name, uid).
    #[error("object is missing {0}")]
    MissingObjectKey(&'static str),

    /// The apiserver refused a child object, or its name belongs to someone else. The status
    /// already reports it; `permanent` when only a spec change can help.
    #[error("{}: {}", problem.reason, problem.message)]
    Refused {
        problem: crate::reconcile::status::Problem,
        permanent: bool,
    },

    /// Serialising a typed object for server-side apply failed.
    #[error("serialising object: {0}")]
    Serialize(#[from] serde_json::Error),
}

impl Error {
    /// Permanent errors wait for a spec change; transient ones are retried with backoff.
    pub fn is_permanent(&self) -> bool {
        match self {
            Error::InvalidSpec(_) => true,
            Error::Refused { permanent, .. } => *permanent,
            Error::Kube(kube::Error::Api(status)) => {
                // 4xx other than conflicts / throttling / timeouts mean our request is wrong:
                // retrying the same thing would loop.
                let code = status.code;
                (400..500).contains(&code) && !matches!(code, 404 | 408 | 409 | 429)
            }
            Error::Kube(_) | Error::MissingObjectKey(_) | Error::Serialize(_) => false,
        }
    }

    /// Category used as the metric label and the event reason.
    pub fn category(&self) -> &str {
        match self {
            Error::InvalidSpec(_) => "InvalidSpec",
            Error::Refused { problem, .. } => &problem.reason,
            Error::Kube(kube::Error::Api(_)) => "ApiRejected",
            Error::Kube(_) => "ApiUnavailable",
            Error::MissingObjectKey(_) => "MalformedObject",
            Error::Serialize(_) => "Internal",
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
