//! The log side of C2SP tlog-witness: `add-checkpoint` requests to a witness, and what it said.

use std::time::Duration;

/// A witness's answer to `add-checkpoint`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WitnessAnswer {
    /// 200: the cosignature lines (each `— name base64…\n`).
    Cosigned(Vec<String>),
    /// 409: the size of the latest checkpoint it cosigned of this log.
    Conflict(u64),
    /// Any other status, with the witness's message.
    Refused { status: u16, message: String },
}

/// A witness at a URL (its submission prefix).
#[derive(Debug, Clone)]
pub struct WitnessClient {
    url: String,
    agent: ureq::Agent,
}

/// The largest witness answer read (a few signature lines, or a size).
const MAX_ANSWER: u64 = 64 * 1024;

impl WitnessClient {
    pub fn new(url: &str) -> WitnessClient {
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(10)))
            .timeout_connect(Some(Duration::from_secs(5)))
            .http_status_as_error(false)
            .build()
            .into();
        WitnessClient { url: url.trim_end_matches('/').to_string(), agent }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// Sends one `add-checkpoint` body; transport failures are `Err`.
    pub fn add_checkpoint(&self, body: &[u8]) -> Result<WitnessAnswer, String> {
        let url = format!("{}/add-checkpoint", self.url);
        let mut r = self.agent.post(&url).send(body).map_err(|e| format!("{url}: {e}"))?;
        let status = r.status().as_u16();
        let text = r
            .body_mut()
            .with_config()
            .limit(MAX_ANSWER)
            .read_to_string()
            .map_err(|e| format!("{url}: reading the answer: {e}"))?;
        Ok(match status {
            200 => {
                let lines: Vec<String> = text.split_inclusive('\n').map(str::to_string).collect();
                if lines.is_empty() || lines.iter().any(|l| !l.starts_with('\u{2014}') || !l.ends_with('\n')) {
                    return Err(format!("{url}: the answer is not note signature lines"));
                }
                WitnessAnswer::Cosigned(lines)
            }
            409 => match text.trim_end_matches('\n').parse::<u64>() {
                Ok(size) => WitnessAnswer::Conflict(size),
                Err(_) => return Err(format!("{url}: a 409 without the witness's size")),
            },
            _ => WitnessAnswer::Refused { status, message: text.chars().take(300).collect() },
        })
    }
}
