//! Pure builders: validated spec -> typed Kubernetes objects. No client, no I/O.
mod auth;
mod deployment;
mod labels;
mod network_policy;
mod service;

pub use auth::api_key_path;
pub use deployment::{MODEL_MOUNT_PATH, deployment};
pub use labels::{
    INSTANCE_LABEL, MANAGED_BY, VERSION_LABEL, pod_labels, pod_selector, selector_string,
    service_selector,
};
pub use network_policy::{NAMESPACE_NAME_LABEL, ScraperPeer, network_policy};
pub use service::{service, version_service};

/// Operator-wide settings the builders need.
#[derive(Clone, Debug, Default)]
pub struct BuildConfig {
    /// Default inference server image when `spec.runtime.image` is unset.
    pub server_image: String,
    /// The operator's own pods, let in by `spec.networkPolicy` (None outside a cluster).
    pub scraper: Option<ScraperPeer>,
    /// Requests and limits of serving pods whose ModelDeployment sets no
    /// `spec.runtime.resources`.
    pub default_resources: Option<k8s_openapi::api::core::v1::ResourceRequirements>,
}

/// Default container port of the inference server.
pub const DEFAULT_PORT: i32 = 8080;
/// The port the server listens on in the pod.
pub fn server_port(md: &crate::crd::ModelDeployment) -> i32 {
    md.spec
        .runtime
        .as_ref()
        .and_then(|r| r.port)
        .unwrap_or(DEFAULT_PORT)
}

/// Port the Service exposes.
pub const SERVICE_PORT: i32 = 80;

#[cfg(test)]
mod security_tests;
#[cfg(test)]
mod tests;
