//! Shared by the CPU and GPU test suites, one module a concern:
//!
//! - `inputs`: seeded random inputs and the shape of one attention problem (`Rng`, `Case`);
//! - `ragged`: ragged batches, packed (varlen) and paged, checked sequence by sequence (`Ragged`);
//! - `tolerance`: every bound a result is held to, each rule once, with why;
//! - `forward`: the forward oracle, the op against the f64 reference with tolerance's rule 1 (`check`, ...);
//! - `grads`: gradients through autograd and the differentiable attention the gradient tests compare with;
//! - `errors`: checks of the errors the API returns (`expect_err`);
//! - `fp8`: e4m3 inputs and the FP8 forward against the reference (`fp8::check`, rule 6's emulation);
//! - `cuda` (feature `cuda`): the GPU suites' device, pool poisoning and CPU-op oracle.
//!
//! Each suite is a crate of its own and uses a part of these. A suite declares `pub mod common;` rather than
//! `mod common;`: the helpers are then its public items, which the dead-code lint does not flag when that
//! suite leaves them unused, while a private helper nobody calls is still reported. That needs no
//! `allow(dead_code)`, which would also hide the helpers that are dead everywhere. `cuda` is behind the
//! feature because its helpers are for a device only the feature can reach.

pub mod errors;
pub mod forward;
pub mod fp8;
pub mod grads;
pub mod inputs;
pub mod ragged;
pub mod tolerance;

#[cfg(feature = "cuda")]
pub mod cuda;
