//! Pure builders: validated spec -> typed Kubernetes objects. No client, no I/O.
mod deployment;
mod labels;
mod service;

pub use deployment::{MODEL_MOUNT_PATH, deployment};
pub use labels::{
    INSTANCE_LABEL, MANAGED_BY, VERSION_LABEL, pod_labels, pod_selector, selector_string,
    service_selector,
};
pub use service::{service, version_service};

/// Operator-wide settings the builders need.
#[derive(Clone, Debug)]
pub struct BuildConfig {
    /// Default inference server image when `spec.runtime.image` is unset.
    pub server_image: String,
}

/// Default container port of the inference server.
pub const DEFAULT_PORT: i32 = 8080;
/// Port the Service exposes.
pub const SERVICE_PORT: i32 = 80;

#[cfg(test)]
mod tests;
