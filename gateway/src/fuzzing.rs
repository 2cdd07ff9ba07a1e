//! Entry point for the fuzz target in `fuzz/` (`openai`): what clients and upstream engines hand
//! the serving node, and what a receipt's verifier reads. Not an API.

use chipledger_inference::runner::ChatTemplate;

/// A chat completion request (and the prompt the built-in engine would build from it), an
/// upstream engine's event stream in arbitrary pieces and its JSON rewritten, a receipt's leaf,
/// and a serving receipt checked offline.
pub fn openai(bytes: &[u8]) {
    if let Ok(req) = crate::openai::ChatRequest::parse(bytes) {
        let texts: Vec<(String, String)> =
            req.messages.iter().filter_map(|m| m.text().ok().map(|t| (m.role.clone(), t))).collect();
        let conversation: Vec<(&str, &str)> = texts.iter().map(|(r, t)| (r.as_str(), t.as_str())).collect();
        for template in [ChatTemplate::DeepSeekR1, ChatTemplate::ChatMl, ChatTemplate::Raw] {
            let _ = template.apply_chat(&conversation);
        }
    }
    let mut split = crate::upstream::SseSplitter::default();
    let cut = bytes.first().map(|b| usize::from(*b) + 1).unwrap_or(1);
    for piece in bytes.chunks(cut) {
        match split.push(piece) {
            Ok(events) => {
                for data in events {
                    if let Ok(mut v) = serde_json::from_str::<serde_json::Value>(&data) {
                        let _ = crate::upstream::rewrite(&mut v, "chatcmpl-fuzz", "fuzz");
                    }
                }
            }
            Err(_) => break,
        }
    }
    let _ = chipledger_domain::serving::ServedResponse::from_leaf(bytes);
    if let Ok(receipt) = serde_json::from_slice::<chipledger_inference::report::ServingReceipt>(bytes) {
        let _ = chipledger_inference::report::verify_serving(&receipt, None, Some(bytes), None);
    }
}
