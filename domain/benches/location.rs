//! Location verdicts for a whole fleet: 10,000 GPUs, each with its own five round trips, judged
//! against its declared site and licensed country (region, emptiness, disagreements, countries,
//! verdict). The fleet is generated from a fixed seed: hosts within 40 km of Singapore, Shanghai,
//! Frankfurt and Ashburn (Virginia), five landmarks per area at real cities, round trips of
//! distance/c, out and back, plus 0–2 ms of uniform extra delay. An honest host declares its
//! own site (to four decimals); one host in twenty sits in another area than the one it declares. Issue #15's target: the whole fleet within 200 ms.
//!
//! Run: `cargo bench -p chipledger-domain --bench location`.

#![allow(clippy::unwrap_used, missing_debug_implementations)]

use std::collections::{BTreeMap, BTreeSet};
use std::hint::black_box;

use chipledger_domain::country::Country;
use chipledger_domain::location::{
    great_circle_km, judge, Coord, CountryIndex, JudgeInput, LocationVerdict, Method, Proof, C_VACUUM_KM_PER_MS,
};
use criterion::{criterion_group, criterion_main, Criterion};

const FLEET: usize = 10_000;
const NOW: i64 = 1_800_000_000;

struct Area {
    country: &'static str,
    site: (f64, f64),
    landmarks: [(&'static str, f64, f64); 5],
}

const AREAS: [Area; 4] = [
    Area {
        country: "SG",
        site: (1.2897, 103.8501),
        landmarks: [
            ("sin-1", 1.3521, 103.8198),
            ("kul-1", 3.1390, 101.6869),
            ("cgk-1", -6.2088, 106.8456),
            ("bkk-1", 13.7563, 100.5018),
            ("hkg-1", 22.3193, 114.1694),
        ],
    },
    Area {
        country: "CN",
        site: (31.2304, 121.4737),
        landmarks: [
            ("sha-1", 31.2304, 121.4737),
            ("pek-1", 39.9042, 116.4074),
            ("can-1", 23.1291, 113.2644),
            ("tpe-1", 25.0330, 121.5654),
            ("icn-1", 37.5665, 126.9780),
        ],
    },
    Area {
        country: "DE",
        site: (50.1109, 8.6821),
        landmarks: [
            ("fra-1", 50.1109, 8.6821),
            ("ams-1", 52.3676, 4.9041),
            ("par-1", 48.8566, 2.3522),
            ("muc-1", 48.1351, 11.5820),
            ("waw-1", 52.2297, 21.0122),
        ],
    },
    Area {
        country: "US",
        site: (39.0438, -77.4874),
        landmarks: [
            ("iad-1", 39.0438, -77.4874),
            ("nyc-1", 40.7128, -74.0060),
            ("atl-1", 33.7490, -84.3880),
            ("chi-1", 41.8781, -87.6298),
            ("tor-1", 43.6532, -79.3832),
        ],
    },
];

/// SplitMix64: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

struct Gpu {
    diverted: bool,
    proofs: Vec<Proof>,
    declared: Coord,
    allowed: BTreeSet<Country>,
}

fn fleet() -> Vec<Gpu> {
    let mut rng = Rng(15);
    (0..FLEET)
        .map(|i| {
            let declared_area = &AREAS[i % AREAS.len()];
            let diverted = rng.next().is_multiple_of(20);
            let real_area = if diverted { &AREAS[(i + 1) % AREAS.len()] } else { declared_area };
            let (km, bearing) = (40.0 * rng.unit().sqrt(), rng.unit() * std::f64::consts::TAU);
            let host = Coord {
                lat: real_area.site.0 + km / 111.2 * bearing.cos(),
                lon: real_area.site.1 + km / (111.2 * real_area.site.0.to_radians().cos()) * bearing.sin(),
            };
            let proofs = declared_area
                .landmarks
                .iter()
                .map(|&(name, lat, lon)| {
                    let site = Coord { lat, lon };
                    let flight_ms = 2.0 * great_circle_km(site, host) / C_VACUUM_KM_PER_MS;
                    let extra_ms = 2.0 * rng.unit();
                    Proof {
                        landmark: name.to_string(),
                        landmark_site: site,
                        rtt_ns: ((flight_ms + extra_ms) * 1e6).ceil() as u64,
                        floor_ns: 0,
                        at: NOW - (rng.next() % 3600) as i64,
                        method: if rng.next().is_multiple_of(4) { Method::HostKey } else { Method::GpuSpdm },
                    }
                })
                .collect();
            // An honest operator declares where the host is; a diverted one, the area it claims.
            let declared = if diverted {
                Coord { lat: declared_area.site.0, lon: declared_area.site.1 }
            } else {
                Coord { lat: (host.lat * 1e4).round() / 1e4, lon: (host.lon * 1e4).round() / 1e4 }
            };
            Gpu {
                diverted,
                proofs,
                declared,
                allowed: BTreeSet::from([Country::parse(declared_area.country).unwrap()]),
            }
        })
        .collect()
}

fn judge_gpu(gpu: &Gpu, index: &CountryIndex) -> LocationVerdict {
    judge(&JudgeInput {
        proofs: &gpu.proofs,
        now: NOW,
        max_age_secs: 86_400,
        declared: Some(gpu.declared),
        allowed: &gpu.allowed,
        index,
    })
    .verdict
}

fn judge_fleet(fleet: &[Gpu], index: &CountryIndex) -> usize {
    fleet.iter().filter(|gpu| judge_gpu(gpu, index) == LocationVerdict::Consistent).count()
}

fn bench(c: &mut Criterion) {
    let index = CountryIndex::embedded().unwrap();
    let fleet = fleet();
    let mut verdicts: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    for gpu in &fleet {
        let kind = if gpu.diverted { "diverted" } else { "honest" };
        *verdicts.entry((kind, judge_gpu(gpu, index).label())).or_insert(0) += 1;
    }
    eprintln!("location: the generated fleet's verdicts: {verdicts:?}");
    let mut group = c.benchmark_group("location");
    group.sample_size(20);
    group.bench_function("judge a 10,000-GPU fleet, 5 landmarks each", |b| {
        b.iter(|| judge_fleet(black_box(&fleet), index))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
