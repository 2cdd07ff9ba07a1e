//! `agent.toml`: the agent's settings, from the file, then the environment
//! (`CHIPLEDGER_AGENT_<KEY>`), then flags (applied by the caller).
//!
//! ```toml
//! ledger = "/var/lib/chipledger"     # a local ledger's data directory (or a server's URL)
//! log_key = "chipledger-log+…"       # the log's verifier key (read from a local ledger if absent)
//! state_dir = "/var/lib/chipledger-agent"   # spool and state; the key defaults to agent-key.pem here
//! key_file = "/var/lib/chipledger-agent/agent-key.pem"
//! interval = "1h"                    # re-attest this often…
//! jitter = 0.1                       # …± this fraction, so a fleet does not attest in lockstep
//! poll = "30s"                       # how often to look for changed GPUs
//! retry_max = "10m"                  # longest wait between tries while the log is unreachable
//! hostname = "gpu-07"                # override the system host name
//! from_files = []                    # nvidia-smi dumps instead of NVML (imports, not live)
//! nvml_library = "/usr/lib/x86_64-linux-gnu/libnvidia-ml.so.1"  # pin the NVML library
//! landmarks = ["sin-1.example.org:7443"]  # landmarks `agent run` answers (HOST:PORT, at most 16)
//! locate_interval = "1h"             # …once at start, then this often (± jitter; at least 10s)
//! ```
//!
//! The landmark list is plain data here: this crate does not dial (the binary answers
//! landmarks through `chipledger_client::locate`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::daemon::Schedule;
use crate::Error;

/// The default configuration file.
pub const DEFAULT_CONFIG: &str = "/etc/chipledger/agent.toml";

/// The settings as written in the file; every key is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    ledger: Option<String>,
    log_key: Option<String>,
    state_dir: Option<PathBuf>,
    key_file: Option<PathBuf>,
    interval: Option<String>,
    jitter: Option<f64>,
    poll: Option<String>,
    retry_max: Option<String>,
    hostname: Option<String>,
    from_files: Option<Vec<PathBuf>>,
    nvml_library: Option<PathBuf>,
    landmarks: Option<Vec<String>>,
    locate_interval: Option<String>,
}

/// The most landmarks an agent answers.
pub const MAX_LANDMARKS: usize = 16;
/// The longest landmark address, `HOST:PORT`, in bytes.
pub const MAX_LANDMARK_ADDR: usize = 255;
/// How often `agent run` answers its landmarks unless configured otherwise…
pub const DEFAULT_LOCATE_INTERVAL: Duration = Duration::from_secs(3600);
/// …and at most how often.
pub const MIN_LOCATE_INTERVAL: Duration = Duration::from_secs(10);

/// The agent's settings after file and environment.
#[derive(Clone, Debug, PartialEq)]
pub struct AgentConfig {
    /// Where the log is: a data directory or a URL. `None` = the caller's default.
    pub ledger: Option<String>,
    pub log_key: Option<String>,
    pub state_dir: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub schedule: Schedule,
    pub hostname: Option<String>,
    pub from_files: Vec<PathBuf>,
    pub nvml_library: Option<PathBuf>,
    /// Landmarks (`HOST:PORT`) the daemon answers, checked by [`check_landmarks`].
    pub landmarks: Vec<String>,
    /// How often the daemon answers them (± the schedule's jitter).
    pub locate_interval: Duration,
}

impl AgentConfig {
    /// Reads `path` (an explicit path must exist; the default one may be missing), then applies
    /// `CHIPLEDGER_AGENT_*` variables from `env`.
    pub fn load(path: Option<&Path>, env: &dyn Fn(&str) -> Option<String>) -> Result<AgentConfig, Error> {
        let (file, origin) = match path {
            Some(p) => (read(p)?, p.display().to_string()),
            None => {
                let p = Path::new(DEFAULT_CONFIG);
                if p.exists() {
                    (read(p)?, DEFAULT_CONFIG.to_string())
                } else {
                    (FileConfig::default(), "defaults".to_string())
                }
            }
        };
        let cfg_err = |origin: &str, key: &str, message: String| Error::Config {
            origin: origin.to_string(),
            key: key.to_string(),
            message,
        };
        let pick = |key: &str, from_file: Option<String>| -> (Option<String>, String) {
            match env(&format!("CHIPLEDGER_AGENT_{}", key.to_ascii_uppercase())).filter(|v| !v.is_empty()) {
                Some(v) => (Some(v), format!("environment CHIPLEDGER_AGENT_{}", key.to_ascii_uppercase())),
                None => (from_file, origin.clone()),
            }
        };
        let duration =
            |key: &str, from_file: Option<String>, default: Duration, min: Duration| -> Result<Duration, Error> {
                let (v, from) = pick(key, from_file);
                let Some(v) = v else { return Ok(default) };
                parse_duration_at_least(&v, min).map_err(|m| cfg_err(&from, key, m))
            };
        let defaults = Schedule::default();
        let interval = duration("interval", file.interval, defaults.interval, Duration::from_secs(1))?;
        let poll = duration("poll", file.poll, defaults.poll, Duration::from_millis(100))?;
        let retry_max = duration("retry_max", file.retry_max, defaults.retry_max, Duration::from_millis(100))?;
        let (jitter_s, from) = pick("jitter", file.jitter.map(|j| j.to_string()));
        let jitter = match jitter_s {
            None => defaults.jitter,
            Some(s) => {
                let j: f64 = s.parse().map_err(|_| cfg_err(&from, "jitter", format!("{s:?} is not a number")))?;
                if !(0.0..=0.5).contains(&j) {
                    return Err(cfg_err(&from, "jitter", format!("{j} is outside 0.0 ..= 0.5")));
                }
                j
            }
        };
        let locate_interval =
            duration("locate_interval", file.locate_interval, DEFAULT_LOCATE_INTERVAL, MIN_LOCATE_INTERVAL)?;
        // The environment's list is comma-separated; it replaces the file's.
        let (landmarks, from) = match pick("landmarks", None) {
            (Some(list), from) => (list.split(',').map(|a| a.trim().to_string()).collect(), from),
            (None, _) => (file.landmarks.unwrap_or_default(), origin.clone()),
        };
        check_landmarks(&landmarks).map_err(|m| cfg_err(&from, "landmarks", m))?;
        let (from_files, _) = pick("from_files", None);
        let from_files = match from_files {
            Some(list) => list.split(':').filter(|s| !s.is_empty()).map(PathBuf::from).collect(),
            None => file.from_files.unwrap_or_default(),
        };
        Ok(AgentConfig {
            ledger: pick("ledger", file.ledger).0,
            log_key: pick("log_key", file.log_key).0,
            state_dir: pick("state_dir", file.state_dir.map(|p| p.display().to_string())).0.map(PathBuf::from),
            key_file: pick("key_file", file.key_file.map(|p| p.display().to_string())).0.map(PathBuf::from),
            schedule: Schedule { interval, jitter, poll, retry_min: defaults.retry_min.min(retry_max), retry_max },
            hostname: pick("hostname", file.hostname).0,
            from_files,
            nvml_library: pick("nvml_library", file.nvml_library.map(|p| p.display().to_string())).0.map(PathBuf::from),
            landmarks,
            locate_interval,
        })
    }
}

fn read(path: &Path) -> Result<FileConfig, Error> {
    let text = std::fs::read_to_string(path).map_err(Error::io(path))?;
    toml::from_str(&text).map_err(|e| Error::Config {
        origin: path.display().to_string(),
        key: chipledger_domain::encoding::config_error_key(&text, e.message(), e.span())
            .unwrap_or_else(|| "(file)".into()),
        message: e.message().trim().to_string(),
    })
}

/// `90s`, `5m`, `1h`, `2d`, `250ms`, or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().map_err(|_| format!("{s:?} is not a duration like 90s, 5m, 1h or 2d"))?;
    let secs = |mult: u64| n.checked_mul(mult).map(Duration::from_secs).ok_or_else(|| format!("{s:?} is too long"));
    match unit.trim() {
        "ms" => Ok(Duration::from_millis(n)),
        "" | "s" => secs(1),
        "m" | "min" => secs(60),
        "h" => secs(3600),
        "d" => secs(86_400),
        other => Err(format!("unknown unit {other:?} in {s:?}; use ms, s, m, h or d")),
    }
}

/// [`parse_duration`], refusing anything shorter than `min`.
pub fn parse_duration_at_least(s: &str, min: Duration) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d < min {
        return Err(format!("{s:?} is shorter than the minimum {}", show(min)));
    }
    Ok(d)
}

/// A landmark list an agent may answer: at most [`MAX_LANDMARKS`], each a non-empty `HOST:PORT`
/// of at most [`MAX_LANDMARK_ADDR`] bytes without spaces or control characters. The message
/// names the first bad entry (counting from 1). Whether the host resolves is the dial's
/// business.
pub fn check_landmarks(list: &[String]) -> Result<(), String> {
    if list.len() > MAX_LANDMARKS {
        return Err(format!("{} landmarks; an agent answers at most {MAX_LANDMARKS}", list.len()));
    }
    for (i, addr) in list.iter().enumerate() {
        let n = i + 1;
        if addr.is_empty() {
            return Err(format!("entry {n} is empty; a landmark is HOST:PORT"));
        }
        if addr.len() > MAX_LANDMARK_ADDR {
            return Err(format!(
                "entry {n} is {} bytes; a landmark address is at most {MAX_LANDMARK_ADDR}",
                addr.len()
            ));
        }
        let shown: String = addr.chars().filter(|c| !c.is_control()).collect();
        let hostport = addr.rsplit_once(':').filter(|(host, port)| {
            !host.is_empty()
                && !addr.contains(|c: char| c.is_whitespace() || c.is_control())
                && port.parse::<u16>().is_ok_and(|p| p != 0)
        });
        if hostport.is_none() {
            return Err(format!("entry {n} ({shown:?}) is not HOST:PORT (a host name or address and a port 1-65535)"));
        }
    }
    Ok(())
}

fn show(d: Duration) -> String {
    if d.as_millis() < 1000 {
        format!("{}ms", d.as_millis())
    } else {
        format!("{}s", d.as_secs())
    }
}
