//! Disks on the sphere and their intersection: the feasible region of a set of location proofs.
//!
//! Geometry is done on unit vectors with angles in radians: a disk is a spherical cap, "inside"
//! is a dot product against the cosine of the cap's angular radius. A tolerance of one metre
//! (`EPS_KM`) is always given to the host's side: a point within a metre of a disk counts as
//! inside, so rounding can make a region larger, never smaller.

use std::collections::BTreeSet;
use std::f64::consts::PI;

use serde::{Deserialize, Serialize};

use super::countries::{CountryIndex, CountrySet, BLOCK, COLS, ROWS, STEPS_PER_DEGREE};
use super::{great_circle_km, Coord, EARTH_RADIUS_KM};
use crate::country::Country;

/// One landmark's bound: the host lies within `radius_km` of `center` (the landmark's site).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Disk {
    pub landmark: String,
    pub center: Coord,
    pub radius_km: f64,
}

/// A box in latitude and longitude, in degrees. `west > east` means the box crosses the
/// antimeridian; `west = -180, east = 180` means every longitude.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LatLonBox {
    pub south: f64,
    pub north: f64,
    pub west: f64,
    pub east: f64,
}

impl LatLonBox {
    pub fn crosses_antimeridian(&self) -> bool {
        self.west > self.east
    }

    pub fn contains(&self, p: Coord) -> bool {
        let lon_in = if self.crosses_antimeridian() {
            p.lon >= self.west || p.lon <= self.east
        } else {
            (self.west..=self.east).contains(&p.lon)
        };
        p.is_valid() && (self.south..=self.north).contains(&p.lat) && lon_in
    }
}

/// The intersection of disks: where the host can be if every proof is right. No disks = the
/// whole Earth. A disk whose center is not a place on Earth, or whose radius is NaN or
/// negative, holds no point, so a region with one is empty.
#[derive(Clone, Debug)]
pub struct Region {
    disks: Vec<Disk>,
    caps: Vec<Cap>,
}

impl Region {
    pub fn new(disks: Vec<Disk>) -> Region {
        let caps = disks.iter().map(Cap::of).collect();
        Region { disks, caps }
    }

    pub fn disks(&self) -> &[Disk] {
        &self.disks
    }

    /// The disk with the smallest radius (the landmark that says the most), if any.
    pub fn tightest(&self) -> Option<&Disk> {
        self.disks.iter().filter(|d| !d.radius_km.is_nan()).min_by(|a, b| a.radius_km.total_cmp(&b.radius_km))
    }

    /// Whether `p` lies in every disk (within a metre).
    pub fn contains(&self, p: Coord) -> bool {
        p.is_valid() && self.holds(unit(p))
    }

    /// Pairs of landmarks whose disks do not meet (centers farther apart than the two radii
    /// together): two landmarks that cannot both be right. In the order the disks were given.
    pub fn disagreements(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for (i, a) in self.disks.iter().enumerate() {
            for b in &self.disks[i + 1..] {
                if great_circle_km(a.center, b.center) > a.radius_km + b.radius_km + 2.0 * EPS_KM {
                    out.push((a.landmark.clone(), b.landmark.clone()));
                }
            }
        }
        out
    }

    /// Whether no point lies in every disk. Pairwise overlap is not enough for three or more
    /// disks, so this looks for a common point where one must be if any is: a disk's center, a
    /// point of a disk's edge (for a disk inside all the others), or where two edges cross (a
    /// corner of the intersection).
    pub fn is_empty(&self) -> bool {
        self.common_point().is_none()
    }

    /// A box that holds the region; `None` when the disks' latitude bands do not overlap (the
    /// region is then empty) or a disk holds no point.
    pub fn bounding_box(&self) -> Option<LatLonBox> {
        if self.caps.iter().any(|c| !c.usable) {
            return None;
        }
        let mut out = LatLonBox { south: -90.0, north: 90.0, west: -180.0, east: 180.0 };
        let mut narrowest = f64::INFINITY;
        for cap in &self.caps {
            let reach = (cap.rho + EPS_RAD).to_degrees();
            out.south = out.south.max(cap.lat - reach);
            out.north = out.north.min(cap.lat + reach);
            if cap.lat - reach <= -90.0 || cap.lat + reach >= 90.0 {
                continue;
            }
            // The meridians tangent to a cap of angular radius ρ around latitude φ lie
            // asin(sin ρ / cos φ) east and west of its center.
            let ratio = (cap.rho + EPS_RAD).min(PI).sin() / cap.lat.to_radians().cos();
            if ratio < 1.0 {
                let half = ratio.asin().to_degrees();
                if half < narrowest {
                    narrowest = half;
                    out.west = wrap_degrees(cap.lon - half);
                    out.east = wrap_degrees(cap.lon + half);
                }
            }
        }
        (out.south <= out.north).then_some(out)
    }

    /// The countries the region may lie in: every country whose boundary data touches a 1°
    /// cell that the region may touch. Conservative: it can name a country the region misses
    /// (a neighbour sharing a cell), never miss one it reaches. Water is in no country.
    pub fn countries(&self, index: &CountryIndex) -> BTreeSet<Country> {
        index.countries_of(&self.country_set(index))
    }

    /// Whether some disk lies entirely within `km` of `site`: then the whole region does. A
    /// sufficient test, not a necessary one.
    pub fn within_km_of(&self, site: Coord, km: f64) -> bool {
        site.is_valid()
            && self
                .disks
                .iter()
                .zip(&self.caps)
                .any(|(d, c)| c.usable && great_circle_km(site, d.center) + d.radius_km <= km)
    }

    /// Whether every point of the region lies in an allowed country. Conservative: false when
    /// the region is empty, touches no allowed country, or may touch another one.
    pub fn inside(&self, allowed: &BTreeSet<Country>, index: &CountryIndex) -> bool {
        if self.is_empty() {
            return false;
        }
        let set = self.country_set(index);
        let allowed = index.set_of(allowed);
        set.intersects(&allowed) && set.without(&allowed).is_empty()
    }

    /// The disk that `p` lies farthest outside of, with `p`'s distance from its center.
    pub(super) fn farthest_outside(&self, p: Coord) -> Option<(&Disk, f64)> {
        self.disks
            .iter()
            .map(|d| (d, great_circle_km(p, d.center)))
            .filter(|(d, dist)| *dist > d.radius_km)
            .max_by(|(a, da), (b, db)| (da - a.radius_km).total_cmp(&(db - b.radius_km)))
    }

    /// The country cells the region may touch, as a set. Walks the bounding box in 8° blocks,
    /// then 1° cells: a block or cell that adds no country to those already found is skipped
    /// without geometry, a block that no disk reaches is skipped whole, and a cell that would
    /// add a country is refined as a quadtree (down to 1/16°) until a box is found inside
    /// every disk, or every box outside one. Refinement has a budget; past it a cell that might
    /// touch the region counts, which only makes the answer larger.
    pub(super) fn country_set(&self, index: &CountryIndex) -> CountrySet {
        let mut found = CountrySet::default();
        let Some(bbox) = self.bounding_box() else { return found };
        let row = |lat: f64| ((lat + 90.0).floor().max(0.0) as usize).min(ROWS - 1);
        let col = |lon: f64| ((lon + 180.0).floor().max(0.0) as usize).min(COLS - 1);
        let (first_row, last_row) = (row(bbox.south), row(bbox.north));
        let (first_col, last_col) = (col(bbox.west), col(bbox.east));
        let cols: Vec<usize> = if bbox.crosses_antimeridian() {
            (first_col..COLS).chain(0..=last_col).collect()
        } else {
            (first_col..=last_col).collect()
        };
        let mut budget = REFINE_BUDGET;
        for block_row in first_row / BLOCK..=last_row / BLOCK {
            let rows = first_row.max(block_row * BLOCK)..=last_row.min(block_row * BLOCK + BLOCK - 1);
            for block_cols in cols.chunk_by(|a, b| a / BLOCK == b / BLOCK) {
                let (Some(&west), Some(&east)) = (block_cols.first(), block_cols.last()) else { continue };
                if index.block(*rows.start(), west).without(&found).is_empty() {
                    continue;
                }
                if !self.may_reach(index, GeoBox::of_cells(*rows.start(), *rows.end(), west, east)) {
                    continue;
                }
                for r in rows.clone() {
                    for &c in block_cols {
                        let cell = index.cell(r, c);
                        if !cell.without(&found).is_empty()
                            && self.touches(index, GeoBox::of_cells(r, r, c, c), 0, &mut budget)
                        {
                            found = found.union(cell);
                        }
                    }
                }
            }
        }
        found
    }

    fn holds(&self, v: [f64; 3]) -> bool {
        self.caps.iter().all(|c| dot(c.v, v) >= c.cos_reach)
    }

    fn common_point(&self) -> Option<[f64; 3]> {
        if self.caps.iter().any(|c| !c.usable) {
            return None;
        }
        if self.caps.is_empty() {
            return Some([0.0, 0.0, 1.0]);
        }
        let centers = self.caps.iter().map(|c| c.v);
        let edges = self.caps.iter().filter_map(edge_point);
        let crossings = self
            .caps
            .iter()
            .enumerate()
            .flat_map(|(i, a)| self.caps[i + 1..].iter().flat_map(move |b| crossings(a, b).into_iter().flatten()));
        centers.chain(edges).chain(crossings).find(|&v| self.holds(v))
    }

    /// Whether the box may meet the region: no disk provably misses it. A box that straddles
    /// an edge is split.
    fn touches(&self, index: &CountryIndex, b: GeoBox, depth: u32, budget: &mut u32) -> bool {
        *budget = budget.saturating_sub(1);
        match self.relate(index, b) {
            Relation::Outside => false,
            Relation::Inside => true,
            Relation::Straddles if depth >= MAX_DEPTH || *budget == 0 => true,
            Relation::Straddles => b.quarters().into_iter().any(|q| self.touches(index, q, depth + 1, budget)),
        }
    }

    fn may_reach(&self, index: &CountryIndex, b: GeoBox) -> bool {
        self.relate(index, b) != Relation::Outside
    }

    /// Where a box lies against the region, bounded by the box's center and circumradius
    /// (triangle inequality), compared as cosines.
    fn relate(&self, index: &CountryIndex, b: GeoBox) -> Relation {
        let (center, cos_rad) = b.center_and_radius(index);
        let sin_rad = (1.0 - cos_rad * cos_rad).max(0.0).sqrt();
        // An upper bound of the radius without trigonometry: tan r ≥ r below 90°; for a box of
        // a few degrees the two differ by well under a milliradian.
        let rad = if cos_rad > 0.0 { sin_rad / cos_rad } else { PI };
        let mut inside_all = true;
        for cap in &self.caps {
            let cos_angle = dot(cap.v, center);
            // Missed: angle − r > ρ + 1 m, i.e. cos(angle) < cos(ρ + 1 m + r), while that sum
            // stays under π (where the cosine decreases).
            if cap.rho_reach + rad < PI && cos_angle < cap.cos_reach * cos_rad - cap.sin_reach * sin_rad {
                return Relation::Outside;
            }
            // Inside: angle + r ≤ ρ, i.e. cos(angle) ≥ cos(ρ − r), for ρ ≥ r.
            if cap.rho < rad || cos_angle < cap.cos_rho * cos_rad + cap.sin_rho * sin_rad {
                inside_all = false;
            }
        }
        if inside_all {
            Relation::Inside
        } else {
            Relation::Straddles
        }
    }
}

/// Everything within a metre of a disk counts as inside it.
const EPS_KM: f64 = 0.001;
const EPS_RAD: f64 = EPS_KM / EARTH_RADIUS_KM;
/// A 1° cell is refined down to boxes of 1/16° (about 7 km).
const MAX_DEPTH: u32 = 4;
/// Boxes tested per region before refinement stops (and what is left counts as touched).
const REFINE_BUDGET: u32 = 4096;

/// A disk as the geometry uses it.
#[derive(Clone, Copy, Debug)]
struct Cap {
    v: [f64; 3],
    lat: f64,
    lon: f64,
    /// Angular radius in radians, within 0..=π, and its sine and cosine.
    rho: f64,
    sin_rho: f64,
    cos_rho: f64,
    /// ρ + 1 m (at most π), and its sine and cosine: a point whose dot product with `v`
    /// reaches `cos_reach` is inside.
    rho_reach: f64,
    sin_reach: f64,
    cos_reach: f64,
    usable: bool,
}

impl Cap {
    fn of(d: &Disk) -> Cap {
        let usable = d.center.is_valid() && d.radius_km >= 0.0;
        let rho = if usable { (d.radius_km / EARTH_RADIUS_KM).min(PI) } else { 0.0 };
        let rho_reach = (rho + EPS_RAD).min(PI);
        let (sin_rho, cos_rho) = rho.sin_cos();
        let (sin_reach, cos_reach) = rho_reach.sin_cos();
        Cap {
            v: if usable { unit(d.center) } else { [0.0, 0.0, 1.0] },
            lat: d.center.lat,
            lon: d.center.lon,
            rho,
            sin_rho,
            cos_rho,
            rho_reach,
            sin_reach,
            cos_reach: if usable { cos_reach } else { f64::INFINITY },
            usable,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Relation {
    Outside,
    Inside,
    Straddles,
}

/// A latitude–longitude box in steps of 1/32° from (−90°, −180°): whole cells (at most an 8°
/// block), never crossing the antimeridian, split down to 1/16° so every edge and center is a
/// grid point.
#[derive(Clone, Copy, Debug)]
struct GeoBox {
    south: i32,
    north: i32,
    west: i32,
    east: i32,
}

impl GeoBox {
    /// The cells from row `south` to `north` and column `west` to `east`, inclusive.
    fn of_cells(south: usize, north: usize, west: usize, east: usize) -> GeoBox {
        // Invariant: rows < 180 and columns < 360, so these fit an i32 many times over.
        let step = |cell: usize| cell as i32 * STEPS_PER_DEGREE;
        GeoBox { south: step(south), north: step(north + 1), west: step(west), east: step(east + 1) }
    }

    /// The box's center and the cosine of the angle to its farthest point. For a box a few
    /// degrees wide the farthest points are corners: along a parallel, distance grows with the
    /// longitude difference; along the edge meridian, it is largest at an end.
    fn center_and_radius(&self, index: &CountryIndex) -> ([f64; 3], f64) {
        let center = index.grid_point((self.south + self.north) / 2, (self.west + self.east) / 2);
        let south_corner = index.grid_point(self.south, self.east);
        let north_corner = index.grid_point(self.north, self.east);
        (center, dot(center, south_corner).min(dot(center, north_corner)).clamp(-1.0, 1.0))
    }

    fn quarters(&self) -> [GeoBox; 4] {
        let lat = (self.south + self.north) / 2;
        let lon = (self.west + self.east) / 2;
        [
            GeoBox { south: self.south, north: lat, west: self.west, east: lon },
            GeoBox { south: self.south, north: lat, west: lon, east: self.east },
            GeoBox { south: lat, north: self.north, west: self.west, east: lon },
            GeoBox { south: lat, north: self.north, west: lon, east: self.east },
        ]
    }
}

/// A point on the edge of a cap (for a cap that lies inside all the others).
fn edge_point(c: &Cap) -> Option<[f64; 3]> {
    let axis = if c.v[2].abs() < 0.9 { [0.0, 0.0, 1.0] } else { [1.0, 0.0, 0.0] };
    let u = normalize(cross(c.v, axis))?;
    let (s, co) = c.rho.sin_cos();
    Some([co * c.v[0] + s * u[0], co * c.v[1] + s * u[1], co * c.v[2] + s * u[2]])
}

/// Where the edges of two caps cross: the points x with x·a = cos ρa and x·b = cos ρb. For
/// edges that just miss, the point between them on the line of centers (the containment test
/// then decides, with its tolerance).
fn crossings(a: &Cap, b: &Cap) -> [Option<[f64; 3]>; 2] {
    let n = cross(a.v, b.v);
    let sin2 = dot(n, n);
    if sin2 < 1e-24 || a.rho >= PI || b.rho >= PI {
        return [None, None];
    }
    let cos_t = dot(a.v, b.v);
    let (ca, cb) = (a.rho.cos(), b.rho.cos());
    let alpha = (ca - cb * cos_t) / sin2;
    let beta = (cb - ca * cos_t) / sin2;
    let base = [alpha * a.v[0] + beta * b.v[0], alpha * a.v[1] + beta * b.v[1], alpha * a.v[2] + beta * b.v[2]];
    let gamma = ((1.0 - dot(base, base)) / sin2).max(0.0).sqrt();
    let at = |g: f64| normalize([base[0] + g * n[0], base[1] + g * n[1], base[2] + g * n[2]]);
    [at(gamma), at(-gamma)]
}

pub(super) fn unit(p: Coord) -> [f64; 3] {
    let (sin_lat, cos_lat) = p.lat.to_radians().sin_cos();
    let (sin_lon, cos_lon) = p.lon.to_radians().sin_cos();
    [cos_lat * cos_lon, cos_lat * sin_lon, sin_lat]
}

fn dot(a: [f64; 3], b: [f64; 3]) -> f64 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}

fn cross(a: [f64; 3], b: [f64; 3]) -> [f64; 3] {
    [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]]
}

fn normalize(v: [f64; 3]) -> Option<[f64; 3]> {
    let n = dot(v, v).sqrt();
    (n > 1e-12 && n.is_finite()).then(|| [v[0] / n, v[1] / n, v[2] / n])
}

/// Into −180..=180.
fn wrap_degrees(lon: f64) -> f64 {
    let w = (lon + 180.0).rem_euclid(360.0) - 180.0;
    if w == -180.0 && lon > 0.0 {
        180.0
    } else {
        w
    }
}
