//! Rate limits: token buckets per principal and per peer address (an IPv6 /64; behind a trusted
//! proxy, the client it names), and the 429 answer.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::ConnectInfo;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;

/// Per-principal token buckets.
#[derive(Debug)]
pub(crate) struct RateLimiter {
    per_second: f64,
    burst: f64,
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

impl RateLimiter {
    pub(crate) fn new(per_second: f64, burst: f64) -> RateLimiter {
        RateLimiter { per_second, burst, buckets: Mutex::new(HashMap::new()) }
    }

    /// Takes one request from `key`'s bucket, or says how long to wait.
    pub(crate) fn take(&self, key: &str) -> Result<(), Duration> {
        self.take_n(key, 1.0)
    }

    /// Takes `n` units (requests, bytes) from `key`'s bucket, or says how long to wait. More than
    /// a full bucket is never available.
    pub(crate) fn take_n(&self, key: &str, n: f64) -> Result<(), Duration> {
        let now = Instant::now();
        let mut map = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() > 100_000 {
            // Forget buckets that have refilled; they hold no state worth keeping.
            let (rate, burst) = (self.per_second, self.burst);
            map.retain(|_, (level, at)| *level + now.duration_since(*at).as_secs_f64() * rate < burst);
        }
        let (level, at) = map.entry(key.to_string()).or_insert((self.burst, now));
        *level = (*level + now.duration_since(*at).as_secs_f64() * self.per_second).min(self.burst);
        *at = now;
        if *level >= n {
            *level -= n;
            Ok(())
        } else {
            Err(Duration::from_secs_f64(((n - *level) / self.per_second).min(3600.0)))
        }
    }
}

/// Signed requests already served, by [`RequestSignature::replay_id`], kept for as long as
/// their time is within the allowed skew of the clock: the same signed request twice is
/// refused (a replay by whoever saw it on the way). Bounded: past `capacity` live entries,
/// signed requests are refused as busy rather than let through unchecked.
///
/// [`RequestSignature::replay_id`]: chipledger_domain::auth::RequestSignature::replay_id
#[derive(Debug)]
pub(crate) struct Replays {
    capacity: usize,
    /// Replay ids by the second their request says it was signed.
    by_second: Mutex<std::collections::BTreeMap<i64, std::collections::HashSet<[u8; 16]>>>,
}

/// What [`Replays::first_use`] says of a signed request.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Use {
    First,
    Replayed,
    Full,
}

impl Replays {
    pub(crate) fn new(capacity: usize) -> Replays {
        Replays { capacity, by_second: Mutex::new(std::collections::BTreeMap::new()) }
    }

    /// Records a verified signature's first use at `now`; `time` is when it says it was made
    /// (within the skew of `now`, or it would not have verified).
    pub(crate) fn first_use(&self, id: [u8; 16], time: i64, now: i64) -> Use {
        let mut map = self.by_second.lock().unwrap_or_else(|p| p.into_inner());
        // A signature older than the skew no longer verifies: forget it.
        let oldest = now.saturating_sub(chipledger_domain::auth::MAX_SKEW_SECS);
        while map.first_key_value().is_some_and(|(t, _)| *t < oldest) {
            map.pop_first();
        }
        if map.get(&time).is_some_and(|ids| ids.contains(&id)) {
            return Use::Replayed;
        }
        if map.values().map(std::collections::HashSet::len).sum::<usize>() >= self.capacity {
            return Use::Full;
        }
        map.entry(time).or_default().insert(id);
        Use::First
    }
}

/// The caller's address as a rate-limit bucket ([`peer_bucket`]), for routes that charge it more.
#[derive(Clone, Debug)]
pub(crate) struct Peer(pub String);

/// The bucket of a caller by address: its peer, or the client a trusted proxy names; an IPv6
/// address by its /64 (one host holds a whole /64, and would otherwise get 2^64 buckets).
pub(crate) fn peer_bucket(extensions: &axum::http::Extensions, headers: &HeaderMap, trusted: &[IpAddr]) -> String {
    let Some(ConnectInfo(addr)) = extensions.get::<ConnectInfo<SocketAddr>>() else {
        return "anonymous".to_string();
    };
    format!("anonymous:{}", bucket_of(client_address(addr.ip(), headers, trusted)))
}

/// The client behind a chain of trusted proxies: the right-most `X-Forwarded-For` address that
/// is not one of them (the left ones are the client's own say). From an untrusted peer, the peer.
pub(crate) fn client_address(peer: IpAddr, headers: &HeaderMap, trusted: &[IpAddr]) -> IpAddr {
    let trusted: Vec<IpAddr> = trusted.iter().map(|ip| ip.to_canonical()).collect();
    if !trusted.contains(&peer.to_canonical()) {
        return peer;
    }
    // From the right: each trusted hop vouches for the address left of it. The walk stops at
    // the first untrusted address (the client) or at an entry it cannot read (then the nearest
    // trusted hop stands: nothing further left is vouched for).
    let entries: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    let mut nearest = peer;
    for entry in entries.into_iter().rev() {
        let Ok(ip) = entry.parse::<IpAddr>() else { return nearest };
        let ip = ip.to_canonical();
        if !trusted.contains(&ip) {
            return ip;
        }
        nearest = ip;
    }
    nearest
}

/// An address as a rate-limit bucket: IPv4 whole, IPv6 by its /64.
fn bucket_of(ip: IpAddr) -> String {
    match ip.to_canonical() {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
    }
}

pub(crate) fn too_many(wait: Duration) -> Response {
    let mut r =
        ApiError::new(StatusCode::TOO_MANY_REQUESTS, "too many requests from this caller; slow down").into_response();
    if let Ok(v) = HeaderValue::from_str(&wait.as_secs().max(1).to_string()) {
        r.headers_mut().insert(header::RETRY_AFTER, v);
    }
    r
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // test code: a failure is the point
mod peer_tests {
    use super::*;

    fn headers(xff: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in xff {
            h.append("x-forwarded-for", HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn an_ipv6_peer_is_its_64_and_an_ipv4_one_itself() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(bucket_of(a), bucket_of(b));
        assert_ne!(bucket_of(a), bucket_of(c));
        assert_eq!(bucket_of("192.0.2.7".parse().unwrap()), "192.0.2.7");
        assert_eq!(bucket_of("::ffff:192.0.2.7".parse().unwrap()), "192.0.2.7");
    }

    #[test]
    fn only_a_trusted_proxy_names_the_client_and_only_by_its_rightmost_untrusted_address() {
        let proxy: IpAddr = "10.0.0.1".parse().unwrap();
        let other: IpAddr = "203.0.113.9".parse().unwrap();
        let trusted = [proxy];
        // From an untrusted peer the header is the peer's own say: ignored.
        assert_eq!(client_address(other, &headers(&["198.51.100.1"]), &trusted), other);
        // From the proxy: the right-most address it did not add itself.
        let h = headers(&["1.1.1.1, 198.51.100.1", "10.0.0.1"]);
        assert_eq!(client_address(proxy, &h, &trusted), "198.51.100.1".parse::<IpAddr>().unwrap());
        // Garbage the client put left of what the proxy appended changes nothing; an entry the
        // proxy's hop cannot vouch for leaves the nearest trusted hop.
        let client: IpAddr = "198.51.100.1".parse().unwrap();
        assert_eq!(client_address(proxy, &headers(&["nonsense, 198.51.100.1"]), &trusted), client);
        assert_eq!(client_address(proxy, &headers(&["198.51.100.1, nonsense"]), &trusted), proxy);
        // A trusted proxy written as an IPv4-mapped IPv6 address is the same proxy.
        let mapped = ["::ffff:10.0.0.1".parse::<IpAddr>().unwrap()];
        assert_eq!(client_address(proxy, &headers(&["198.51.100.1"]), &mapped), client);
        assert_eq!(client_address(proxy, &HeaderMap::new(), &trusted), proxy);
    }

    #[test]
    fn a_signature_is_remembered_while_it_verifies_and_the_memory_is_bounded() {
        let r = Replays::new(2);
        assert_eq!(r.first_use([1; 16], 1_000, 1_000), Use::First);
        assert_eq!(r.first_use([1; 16], 1_000, 1_200), Use::Replayed);
        assert_eq!(r.first_use([2; 16], 1_000, 1_200), Use::First);
        // Full: a third live signature is refused, not let through unremembered.
        assert_eq!(r.first_use([3; 16], 1_100, 1_200), Use::Full);
        // Past the skew the first two no longer verify anywhere, and are forgotten.
        assert_eq!(r.first_use([3; 16], 1_301, 1_301), Use::First);
        assert_eq!(r.first_use([1; 16], 1_301, 1_301), Use::First);
    }
}
