//! nvidia-smi dumps (XML `-q -x`, text `-q`, `nvlink -s`), as `agent probe --from-file` and
//! `agent attest --from-file` read them: the first byte picks the file name the format is
//! detected from, the rest is the file.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((pick, rest)) = data.split_first() else { return };
    let Ok(text) = std::str::from_utf8(rest) else { return };
    let name = ["dump.xml", "dump.txt", "nvlink.txt"][*pick as usize % 3];
    let _ = chipledger_agent::smi::parse_dumps(&[(name, text)]);
});
