//! `chipledger evidence verify` on NVIDIA's real Hopper sample: valid with its nonce against the
//! shipped device root, in text and JSON; refused with the reason for another nonce or root.

use crate::{chipledger, fails, ok};

const NONCE: &str = "931d8dd0add203ac3d8b4fbde75e115278eefcdceac5b87671a748f32364dfcb";

fn data(name: &str) -> String {
    format!("{}/domain/tests/data/nvidia-attestation/{name}", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn the_sample_evidence_verifies_and_a_wrong_nonce_or_root_is_refused() {
    let (report, chain) = (data("hopperAttestationReport.txt"), data("hopperCertChain.txt"));
    let base = ["evidence", "verify", "--report", &report, "--cert-chain", &chain, "--at", "2027-01-01T00:00:00Z"];
    let mut args = base.to_vec();
    args.extend(["--nonce", NONCE]);
    let r = ok(&args);
    assert!(r.stdout.contains("ueid 53C22BA15E5D68088282DA074ED9FB37AA585771"), "{}", r.stdout);
    assert!(r.stdout.contains("driver 550.90.07") && r.stdout.contains("VBIOS 96.00.9f.00.01"), "{}", r.stdout);
    args.extend(["--format", "json"]);
    let v: serde_json::Value = serde_json::from_str(&ok(&args).stdout).unwrap();
    for key in ["signature", "chain", "nonce", "fwid", "ueid", "driver_version", "vbios_version", "measurements"] {
        assert!(!v[key].is_null(), "{key} missing: {v}");
    }
    assert_eq!(v["measurements"].as_array().unwrap().len(), 64);
    let mut wrong = base.to_vec();
    let other = format!("{}0", &NONCE[..63]);
    wrong.extend(["--nonce", other.as_str()]);
    let r = fails(&wrong, "is not the one expected");
    assert_eq!(r.code, 1);
    let mut rim_root = base.to_vec();
    let rim = data("verifier_RIM_root.pem");
    rim_root.extend(["--nonce", NONCE, "--device-root", rim.as_str()]);
    fails(&rim_root, "not the pinned root");
    assert_ne!(
        chipledger(&["evidence", "verify", "--report", &report, "--cert-chain", &chain, "--nonce", "xyz"]).code,
        0
    );
}

/// With NVIDIA's sample RIMs (for driver 545.00 and VBIOS 96.00.5E.00.01, signed by certificates
/// valid June 2023 to June 2025), at a time inside their validity: both verify, every index is
/// reported — which match, which differ, which no RIM covers — with both version findings, and
/// the exit is 1 because the report (driver 550.90.07) is not what they describe. At today's
/// time the RIMs' signing certificates have expired: refused, naming the certificate.
#[test]
fn the_sample_rims_are_compared_index_by_index_and_their_expiry_is_refused() {
    let (report, chain) = (data("hopperAttestationReport.txt"), data("hopperCertChain.txt"));
    let (driver, vbios) =
        (data("Driver_RIM_test_no_gpu.swidtag"), data("1010_0200_882_96005E0001_test_no_gpu.swidtag"));
    let args = [
        "evidence",
        "verify",
        "--report",
        &report,
        "--cert-chain",
        &chain,
        "--nonce",
        NONCE,
        "--driver-rim",
        &driver,
        "--vbios-rim",
        &vbios,
    ];
    let mut in_2024 = args.to_vec();
    in_2024.extend(["--at", "2024-07-01T00:00:00Z", "--format", "json"]);
    let r = chipledger(&in_2024);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("measurement 7 differs from the driver RIM"), "{}", r.stderr);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["valid"], false);
    assert_eq!(v["ueid"], "53C22BA15E5D68088282DA074ED9FB37AA585771");
    let rims = &v["rims"];
    assert_eq!(rims["driver"]["version"], "545.00");
    assert_eq!(rims["vbios"]["version"], "96.00.5E.00.01");
    assert_eq!(rims["all_match"], false);
    assert_eq!(rims["version_findings"].as_array().unwrap().len(), 2, "{rims}");
    let per_index = rims["per_index"].as_array().unwrap();
    assert_eq!(per_index.len(), 64);
    let count = |kind: &str| per_index.iter().filter(|r| r["outcome"]["kind"] == kind).count();
    assert_eq!((count("matches"), count("differs"), count("not-covered")), (13, 20, 31));
    let index0 = &per_index[0];
    assert_eq!(
        (index0["index"].as_u64(), index0["rim"].as_str(), index0["outcome"]["kind"].as_str()),
        (Some(0), Some("vbios"), Some("matches"))
    );
    let mut text = args.to_vec();
    text.extend(["--at", "2024-07-01T00:00:00Z"]);
    let r = chipledger(&text);
    assert_eq!(r.code, 1);
    assert!(r.stdout.contains("measurement  7 (block  8, the driver RIM): DIFFERS"), "{}", r.stdout);
    assert!(r.stdout.contains("the driver RIM is for driver 545.00"), "{}", r.stdout);
    fails(&args, "is not valid at the report's time");
}
