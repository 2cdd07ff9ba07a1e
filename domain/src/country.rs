//! ISO 3166-1 alpha-2 country codes and the EAR country groups the advanced-computing rules use.
//!
//! Group membership is dated: the rules ask "where was this shipped, and which groups was that
//! country in on that day". Sources: `docs/export-rules.md` §2 (D:1/D:4/D:5 destinations, Israel and
//! Cyprus excluded via A:6, Macau added to the 2022 rule on 18 Jan 2023, the UAE moved into A:5
//! on 10 Jul 2026) and Supplement No. 1 to EAR part 740 for the member lists. Membership lists
//! are from the supplement as commonly reproduced, not re-checked against the CFR here: treat
//! them as [U] and review before relying on a verdict for a D-group country other than China.

use std::fmt;

use serde::{Deserialize, Serialize};
use time::{macros::date, Date};

use crate::Error;

const ISO_CSV: &str = include_str!("../data/iso3166-alpha2.csv");

/// An ISO 3166-1 alpha-2 code that exists (`CN`, `HK`, `MO`, `US`…).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Country([u8; 2]);

impl Country {
    pub fn parse(s: &str) -> Result<Country, Error> {
        let up = s.trim().to_ascii_uppercase();
        let bad = || Error::Country { input: s.to_string() };
        let b = up.as_bytes();
        if b.len() != 2 || !b.iter().all(u8::is_ascii_uppercase) {
            return Err(bad());
        }
        if !ISO_CSV.lines().skip(1).any(|l| l.as_bytes().get(..2) == Some(b) && l.as_bytes().get(2) == Some(&b',')) {
            return Err(bad());
        }
        Ok(Country([b[0], b[1]]))
    }

    pub fn code(&self) -> &str {
        // Invariant: constructed only from two ASCII uppercase letters.
        std::str::from_utf8(&self.0).unwrap_or("??")
    }

    /// The English short name from ISO 3166-1.
    pub fn name(&self) -> String {
        ISO_CSV
            .lines()
            .skip(1)
            .find(|l| l.as_bytes().get(..2) == Some(&self.0[..]))
            .and_then(|l| l.split_once(','))
            .map(|(_, n)| n.trim_matches('"').to_string())
            .unwrap_or_else(|| self.code().to_string())
    }

    const fn of(code: &[u8; 2]) -> Country {
        Country(*code)
    }
}

impl TryFrom<String> for Country {
    type Error = Error;
    fn try_from(s: String) -> Result<Self, Error> {
        Country::parse(&s)
    }
}

impl From<Country> for String {
    fn from(c: Country) -> String {
        c.code().to_string()
    }
}

impl fmt::Display for Country {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

pub const CHINA: Country = Country::of(b"CN");
pub const HONG_KONG: Country = Country::of(b"HK");
pub const MACAU: Country = Country::of(b"MO");
pub const RUSSIA: Country = Country::of(b"RU");

/// The country groups of Supplement No. 1 to part 740 that the rules look at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum CountryGroup {
    #[serde(rename = "A:5")]
    A5,
    #[serde(rename = "A:6")]
    A6,
    #[serde(rename = "D:1")]
    D1,
    #[serde(rename = "D:4")]
    D4,
    #[serde(rename = "D:5")]
    D5,
}

impl fmt::Display for CountryGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CountryGroup::A5 => "A:5",
            CountryGroup::A6 => "A:6",
            CountryGroup::D1 => "D:1",
            CountryGroup::D4 => "D:4",
            CountryGroup::D5 => "D:5",
        })
    }
}

const D1: &[&str] = &[
    "AM", "AZ", "BY", "KH", "CN", "GE", "IQ", "KZ", "KP", "KG", "LA", "LY", "MO", "MD", "MN", "RU", "TJ", "TM", "UZ",
    "VE", "VN", "YE",
];
const D4: &[&str] = &[
    "BH", "CN", "EG", "IR", "IQ", "IL", "JO", "KW", "LB", "LY", "MO", "KP", "OM", "PK", "QA", "RU", "SA", "SY", "AE",
    "YE",
];
const D5: &[&str] = &[
    "AF", "BY", "MM", "KH", "CF", "CN", "CD", "CU", "CY", "ER", "HT", "IR", "IQ", "KP", "LB", "LY", "NI", "RU", "SO",
    "SS", "SD", "SY", "VE", "ZW",
];
const A6: &[&str] = &["IL", "CY"];
const A5: &[&str] = &[
    "AR", "AU", "AT", "BE", "BG", "CA", "HR", "CZ", "DK", "EE", "FI", "FR", "DE", "GR", "HU", "IS", "IN", "IE", "IT",
    "JP", "LV", "LT", "LU", "NL", "NZ", "NO", "PL", "PT", "RO", "SK", "SI", "KR", "ES", "SE", "CH", "TR", "GB", "US",
];

/// The UAE joined A:5 (with named approved recipients) on this date, per 91 FR 43034.
pub const UAE_INTO_A5: Date = date!(2026 - 07 - 10);

/// The EAR treats Hong Kong as China since 14 Jul 2020 (EO 13936); the rules here follow that.
pub fn treated_as(country: Country) -> Country {
    if country == HONG_KONG {
        CHINA
    } else {
        country
    }
}

/// The groups `country` was in on `on`.
pub fn groups(country: Country, on: Date) -> Vec<CountryGroup> {
    let c = treated_as(country);
    let code = c.code();
    let mut out = Vec::new();
    let uae_a5 = code == "AE" && on >= UAE_INTO_A5;
    if A5.contains(&code) || uae_a5 {
        out.push(CountryGroup::A5);
    }
    if A6.contains(&code) {
        out.push(CountryGroup::A6);
    }
    if D1.contains(&code) {
        out.push(CountryGroup::D1);
    }
    if D4.contains(&code) {
        out.push(CountryGroup::D4);
    }
    if D5.contains(&code) {
        out.push(CountryGroup::D5);
    }
    out
}
