//! Synthetic dumps made from the real ones (shared with the benchmarks through `#[path]`).

use chipledger_domain::fingerprint::GpuUuid;

/// An `nvidia-smi -q` dump of `n` H800s on one HGX board, made from the real one-GPU H800 dump
/// by giving each GPU its own bus id, serial, UUID and module id.
pub fn hgx_text(h800_dump: &str, n: usize) -> String {
    let start = h800_dump.find("GPU 00000000:18:00.0").unwrap_or(0);
    let (head, section) = h800_dump.split_at(start);
    let mut out = head.replace(
        "Attached GPUs                             : 8",
        &format!("Attached GPUs                             : {n}"),
    );
    for i in 0..n {
        let bus = format!("{:02X}", 0x18 + 0x10 * i);
        out.push_str(
            &section
                .replace("00000000:18:00.0", &format!("00000000:{bus}:00.0"))
                .replace("1651323018291", &format!("16513230182{i:02}"))
                .replace("GPU-34bf77d1-c686-6821-79a8-32d326c5039c", &uuid(i as u32).to_string())
                .replace(
                    "Module ID                             : 5",
                    &format!("Module ID                             : {}", i + 1),
                ),
        );
    }
    out
}

/// An `nvidia-smi -q -x` dump of `n` A100s, from the real one-GPU A100 dump.
pub fn hgx_xml(a100_dump: &str, n: usize) -> String {
    let (Some(start), Some(end)) = (a100_dump.find("<gpu id="), a100_dump.rfind("</gpu>")) else {
        return a100_dump.to_string();
    };
    let end = end + "</gpu>".len();
    let mut out = a100_dump[..start].to_string();
    for i in 0..n {
        out.push_str(
            &a100_dump[start..end]
                .replace("00000000:01:00.0", &format!("00000000:{:02X}:00.0", 1 + i))
                .replace("1650522003820", &format!("16505220038{i:02}"))
                .replace("GPU-513536b6-7d19-9063-b049-1e69664bb298", &format!("GPU-513536b6-7d19-9063-b049-{i:012x}")),
        );
        out.push('\n');
    }
    out.push_str(&a100_dump[end..]);
    out
}

pub fn uuid(i: u32) -> GpuUuid {
    GpuUuid::parse(&format!("GPU-34bf77d1-c686-6821-79a8-{i:012x}")).unwrap_or_else(|e| unreachable!("{e}"))
}
