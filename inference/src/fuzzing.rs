//! Entry points for the fuzz targets in `fuzz/` (coverage-guided, `cargo fuzz`): the model
//! and policy files a node reads, from bytes. Not an API: the names and shapes follow the fuzz
//! targets.

use std::path::Path;

/// A GGUF file as `--model x.gguf` reads it: the header, the shape it describes, the
/// tokenizer its metadata builds, and the native engine's load of its tensors (then a forward
/// pass over two tokens, portable kernels and, where the CPU has them, SIMD ones).
pub fn gguf(bytes: &[u8]) {
    let path = Path::new("fuzz.gguf");
    let mut reader = std::io::Cursor::new(bytes);
    if let Ok(content) = crate::runner::read_gguf(&mut reader, path) {
        let _ = crate::runner::gguf_tokenizer(&content);
        let arch = content.metadata.get("general.architecture").and_then(|v| v.to_string().ok().cloned());
        for features in [crate::engine::Features::none(), crate::engine::Features::detect()] {
            let loaded = crate::engine::Engine::load(&content, &mut reader, arch.as_deref().unwrap_or(""), features);
            if let Ok(mut engine) = loaded {
                let _ = engine.forward(&[0, 1], 0);
                let _ = engine.forward(&[2], 2);
            }
        }
    }
    let mut reader = std::io::Cursor::new(bytes);
    let _ = crate::requirements::from_gguf_reader(&mut reader, bytes.len() as u64, path);
}

/// A model directory's `config.json`.
pub fn config_json(text: &str) {
    let _ = crate::requirements::from_config_json(text, "fuzz", Path::new("config.json"));
}

/// A placement policy file, and a fabric file (`plan --fabric`).
pub fn policy(text: &str) {
    let _ = crate::policy::Policy::parse(text, "fuzz.toml");
    let _ = crate::placement::Fabric::parse(text, "fuzz.toml");
}

/// What Slurm and Kubernetes hand the scheduler hooks: `scontrol show job -d` / `show node` /
/// `show nodes --oneliner` output, `SLURM_JOB_GPUS`, GRES lists, host lists, and a ResourceSlice
/// listing.
pub fn scheduler(bytes: &[u8]) {
    use crate::cluster::slurm;
    let _ = crate::cluster::dra_devices(bytes);
    let Ok(text) = std::str::from_utf8(bytes) else { return };
    if let Ok(job) = slurm::parse_job(text) {
        let _ = job.gpus_on("node1");
    }
    let _ = slurm::parse_node(text).map(|n| n.drained());
    let _ = slurm::parse_nodes_oneline(text);
    let _ = slurm::parse_indices(text);
    let _ = slurm::gpu_indices(text);
    let _ = slurm::expand_hostlist(text);
}
