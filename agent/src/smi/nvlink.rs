//! `nvidia-smi nvlink -s` / `nvlink --status`: per GPU, one line per link with its speed, or
//! `<inactive>`.
//!
//! ```text
//! GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-…)
//! \t Link 0: 26.562 GB/s
//! ```

use chipledger_domain::fingerprint::{GpuUuid, NvLink};

use crate::Error;

/// One GPU's links as the status output lists them.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct LinkStatus {
    pub gpu_index: u32,
    pub uuid: Option<GpuUuid>,
    pub links: Vec<NvLink>,
}

/// True when the text looks like `nvidia-smi nvlink -s` output.
pub(crate) fn looks_like(text: &str) -> bool {
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    matches!(lines.next(), Some(first) if first.starts_with("GPU ") && first.contains("(UUID:"))
        && text.lines().any(|l| l.trim_start().starts_with("Link "))
}

pub(crate) fn parse(text: &str, file: &str) -> Result<Vec<LinkStatus>, Error> {
    let mut out: Vec<LinkStatus> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        let line_no = i as u64 + 1;
        let bad = |message: String| Error::Dump { path: file.to_string(), line: line_no, message };
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("GPU ") {
            let (index, _) = rest.split_once(':').ok_or_else(|| bad("expected `GPU <n>: <name> (UUID: …)`".into()))?;
            let gpu_index = index.trim().parse().map_err(|_| bad(format!("GPU index {index:?} is not a number")))?;
            let uuid = match rest.rsplit_once("(UUID:") {
                Some((_, u)) => {
                    let u = u.trim().trim_end_matches(')').trim();
                    Some(GpuUuid::parse(u).map_err(|e| bad(e.to_string()))?)
                }
                None => None,
            };
            out.push(LinkStatus { gpu_index, uuid, links: Vec::new() });
        } else if let Some(rest) = line.strip_prefix("Link ") {
            let gpu = out.last_mut().ok_or_else(|| bad("a link line before any `GPU` line".into()))?;
            let (index, state) = rest.split_once(':').ok_or_else(|| bad("expected `Link <n>: <speed>`".into()))?;
            let index: u32 = index.trim().parse().map_err(|_| bad(format!("link index {index:?} is not a number")))?;
            let state = state.trim();
            let speed = state.strip_suffix("GB/s").and_then(|s| s.trim().parse::<f64>().ok()).filter(|v| v.is_finite());
            let active = speed.is_some_and(|s| s > 0.0);
            if speed.is_none() && !state.eq_ignore_ascii_case("<inactive>") && !state.eq_ignore_ascii_case("inactive") {
                return Err(bad(format!("link {index} state {state:?} is neither a speed in GB/s nor <inactive>")));
            }
            gpu.links.push(NvLink { index, active, version: None, speed_gbs: speed, remote_bus_id: None });
        } else {
            return Err(bad(format!("unexpected line {line:?} in nvlink status output")));
        }
    }
    Ok(out)
}
