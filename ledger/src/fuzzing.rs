//! Entry points for the fuzz targets in `fuzz/` (coverage-guided, `cargo fuzz`): the ledger's
//! own parsers of untrusted bytes, reached without a database. Not an API: the names and
//! shapes follow the fuzz targets.

/// An envelope as an append reads it (whole, on every core's path) and as the audit reads it
/// (lightly): neither may panic, and where both read it they must agree on what authorisation
/// and the views read. Then, when it is canonical, its stored forms must give it back.
pub fn envelope(bytes: &[u8]) {
    let full = crate::record::parse_to_append(bytes, crate::store::MAX_ENTRY_BYTES);
    let light = crate::record::parse(bytes, crate::store::MAX_ENTRY_BYTES, false);
    if let Ok(full) = &full {
        // Invariant: a record the full parse reads, the light one reads alike.
        let light = light.as_ref().expect("the light parse reads what the full parse reads");
        assert_eq!(light.gpu_target, full.gpu_target);
        assert_eq!(light.resolves_serial, full.resolves_serial);
        assert_eq!(light.settles_history, full.settles_history);
        assert_eq!((light.kind, light.counter, light.made_at), (full.kind, full.counter, full.made_at));
        if let Some((form, body)) = &full.compact {
            let back = crate::record::expand(body, *form, &full.key_id).expect("a stored form expands");
            assert_eq!(back, bytes, "a stored form gives the envelope back byte for byte");
        }
    }
}

/// A stored body in any form, as a reopened or damaged log hands it back: an error, never a
/// panic or an allocation past the bound.
pub fn stored_body(form: i64, body: &[u8]) {
    let _ = crate::record::expand(body, form, "fuzz");
}
