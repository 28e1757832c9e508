//! Development and test infrastructure for Sconce.
//!
//! - [`node_agent`]: `sconce-dev node-agent`, a scheduler + kubelet stand-in that runs
//!   sconce-server pods as local processes on a control plane without either;
//! - [`model_fixture`]: deterministic random `sequential` models (`sconce-dev make-model`);
//! - [`reference_forward`]: a candle-free forward pass to check the server's answers;
//! - [`testing`]: helpers for integration tests (a private control plane, an agent process).

pub mod model_fixture;
pub mod node_agent;
pub mod reference_forward;
pub mod testing;

pub use reference_forward::reference_forward;
