//! Location proofs: distances, bounds, regions, countries and verdicts (issue #15).

use std::collections::BTreeSet;

use chipledger_domain::country::Country;
use chipledger_domain::location::{
    bound_km, great_circle_km, judge, Coord, CountryIndex, Disk, JudgeInput, Judgement, LocationVerdict, Method, Proof,
    Region, C_VACUUM_KM_PER_MS, EARTH_RADIUS_KM,
};
use chipledger_domain::Error;
use proptest::prelude::*;

const NOW: i64 = 1_800_000_000;
const DAY: u64 = 86_400;

const SINGAPORE: &str = "1.2897,103.8501";
const SHANGHAI: &str = "31.2304,121.4737";
const BEIJING: &str = "39.9042,116.4074";
const KUALA_LUMPUR: &str = "3.1390,101.6869";
const LONDON: &str = "51.5074,-0.1278";
const NEW_YORK: &str = "40.7128,-74.0060";

fn at(s: &str) -> Coord {
    Coord::parse(s).unwrap()
}

fn index() -> &'static CountryIndex {
    CountryIndex::embedded().unwrap()
}

fn countries(codes: &[&str]) -> BTreeSet<Country> {
    codes.iter().map(|c| Country::parse(c).unwrap()).collect()
}

/// A fresh GPU-key proof from `landmark` at `site` with a round trip of `rtt_ms` and no floor.
fn proof(landmark: &str, site: &str, rtt_ms: f64) -> Proof {
    Proof {
        landmark: landmark.to_string(),
        landmark_site: at(site),
        rtt_ns: (rtt_ms * 1e6) as u64,
        floor_ns: 0,
        at: NOW - 60,
        method: Method::GpuSpdm,
    }
}

/// The honest round trip from `a` to `b` plus `extra_ms` of delay.
fn rtt_ms(a: &str, b: &str, extra_ms: f64) -> f64 {
    2.0 * great_circle_km(at(a), at(b)) / C_VACUUM_KM_PER_MS + extra_ms
}

fn disk(landmark: &str, center: &str, radius_km: f64) -> Disk {
    Disk { landmark: landmark.to_string(), center: at(center), radius_km }
}

#[track_caller]
fn check(proofs: &[Proof], declared: Option<&str>, allowed: &[&str], expected: LocationVerdict) -> Judgement {
    let allowed = countries(allowed);
    let judgement = judge(&JudgeInput {
        proofs,
        now: NOW,
        max_age_secs: DAY,
        declared: declared.map(at),
        allowed: &allowed,
        index: index(),
    });
    assert_eq!(judgement.verdict, expected, "{}", judgement.reason);
    judgement
}

#[track_caller]
fn close(found: f64, expected: f64, within: f64) {
    assert!((found - expected).abs() <= within, "{found} is not within {within} of {expected}");
}

#[test]
fn great_circle_distances_match_hand_computed_pairs() {
    // Haversine on a sphere of R = 6371.0088 km, computed by hand (Python, math module):
    // Singapore–Shanghai 3,810.354 km and London–New York 5,570.230 km, in line with the usual
    // published city distances (~3,800 km, ~5,570 km). A quarter of the equator is πR/2 and
    // one degree of it πR/180.
    close(great_circle_km(at(SINGAPORE), at(SHANGHAI)), 3810.354, 0.01);
    close(great_circle_km(at(LONDON), at(NEW_YORK)), 5570.230, 0.01);
    close(great_circle_km(at("0,0"), at("0,90")), std::f64::consts::PI * EARTH_RADIUS_KM / 2.0, 1e-6);
    close(great_circle_km(at("0,0"), at("0,1")), 111.195, 0.001);
    close(great_circle_km(at("0,179.5"), at("0,-179.5")), 111.195, 0.001);
    assert_eq!(great_circle_km(at(SINGAPORE), at(SINGAPORE)), 0.0);
    assert_eq!(great_circle_km(at(LONDON), at(NEW_YORK)), great_circle_km(at(NEW_YORK), at(LONDON)));
}

#[test]
fn a_millisecond_of_round_trip_bounds_the_host_within_150_km() {
    close(bound_km(1_000_000, 0), 149.896229, 1e-9);
    close(bound_km(2_000_000, 1_000_000), 149.896229, 1e-9);
    close(bound_km(3_000_000, 0), 449.688687, 1e-6);
    assert_eq!(bound_km(0, 0), 0.0);
}

#[test]
fn a_floor_above_the_round_trip_gives_zero_not_a_negative_bound() {
    assert_eq!(bound_km(1_000, 5_000), 0.0);
    assert_eq!(bound_km(0, u64::MAX), 0.0);
    assert!(bound_km(u64::MAX, 0).is_finite());
}

#[test]
fn a_relayed_round_trip_only_grows_the_disk() {
    let host = "31.25,121.40";
    let honest = rtt_ms(SHANGHAI, host, 0.2);
    let relayed = honest + 7.0;
    let tight = Region::new(vec![disk("sha-1", SHANGHAI, bound_km((honest * 1e6) as u64, 0))]);
    let loose = Region::new(vec![disk("sha-1", SHANGHAI, bound_km((relayed * 1e6) as u64, 0))]);
    for p in [SHANGHAI, host, "31.4,121.6", "31,121", BEIJING] {
        assert!(!tight.contains(at(p)) || loose.contains(at(p)), "{p} left the region when the round trip grew");
    }
    assert!(loose.contains(at("35,118")) && !tight.contains(at("35,118")));
    // So a relay can turn a verdict vague, never into a contradiction of an honest declaration.
    check(&[proof("sha-1", SHANGHAI, honest)], Some(host), &["CN"], LocationVerdict::Consistent);
    check(&[proof("sha-1", SHANGHAI, relayed)], Some(host), &["CN"], LocationVerdict::PossiblyOutside);
}

#[test]
fn two_landmarks_that_cannot_both_be_right_are_named_as_a_pair() {
    let proofs = [proof("sin-1", SINGAPORE, 1.0), proof("sha-1", SHANGHAI, 1.0)];
    let judgement = check(&proofs, Some(SINGAPORE), &["SG"], LocationVerdict::Unproven);
    assert_eq!(judgement.disagreements, vec![("sin-1".to_string(), "sha-1".to_string())]);
    assert!(judgement.reason.contains("sin-1 and sha-1 cannot both be right"), "{}", judgement.reason);
    assert!(judgement.reason.contains("3,810 km apart"), "{}", judgement.reason);
}

#[test]
fn three_disks_that_meet_pairwise_but_share_no_point_leave_an_empty_region() {
    // An equilateral triangle of side ~222 km on the equator; its circumradius is ~128 km.
    let corners = [("a", "0,0"), ("b", "0,2"), ("c", "1.7320508,1")];
    let with_radius = |r: f64| Region::new(corners.iter().map(|(n, p)| disk(n, p, r)).collect());
    let apart = with_radius(120.0);
    assert!(apart.disagreements().is_empty(), "every pair overlaps");
    assert!(apart.is_empty());
    let together = with_radius(135.0);
    assert!(!together.is_empty());
    assert!(together.contains(at("0.5773503,1")), "the triangle's center is in all three");

    let proofs: Vec<Proof> = corners.iter().map(|(n, p)| proof(n, p, 120.0 / 149.896229)).collect();
    let judgement = check(&proofs, None, &[], LocationVerdict::Unproven);
    assert!(judgement.disagreements.is_empty());
    assert!(judgement.reason.contains("no point in common"), "{}", judgement.reason);
}

#[test]
fn a_disk_inside_another_leaves_the_smaller_disk() {
    let region = Region::new(vec![disk("far", BEIJING, 2000.0), disk("near", SHANGHAI, 30.0)]);
    assert!(!region.is_empty());
    assert!(region.contains(at(SHANGHAI)));
    assert!(!region.contains(at(BEIJING)));
    assert!(region.within_km_of(at(SHANGHAI), 30.0));
    assert!(!region.within_km_of(at(SHANGHAI), 29.0));
}

#[test]
fn a_region_with_no_disks_is_the_whole_earth_and_one_with_a_broken_disk_is_empty() {
    let everywhere = Region::new(Vec::new());
    assert!(!everywhere.is_empty());
    assert!(everywhere.contains(at("-89,179")));
    let broken =
        Region::new(vec![Disk { landmark: "x".into(), center: Coord { lat: f64::NAN, lon: 0.0 }, radius_km: 10.0 }]);
    assert!(broken.is_empty());
    assert!(!broken.contains(at("0,0")));
    assert!(broken.bounding_box().is_none());
    assert!(broken.countries(index()).is_empty());
}

#[test]
fn the_bounding_box_holds_the_disk_and_crosses_the_antimeridian_when_it_does() {
    let bbox = Region::new(vec![disk("suva", "-18.1416,178.4419", 300.0)]).bounding_box().unwrap();
    assert!(bbox.crosses_antimeridian());
    assert!(bbox.contains(at("-18.1416,-179.9")));
    assert!(bbox.contains(at("-20.8,178.4419")));
    assert!(!bbox.contains(at("-18.1416,175")));
    let near_pole = Region::new(vec![disk("alert", "82.5,-62.3", 900.0)]).bounding_box().unwrap();
    assert_eq!((near_pole.west, near_pole.east, near_pole.north), (-180.0, 180.0, 90.0));
}

#[test]
fn a_small_disk_around_singapore_may_lie_in_singapore() {
    let region = Region::new(vec![disk("sin-1", SINGAPORE, 10.0)]);
    assert!(region.countries(index()).contains(&Country::parse("SG").unwrap()));
}

#[test]
fn fifty_km_around_shanghai_is_china_only() {
    let region = Region::new(vec![disk("sha-1", SHANGHAI, 50.0)]);
    assert_eq!(region.countries(index()), countries(&["CN"]));
    assert!(region.inside(&countries(&["CN"]), index()));
    assert!(!region.inside(&countries(&["SG"]), index()));
}

#[test]
fn a_region_across_the_antimeridian_finds_fiji() {
    let region = Region::new(vec![disk("suva", "-17.0,179.9", 150.0)]);
    assert!(region.countries(index()).contains(&Country::parse("FJ").unwrap()));
}

#[test]
fn points_take_every_country_the_data_puts_them_in() {
    assert_eq!(index().countries_at(at(SINGAPORE)), countries(&["SG"]));
    assert_eq!(index().countries_at(at("22.3,114.17")), countries(&["CN", "HK"]));
    assert_eq!(index().countries_at(at("28.3,-16.6")), countries(&["ES"]), "the Canary Islands (IC) are Spain");
    assert_eq!(index().countries_at(at("0,-140")), countries(&[]), "the open Pacific is in no country");
    assert_eq!(index().countries_at(Coord { lat: f64::NAN, lon: 0.0 }), countries(&[]));
}

#[test]
fn a_territory_without_an_iso_code_is_never_inside_an_allowed_set() {
    // Pristina: the data's `XK` (Kosovo) has no ISO 3166-1 code and no parent country.
    let proofs = [proof("prn-1", "42.6629,21.1655", 0.2)];
    let judgement = check(&proofs, None, &["RS"], LocationVerdict::PossiblyOutside);
    assert!(judgement.reason.contains("without an ISO 3166-1 code"), "{}", judgement.reason);
}

#[test]
fn a_host_near_shanghai_with_china_licensed_is_consistent() {
    let host = "31.25,121.40";
    let proofs =
        [proof("sha-1", SHANGHAI, rtt_ms(SHANGHAI, host, 0.3)), proof("pek-1", BEIJING, rtt_ms(BEIJING, host, 1.0))];
    let judgement = check(&proofs, Some(host), &["CN"], LocationVerdict::Consistent);
    assert_eq!(judgement.countries, countries(&["CN"]));
    assert_eq!(judgement.method, Some(Method::GpuSpdm));
    assert_eq!(judgement.disks.len(), 2);
    assert!(judgement.reason.contains("landmark sha-1"), "{}", judgement.reason);
}

#[test]
fn a_region_that_reaches_a_neighbour_is_possibly_outside() {
    let proofs = [proof("sin-1", SINGAPORE, 0.2), proof("kul-1", KUALA_LUMPUR, rtt_ms(KUALA_LUMPUR, SINGAPORE, 0.5))];
    let judgement = check(&proofs, Some(SINGAPORE), &["SG"], LocationVerdict::PossiblyOutside);
    assert!(judgement.countries.contains(&Country::parse("MY").unwrap()));
    assert!(judgement.reason.contains("MY"), "{}", judgement.reason);
    // With nothing licensed, the declared site's country is the yardstick.
    check(&proofs, Some(SINGAPORE), &[], LocationVerdict::PossiblyOutside);
}

#[test]
fn a_declared_site_outside_the_region_contradicts_the_declaration() {
    let judgement =
        check(&[proof("sha-1", SHANGHAI, 3.0)], Some(SINGAPORE), &["SG"], LocationVerdict::ContradictsDeclared);
    assert_eq!(
        judgement.reason,
        "the declared site is 3,810 km from landmark sha-1, whose round trip bounds the chip within 450 km"
    );
}

#[test]
fn a_region_that_reaches_no_licensed_country_contradicts_the_declaration() {
    let judgement = check(&[proof("sha-1", SHANGHAI, 0.3)], None, &["SG", "MY"], LocationVerdict::ContradictsDeclared);
    assert!(judgement.reason.contains("none of the licensed countries (MY, SG)"), "{}", judgement.reason);
}

#[test]
fn a_declared_site_that_is_no_place_on_earth_contradicts_the_declaration() {
    let allowed = countries(&["CN"]);
    let judgement = judge(&JudgeInput {
        proofs: &[proof("sha-1", SHANGHAI, 0.3)],
        now: NOW,
        max_age_secs: DAY,
        declared: Some(Coord { lat: f64::NAN, lon: 121.0 }),
        allowed: &allowed,
        index: index(),
    });
    assert_eq!(judgement.verdict, LocationVerdict::ContradictsDeclared);
}

#[test]
fn with_no_proof_the_location_is_unproven() {
    let judgement = check(&[], Some(SINGAPORE), &["SG"], LocationVerdict::Unproven);
    assert_eq!(judgement.method, None);
    assert_eq!(judgement.reason, "no location proof");
}

#[test]
fn stale_and_future_proofs_are_ignored() {
    let mut stale = proof("sin-1", SINGAPORE, 0.2);
    stale.at = NOW - DAY as i64 - 1;
    let mut future = proof("kul-1", KUALA_LUMPUR, 0.2);
    future.at = NOW + 1;
    let judgement = check(&[stale.clone(), future], Some(SINGAPORE), &["SG"], LocationVerdict::Unproven);
    assert!(judgement.reason.contains("none of the 2 location proofs"), "{}", judgement.reason);
    // A proof exactly max_age old still counts, and the stale one does not spoil it.
    let mut oldest = proof("sin-1", SINGAPORE, 0.2);
    oldest.at = NOW - DAY as i64;
    let judgement = check(&[stale, oldest], Some(SINGAPORE), &["SG"], LocationVerdict::PossiblyOutside);
    assert_eq!(judgement.disks.len(), 1);
}

#[test]
fn a_host_key_proof_locates_the_key_holder_not_the_chip() {
    let mut by_host = proof("sha-1", SHANGHAI, 3.0);
    by_host.method = Method::HostKey;
    let proofs = [proof("pek-1", BEIJING, 9.0), by_host];
    let judgement = check(&proofs, Some(SINGAPORE), &["SG"], LocationVerdict::ContradictsDeclared);
    assert_eq!(judgement.method, Some(Method::HostKey));
    assert!(judgement.reason.contains("the key holder"), "{}", judgement.reason);
    assert_eq!(Method::HostKey.subject_label(), "the key holder");
    assert_eq!(Method::GpuSpdm.subject_label(), "the chip");
}

#[test]
fn verdicts_and_methods_have_kebab_case_labels() {
    for (verdict, label) in [
        (LocationVerdict::Consistent, "consistent"),
        (LocationVerdict::PossiblyOutside, "possibly-outside"),
        (LocationVerdict::ContradictsDeclared, "contradicts-declared"),
        (LocationVerdict::Unproven, "unproven"),
    ] {
        assert_eq!(verdict.label(), label);
        assert_eq!(LocationVerdict::parse(label), Some(verdict));
        assert_eq!(serde_json::to_string(&verdict).unwrap(), format!("\"{label}\""));
    }
    for (method, label) in [(Method::GpuSpdm, "gpu-spdm"), (Method::HostKey, "host-key")] {
        assert_eq!(method.label(), label);
        assert_eq!(Method::parse(label), Some(method));
        assert_eq!(serde_json::from_str::<Method>(&format!("\"{label}\"")).unwrap(), method);
    }
    assert_eq!(LocationVerdict::parse("Consistent"), None);
}

#[test]
fn a_coordinate_reads_and_writes_as_lat_comma_lon() {
    let c = at(SINGAPORE);
    assert_eq!(c, Coord { lat: 1.2897, lon: 103.8501 });
    assert_eq!(c.to_string(), "1.2897,103.8501");
    assert_eq!(at(" -33.8688 , 151.2093 ").to_string(), "-33.8688,151.2093");
    assert_eq!(Coord { lat: 1.0, lon: -2.1234567 }.to_string(), "1.0000,-2.123457");
    assert_eq!(serde_json::to_string(&c).unwrap(), "\"1.2897,103.8501\"");
    assert_eq!(serde_json::from_str::<Coord>("\"1.2897,103.8501\"").unwrap(), c);
    assert!(serde_json::from_str::<Coord>("\"91,0\"").is_err());
}

#[test]
fn a_coordinate_that_is_not_a_place_is_refused_with_the_reason() {
    for (input, reason) in [
        ("", "the latitude is missing"),
        ("1.2897", "the longitude is missing"),
        ("1.2897,", "the longitude is missing"),
        ("1,2,3", "it has more than two comma-separated parts"),
        ("north,103", "the latitude is not a decimal number"),
        ("1,east", "the longitude is not a decimal number"),
        ("NaN,103", "a coordinate is not a finite number"),
        ("1,inf", "a coordinate is not a finite number"),
        ("90.5,0", "the latitude is outside -90..=90"),
        ("0,-180.01", "the longitude is outside -180..=180"),
    ] {
        assert_eq!(
            Coord::parse(input),
            Err(Error::Coordinate { input: input.to_string(), reason }),
            "parsing {input:?}"
        );
    }
    assert!(matches!(
        Coord::parse(&"1".repeat(100)),
        Err(Error::Coordinate { reason: "longer than 64 characters", .. })
    ));
}

fn any_coord() -> impl Strategy<Value = Coord> {
    let degrees = prop_oneof![-200.0..200.0f64, proptest::num::f64::ANY];
    (degrees.clone(), degrees).prop_map(|(lat, lon)| Coord { lat, lon })
}

fn any_proof() -> impl Strategy<Value = Proof> {
    let rtt = prop_oneof![0..5_000_000u64, any::<u64>()];
    (any_coord(), rtt, 0..2_000_000u64, NOW - 200_000..NOW + 1000, any::<bool>(), 0..4u8).prop_map(
        |(site, rtt_ns, floor_ns, at, host_key, name)| Proof {
            landmark: format!("lm-{name}"),
            landmark_site: site,
            rtt_ns,
            floor_ns,
            at,
            method: if host_key { Method::HostKey } else { Method::GpuSpdm },
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn judge_never_panics_and_always_explains(
        proofs in proptest::collection::vec(any_proof(), 0..6),
        declared in proptest::option::of(any_coord()),
        allowed in proptest::sample::subsequence(vec!["CN", "SG", "US", "DE", "MY"], 0..3),
        now in prop_oneof![Just(NOW), any::<i64>()],
        max_age_secs in prop_oneof![Just(DAY), any::<u64>()],
    ) {
        let allowed = countries(&allowed);
        let judgement = judge(&JudgeInput { proofs: &proofs, now, max_age_secs, declared, allowed: &allowed, index: index() });
        prop_assert!(!judgement.reason.is_empty());
        if judgement.verdict != LocationVerdict::Unproven {
            prop_assert!(judgement.disagreements.is_empty());
            prop_assert!(judgement.method.is_some());
        }
    }

    #[test]
    fn a_longer_round_trip_never_gives_a_smaller_bound(rtt in any::<u64>(), extra in any::<u64>(), floor in any::<u64>()) {
        prop_assert!(bound_km(rtt.saturating_add(extra), floor) >= bound_km(rtt, floor));
        prop_assert!(bound_km(rtt, floor) >= 0.0);
    }

    #[test]
    fn two_disks_leave_an_empty_region_exactly_when_they_are_too_far_apart(
        lat in -60.0..60.0f64, lon in -170.0..170.0f64, r1 in 1.0..800.0f64, r2 in 1.0..800.0f64,
        dlat in -6.0..6.0f64, dlon in -6.0..6.0f64,
    ) {
        let a = Coord { lat, lon };
        let b = Coord { lat: lat + dlat, lon: lon + dlon };
        let region = Region::new(vec![
            Disk { landmark: "a".into(), center: a, radius_km: r1 },
            Disk { landmark: "b".into(), center: b, radius_km: r2 },
        ]);
        // For two disks, pairwise overlap is exactly non-emptiness.
        let apart = great_circle_km(a, b) > r1 + r2 + 0.002;
        prop_assert_eq!(region.is_empty(), apart);
        prop_assert_eq!(region.disagreements().is_empty(), !apart);
    }

    #[test]
    fn a_point_inside_every_disk_means_the_region_is_not_empty(
        disks in proptest::collection::vec((-3.0..3.0f64, -3.0..3.0f64, 50.0..400.0f64), 3..6),
    ) {
        let region = Region::new(
            disks.iter().enumerate().map(|(i, &(lat, lon, radius_km))| {
                Disk { landmark: format!("lm-{i}"), center: Coord { lat, lon }, radius_km }
            }).collect(),
        );
        // Brute force over a 0.1° grid, with 10 m to spare inside every disk.
        let strictly_inside = (0..=120).flat_map(|i| (0..=120).map(move |j| Coord {
            lat: -6.0 + 0.1 * f64::from(i),
            lon: -6.0 + 0.1 * f64::from(j),
        }))
        .find(|&p| region.disks().iter().all(|d| great_circle_km(p, d.center) <= d.radius_km - 0.01));
        if let Some(p) = strictly_inside {
            prop_assert!(!region.is_empty(), "{p} is inside every disk");
            prop_assert!(region.contains(p));
        }
        if region.is_empty() {
            prop_assert!(strictly_inside.is_none());
        }
    }

    #[test]
    fn every_country_a_point_of_the_region_is_in_is_among_the_regions_countries(
        lat in -50.0..65.0f64, lon in -179.0..179.0f64, radius_km in 5.0..400.0f64,
        second in proptest::option::of((-2.0..2.0f64, -2.0..2.0f64, 50.0..400.0f64)),
    ) {
        let mut disks = vec![Disk { landmark: "a".into(), center: Coord { lat, lon }, radius_km }];
        if let Some((dlat, dlon, r)) = second {
            disks.push(Disk { landmark: "b".into(), center: Coord { lat: lat + dlat, lon: lon + dlon }, radius_km: r });
        }
        let region = Region::new(disks);
        let found = region.countries(index());
        let step = radius_km / 111.0 / 10.0;
        for i in -10..=10 {
            for j in -10..=10 {
                let p = Coord { lat: lat + step * f64::from(i), lon: lon + step * f64::from(j) / lat.to_radians().cos() };
                if p.is_valid() && region.contains(p) {
                    let here = index().countries_at(p);
                    prop_assert!(here.is_subset(&found), "{p} is in {here:?}, the region's countries are {found:?}");
                }
            }
        }
    }
}
