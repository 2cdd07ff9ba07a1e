//! What Slurm and Kubernetes hand chipledger's scheduler hooks: scontrol output, GPU index and
//! host lists, ResourceSlice listings.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    chipledger_inference::fuzzing::scheduler(data);
});
