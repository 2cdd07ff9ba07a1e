//! Where the fleet's GPUs are, as a reader judges it from the log: each host's recent location
//! proofs (`location-proof/v1`, signed by landmarks), the landmarks' surveyed sites and the
//! hosts' declared ones (both from the admins' enrollments), and each GPU's licensed destination
//! (its acquisition's `ship_to`) → a [`Judgement`] per GPU (`domain::location::judge`), and the
//! anomalies it gives: `landmark-disagreement` (round trips that cannot all be right) and
//! `location-contradicts-declared` (physics rules the declared site or the licence out).
//!
//! The log checked each proof when it took it in (the landmark signed from the site it was
//! enrolled at; every answer is the subject host's enrolled agent key's signature over the
//! landmark's nonce): a reader of a log it trusts for its views takes the proofs as the log
//! gives them; an auditor re-checks them offline (a bundle or a diversion report replays the
//! same checks). A proof locates the holder of the host's key (`host-key`), never a chip.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use time::OffsetDateTime;

use crate::country::Country;
use crate::dsse::Envelope;
use crate::fleet::Candidate;
use crate::identify::Anomaly;
use crate::location::{judge, CountryIndex, JudgeInput, Judgement, LocationVerdict, Proof};
use crate::location_proof::LocationProof;
use crate::log::{EnrolledSite, LogClient};
use crate::merkle::Hash;
use crate::records::{Record, Role};
use crate::Error;

/// How old a location proof may be and still count, by default: a day (an agent answers its
/// landmarks hourly by default).
pub const DEFAULT_MAX_AGE_SECS: u64 = 24 * 3600;

/// The most landmarks whose proofs one host's judgement counts (the newest ones').
pub const MAX_LANDMARKS: usize = 64;

/// One location proof as the log holds it.
#[derive(Clone, Debug, PartialEq)]
pub struct LoggedProof {
    pub index: u64,
    pub leaf_hash: Hash,
    /// The key that signed it (the landmark's).
    pub signer: String,
    pub record: LocationProof,
}

impl LoggedProof {
    /// The facts [`judge`] reads.
    pub fn facts(&self) -> Proof {
        facts(&self.record)
    }
}

/// The facts [`judge`] reads from a proof.
pub fn facts(p: &LocationProof) -> Proof {
    Proof {
        landmark: p.landmark.clone(),
        landmark_site: p.landmark_at,
        rtt_ns: p.min_rtt_ns,
        floor_ns: p.floor_ns,
        at: p.measured_at.unix_timestamp(),
        method: p.method,
    }
}

/// The location facts of a fleet (or of one host) at one point of the log.
#[derive(Clone, Debug)]
pub struct Locations {
    /// The landmarks' enrollments (role `landmark`), revoked ones included.
    pub landmarks: Vec<EnrolledSite>,
    /// host → its current agent key: the newest enrolled for the host and not revoked. Only its
    /// proofs count, and its site is the host's declared one.
    pub current: BTreeMap<String, EnrolledSite>,
    /// host → its proofs appended in the window, in log order.
    pub proofs: BTreeMap<String, Vec<LoggedProof>>,
    /// Whether a read of every host's proofs came back full: some may be missing, and each host
    /// must be read on its own ([`crate::fleet::locate`] does).
    pub truncated: bool,
    /// Hosts whose own read came back full: their newest proofs may have pushed out a landmark's
    /// (one that contradicts them, say), so they are judged `unproven`.
    pub overflowing: BTreeSet<String>,
    /// The reader's time and how old a proof may be.
    pub now: OffsetDateTime,
    pub max_age_secs: u64,
}

impl Locations {
    /// Reads the sites and the proofs appended in the last `max_age_secs` before `now` — of
    /// `host` only, or of every host — among the first `size` entries of `log`.
    pub fn read(
        log: &dyn LogClient,
        host: Option<&str>,
        size: u64,
        now: OffsetDateTime,
        max_age_secs: u64,
    ) -> Result<Locations, Error> {
        let age = time::Duration::seconds(i64::try_from(max_age_secs).unwrap_or(i64::MAX));
        let since = now.checked_sub(age).unwrap_or(OffsetDateTime::UNIX_EPOCH);
        let mut proofs: BTreeMap<String, Vec<LoggedProof>> = BTreeMap::new();
        let listed = log.location_proofs(host, since)?;
        let truncated = listed.len() as u64 >= crate::log::MAX_LOCATION_PROOFS;
        for e in listed.into_iter().filter(|e| e.index < size) {
            let env = Envelope::from_json(e.envelope.as_bytes())?;
            let Record::LocationProof(record) = Record::from_payload(&env.payload_bytes()?)? else {
                return Err(Error::Log(format!("entry {} was listed as a location proof and is not one", e.index)));
            };
            if host.is_some_and(|h| h != record.subject.host) {
                return Err(Error::Log(format!("entry {} locates another host than the one asked for", e.index)));
            }
            let host = record.subject.host.clone();
            let proof = LoggedProof { index: e.index, leaf_hash: e.leaf_hash, signer: e.key_id, record: *record };
            proofs.entry(host).or_default().push(proof);
        }
        let (landmarks, current) = split_sites(log.sites()?, size);
        let overflowing = match host {
            Some(h) if truncated => BTreeSet::from([h.to_string()]),
            _ => BTreeSet::new(),
        };
        Ok(Locations { landmarks, current, proofs, truncated, overflowing, now, max_age_secs })
    }

    /// Builds the facts from what a caller already holds (a bundle, a report).
    pub fn from_parts(
        sites: Vec<EnrolledSite>,
        proofs: Vec<LoggedProof>,
        now: OffsetDateTime,
        max_age_secs: u64,
    ) -> Locations {
        let (landmarks, current) = split_sites(sites, u64::MAX);
        let mut by_host: BTreeMap<String, Vec<LoggedProof>> = BTreeMap::new();
        for p in proofs {
            by_host.entry(p.record.subject.host.clone()).or_default().push(p);
        }
        for list in by_host.values_mut() {
            list.sort_by_key(|p| p.index);
        }
        // As a reader of the log judges them: a host with a full read's worth of proofs is over
        // the limit ([`Self::read`]).
        let overflowing = by_host
            .iter()
            .filter(|(_, ps)| ps.len() as u64 >= crate::log::MAX_LOCATION_PROOFS)
            .map(|(h, _)| h.clone())
            .collect();
        Locations { landmarks, current, proofs: by_host, truncated: false, overflowing, now, max_age_secs }
    }

    /// The host's declared site: its current agent key's.
    pub fn declared(&self, host: &str) -> Option<&crate::records::Site> {
        self.current.get(host).and_then(|k| k.site.as_ref())
    }

    /// The host's proofs that count, as [`judge`] reads them: answered by its current agent key,
    /// signed by a landmark key not revoked, and of each landmark only the newest (a host that
    /// moved is where its latest answers put it, not at the intersection of old and new).
    pub fn proof_facts(&self, host: &str) -> Vec<Proof> {
        self.counted(host).map(LoggedProof::facts).collect()
    }

    /// The host's proofs that count ([`Self::proof_facts`]), newest of each landmark, in log order.
    pub fn counted<'a>(&'a self, host: &str) -> impl Iterator<Item = &'a LoggedProof> + 'a {
        self.counted_of(host, self.proofs.get(host).map_or(&[][..], Vec::as_slice))
    }

    /// Which of `all` (proofs of `host`, in log order) count, as [`Self::counted`] decides.
    pub fn counted_of<'a>(&'a self, host: &str, all: &'a [LoggedProof]) -> impl Iterator<Item = &'a LoggedProof> + 'a {
        let mut newest: BTreeMap<&str, &LoggedProof> = BTreeMap::new();
        for p in all {
            if self.is_current_answer(host, p) && self.is_live_landmark(&p.signer) {
                newest.insert(p.record.landmark.as_str(), p);
            }
        }
        let mut kept: Vec<&LoggedProof> = newest.into_values().collect();
        kept.sort_by_key(|p| p.index);
        // The newest proofs of at most MAX_LANDMARKS landmarks: the region's cost grows with the
        // cube of their number.
        let extra = kept.len().saturating_sub(MAX_LANDMARKS);
        kept.drain(..extra);
        kept.into_iter()
    }

    /// Whether `p` was answered by `host`'s current agent key.
    fn is_current_answer(&self, host: &str, p: &LoggedProof) -> bool {
        self.current.get(host).is_some_and(|k| k.key_id == p.record.subject.key_id.0)
    }

    /// Whether `signer` is an enrolled landmark key not revoked.
    fn is_live_landmark(&self, signer: &str) -> bool {
        self.landmarks.iter().any(|l| l.key_id == signer && l.revoked_at.is_none())
    }

    /// For each of `all` (proofs of `host`, in log order), why a judgement at `now` does not use
    /// it, in the order the rules apply; `None` for a proof it uses.
    pub fn not_counted(&self, host: &str, all: &[LoggedProof], now: OffsetDateTime) -> Vec<Option<String>> {
        let used: BTreeSet<u64> = self.counted_of(host, all).map(|p| p.index).collect();
        let newest_of_landmark: BTreeMap<&str, u64> = all
            .iter()
            .filter(|p| self.is_current_answer(host, p) && self.is_live_landmark(&p.signer))
            .fold(BTreeMap::new(), |mut m, p| {
                m.insert(p.record.landmark.as_str(), p.index);
                m
            });
        all.iter()
            .map(|p| {
                let facts = p.facts();
                let why = if !self.is_current_answer(host, p) {
                    "answered by another key than the host's current agent key".to_string()
                } else if !self.is_live_landmark(&p.signer) {
                    "its landmark's key is revoked".to_string()
                } else if newest_of_landmark.get(p.record.landmark.as_str()) != Some(&p.index) {
                    "a newer proof from this landmark replaced it".to_string()
                } else if !used.contains(&p.index) {
                    format!("only the newest {MAX_LANDMARKS} landmarks' proofs count")
                } else if !facts.is_fresh(now.unix_timestamp(), self.max_age_secs) {
                    format!("measured outside the last {} h", self.max_age_secs / 3600)
                } else if !facts.landmark_site.is_valid() {
                    "its landmark's site is not a place on Earth".to_string()
                } else {
                    return None;
                };
                Some(why)
            })
            .collect()
    }

    /// Judges `host` against its declared site and the `allowed` countries.
    pub fn judge(&self, host: &str, allowed: &BTreeSet<Country>, index: &CountryIndex) -> Judgement {
        let all = self.proofs.get(host).map_or(&[][..], Vec::as_slice);
        self.judge_with(host, all, allowed, index, self.now)
    }

    /// [`Self::judge`] on the proofs `all` of `host` (in log order) at `now`, with these sites:
    /// for a reader that keeps the proofs itself (the dashboard). A host with a full read's
    /// worth of proofs is `unproven`: its newest answers may have pushed a contradicting
    /// landmark's proof out of the read.
    pub fn judge_with(
        &self,
        host: &str,
        all: &[LoggedProof],
        allowed: &BTreeSet<Country>,
        index: &CountryIndex,
        now: OffsetDateTime,
    ) -> Judgement {
        if self.overflowing.contains(host) || all.len() as u64 >= crate::log::MAX_LOCATION_PROOFS {
            return Judgement::unproven(format!(
                "{} or more location proofs of this host in the window: far more than its agent answers; some may \
                 have been pushed out of a read, so none is trusted",
                crate::log::MAX_LOCATION_PROOFS
            ));
        }
        let proofs: Vec<Proof> = self.counted_of(host, all).map(LoggedProof::facts).collect();
        judge(&JudgeInput {
            proofs: &proofs,
            now: now.unix_timestamp(),
            max_age_secs: self.max_age_secs,
            declared: self.declared(host).map(|s| s.at),
            allowed,
            index,
        })
    }

    /// Judges every candidate's location — its host's proofs, against its host's declared site
    /// and its own licensed destination (`Candidate::licensed_to`) — and adds the anomalies the
    /// judgement gives. Run after [`crate::fleet::judge_serials`], which sets both.
    pub fn apply(&self, candidates: &mut [&mut Candidate]) -> Result<(), Error> {
        let index = CountryIndex::embedded()?;
        let mut memo: HashMap<(String, Option<Country>), Judgement> = HashMap::new();
        for c in candidates.iter_mut() {
            let key = (c.host.clone(), c.licensed_to);
            let j = memo
                .entry(key)
                .or_insert_with(|| {
                    let allowed: BTreeSet<Country> = c.licensed_to.into_iter().collect();
                    self.judge(&c.host, &allowed, index)
                })
                .clone();
            c.anomalies.retain(|a| !is_location_anomaly(a));
            c.anomalies.extend(anomalies(&j));
            c.location = Some(j);
        }
        Ok(())
    }
}

/// The anomalies a judgement gives: each pair of landmarks that cannot both be right, and a
/// declaration (or licence) that physics rules out.
pub fn anomalies(j: &Judgement) -> Vec<Anomaly> {
    let mut out: Vec<Anomaly> = j
        .disagreements
        .iter()
        .map(|(a, b)| Anomaly::LandmarkDisagreement { landmarks: vec![a.clone(), b.clone()], reason: j.reason.clone() })
        .collect();
    if j.verdict == LocationVerdict::ContradictsDeclared {
        let method = j.method.map(|m| m.label().to_string()).unwrap_or_default();
        out.push(Anomaly::LocationContradictsDeclared { method, reason: j.reason.clone() });
    }
    out
}

fn is_location_anomaly(a: &Anomaly) -> bool {
    matches!(a, Anomaly::LandmarkDisagreement { .. } | Anomaly::LocationContradictsDeclared { .. })
}

/// The landmarks enrolled among the first `size` entries (a revocation after `size` not yet
/// seen), and each host's current agent key.
fn split_sites(sites: Vec<EnrolledSite>, size: u64) -> (Vec<EnrolledSite>, BTreeMap<String, EnrolledSite>) {
    let mut landmarks = Vec::new();
    let mut current: BTreeMap<String, EnrolledSite> = BTreeMap::new();
    for mut s in sites.into_iter().filter(|s| s.enrolled_at < size) {
        s.revoked_at = s.revoked_at.filter(|r| *r < size);
        match s.role {
            Role::Landmark => landmarks.push(s),
            Role::Agent if s.revoked_at.is_none() => {
                let newer = current.get(&s.host).is_none_or(|d| d.enrolled_at < s.enrolled_at);
                if newer {
                    current.insert(s.host.clone(), s);
                }
            }
            _ => {}
        }
    }
    (landmarks, current)
}
