//! Delay-based location proofs, the pure part: coordinates, the distance light can cover in a
//! round trip, the feasible region those bounds leave, and the verdict a reader draws from it
//! (`DESIGN.md` §13). Not here: timing, signing or logging a proof (landmarks and agents do
//! that), and any clock: `now` and every proof's time come in as parameters.
//!
//! A landmark at surveyed coordinates times a signed challenge to a GPU host and keeps the
//! smallest round trip of several. Nothing travels faster than light in vacuum and a relay can
//! only add delay, so the host lies within `c·(rtt − floor)/2` of the landmark: a [`Disk`].
//! Several landmarks intersect their disks into a [`Region`]; [`judge`] compares it with the
//! declared site and the licensed destination and returns a [`LocationVerdict`]. Every rounding
//! is conservative: a region may only come out larger than physics allows, never smaller, and
//! its countries are resolved to 1° cells of the boundary data (a country counts when its
//! border touches a cell the region may touch), so "possibly outside" near a border can be
//! the cell's doing, "consistent" never is. Water is in no country: the data has no sea borders.
//!
//! Country boundaries come from the `country-boundaries` crate's embedded data, derived from
//! OpenStreetMap: © OpenStreetMap contributors, licensed under the Open Database License (ODbL);
//! see `domain/data/ATTRIBUTION-country-boundaries.md`.

mod countries;
mod region;

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::country::Country;
use crate::Error;

pub use countries::CountryIndex;
pub use region::{Disk, LatLonBox, Region};

/// The speed of light in vacuum, in kilometres per millisecond (exact, by the SI definition).
pub const C_VACUUM_KM_PER_MS: f64 = 299.792458;

/// The mean Earth radius (IUGG, R₁ of WGS 84), in kilometres.
pub const EARTH_RADIUS_KM: f64 = 6371.0088;

/// A point on Earth in decimal degrees (WGS 84): latitude −90..=90, longitude −180..=180.
/// Written and serialized as `"lat,lon"` (`"1.2897,103.8501"`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Coord {
    pub lat: f64,
    pub lon: f64,
}

impl Coord {
    /// Reads `"lat,lon"` in decimal degrees; spaces around either number are allowed.
    pub fn parse(s: &str) -> Result<Coord, Error> {
        const MAX_LEN: usize = 64;
        let bad = |reason: &'static str| Error::Coordinate { input: s.chars().take(MAX_LEN).collect(), reason };
        if s.len() > MAX_LEN {
            return Err(bad("longer than 64 characters"));
        }
        let mut parts = s.split(',');
        let lat = parts.next().map(str::trim).filter(|p| !p.is_empty()).ok_or(bad("the latitude is missing"))?;
        let lon = parts.next().map(str::trim).filter(|p| !p.is_empty()).ok_or(bad("the longitude is missing"))?;
        if parts.next().is_some() {
            return Err(bad("it has more than two comma-separated parts"));
        }
        let lat: f64 = lat.parse().map_err(|_| bad("the latitude is not a decimal number"))?;
        let lon: f64 = lon.parse().map_err(|_| bad("the longitude is not a decimal number"))?;
        if !lat.is_finite() || !lon.is_finite() {
            return Err(bad("a coordinate is not a finite number"));
        }
        if !(-90.0..=90.0).contains(&lat) {
            return Err(bad("the latitude is outside -90..=90"));
        }
        if !(-180.0..=180.0).contains(&lon) {
            return Err(bad("the longitude is outside -180..=180"));
        }
        Ok(Coord { lat, lon })
    }

    /// Whether this is a place on Earth: finite, latitude in −90..=90, longitude in −180..=180.
    /// `parse` only builds such coordinates; a struct literal may hold anything.
    pub fn is_valid(&self) -> bool {
        (-90.0..=90.0).contains(&self.lat) && (-180.0..=180.0).contains(&self.lon)
    }
}

impl fmt::Display for Coord {
    /// `lat,lon` with four to six decimals (six decimals of a degree are 0.11 m).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{},{}", degrees(self.lat), degrees(self.lon))
    }
}

impl Serialize for Coord {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Coord {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Coord, D::Error> {
        let s = String::deserialize(deserializer)?;
        Coord::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// The great-circle distance between two points on a sphere of the mean Earth radius
/// (haversine), in kilometres. The ellipsoid differs by up to 0.5 %, far less than the
/// kilometres a round trip's slack adds. NaN when either point is not finite.
pub fn great_circle_km(a: Coord, b: Coord) -> f64 {
    let (lat_a, lat_b) = (a.lat.to_radians(), b.lat.to_radians());
    let dlat = lat_b - lat_a;
    let dlon = (b.lon - a.lon).to_radians();
    let h = (dlat / 2.0).sin().powi(2) + lat_a.cos() * lat_b.cos() * (dlon / 2.0).sin().powi(2);
    2.0 * EARTH_RADIUS_KM * h.clamp(0.0, 1.0).sqrt().asin()
}

/// How far from a landmark a host can be whose signed answer came back after `rtt_ns`: light
/// in vacuum covers `c·(rtt − floor)/2` (out and back). `floor_ns` is time the landmark knows
/// is spent standing still (its own processing); 0 is the conservative, larger disk. A floor
/// above the round trip gives 0 km, never a negative distance.
pub fn bound_km(rtt_ns: u64, floor_ns: u64) -> f64 {
    let flight_ms = rtt_ns.saturating_sub(floor_ns) as f64 / 1e6;
    C_VACUUM_KM_PER_MS * flight_ms / 2.0
}

/// What answered a landmark's challenge, and so what a proof locates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    /// The GPU's device key signed an SPDM report over the nonce: the proof locates the chip.
    GpuSpdm,
    /// The host's key signed the nonce: the proof locates whoever holds that key, which need not
    /// be where the GPU is.
    HostKey,
}

impl Method {
    pub fn label(self) -> &'static str {
        match self {
            Method::GpuSpdm => "gpu-spdm",
            Method::HostKey => "host-key",
        }
    }

    /// The method a label names (`gpu-spdm`, `host-key`).
    pub fn parse(label: &str) -> Option<Method> {
        [Method::GpuSpdm, Method::HostKey].into_iter().find(|m| m.label() == label)
    }

    /// What a proof by this method places: "the chip" or "the key holder", never more.
    pub fn subject_label(self) -> &'static str {
        match self {
            Method::GpuSpdm => "the chip",
            Method::HostKey => "the key holder",
        }
    }
}

/// A reader's verdict on where a GPU is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LocationVerdict {
    /// The region holds the declared site and lies within the licensed countries.
    Consistent,
    /// The region holds the declared site but may reach outside the licensed countries (or,
    /// with none licensed, outside the declared site's country).
    PossiblyOutside,
    /// Physics rules the declaration out: the declared site lies outside the region, or the
    /// region reaches none of the licensed countries.
    ContradictsDeclared,
    /// No fresh proof, or proofs that cannot all be right.
    Unproven,
}

impl LocationVerdict {
    pub fn label(self) -> &'static str {
        match self {
            LocationVerdict::Consistent => "consistent",
            LocationVerdict::PossiblyOutside => "possibly-outside",
            LocationVerdict::ContradictsDeclared => "contradicts-declared",
            LocationVerdict::Unproven => "unproven",
        }
    }

    /// The verdict a label names (`possibly-outside`, …).
    pub fn parse(label: &str) -> Option<LocationVerdict> {
        [
            LocationVerdict::Consistent,
            LocationVerdict::PossiblyOutside,
            LocationVerdict::ContradictsDeclared,
            LocationVerdict::Unproven,
        ]
        .into_iter()
        .find(|v| v.label() == label)
    }
}

/// The facts of one location proof, as a reader takes them from a verified record.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Proof {
    /// The landmark's name (its enrolled key's name).
    pub landmark: String,
    /// Where the landmark stands (surveyed).
    pub landmark_site: Coord,
    /// The smallest round trip of the landmark's rounds, in nanoseconds.
    pub rtt_ns: u64,
    /// Time of the round trip that is not flight (landmark processing), in nanoseconds.
    pub floor_ns: u64,
    /// When the landmark timed it, in Unix seconds.
    pub at: i64,
    pub method: Method,
}

impl Proof {
    /// Whether the proof counts at `now` (Unix seconds): measured in the last `max_age_secs`,
    /// not after `now`, from a landmark site that is a place on Earth. [`judge`] reads only
    /// the proofs that count; a reader citing the proofs a judgement rests on names these.
    pub fn counts(&self, now: i64, max_age_secs: u64) -> bool {
        self.is_fresh(now, max_age_secs) && self.landmark_site.is_valid()
    }

    /// Whether the proof was measured in the last `max_age_secs` before `now`, and not after it.
    pub fn is_fresh(&self, now: i64, max_age_secs: u64) -> bool {
        let earliest = i128::from(now) - i128::from(max_age_secs);
        (earliest..=i128::from(now)).contains(&i128::from(self.at))
    }
}

/// Everything [`judge`] looks at.
#[derive(Clone, Copy, Debug)]
pub struct JudgeInput<'a> {
    pub proofs: &'a [Proof],
    /// The reader's time, in Unix seconds.
    pub now: i64,
    /// Proofs older than this (or dated after `now`) do not count.
    pub max_age_secs: u64,
    /// The site the operator declared, if any.
    pub declared: Option<Coord>,
    /// The licensed destination countries; empty = compare with the declared site only.
    pub allowed: &'a BTreeSet<Country>,
    pub index: &'a CountryIndex,
}

/// A reader's judgement of one GPU's location proofs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Judgement {
    pub verdict: LocationVerdict,
    /// The weakest method among the proofs used (`host-key` if any is); `None` when none counted.
    pub method: Option<Method>,
    /// One disk per proof used.
    pub disks: Vec<Disk>,
    /// The countries the region may lie in (conservative: a superset).
    pub countries: BTreeSet<Country>,
    /// Pairs of landmarks that cannot both be right (their disks do not meet): a
    /// `landmark-disagreement` anomaly for the reader to show.
    pub disagreements: Vec<(String, String)>,
    /// One line that says what decided the verdict.
    pub reason: String,
}

/// Judges a GPU's location proofs: which count, the region they leave, and how it compares with
/// the declaration. Pure and total: any input gives a judgement, nothing panics.
pub fn judge(input: &JudgeInput) -> Judgement {
    let used: Vec<&Proof> = input.proofs.iter().filter(|p| p.counts(input.now, input.max_age_secs)).collect();
    if used.is_empty() {
        let stale = input.proofs.iter().filter(|p| !p.is_fresh(input.now, input.max_age_secs)).count();
        let reason = match (input.proofs.len(), stale) {
            (0, _) => "no location proof".to_string(),
            (n, s) if s == n => {
                format!("none of the {n} location proofs is from the last {} s", input.max_age_secs)
            }
            (n, _) => format!("none of the {n} location proofs is fresh and names a valid landmark site"),
        };
        return unproven(reason);
    }
    let method = if used.iter().any(|p| p.method == Method::HostKey) { Method::HostKey } else { Method::GpuSpdm };
    let subject = method.subject_label();
    let disks: Vec<Disk> = used
        .iter()
        .map(|p| Disk {
            landmark: p.landmark.clone(),
            center: p.landmark_site,
            radius_km: bound_km(p.rtt_ns, p.floor_ns),
        })
        .collect();
    let region = Region::new(disks);
    let disagreements = region.disagreements();
    if !disagreements.is_empty() || region.is_empty() {
        let reason = disagreement_reason(&region, &disagreements, subject);
        return Judgement { method: Some(method), disks: region.disks().to_vec(), disagreements, ..unproven(reason) };
    }
    let tightest = region.tightest().map(|d| (d.landmark.clone(), d.radius_km)).unwrap_or_default();
    let bounds = format!("the round trip to landmark {} bounds {subject} within {}", tightest.0, km(tightest.1));
    let set = region.country_set(input.index);
    let countries = input.index.countries_of(&set);
    let decide = |verdict: LocationVerdict, reason: String| Judgement {
        verdict,
        method: Some(method),
        disks: region.disks().to_vec(),
        countries: countries.clone(),
        disagreements: Vec::new(),
        reason,
    };

    if let Some(site) = input.declared {
        if !site.is_valid() {
            let reason = format!("the declared site {site} is not a place on Earth");
            return decide(LocationVerdict::ContradictsDeclared, reason);
        }
        if !region.contains(site) {
            let reason = match region.farthest_outside(site) {
                Some((d, dist)) => format!(
                    "the declared site is {} from landmark {}, whose round trip bounds {subject} within {}",
                    km(dist),
                    d.landmark,
                    km(d.radius_km)
                ),
                None => format!("the declared site lies outside the region the proofs leave: {bounds}"),
            };
            return decide(LocationVerdict::ContradictsDeclared, reason);
        }
    }

    let (limit, what) = if !input.allowed.is_empty() {
        let allowed = input.index.set_of(input.allowed);
        let licensed = codes(input.allowed.iter().copied());
        if !set.intersects(&allowed) {
            let reason = format!("{bounds}, which reaches none of the licensed countries ({licensed})");
            return decide(LocationVerdict::ContradictsDeclared, reason);
        }
        // The declaration itself must be a licensed place (a site at sea is in no country: the
        // region's countries decide alone).
        if let Some(site) = input.declared {
            let home = input.index.set_at(site);
            if !home.is_empty() && !home.intersects(&allowed) {
                let named = codes(input.index.countries_of(&home).into_iter());
                let reason = format!("the declared site is in {named}, not in the licensed {licensed}");
                return decide(LocationVerdict::ContradictsDeclared, reason);
            }
        }
        (allowed, format!("the licensed {licensed}"))
    } else if let Some(site) = input.declared {
        let home = input.index.set_at(site);
        let named = input.index.countries_of(&home);
        let what = if named.is_empty() {
            "the declared site's country (the boundary data puts it in none)".to_string()
        } else {
            format!("the declared site's country {}", codes(named.into_iter()))
        };
        (home, what)
    } else {
        let reason = format!("{bounds}; there is no declared site or licensed destination to compare it with");
        return decide(LocationVerdict::Unproven, reason);
    };

    let outside = set.without(&limit);
    if outside.is_empty() {
        return decide(LocationVerdict::Consistent, format!("{bounds}; the region lies in {what}"));
    }
    let mut beyond = codes(input.index.countries_of(&outside).into_iter());
    if outside.has_unlisted() {
        beyond = if beyond.is_empty() {
            "a territory without an ISO 3166-1 code".to_string()
        } else {
            format!("{beyond} or a territory without an ISO 3166-1 code")
        };
    }
    decide(LocationVerdict::PossiblyOutside, format!("{bounds}, which may reach {beyond} outside {what}"))
}

impl Judgement {
    /// `unproven`, for `reason`: no proof counted.
    pub fn unproven(reason: String) -> Judgement {
        unproven(reason)
    }
}

fn unproven(reason: String) -> Judgement {
    Judgement {
        verdict: LocationVerdict::Unproven,
        method: None,
        disks: Vec::new(),
        countries: BTreeSet::new(),
        disagreements: Vec::new(),
        reason,
    }
}

fn disagreement_reason(region: &Region, disagreements: &[(String, String)], subject: &str) -> String {
    let Some((a, b)) = disagreements.first() else {
        let names: Vec<&str> = region.disks().iter().map(|d| d.landmark.as_str()).collect();
        return format!("the disks of landmarks {} meet pairwise but have no point in common", names.join(", "));
    };
    let find = |name: &str| region.disks().iter().find(|d| d.landmark == name);
    match (find(a), find(b)) {
        (Some(da), Some(db)) => format!(
            "landmarks {a} and {b} cannot both be right: they are {} apart, and their round trips bound {subject} \
             within {} and {}",
            km(great_circle_km(da.center, db.center)),
            km(da.radius_km),
            km(db.radius_km)
        ),
        _ => format!("landmarks {a} and {b} cannot both be right"),
    }
}

/// `3,120 km`; under 10 km with one decimal.
fn km(x: f64) -> String {
    if !x.is_finite() {
        return format!("{x} km");
    }
    if x < 10.0 {
        return format!("{x:.1} km");
    }
    let digits = format!("{:.0}", x);
    let mut out = String::new();
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    out + " km"
}

/// `CN, HK` (at most eight, then how many more).
fn codes(countries: impl Iterator<Item = Country>) -> String {
    let all: Vec<String> = countries.map(|c| c.code().to_string()).collect();
    if all.len() <= 8 {
        return all.join(", ");
    }
    format!("{} and {} more", all[..8].join(", "), all.len() - 8)
}

/// Four to six decimals: six, less trailing zeros beyond the fourth.
fn degrees(x: f64) -> String {
    let mut s = format!("{x:.6}");
    for _ in 0..2 {
        if s.ends_with('0') {
            s.pop();
        }
    }
    s
}
