//! What the suites share: fakes of the world outside (a GPU that signs evidence, NVIDIA signing
//! reference manifests).

pub mod rim;
pub mod spdm;

/// `len` pseudo-random bytes (xorshift64 from `state`, which advances): garbage input that is
/// the same on every run.
pub fn junk(state: &mut u64, len: usize) -> Vec<u8> {
    (0..len)
        .map(|_| {
            *state ^= *state << 13;
            *state ^= *state >> 7;
            *state ^= *state << 17;
            *state as u8
        })
        .collect()
}
