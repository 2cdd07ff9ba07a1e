//! What the suites share: fakes of the world outside (a GPU that signs evidence, NVIDIA signing
//! reference manifests).

pub mod rim;
pub mod spdm;
