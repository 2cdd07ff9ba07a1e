//! Which countries a place or a region may be in, from the `country-boundaries` crate's
//! embedded data: OpenStreetMap-derived borders (© OpenStreetMap contributors, ODbL), simplified
//! so that settlements and major roads fall on the right side, split into 1° raster cells. The
//! data knows no sea borders: water is in no country.
//!
//! Built once: every 1° cell's countries become a small bit set, so a region's countries are a
//! union of cell sets. Cell sets are the crate's cell-level answer (every country whose border
//! touches the cell), so they can only name too many countries, never too few.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::sync::OnceLock;

use country_boundaries::{BoundingBox, CountryBoundaries, LatLon, BOUNDARIES_ODBL_360X180};

use super::Coord;
use crate::country::Country;
use crate::Error;

/// The cell grid: 1°, the crate's finest shipped raster (360 × 180).
pub(super) const ROWS: usize = 180;
pub(super) const COLS: usize = 360;
/// Cells are grouped in blocks of 8° × 8° (23 rows, the last one half, × 45 columns) whose
/// sets are their cells' union: a block that adds no country is skipped whole.
pub(super) const BLOCK: usize = 8;
const BLOCK_ROWS: usize = ROWS.div_ceil(BLOCK);
const BLOCK_COLS: usize = COLS / BLOCK;
/// The quadtree inside a cell works on boxes whose edges and centers lie on a 1/32° grid.
pub(super) const STEPS_PER_DEGREE: i32 = 32;

/// The slot of every area whose id is two letters but no ISO 3166-1 code (Kosovo's `XK`): never
/// in an allowed set, never in a `BTreeSet<Country>`, and so always "possibly outside".
const UNLISTED: u8 = 255;

/// Ids in the data that are not ISO 3166-1 codes but sit inside an ISO country's area, which the
/// data lists at the same points (Tenerife is `IC` and `ES`): counted as that country.
const NESTED: &[(&str, &str)] = &[("AC", "SH"), ("CP", "FR"), ("DG", "IO"), ("EA", "ES"), ("IC", "ES"), ("TA", "SH")];

/// The embedded country boundaries, indexed for location judgements.
pub struct CountryIndex {
    boundaries: CountryBoundaries,
    /// Slot → country.
    countries: Vec<Country>,
    slot_of_country: HashMap<Country, u8>,
    /// The data's alpha-2 ids → slot; subdivision ids (`US-TX`) are not here.
    slot_of_id: HashMap<String, u8>,
    /// Row-major from the south-west cell (−90°, −180°): index into `sets`.
    cells: Vec<u16>,
    sets: Vec<CountrySet>,
    /// Row-major 8° blocks: the union of their cells' sets.
    blocks: Vec<CountrySet>,
    /// (sin, cos) of every latitude −90 + k/32° and longitude −180 + k/32°, so the quadtree's
    /// boxes cost no trigonometry.
    lat_trig: Vec<(f64, f64)>,
    lon_trig: Vec<(f64, f64)>,
}

impl CountryIndex {
    /// The boundaries compiled into this binary, indexed once (tens of milliseconds).
    pub fn embedded() -> Result<&'static CountryIndex, Error> {
        static INDEX: OnceLock<Result<CountryIndex, Error>> = OnceLock::new();
        INDEX.get_or_init(CountryIndex::build).as_ref().map_err(Clone::clone)
    }

    /// The countries the data puts `p` in: none at sea, two for a territory inside another
    /// (Hong Kong is `HK` and `CN` in this data).
    pub fn countries_at(&self, p: Coord) -> BTreeSet<Country> {
        self.countries_of(&self.set_at(p))
    }

    pub(super) fn set_at(&self, p: Coord) -> CountrySet {
        let mut set = CountrySet::default();
        if !p.is_valid() {
            return set;
        }
        let Ok(at) = LatLon::new(p.lat, p.lon) else { return set };
        for id in self.boundaries.ids(at) {
            if let Some(&slot) = self.slot_of_id.get(id) {
                set.insert(slot);
            }
        }
        set
    }

    /// The set of `countries`, less those the data has no area for.
    pub(super) fn set_of(&self, countries: &BTreeSet<Country>) -> CountrySet {
        let mut set = CountrySet::default();
        for c in countries {
            if let Some(&slot) = self.slot_of_country.get(c) {
                set.insert(slot);
            }
        }
        set
    }

    /// The countries in `set` (without the unlisted slot).
    pub(super) fn countries_of(&self, set: &CountrySet) -> BTreeSet<Country> {
        set.slots().filter_map(|s| self.countries.get(usize::from(s)).copied()).collect()
    }

    pub(super) fn cell(&self, row: usize, col: usize) -> &CountrySet {
        const EMPTY: CountrySet = CountrySet([0; 4]);
        let set = self.cells.get(row * COLS + col).and_then(|&i| self.sets.get(usize::from(i)));
        set.unwrap_or(&EMPTY)
    }

    /// The countries of the block holding cell (`row`, `col`).
    pub(super) fn block(&self, row: usize, col: usize) -> &CountrySet {
        const EMPTY: CountrySet = CountrySet([0; 4]);
        self.blocks.get(row / BLOCK * BLOCK_COLS + col / BLOCK).unwrap_or(&EMPTY)
    }

    /// The unit vector of the grid point `lat_k` and `lon_k` steps of 1/32° from (−90°, −180°).
    pub(super) fn grid_point(&self, lat_k: i32, lon_k: i32) -> [f64; 3] {
        let trig = |table: &[(f64, f64)], k: i32, origin: f64| {
            usize::try_from(k)
                .ok()
                .and_then(|k| table.get(k).copied())
                .unwrap_or_else(|| (origin + f64::from(k) / f64::from(STEPS_PER_DEGREE)).to_radians().sin_cos())
        };
        let (sin_lat, cos_lat) = trig(&self.lat_trig, lat_k, -90.0);
        let (sin_lon, cos_lon) = trig(&self.lon_trig, lon_k, -180.0);
        [cos_lat * cos_lon, cos_lat * sin_lon, sin_lat]
    }

    fn build() -> Result<CountryIndex, Error> {
        let boundaries = CountryBoundaries::from_reader(BOUNDARIES_ODBL_360X180).map_err(data_error)?;
        let mut index = CountryIndex {
            boundaries,
            countries: Vec::new(),
            slot_of_country: HashMap::new(),
            slot_of_id: HashMap::new(),
            cells: Vec::with_capacity(ROWS * COLS),
            sets: Vec::new(),
            blocks: vec![CountrySet::default(); BLOCK_ROWS * BLOCK_COLS],
            lat_trig: trig_table(-90.0, ROWS),
            lon_trig: trig_table(-180.0, COLS),
        };
        let mut distinct: HashMap<CountrySet, u16> = HashMap::new();
        for row in 0..ROWS {
            for col in 0..COLS {
                let south = row as f64 - 90.0;
                let west = col as f64 - 180.0;
                // A box well inside the cell, so the crate's raster lookup returns this cell alone.
                let inner =
                    BoundingBox::new(south + 0.25, west + 0.25, south + 0.75, west + 0.75).map_err(data_error)?;
                let ids: Vec<String> = index.boundaries.intersecting_ids(inner).into_iter().map(String::from).collect();
                let mut set = CountrySet::default();
                for id in &ids {
                    if let Some(slot) = index.slot(id)? {
                        set.insert(slot);
                    }
                }
                let next = u16::try_from(distinct.len()).map_err(|_| data_error("too many distinct cells"))?;
                let i = *distinct.entry(set).or_insert(next);
                index.cells.push(i);
                if let Some(block) = index.blocks.get_mut(row / BLOCK * BLOCK_COLS + col / BLOCK) {
                    *block = block.union(&set);
                }
            }
        }
        let mut sets: Vec<(u16, CountrySet)> = distinct.into_iter().map(|(s, i)| (i, s)).collect();
        sets.sort_by_key(|(i, _)| *i);
        index.sets = sets.into_iter().map(|(_, s)| s).collect();
        Ok(index)
    }

    /// The slot of a data id: `None` for a subdivision (`US-TX`, `CN-SH`).
    fn slot(&mut self, id: &str) -> Result<Option<u8>, Error> {
        if let Some(&slot) = self.slot_of_id.get(id) {
            return Ok(Some(slot));
        }
        if id.len() != 2 || !id.bytes().all(|b| b.is_ascii_uppercase()) {
            return Ok(None);
        }
        let code = NESTED.iter().find(|(nested, _)| *nested == id).map_or(id, |(_, parent)| parent);
        let slot = match Country::parse(code) {
            Ok(country) => match self.slot_of_country.get(&country) {
                Some(&slot) => slot,
                None => {
                    let slot = u8::try_from(self.countries.len())
                        .ok()
                        .filter(|&s| s < UNLISTED)
                        .ok_or_else(|| data_error("more than 255 countries"))?;
                    self.countries.push(country);
                    self.slot_of_country.insert(country, slot);
                    slot
                }
            },
            Err(_) => UNLISTED,
        };
        self.slot_of_id.insert(id.to_string(), slot);
        Ok(Some(slot))
    }
}

impl fmt::Debug for CountryIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CountryIndex")
            .field("countries", &self.countries.len())
            .field("distinct_cells", &self.sets.len())
            .finish_non_exhaustive()
    }
}

/// A set of country slots (256 bits; slot 255 = a territory without an ISO code).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub(super) struct CountrySet([u64; 4]);

impl CountrySet {
    fn insert(&mut self, slot: u8) {
        self.0[usize::from(slot / 64)] |= 1 << (slot % 64);
    }

    pub(super) fn union(&self, other: &CountrySet) -> CountrySet {
        CountrySet(std::array::from_fn(|i| self.0[i] | other.0[i]))
    }

    /// The slots in `self` and not in `other`.
    pub(super) fn without(&self, other: &CountrySet) -> CountrySet {
        CountrySet(std::array::from_fn(|i| self.0[i] & !other.0[i]))
    }

    pub(super) fn intersects(&self, other: &CountrySet) -> bool {
        self.0.iter().zip(&other.0).any(|(a, b)| a & b != 0)
    }

    pub(super) fn is_empty(&self) -> bool {
        self.0.iter().all(|&w| w == 0)
    }

    pub(super) fn has_unlisted(&self) -> bool {
        self.0[3] & (1 << 63) != 0
    }

    fn slots(&self) -> impl Iterator<Item = u8> + '_ {
        (0..=255u8).filter(|&s| self.0[usize::from(s / 64)] & (1 << (s % 64)) != 0)
    }
}

/// (sin, cos) at `origin + k/32°` for k in 0..=degrees·32.
fn trig_table(origin: f64, degrees: usize) -> Vec<(f64, f64)> {
    (0..=degrees as i32 * STEPS_PER_DEGREE)
        .map(|k| (origin + f64::from(k) / f64::from(STEPS_PER_DEGREE)).to_radians().sin_cos())
        .collect()
}

fn data_error(e: impl fmt::Display) -> Error {
    Error::Catalog { table: "country-boundaries", line: 0, message: e.to_string() }
}
