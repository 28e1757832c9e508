//! Development and test infrastructure for Sconce.
//!
//! - [`model_fixture`]: deterministic random `sequential` models (`sconce-dev make-model`);
//! - [`reference_forward`]: a candle-free forward pass to check the server's answers;
//! - [`testing`]: helpers for integration tests (workspace paths, built binaries, kubeconfig clients).

pub mod model_fixture;
pub mod reference_forward;
pub mod testing;

pub use reference_forward::reference_forward;
