//! The location map's geometry, pure: a [`View`] fitted around disks and points, its
//! equirectangular [`Projection`], the points of a geodesic circle ([`circle`]; [`outline`] for
//! disks that hold a pole or the whole Earth), [`runs`] of cells merged per row, and the
//! [`Drawing`] a GPU's page renders as inline SVG: land from the embedded country index, a
//! graticule, each landmark's disk, the feasible region, the landmarks and the declared site.
//! No IO and no markup here: the template writes the SVG and escapes every text in it.
//!
//! Coordinates on the map may run past ±180° of longitude (a view across the antimeridian has a
//! west edge and a width, not an east edge below its west one): a point's longitude is read
//! east of the view's west edge, a disk's ring is drawn at each 360° shift the view shows.

use std::collections::BTreeMap;
use std::f64::consts::{FRAC_PI_2, PI};
use std::fmt::Write as _;
use std::sync::OnceLock;

use chipledger_domain::country::Country;
use chipledger_domain::location::{Coord, CountryIndex, Disk, Region, EARTH_RADIUS_KM};

/// Points on a disk's edge.
pub(crate) const CIRCLE_POINTS: usize = 90;
/// The map's largest size, in pixels.
const MAX_WIDTH: f64 = 760.0;
const MAX_HEIGHT: f64 = 440.0;
/// Columns the feasible region is sampled on (rows follow the map's shape).
const REGION_COLUMNS: usize = 200;

/// What the map shows: latitudes `south..north`, longitudes from `west` (−180..180) over `span`
/// degrees (at most 360), so a view across the antimeridian runs past 180°.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct View {
    pub south: f64,
    pub north: f64,
    pub west: f64,
    pub span: f64,
}

impl View {
    pub(crate) const WORLD: View = View { south: -90.0, north: 90.0, west: -180.0, span: 360.0 };

    /// The smallest view that holds every disk (its bounding box) and every point, with a margin
    /// of 8 % (at least half a degree) on each side and at least 2° each way. Disks and points
    /// that are not on Earth are left out; with nothing left, the whole world.
    pub(crate) fn around(disks: &[Disk], points: &[Coord]) -> View {
        let mut arcs: Vec<(f64, f64)> = Vec::new();
        let (mut south, mut north) = (f64::INFINITY, f64::NEG_INFINITY);
        for d in disks {
            let Some(b) = Region::new(vec![d.clone()]).bounding_box() else { continue };
            let len = if b.crosses_antimeridian() { b.east + 360.0 - b.west } else { b.east - b.west };
            arcs.push((b.west, len));
            south = south.min(b.south);
            north = north.max(b.north);
        }
        for p in points.iter().filter(|p| p.is_valid()) {
            arcs.push((p.lon, 0.0));
            south = south.min(p.lat);
            north = north.max(p.lat);
        }
        if arcs.is_empty() {
            return View::WORLD;
        }
        let (mut west, mut span) = lon_cover(&arcs);
        if span < 360.0 {
            let margin = (span * 0.08).max(0.5);
            let grow = (2.0 - span - 2.0 * margin).max(0.0) / 2.0;
            west -= margin + grow;
            span += 2.0 * (margin + grow);
        }
        if span >= 360.0 {
            (west, span) = (-180.0, 360.0);
        }
        let margin = ((north - south) * 0.08).max(0.5);
        let grow = (2.0 - (north - south) - 2.0 * margin).max(0.0) / 2.0;
        let (south, north) = clamp_band(south - margin - grow, north + margin + grow);
        View { south, north, west: wrap_lon(west), span }
    }
}

/// An equirectangular projection of a view into pixels: `x` grows east, `y` south, and a degree
/// of longitude is the cosine of the view's middle latitude (its standard parallel) times a
/// degree of latitude.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Projection {
    pub view: View,
    pub width: f64,
    pub height: f64,
    px_lon: f64,
    px_lat: f64,
}

impl Projection {
    /// `view` fitted into the map's largest size; first widened in latitude or longitude (about
    /// its middle) so that the map is no flatter than 3:1 and at least 7:5 wide.
    pub(crate) fn fit(view: View) -> Projection {
        let mut v = view;
        let k = |v: &View| ((v.south + v.north) / 2.0).to_radians().cos().max(0.2);
        let (w, h) = (v.span * k(&v), v.north - v.south);
        if h < w / 3.0 {
            let grow = (w / 3.0 - h) / 2.0;
            (v.south, v.north) = clamp_band(v.south - grow, v.north + grow);
        }
        let (w, h) = (v.span * k(&v), v.north - v.south);
        if w < h * 1.4 && v.span < 360.0 {
            let target = (h * 1.4 / k(&v)).min(360.0);
            v.west = wrap_lon(v.west - (target - v.span) / 2.0);
            v.span = target;
        }
        let k = k(&v);
        let scale = (MAX_WIDTH / (v.span * k)).min(MAX_HEIGHT / (v.north - v.south).max(1e-9));
        Projection {
            view: v,
            width: v.span * k * scale,
            height: (v.north - v.south) * scale,
            px_lon: scale * k,
            px_lat: scale,
        }
    }

    /// Where `p` lies on the map, in pixels from the top-left corner; its longitude is read east
    /// of the view's west edge.
    pub(crate) fn project(&self, p: Coord) -> (f64, f64) {
        self.xy(p.lat, self.view.west + (p.lon - self.view.west).rem_euclid(360.0))
    }

    /// The point at a pixel (its longitude back in −180..180).
    pub(crate) fn unproject(&self, x: f64, y: f64) -> Coord {
        Coord { lat: self.view.north - y / self.px_lat, lon: wrap_lon(self.view.west + x / self.px_lon) }
    }

    /// A pixel for an unwrapped longitude (not brought into the view).
    fn xy(&self, lat: f64, lon: f64) -> (f64, f64) {
        ((lon - self.view.west) * self.px_lon, (self.view.north - lat) * self.px_lat)
    }
}

/// `n` points on the edge of the disk of `radius_km` around `center`, by the destination-point
/// formula at bearings 0°, 360°/n, …; each longitude is the center's plus an offset within
/// ±180°, so a ring stays continuous across the antimeridian. The radius is taken within
/// 0..=half the Earth's circumference; a center off Earth or a radius that is not a number
/// gives no point.
pub(crate) fn circle(center: Coord, radius_km: f64, n: usize) -> Vec<Coord> {
    if !center.is_valid() || radius_km.is_nan() {
        return Vec::new();
    }
    let delta = (radius_km / EARTH_RADIUS_KM).clamp(0.0, PI);
    let (sin_d, cos_d) = delta.sin_cos();
    let (sin_lat, cos_lat) = center.lat.to_radians().sin_cos();
    (0..n)
        .map(|i| {
            let bearing = 2.0 * PI * i as f64 / n as f64;
            let lat = (sin_lat * cos_d + cos_lat * sin_d * bearing.cos()).clamp(-1.0, 1.0).asin();
            let dlon = (bearing.sin() * sin_d * cos_lat).atan2(cos_d - sin_lat * lat.sin());
            Coord { lat: lat.to_degrees(), lon: center.lon + dlon.to_degrees() }
        })
        .collect()
}

/// A disk as the map draws it.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Outline {
    /// Nothing to fill: a radius of zero, below zero or not a number, or a center off Earth.
    Empty,
    /// The disk holds neither pole: a ring around its center.
    Ring(Vec<Coord>),
    /// The disk holds one pole: its edge crosses every meridian once, so it is a line from the
    /// center's longitude −180° to +180°, filled up to the pole.
    Cap { edge: Vec<Coord>, north: bool },
    /// The disk holds both poles: everything but a ring around the antipode.
    AllBut(Vec<Coord>),
    /// The disk holds the whole Earth.
    All,
}

/// How to draw `d` with `n` points on its edge.
pub(crate) fn outline(d: &Disk, n: usize) -> Outline {
    let c = d.center;
    if !c.is_valid() || d.radius_km.is_nan() || d.radius_km <= 0.0 || n == 0 {
        return Outline::Empty;
    }
    let delta = d.radius_km / EARTH_RADIUS_KM;
    if delta >= PI {
        return Outline::All;
    }
    let lat = c.lat.to_radians();
    let (north, south) = (delta >= FRAC_PI_2 - lat, delta >= FRAC_PI_2 + lat);
    match (north, south) {
        (false, false) => Outline::Ring(circle(c, d.radius_km, n)),
        (true, true) => {
            let antipode = Coord { lat: -c.lat, lon: if c.lon > 0.0 { c.lon - 180.0 } else { c.lon + 180.0 } };
            Outline::AllBut(circle(antipode, PI * EARTH_RADIUS_KM - d.radius_km, n))
        }
        (north, _) => {
            // Along the meridian `dlon` east of the center, cos(distance) = A sin φ + B cos φ =
            // M cos(φ − α): inside is φ within β of α, and the edge is the end away from the
            // held pole.
            let (sin_lat, cos_lat) = lat.sin_cos();
            let edge = (0..=n)
                .map(|i| {
                    let dlon = -180.0 + 360.0 * i as f64 / n as f64;
                    let (a, b) = (sin_lat, cos_lat * dlon.to_radians().cos());
                    let m = a.hypot(b);
                    let (alpha, beta) = (a.atan2(b), (delta.cos() / m.max(1e-300)).clamp(-1.0, 1.0).acos());
                    let phi = if north { (alpha - beta).max(-FRAC_PI_2) } else { (alpha + beta).min(FRAC_PI_2) };
                    Coord { lat: phi.to_degrees(), lon: c.lon + dlon }
                })
                .collect();
            Outline::Cap { edge, north }
        }
    }
}

/// The runs of consecutive `true` cells, as (first, length).
pub(crate) fn runs(cells: impl IntoIterator<Item = bool>) -> Vec<(usize, usize)> {
    let mut out: Vec<(usize, usize)> = Vec::new();
    let mut open: Option<usize> = None;
    let mut n = 0;
    for (i, on) in cells.into_iter().enumerate() {
        match (on, open) {
            (true, None) => open = Some(i),
            (false, Some(start)) => {
                out.push((start, i - start));
                open = None;
            }
            _ => {}
        }
        n = i + 1;
    }
    if let Some(start) = open {
        out.push((start, n - start));
    }
    out
}

/// A rectangle, in pixels.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Rect {
    pub x: f64,
    pub y: f64,
    pub w: f64,
    pub h: f64,
}

/// A line, in pixels.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Line {
    pub x1: f64,
    pub y1: f64,
    pub x2: f64,
    pub y2: f64,
}

/// A text at a point; `anchor` is SVG's `text-anchor`.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Label {
    pub x: f64,
    pub y: f64,
    pub text: String,
    pub anchor: &'static str,
}

/// A marked point with its name: `shape` is SVG path data around it, the name is written `dx`
/// pixels from it, anchored at its `anchor` (`start`, `end`).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Marker {
    pub x: f64,
    pub y: f64,
    pub shape: String,
    pub name: String,
    pub dx: f64,
    pub anchor: &'static str,
}

/// One landmark's disk: SVG path data of its filled area (even-odd) and of its edge.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct DiskPath {
    pub landmark: String,
    pub fill: String,
    pub edge: String,
}

/// What the map draws, in pixels, lowest layer first.
#[derive(Clone, Debug)]
pub(crate) struct Drawing {
    pub width: f64,
    pub height: f64,
    pub land: Vec<Rect>,
    pub countries: Vec<Label>,
    pub graticule: Vec<Line>,
    pub degrees: Vec<Label>,
    pub disks: Vec<DiskPath>,
    pub region: Vec<Rect>,
    /// A triangle at each landmark, with its name.
    pub landmarks: Vec<Marker>,
    /// A diamond at the declared site.
    pub declared: Option<Marker>,
    /// The region is not empty but no sample point fell in it: smaller than the map's cells.
    pub region_unsampled: bool,
}

/// What [`draw`] puts on the map.
#[derive(Clone, Copy, Debug)]
pub(crate) struct MapInput<'a> {
    /// One disk per proof that counted; the feasible region is their intersection.
    pub disks: &'a [Disk],
    /// Each landmark's name and site.
    pub landmarks: &'a [(String, Coord)],
    pub declared: Option<Coord>,
}

/// The map of `input`, zoomed to its disks, landmarks and declared site.
pub(crate) fn draw(input: &MapInput) -> Drawing {
    let mut points: Vec<Coord> = input.landmarks.iter().map(|(_, at)| *at).collect();
    points.extend(input.declared);
    let p = Projection::fit(View::around(input.disks, &points));
    let (land, countries) = land(&p);
    let (graticule, degrees) = graticule(&p);
    let disks = input
        .disks
        .iter()
        .map(|d| {
            let (fill, edge) = disk_paths(&p, &outline(d, CIRCLE_POINTS));
            DiskPath { landmark: d.landmark.clone(), fill, edge }
        })
        .collect();
    let region = Region::new(input.disks.to_vec());
    let nonempty = !input.disks.is_empty() && !region.is_empty();
    let cells = if nonempty { region_cells(&p, &region) } else { Vec::new() };
    // Landmarks are named to their right, the declared site to its left (each the other way
    // near an edge), so that a site next to a landmark keeps both names readable.
    let marker = |at: Coord, name: &str, shape: fn(f64, f64) -> String, right: bool| {
        let (x, y) = p.project(at);
        let (x, y) = (round(x), round(y));
        let right = if right { x < p.width - 120.0 } else { x < 120.0 };
        let (anchor, dx) = if right { ("start", 8.0) } else { ("end", -9.0) };
        Marker { x, y, shape: shape(x, y), name: name.to_string(), dx, anchor }
    };
    let landmarks = input
        .landmarks
        .iter()
        .filter(|(_, at)| at.is_valid())
        .map(|(name, at)| marker(*at, name, triangle, true))
        .collect();
    Drawing {
        width: round(p.width),
        height: round(p.height),
        land,
        countries,
        graticule,
        degrees,
        disks,
        region_unsampled: nonempty && cells.is_empty(),
        region: cells,
        landmarks,
        declared: input.declared.filter(Coord::is_valid).map(|at| marker(at, "declared site", diamond, false)),
    }
}

/// A triangle pointing up, centered on (x, y).
fn triangle(x: f64, y: f64) -> String {
    format!(
        "M{} {}L{} {}L{} {}Z",
        round(x),
        round(y - 6.0),
        round(x + 5.5),
        round(y + 4.0),
        round(x - 5.5),
        round(y + 4.0)
    )
}

/// A diamond centered on (x, y).
fn diamond(x: f64, y: f64) -> String {
    format!(
        "M{} {}L{} {}L{} {}L{} {}Z",
        round(x),
        round(y - 7.0),
        round(x + 7.0),
        round(y),
        round(x),
        round(y + 7.0),
        round(x - 7.0),
        round(y)
    )
}

/// Path data of a disk's fill and edge, at every 360° shift the view shows.
fn disk_paths(p: &Projection, o: &Outline) -> (String, String) {
    let (mut fill, mut edge) = (String::new(), String::new());
    let whole = {
        let (x0, y0) = (-2.0, -2.0);
        let (x1, y1) = (p.width + 2.0, p.height + 2.0);
        format!("M{x0} {y0}H{}V{}H{x0}Z", round(x1), round(y1))
    };
    match o {
        Outline::Empty => {}
        Outline::All => fill = whole,
        Outline::Ring(ring) => {
            for s in shifts(p, ring) {
                path(&mut fill, p, ring, s, true);
            }
            edge.clone_from(&fill);
        }
        Outline::AllBut(ring) => {
            fill = whole;
            for s in shifts(p, ring) {
                path(&mut fill, p, ring, s, true);
                path(&mut edge, p, ring, s, true);
            }
        }
        Outline::Cap { edge: line, north } => {
            let pole = if *north { 90.0 } else { -90.0 };
            for s in shifts(p, line) {
                let (Some(first), Some(last)) = (line.first(), line.last()) else { continue };
                let mut closed = line.clone();
                closed.push(Coord { lat: pole, lon: last.lon });
                closed.push(Coord { lat: pole, lon: first.lon });
                path(&mut fill, p, &closed, s, true);
                path(&mut edge, p, line, s, false);
            }
        }
    }
    (fill, edge)
}

/// The shifts by whole turns at which points spanning these longitudes meet the view.
fn shifts(p: &Projection, points: &[Coord]) -> Vec<f64> {
    let lo = points.iter().map(|c| c.lon).fold(f64::INFINITY, f64::min);
    let hi = points.iter().map(|c| c.lon).fold(f64::NEG_INFINITY, f64::max);
    let (west, east) = (p.view.west, p.view.west + p.view.span);
    (-2..=2).map(|k| f64::from(k) * 360.0).filter(|s| lo + s <= east && hi + s >= west).collect()
}

/// Appends `M x y L … [Z]` for `points` shifted `shift` degrees east.
fn path(out: &mut String, p: &Projection, points: &[Coord], shift: f64, close: bool) {
    for (i, c) in points.iter().enumerate() {
        let (x, y) = p.xy(c.lat, c.lon + shift);
        // Invariant: writing to a String cannot fail.
        let _ = write!(out, "{}{} {}", if i == 0 { 'M' } else { 'L' }, round(x), round(y));
    }
    if close && !points.is_empty() {
        out.push('Z');
    }
}

/// The cells where `region` holds the cell's center, merged into runs per row.
fn region_cells(p: &Projection, region: &Region) -> Vec<Rect> {
    let cols = REGION_COLUMNS;
    let rows = ((cols as f64 * p.height / p.width.max(1.0)).round() as usize).clamp(30, 200);
    let (cw, ch) = (p.width / cols as f64, p.height / rows as f64);
    let mut out = Vec::new();
    for r in 0..rows {
        let y = (r as f64 + 0.5) * ch;
        let inside = (0..cols).map(|c| region.contains(p.unproject((c as f64 + 0.5) * cw, y)));
        for (start, len) in runs(inside) {
            out.push(Rect {
                x: round(start as f64 * cw),
                y: round(r as f64 * ch),
                w: round(len as f64 * cw),
                h: round(ch),
            });
        }
    }
    out
}

/// The 1° cells whose center the embedded boundaries put in a country, merged into runs per
/// row, and a label at the middle of each country's cells where they are wide enough for it.
fn land(p: &Projection) -> (Vec<Rect>, Vec<Label>) {
    let raster = land_raster();
    if raster.is_empty() {
        return (Vec::new(), Vec::new());
    }
    let v = p.view;
    let (first_col, last_col) = (v.west.floor() as i64, (v.west + v.span).ceil() as i64);
    let (first_row, last_row) = (v.south.floor() as i64, v.north.ceil() as i64);
    let mut rects = Vec::new();
    // Per country: sum of x, sum of y, cells, least and greatest x.
    let mut spread: BTreeMap<Country, (f64, f64, usize, f64, f64)> = BTreeMap::new();
    for lat in first_row.max(-90)..last_row.min(90) {
        let row = usize::try_from(lat + 90).unwrap_or(0);
        let cell = |lon: i64| -> Option<Country> {
            let col = usize::try_from((lon + 180).rem_euclid(360)).unwrap_or(0);
            raster.get(row * 360 + col).copied().flatten()
        };
        let lons: Vec<i64> = (first_col..last_col).collect();
        let (_, top) = p.xy(lat as f64 + 1.0, 0.0);
        let (_, bottom) = p.xy(lat as f64, 0.0);
        let (top, bottom) = (top.max(0.0), bottom.min(p.height));
        for (start, len) in runs(lons.iter().map(|&lon| cell(lon).is_some())) {
            let (x0, _) = p.xy(0.0, lons[start] as f64);
            let (x1, _) = p.xy(0.0, (lons[start] + len as i64) as f64);
            let (x0, x1) = (x0.max(0.0), x1.min(p.width));
            if x1 > x0 && bottom > top {
                rects.push(Rect { x: round(x0), y: round(top), w: round(x1 - x0), h: round(bottom - top) });
            }
        }
        for &lon in &lons {
            let Some(country) = cell(lon) else { continue };
            let (x, y) = p.xy(lat as f64 + 0.5, lon as f64 + 0.5);
            if !(0.0..=p.width).contains(&x) || !(0.0..=p.height).contains(&y) {
                continue;
            }
            let e = spread.entry(country).or_insert((0.0, 0.0, 0, f64::INFINITY, f64::NEG_INFINITY));
            *e = (e.0 + x, e.1 + y, e.2 + 1, e.3.min(x), e.4.max(x));
        }
    }
    let cell_width = p.px_lon;
    let labels = spread
        .into_iter()
        .filter(|(_, (_, _, n, lo, hi))| *n >= 2 && hi - lo + cell_width >= 28.0)
        .map(|(country, (sx, sy, n, _, _))| Label {
            x: round(sx / n as f64),
            y: round(sy / n as f64 + 3.0),
            text: country.code().to_string(),
            anchor: "middle",
        })
        .collect();
    (rects, labels)
}

/// Each 1° cell's country at its center (the first, by code, where the data names several),
/// row-major from (−90°, −180°); `None` at sea. Empty when the embedded data cannot be read.
fn land_raster() -> &'static [Option<Country>] {
    static RASTER: OnceLock<Vec<Option<Country>>> = OnceLock::new();
    RASTER.get_or_init(|| {
        let Ok(index) = CountryIndex::embedded() else { return Vec::new() };
        (0..180)
            .flat_map(|row| (0..360).map(move |col| (row, col)))
            .map(|(row, col)| {
                let center = Coord { lat: f64::from(row) - 89.5, lon: f64::from(col) - 179.5 };
                index.countries_at(center).into_iter().next()
            })
            .collect()
    })
}

/// Parallels and meridians every round number of degrees (at most about eight each way), with
/// their labels along the top and left edges.
fn graticule(p: &Projection) -> (Vec<Line>, Vec<Label>) {
    let v = p.view;
    let (mut lines, mut labels) = (Vec::new(), Vec::new());
    let lon_step = step(v.span, 8.0);
    let first = (v.west / lon_step).ceil();
    // At most 360° / 0.25° meridians, whatever the view says.
    for k in (0..1441).map(|i| first + f64::from(i)).take_while(|k| k * lon_step <= v.west + v.span + 1e-9) {
        let lon = k * lon_step;
        let (x, _) = p.xy(0.0, lon);
        lines.push(Line { x1: round(x), y1: 0.0, x2: round(x), y2: round(p.height) });
        if x > 12.0 && x < p.width - 12.0 {
            labels.push(Label { x: round(x), y: 10.0, text: lon_label(lon), anchor: "middle" });
        }
    }
    let lat_step = step(v.north - v.south, 6.0);
    let first = (v.south / lat_step).ceil();
    for k in (0..721).map(|i| first + f64::from(i)).take_while(|k| k * lat_step <= v.north + 1e-9) {
        let lat = k * lat_step;
        let (_, y) = p.xy(lat, v.west);
        lines.push(Line { x1: 0.0, y1: round(y), x2: round(p.width), y2: round(y) });
        if y > 14.0 && y < p.height - 4.0 {
            labels.push(Label { x: 3.0, y: round(y - 2.0), text: lat_label(lat), anchor: "start" });
        }
    }
    (lines, labels)
}

/// The smallest round step that cuts `span` degrees into at most `most` parts.
fn step(span: f64, most: f64) -> f64 {
    const STEPS: [f64; 12] = [0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 15.0, 20.0, 30.0, 45.0, 60.0, 90.0];
    STEPS.into_iter().find(|s| span / s <= most).unwrap_or(90.0)
}

fn lon_label(lon: f64) -> String {
    let lon = wrap_lon(lon);
    match lon {
        l if l.abs() < 1e-9 => "0°".into(),
        l if (l.abs() - 180.0).abs() < 1e-9 => "180°".into(),
        l if l > 0.0 => format!("{}°E", degrees(l)),
        l => format!("{}°W", degrees(-l)),
    }
}

fn lat_label(lat: f64) -> String {
    match lat {
        l if l.abs() < 1e-9 => "0°".into(),
        l if l > 0.0 => format!("{}°N", degrees(l)),
        l => format!("{}°S", degrees(-l)),
    }
}

/// `30`, `2.5`, `0.25`.
fn degrees(x: f64) -> String {
    let s = format!("{x:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// The shortest arc of longitude (west edge, width) that holds every (start, length) arc,
/// found on a quarter-degree grid: the complement of the longest run of uncovered bins.
fn lon_cover(arcs: &[(f64, f64)]) -> (f64, f64) {
    const BIN: f64 = 0.25;
    const BINS: i64 = 1440;
    let mut covered = vec![false; BINS as usize];
    for &(start, len) in arcs.iter().filter(|(s, l)| s.is_finite() && l.is_finite()) {
        if len >= 360.0 {
            return (-180.0, 360.0);
        }
        let first = ((start + 180.0) / BIN).floor() as i64;
        let last = ((start + len.max(0.0) + 180.0) / BIN).ceil() as i64;
        for b in first..=last.max(first) {
            if let Some(cell) = usize::try_from(b.rem_euclid(BINS)).ok().and_then(|i| covered.get_mut(i)) {
                *cell = true;
            }
        }
    }
    let Some(anchor) = covered.iter().position(|&c| c) else { return (-180.0, 360.0) };
    // The longest run of uncovered bins, walking once round from a covered one.
    let (mut best, mut best_len, mut run_start, mut run_len) = (0i64, 0i64, 0i64, 0i64);
    for step in 1..=BINS {
        let b = (anchor as i64 + step).rem_euclid(BINS);
        if covered[b as usize] {
            run_len = 0;
        } else {
            if run_len == 0 {
                run_start = b;
            }
            run_len += 1;
            if run_len > best_len {
                (best, best_len) = (run_start, run_len);
            }
        }
    }
    if best_len == 0 {
        return (-180.0, 360.0);
    }
    let west = -180.0 + ((best + best_len).rem_euclid(BINS)) as f64 * BIN;
    (west, 360.0 - best_len as f64 * BIN)
}

/// A latitude band within −90..90, shifted rather than cut where it can be.
fn clamp_band(south: f64, north: f64) -> (f64, f64) {
    let height = (north - south).min(180.0);
    let south = south.max(-90.0).min(90.0 - height);
    (south, (south + height).min(90.0))
}

/// Into −180..180.
fn wrap_lon(lon: f64) -> f64 {
    (lon + 180.0).rem_euclid(360.0) - 180.0
}

/// To a tenth of a pixel; a value that is not finite becomes 0, so no SVG number is `NaN`.
fn round(x: f64) -> f64 {
    if x.is_finite() {
        (x * 10.0).round() / 10.0
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]

    use chipledger_domain::location::great_circle_km;

    use super::*;

    fn at(lat: f64, lon: f64) -> Coord {
        Coord { lat, lon }
    }

    fn disk(lat: f64, lon: f64, radius_km: f64) -> Disk {
        Disk { landmark: "lm".into(), center: at(lat, lon), radius_km }
    }

    #[track_caller]
    fn check_on_circle(center: Coord, radius_km: f64, points: &[Coord]) {
        assert!(!points.is_empty());
        for p in points {
            let d = great_circle_km(center, *p);
            assert!(
                (d - radius_km).abs() <= radius_km * 0.005 + 1e-6,
                "{p:?} is {d} km from {center:?}, not {radius_km}"
            );
        }
    }

    #[test]
    fn the_projection_puts_the_view_corners_at_the_map_corners_and_inverts() {
        let p = Projection::fit(View { south: 0.0, north: 10.0, west: 100.0, span: 20.0 });
        let (x, y) = p.project(at(10.0, 100.0));
        assert!(x.abs() < 1e-9 && y.abs() < 1e-9);
        let (x, y) = p.project(at(0.0, 120.0));
        assert!((x - p.width).abs() < 1e-9 && (y - p.height).abs() < 1e-9, "{x} {y} {p:?}");
        // Equirectangular with its standard parallel at 5°: a degree east is cos 5° of a degree north.
        let ratio = (p.width / 20.0) / (p.height / 10.0);
        assert!((ratio - 5f64.to_radians().cos()).abs() < 1e-9, "{ratio}");
        let back = p.unproject(p.project(at(3.5, 111.25)).0, p.project(at(3.5, 111.25)).1);
        assert!((back.lat - 3.5).abs() < 1e-9 && (back.lon - 111.25).abs() < 1e-9, "{back:?}");
    }

    #[test]
    fn a_view_across_the_antimeridian_places_both_sides_east_of_its_west_edge() {
        let v = View::around(&[], &[at(-17.7, 178.0), at(-14.3, -170.7)]);
        assert!(v.span < 30.0, "{v:?}");
        let p = Projection::fit(v);
        let (fiji, _) = p.project(at(-17.7, 178.0));
        let (samoa, _) = p.project(at(-14.3, -170.7));
        assert!(0.0 < fiji && fiji < samoa && samoa < p.width, "{fiji} {samoa} {p:?}");
        assert!((p.unproject(samoa, 0.0).lon + 170.7).abs() < 1e-6);
    }

    #[test]
    fn every_point_of_a_disk_edge_lies_at_its_radius() {
        let centers =
            [at(1.29, 103.85), at(52.5, 13.4), at(-33.9, 151.2), at(0.0, 179.9), at(89.9, 0.0), at(-90.0, 45.0)];
        for c in centers {
            for r in [1.0, 60.0, 800.0, 5_000.0, 12_000.0, 19_000.0] {
                match outline(&Disk { landmark: "lm".into(), center: c, radius_km: r }, CIRCLE_POINTS) {
                    Outline::Ring(ring) => check_on_circle(c, r, &ring),
                    Outline::Cap { edge, .. } => check_on_circle(c, r, &edge),
                    Outline::AllBut(hole) => check_on_circle(c, r, &hole),
                    other => panic!("{c:?} {r}: {other:?}"),
                }
                check_on_circle(c, r, &circle(c, r, CIRCLE_POINTS));
            }
        }
    }

    #[test]
    fn disks_holding_a_pole_both_poles_or_the_earth_are_told_apart() {
        assert!(matches!(outline(&disk(1.3, 103.8, 500.0), 90), Outline::Ring(r) if r.len() == 90));
        assert!(
            matches!(outline(&disk(80.0, 10.0, 2_000.0), 90), Outline::Cap { north: true, ref edge } if edge.len() == 91)
        );
        assert!(matches!(outline(&disk(-70.0, 10.0, 3_000.0), 90), Outline::Cap { north: false, .. }));
        assert!(matches!(outline(&disk(10.0, 10.0, 15_000.0), 90), Outline::AllBut(_)));
        assert_eq!(outline(&disk(10.0, 10.0, 20_100.0), 90), Outline::All);
        assert_eq!(outline(&disk(10.0, 10.0, 0.0), 90), Outline::Empty);
        assert_eq!(outline(&disk(10.0, 10.0, f64::NAN), 90), Outline::Empty);
        assert_eq!(outline(&disk(100.0, 10.0, 50.0), 90), Outline::Empty);
    }

    #[test]
    fn runs_merge_neighbouring_cells() {
        assert_eq!(runs([false, true, true, false, true]), vec![(1, 2), (4, 1)]);
        assert_eq!(runs([true, true, true]), vec![(0, 3)]);
        assert_eq!(runs([false, false]), vec![]);
        assert_eq!(runs(std::iter::empty()), vec![]);
    }

    #[test]
    fn the_map_draws_the_region_inside_both_disks_and_land_with_country_codes() {
        // Frankfurt and Paris, each bounding the host within 400 km.
        let disks = [
            Disk { landmark: "fra-1".into(), center: at(50.11, 8.68), radius_km: 400.0 },
            Disk { landmark: "par-1".into(), center: at(48.86, 2.35), radius_km: 400.0 },
        ];
        let landmarks = [("fra-1".to_string(), at(50.11, 8.68)), ("par-1".to_string(), at(48.86, 2.35))];
        let d = draw(&MapInput { disks: &disks, landmarks: &landmarks, declared: Some(at(49.6, 6.1)) });
        assert!(!d.region.is_empty() && !d.region_unsampled);
        assert!(!d.land.is_empty() && d.land.len() < 400, "{}", d.land.len());
        assert!(d.countries.iter().any(|l| l.text == "FR" || l.text == "DE"), "{:?}", d.countries);
        assert_eq!(d.disks.len(), 2);
        assert!(d.disks.iter().all(|p| p.fill.starts_with('M') && p.fill.ends_with('Z')));
        assert_eq!(d.landmarks.len(), 2);
        assert!(d.declared.is_some());
        // Every region cell's center is in both disks.
        let p = Projection::fit(View::around(&disks, &[at(50.11, 8.68), at(48.86, 2.35), at(49.6, 6.1)]));
        let half_cell = p.width / REGION_COLUMNS as f64 / 2.0;
        for r in &d.region {
            let c = p.unproject(r.x + half_cell, r.y + r.h / 2.0);
            assert!(disks.iter().all(|k| great_circle_km(c, k.center) < k.radius_km + 5.0), "{c:?}");
        }
        assert!(d.width <= MAX_WIDTH + 0.1 && d.height <= MAX_HEIGHT + 0.1);
    }

    #[test]
    fn nothing_on_earth_or_off_it_makes_the_map_panic_or_write_a_non_number() {
        let odd = [0.0, -1.0, 1e-9, 20_015.0, 25_000.0, 1e12, f64::INFINITY, f64::NAN];
        let centers =
            [at(90.0, 0.0), at(-90.0, 180.0), at(0.0, 180.0), at(0.0, -180.0), at(95.0, 0.0), at(f64::NAN, 3.0)];
        for c in centers {
            for r in odd {
                let disks = [Disk { landmark: "<lm>".into(), center: c, radius_km: r }];
                let landmarks = [("<lm>".to_string(), c)];
                let d = draw(&MapInput { disks: &disks, landmarks: &landmarks, declared: Some(c) });
                for s in d.disks.iter().flat_map(|p| [&p.fill, &p.edge]) {
                    assert!(!s.contains("NaN") && !s.contains("inf"), "{c:?} {r}: {s}");
                }
                assert!(d.width.is_finite() && d.height > 0.0 && d.width > 0.0, "{c:?} {r}");
            }
        }
        let d = draw(&MapInput { disks: &[], landmarks: &[], declared: None });
        assert!(d.disks.is_empty() && d.region.is_empty() && !d.land.is_empty());
    }
}
