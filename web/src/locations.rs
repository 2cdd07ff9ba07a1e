//! Where the fleet's GPUs are, as the dashboard shows it. The location facts the log holds as of
//! a checkpoint — the landmarks' and hosts' sites, and the location proofs appended in the
//! window — are read once per checkpoint and brought up to date from new entries only; the
//! judgement depends on the time (a proof counts for `DEFAULT_MAX_AGE_SECS`), so it is made per
//! request, by `domain::location::judge` on exactly the proofs `domain::located::Locations::read`
//! would give it (see [`LocationFacts`]). The fleet's rows get their location column and
//! location anomalies here, and a GPU's page its host's proofs, the judgement and the map.
//! Nothing here renders; no proof is re-checked (the log checked each when it took it in).

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use chipledger_domain::country::Country;
use chipledger_domain::dsse::Envelope;
use chipledger_domain::fleet::location_label;
use chipledger_domain::identify::Severity;
use chipledger_domain::located::{self, Locations, LoggedProof, DEFAULT_MAX_AGE_SECS};
use chipledger_domain::location::{bound_km, Coord, CountryIndex, Judgement, LocationVerdict};
use chipledger_domain::log::{EnrolledSite, EntrySummary, LogClient};

/// The most proofs the dashboard keeps (newest first), without their rounds: a few hundred
/// bytes each. Beyond it, a warning in the server's log: the oldest in the window are not seen.
const KEPT: u64 = 200_000;
use chipledger_domain::records::{Record, RecordKind, Role};
use chipledger_ledger::{EntryFilter, Ledger};
use time::OffsetDateTime;

use crate::error::{ledger_error, ApiError};
use crate::map::{self, Drawing, MapInput};
use crate::views::{self, FleetRow, FleetSnapshot};

/// The location facts as of one checkpoint: the sites, and the proofs appended at or after
/// `since`, decoded once.
///
/// Every proof appended at or after `now − max age` (the ledger's `since`: an entry's append time
/// is its first checkpoint's) is kept, up to [`KEPT`] — what `fleet::locate` reads, per host
/// when one read is full — without its rounds (judging reads none): a later request filters
/// what is kept by append time, without reading or decoding them again. Append times grow with
/// the index (checkpoints are signed in order), so each host's proofs in a window are a suffix
/// of its list.
#[derive(Debug)]
pub(crate) struct LocationFacts {
    size: u64,
    /// Unix seconds: every proof appended at or after it (the newest as many as a read keeps).
    since: i64,
    /// The keys enrolled with a site before `size` (revocations from `size` on not counted), as
    /// `LogClient::sites` lists them, and what `Locations` makes of them: the landmarks and the
    /// hosts' declared sites (no proofs).
    enrolled: Vec<EnrolledSite>,
    sites: Locations,
    /// Every kept proof's index and append time, in log order.
    order: Vec<(u64, i64)>,
    by_host: HashMap<String, HostProofs>,
}

/// One host's kept proofs, in log order: (index, append time) and the proof.
#[derive(Debug, Default, Clone)]
struct HostProofs {
    at: Vec<(u64, i64)>,
    logged: Vec<LoggedProof>,
}

/// The last location facts read, and the fleet's rows last judged with them. Like the fleet,
/// held while computing, so concurrent pages wait for one computation.
#[derive(Debug, Default)]
pub(crate) struct LocationCache {
    facts: Mutex<Option<Arc<LocationFacts>>>,
    rows: Mutex<Option<LocatedRows>>,
}

/// The fleet's rows as of checkpoint `size`, judged at `from` and unchanged until `until` (Unix
/// seconds).
#[derive(Debug)]
struct LocatedRows {
    size: u64,
    from: i64,
    until: i64,
    rows: Arc<Vec<FleetRow>>,
}

impl LocationCache {
    /// The fleet's rows with each GPU's location judged at `now` (see [`located_rows`]). `judge`
    /// reads `now` only to tell which proofs count, so the rows are judged again only once the
    /// log has grown or a proof has entered or left the window since they were
    /// ([`LocationFacts::next_change`]).
    pub(crate) fn rows(
        &self,
        ledger: &Ledger,
        snap: &FleetSnapshot,
        now: OffsetDateTime,
    ) -> Result<Arc<Vec<FleetRow>>, ApiError> {
        let at = now.unix_timestamp();
        let mut cached = self.rows.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = cached.as_ref().filter(|c| c.size == snap.size && (c.from..c.until).contains(&at)) {
            return Ok(c.rows.clone());
        }
        let facts = self.facts(ledger, snap.size, now)?;
        let rows = Arc::new(located_rows(&facts, snap, now)?);
        *cached = Some(LocatedRows { size: snap.size, from: at, until: facts.next_change(at), rows: rows.clone() });
        Ok(rows)
    }

    /// The facts as of checkpoint size `size`, for a request at `now`.
    pub(crate) fn facts(
        &self,
        ledger: &Ledger,
        size: u64,
        now: OffsetDateTime,
    ) -> Result<Arc<LocationFacts>, ApiError> {
        let since = window_start(now);
        let mut cached = self.facts.lock().unwrap_or_else(|p| p.into_inner());
        let facts = match cached.as_ref() {
            Some(f) if f.size == size && f.since <= since => return Ok(f.clone()),
            Some(f) if f.size < size && f.since <= since => Arc::new(f.extended(ledger, size, since)?),
            Some(f) if f.size > size => return Ok(Arc::new(LocationFacts::read(ledger, size, since)?)),
            _ => Arc::new(LocationFacts::read(ledger, size, since)?),
        };
        *cached = Some(facts.clone());
        Ok(facts)
    }
}

impl LocationFacts {
    /// Reads the sites and the proofs appended at or after `since` among the first `size`
    /// entries.
    fn read(ledger: &Ledger, size: u64, since: i64) -> Result<LocationFacts, ApiError> {
        let filter = EntryFilter {
            kind: Some(RecordKind::LocationProof),
            since: Some(at_unix(since)),
            last: Some(KEPT),
            ..EntryFilter::default()
        };
        let entries = ledger.entries(&filter).map_err(ledger_error)?;
        let enrolled = enrolled_sites(ledger, size)?;
        let mut facts = LocationFacts {
            size,
            since,
            sites: sites(&enrolled),
            enrolled,
            order: Vec::new(),
            by_host: HashMap::new(),
        };
        facts.add(entries.iter().filter(|e| e.index < size))?;
        Ok(facts)
    }

    /// These facts brought up to `size` from the entries appended since: the keys enrolled
    /// with a site and revoked, and the proofs; what has left the window is dropped.
    fn extended(&self, ledger: &Ledger, size: u64, since: i64) -> Result<LocationFacts, ApiError> {
        let new = |kind: RecordKind, last: Option<u64>| {
            let filter = EntryFilter { kind: Some(kind), from: Some(self.size), last, ..EntryFilter::default() };
            ledger
                .entries(&filter)
                .map(|es| es.into_iter().filter(|e| e.index < size).collect::<Vec<_>>())
                .map_err(ledger_error)
        };
        let enrollments = new(RecordKind::KeyEnrollment, None)?;
        let revocations = new(RecordKind::KeyRevocation, None)?;
        let proofs = new(RecordKind::LocationProof, Some(KEPT))?;
        let mut enrolled = self.enrolled.clone();
        // What the ledger's registry makes of them (`LogClient::sites`): a key enrolled for a
        // host at a site, until its revocation.
        for e in &enrollments {
            if let Record::KeyEnrollment(k) = record_of(e)? {
                let located = matches!(k.role, Role::Agent | Role::Landmark);
                if let (true, Some(host)) = (located, k.host) {
                    let key_id = k.key_id.as_str().to_string();
                    enrolled.push(EnrolledSite {
                        key_id,
                        role: k.role,
                        host,
                        site: k.site,
                        enrolled_at: e.index,
                        revoked_at: None,
                    });
                }
            }
        }
        for e in &revocations {
            if let Record::KeyRevocation(r) = record_of(e)? {
                for s in enrolled.iter_mut().filter(|s| s.key_id == r.key_id.as_str() && s.revoked_at.is_none()) {
                    s.revoked_at = Some(e.index);
                }
            }
        }
        let sites =
            if enrollments.is_empty() && revocations.is_empty() { self.sites.clone() } else { sites(&enrolled) };
        let mut facts = LocationFacts { size, since, enrolled, sites, order: Vec::new(), by_host: HashMap::new() };
        // What is kept and still in the window, then the new proofs; the newest as many.
        let kept: Vec<(u64, i64, &str, &LoggedProof)> = {
            let mut all: Vec<(u64, i64, &str, &LoggedProof)> = Vec::new();
            for (host, p) in &self.by_host {
                for (&(index, appended), fact) in p.at.iter().zip(&p.logged) {
                    if appended >= since {
                        all.push((index, appended, host.as_str(), fact));
                    }
                }
            }
            all.sort_by_key(|k| k.0);
            all
        };
        for (index, appended, host, fact) in &kept {
            let h = facts.by_host.entry((*host).to_string()).or_default();
            h.at.push((*index, *appended));
            h.logged.push((*fact).clone());
            facts.order.push((*index, *appended));
        }
        facts.add(proofs.iter())?;
        facts.trim();
        Ok(facts)
    }

    /// Adds proof entries (in log order, after those held).
    fn add<'a>(&mut self, entries: impl Iterator<Item = &'a EntrySummary>) -> Result<(), ApiError> {
        for e in entries {
            let Record::LocationProof(p) = record_of(e)? else {
                tracing::error!(index = e.index, "an entry listed as a location proof is not one");
                return Err(ApiError::internal("reading the location proofs failed; the server log has details"));
            };
            let appended = e.appended_at.unix_timestamp();
            let h = self.by_host.entry(p.subject.host.clone()).or_default();
            h.at.push((e.index, appended));
            let mut record = *p;
            // Judging reads the least round trip, not the rounds.
            record.rounds = Vec::new();
            h.logged.push(LoggedProof { index: e.index, leaf_hash: e.leaf_hash, signer: e.key_id.clone(), record });
            self.order.push((e.index, appended));
        }
        Ok(())
    }

    /// Keeps the newest [`KEPT`].
    fn trim(&mut self) {
        let over = self.order.len().checked_sub(KEPT as usize);
        if over.is_some_and(|n| n > 0) {
            tracing::warn!(
                kept = KEPT,
                "more location proofs in the window than the dashboard keeps; the oldest are not seen"
            );
        }
        let Some(&(cutoff, _)) = over.and_then(|n| self.order.get(n)) else { return };
        self.order.retain(|(i, _)| *i >= cutoff);
        for h in self.by_host.values_mut() {
            let start = h.at.partition_point(|(i, _)| *i < cutoff);
            h.at.drain(..start);
            h.logged.drain(..start);
        }
        self.by_host.retain(|_, h| !h.at.is_empty());
    }

    /// `host`'s proofs in the window that ends at `now`, as `Locations::read` gives them:
    /// appended at or after `now − max age`, among the newest [`KEPT`] such.
    fn window(&self, host: &str, now: OffsetDateTime) -> (&[(u64, i64)], &[LoggedProof]) {
        let Some(h) = self.by_host.get(host) else { return (&[], &[]) };
        let since = window_start(now);
        let first = self.order.partition_point(|(_, appended)| *appended < since);
        let first = first.max(self.order.len().saturating_sub(KEPT as usize));
        let cutoff = self.order.get(first).map_or(u64::MAX, |(i, _)| *i);
        let start = h.at.partition_point(|(i, appended)| *i < cutoff || *appended < since);
        (&h.at[start..], &h.logged[start..])
    }

    /// The first second after `at` at which a judgement may change: a kept proof's measurement
    /// enters or leaves the window (`judge` counts a proof measured from `now − max age` to
    /// `now`, both included), or its append time leaves the window the proofs are read from.
    fn next_change(&self, at: i64) -> i64 {
        let age = i64::try_from(DEFAULT_MAX_AGE_SECS).unwrap_or(i64::MAX);
        self.by_host
            .values()
            .flat_map(|h| h.at.iter().zip(&h.logged))
            .flat_map(|(&(_, appended), p)| {
                let at = p.record.measured_at.unix_timestamp();
                [at, at.saturating_add(age).saturating_add(1), appended.saturating_add(age).saturating_add(1)]
            })
            .filter(|&t| t > at)
            .min()
            .unwrap_or(i64::MAX)
    }

    /// `host` judged at `now` against its declared site and `licensed` (its GPU's licensed
    /// destination): what `Locations::judge` gives on the proofs `Locations::read` would read.
    pub(crate) fn judge(
        &self,
        host: &str,
        licensed: Option<Country>,
        now: OffsetDateTime,
        index: &CountryIndex,
    ) -> Judgement {
        let (_, proofs) = self.window(host, now);
        let allowed: BTreeSet<Country> = licensed.into_iter().collect();
        self.sites.judge_with(host, proofs, &allowed, index, now)
    }

    /// The landmark named `name` enrolled at `at` (else any landmark by that name).
    fn landmark(&self, name: &str, at: Coord) -> Option<&EnrolledSite> {
        let same = |s: &&EnrolledSite| {
            s.site
                .as_ref()
                .is_some_and(|site| (site.at.lat - at.lat).abs() < 1e-6 && (site.at.lon - at.lon).abs() < 1e-6)
        };
        let named = || self.sites.landmarks.iter().filter(|s| s.host == name);
        named().rfind(same).or_else(|| named().next_back())
    }
}

/// The fleet's rows with each GPU's location judged at `now` (a judgement per host and licensed
/// destination), as `fleet::locate` and `fleet::rows` make them.
fn located_rows(facts: &LocationFacts, snap: &FleetSnapshot, now: OffsetDateTime) -> Result<Vec<FleetRow>, ApiError> {
    let index = country_index()?;
    let mut memo: HashMap<(&str, Option<Country>), Judged> = HashMap::new();
    Ok(snap
        .rows
        .iter()
        .zip(&snap.licensed)
        .map(|(row, licensed)| {
            let judged = memo
                .entry((row.host.as_str(), *licensed))
                .or_insert_with(|| Judged::of(&facts.judge(&row.host, *licensed, now, index)));
            judged.apply(row)
        })
        .collect())
}

/// The CSS class of a location column's value (`contradicts-declared (host-key)`, …).
pub(crate) fn css(location: &str) -> &'static str {
    match LocationVerdict::parse(location.split(' ').next().unwrap_or_default()) {
        Some(LocationVerdict::ContradictsDeclared) => "loc-danger",
        Some(LocationVerdict::PossiblyOutside) => "loc-warning",
        Some(LocationVerdict::Unproven) => "loc-muted",
        Some(LocationVerdict::Consistent) => "loc-ok",
        None => "",
    }
}

/// A GPU's location as its page shows it.
#[derive(Debug, Clone)]
pub(crate) struct GpuLocation {
    /// `contradicts-declared (host-key)`, its CSS class and what decided it.
    pub label: String,
    pub css: &'static str,
    pub reason: String,
    /// What the proofs locate (`the key holder`), when any counted.
    pub subject: Option<&'static str>,
    pub host_key: bool,
    pub declared: Option<SiteView>,
    /// `SG (Singapore)`.
    pub licensed_to: Option<String>,
    /// The host's proofs appended in the window, in log order.
    pub proofs: Vec<ProofRow>,
    /// `24 h`.
    pub window: String,
    pub disagreements: Vec<String>,
    /// Countries the region may lie in (`CN, HK`), when the region is not empty.
    pub countries: String,
    pub map: Option<Drawing>,
}

/// A site as an enrollment states it.
#[derive(Debug, Clone)]
pub(crate) struct SiteView {
    pub at: String,
    pub operator: String,
    pub country: Option<String>,
}

/// One location proof, for the table.
#[derive(Debug, Clone)]
pub(crate) struct ProofRow {
    pub index: u64,
    pub landmark: String,
    pub site: String,
    pub operator: String,
    pub rtt_ms: String,
    pub bound_km: String,
    pub method: &'static str,
    pub measured_at: String,
    /// Why the judgement did not use it; empty when it did.
    pub not_counted: String,
}

/// `row` (a GPU on `row.host`, licensed to `licensed`) with its location judged at `now`, and
/// what its page shows of it.
pub(crate) fn gpu_location(
    facts: &LocationFacts,
    row: &FleetRow,
    licensed: Option<Country>,
    now: OffsetDateTime,
) -> Result<(FleetRow, GpuLocation), ApiError> {
    let index = country_index()?;
    let j = facts.judge(&row.host, licensed, now, index);
    let located = Judged::of(&j).apply(row);
    let (at, logged) = facts.window(&row.host, now);
    // Why each proof does not count, by the judgement's own rules.
    let not_counted = facts.sites.not_counted(&row.host, logged, now);
    let rows = at
        .iter()
        .zip(logged.iter().map(|l| located::facts(&l.record)))
        .zip(not_counted)
        .map(|((&(index, _), p), why)| ProofRow {
            not_counted: why.unwrap_or_default(),
            index,
            landmark: p.landmark.clone(),
            site: p.landmark_site.to_string(),
            operator: facts
                .landmark(&p.landmark, p.landmark_site)
                .and_then(|s| s.site.as_ref())
                .map_or_else(|| "(not enrolled)".to_string(), |s| s.operator.clone()),
            rtt_ms: format!("{:.3}", p.rtt_ns as f64 / 1e6),
            bound_km: format!("{:.0}", bound_km(p.rtt_ns, p.floor_ns)),
            method: p.method.label(),
            measured_at: OffsetDateTime::from_unix_timestamp(p.at).map(views::rfc3339).unwrap_or_default(),
        })
        .collect();
    let declared = facts.sites.declared(&row.host);
    let mut landmarks: Vec<(String, Coord)> = Vec::new();
    for d in &j.disks {
        if !landmarks.iter().any(|(n, at)| *n == d.landmark && *at == d.center) {
            landmarks.push((d.landmark.clone(), d.center));
        }
    }
    let map = (!j.disks.is_empty())
        .then(|| map::draw(&MapInput { disks: &j.disks, landmarks: &landmarks, declared: declared.map(|s| s.at) }));
    let view = GpuLocation {
        label: location_label(&j),
        css: css(j.verdict.label()),
        reason: j.reason.clone(),
        subject: j.method.map(|m| m.subject_label()),
        host_key: j.method == Some(chipledger_domain::location::Method::HostKey),
        declared: declared.map(|s| SiteView {
            at: s.at.to_string(),
            operator: s.operator.clone(),
            country: s.country.map(|c| format!("{} ({})", c.code(), c.name())),
        }),
        licensed_to: licensed.map(|c| format!("{} ({})", c.code(), c.name())),
        proofs: rows,
        window: format!("{} h", DEFAULT_MAX_AGE_SECS / 3600),
        disagreements: j.disagreements.iter().map(|(a, b)| format!("{a} and {b}")).collect(),
        countries: j.countries.iter().map(|c| c.code()).collect::<Vec<_>>().join(", "),
        map,
    };
    Ok((located, view))
}

/// What a judgement adds to a row.
#[derive(Debug)]
struct Judged {
    label: String,
    reason: String,
    anomalies: Vec<String>,
    worst: Option<Severity>,
}

impl Judged {
    fn of(j: &Judgement) -> Judged {
        let anomalies = located::anomalies(j);
        Judged {
            label: location_label(j),
            reason: j.reason.clone(),
            worst: anomalies.iter().map(|a| a.severity()).max(),
            anomalies: anomalies.iter().map(|a| a.explain()).collect(),
        }
    }

    /// `row` as `fleet::Row::of` makes it of its candidate once `Locations::apply` judged it.
    fn apply(&self, row: &FleetRow) -> FleetRow {
        let mut r = row.clone();
        r.location.clone_from(&self.label);
        r.location_reason.clone_from(&self.reason);
        r.anomalies.extend(self.anomalies.iter().cloned());
        r.worst = r.worst.max(self.worst);
        r
    }
}

/// The keys enrolled with a site as of `size`: enrollments before it, revocations from it on
/// not yet counted.
fn enrolled_sites(ledger: &Ledger, size: u64) -> Result<Vec<EnrolledSite>, ApiError> {
    Ok(LogClient::sites(ledger)
        .map_err(|e| {
            tracing::error!(error = %e, "reading the enrolled sites");
            ApiError::internal("reading the enrolled sites failed; the server log has details")
        })?
        .into_iter()
        .filter(|s| s.enrolled_at < size)
        .map(|s| EnrolledSite { revoked_at: s.revoked_at.filter(|r| *r < size), ..s })
        .collect())
}

/// The landmarks and declared sites `Locations` makes of the keys enrolled with a site.
fn sites(enrolled: &[EnrolledSite]) -> Locations {
    Locations::from_parts(enrolled.to_vec(), Vec::new(), OffsetDateTime::UNIX_EPOCH, DEFAULT_MAX_AGE_SECS)
}

/// The record in a log entry.
fn record_of(e: &EntrySummary) -> Result<Record, ApiError> {
    Envelope::from_json(e.envelope.as_bytes())
        .and_then(|env| env.payload_bytes())
        .and_then(|payload| Record::from_payload(&payload))
        .map_err(|err| {
            tracing::error!(index = e.index, error = %err, "decoding an entry for the location facts");
            ApiError::internal("reading the location facts failed; the server log has details")
        })
}

fn country_index() -> Result<&'static CountryIndex, ApiError> {
    CountryIndex::embedded().map_err(|e| {
        tracing::error!(error = %e, "reading the country boundaries");
        ApiError::internal("reading the country boundaries failed; the server log has details")
    })
}

/// Unix seconds of `now − max age`: the earliest append time a proof in the window has.
fn window_start(now: OffsetDateTime) -> i64 {
    let age = time::Duration::seconds(i64::try_from(DEFAULT_MAX_AGE_SECS).unwrap_or(i64::MAX));
    now.checked_sub(age).unwrap_or(OffsetDateTime::UNIX_EPOCH).unix_timestamp()
}

fn at_unix(t: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(t).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}
