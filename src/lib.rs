//! Sconce: a Kubernetes operator that serves machine-learning models.
pub mod admin;
pub mod api_requests;
pub mod autoscale;
pub mod crd;
pub mod error;
pub mod leader;
pub mod metrics;
pub mod reconcile;
pub mod rollout;
