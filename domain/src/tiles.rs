//! C2SP tlog-tiles paths: a tile's index `N` is written as 3-digit path elements, all but the
//! last prefixed with `x` (`1234067` → `x001/x234/067`), and a partial tile of width `W` ends
//! in `.p/W`. Parsing also takes the plain decimal index earlier chipledger servers wrote.

/// The path of a tile under `/tile/<level>/` (or `/tile/entries/`): index `n`, `width` 1–256
/// (256: a full tile).
pub fn tile_index_path(n: u64, width: u16) -> String {
    let digits = n.to_string();
    let padded = format!("{}{digits}", "0".repeat((3 - digits.len() % 3) % 3));
    let groups: Vec<&str> = (0..padded.len() / 3).map(|i| &padded[3 * i..3 * i + 3]).collect();
    let mut out = String::new();
    for (i, g) in groups.iter().enumerate() {
        if i + 1 < groups.len() {
            out.push('x');
            out.push_str(g);
            out.push('/');
        } else {
            out.push_str(g);
        }
    }
    if width < 256 {
        out.push_str(&format!(".p/{width}"));
    }
    out
}

/// `N` or `N.p/W` (N in the grouped form or plain decimal) → (index, width 1–256).
pub fn parse_tile_index_path(path: &str) -> Option<(u64, u16)> {
    if path.len() > 64 {
        return None;
    }
    let (index, width) = match path.split_once(".p/") {
        Some((index, w)) => {
            if w.is_empty() || !w.bytes().all(|b| b.is_ascii_digit()) || (w.len() > 1 && w.starts_with('0')) {
                return None;
            }
            (index, w.parse::<u16>().ok().filter(|w| (1..256).contains(w))?)
        }
        None => (path, 256),
    };
    let parts: Vec<&str> = index.split('/').collect();
    let digits = if parts.len() == 1 && !parts[0].starts_with('x') {
        // Plain decimal (earlier chipledger) or a single 3-digit element.
        let p = parts[0];
        if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        p.to_string()
    } else {
        let (last, groups) = parts.split_last()?;
        let mut digits = String::new();
        for g in groups {
            let g = g.strip_prefix('x')?;
            if g.len() != 3 || !g.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            digits.push_str(g);
        }
        if last.len() != 3 || !last.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        digits.push_str(last);
        digits
    };
    Some((digits.parse().ok()?, width))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // test code: a failure is the point
mod tests {
    use super::*;

    #[test]
    fn paths_follow_the_spec_and_round_trip() {
        // The spec's examples.
        assert_eq!(tile_index_path(1234067, 256), "x001/x234/067");
        assert_eq!(tile_index_path(1234067, 8), "x001/x234/067.p/8");
        assert_eq!(tile_index_path(0, 256), "000");
        assert_eq!(tile_index_path(999, 256), "999");
        assert_eq!(tile_index_path(1000, 256), "x001/000");
        for (n, w) in [(0, 1), (5, 256), (1000, 255), (1234067, 8), (u64::MAX >> 8, 256)] {
            assert_eq!(parse_tile_index_path(&tile_index_path(n, w)), Some((n, w)), "{n} {w}");
        }
        // Earlier plain decimal paths still read.
        assert_eq!(parse_tile_index_path("1234.p/3"), Some((1234, 3)));
        for bad in
            ["", "x001", "x01/234", "001/234", "x001/23", "1.p/0", "1.p/256", "1.p/01", "1.p/", "abc", "x001/x234/"]
        {
            assert_eq!(parse_tile_index_path(bad), None, "{bad}");
        }
    }
}
