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
