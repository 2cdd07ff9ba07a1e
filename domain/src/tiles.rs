//! C2SP tlog-tiles paths: a tile's index `N` is written as 3-digit path elements, all but the
//! last prefixed with `x` (`1234067` → `x001/x234/067`), and a partial tile of width `W` ends
//! in `.p/W`. Parsing also takes the plain decimal index earlier chipledger servers wrote.

use crate::Error;

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

/// Every tile a tree of `size` leaves has: `(level, index, width)`, width 256 for a full tile,
/// lowest level first. Level `L` holds the hashes at height `8·L`.
pub fn tiles_of(size: u64) -> Vec<(u8, u64, u16)> {
    let mut out = Vec::new();
    for level in 0u8..8 {
        let hashes = size >> (8 * u32::from(level));
        if hashes == 0 {
            break;
        }
        for index in 0..hashes / 256 {
            out.push((level, index, 256));
        }
        if !hashes.is_multiple_of(256) {
            out.push((level, hashes / 256, (hashes % 256) as u16));
        }
    }
    out
}

/// Checks a tile's bytes against a tree that holds every hash: `width` hashes of height `8·level`
/// from `index · 256`. The error says which hash differs.
pub fn check_tile(
    tree: &impl crate::merkle::HashSource,
    level: u8,
    index: u64,
    width: u16,
    bytes: &[u8],
) -> Result<(), Error> {
    let bad = |reason: String| Error::Tile { level, index, reason };
    if bytes.len() != usize::from(width) * 32 {
        return Err(bad(format!("{} bytes, a tile of width {width} has {}", bytes.len(), usize::from(width) * 32)));
    }
    for (i, chunk) in bytes.chunks(32).enumerate() {
        let at = index * 256 + i as u64;
        let want = tree.subtree(8 * level, at).map_err(|e| bad(e.to_string()))?;
        if want.0[..] != chunk[..] {
            return Err(bad(format!("hash {i} is not the tree's")));
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // test code: a failure is the point
mod tests {
    use super::*;

    #[test]
    fn a_tree_has_the_tiles_the_spec_says() {
        assert_eq!(tiles_of(0), vec![]);
        assert_eq!(tiles_of(5), vec![(0, 0, 5)]);
        assert_eq!(tiles_of(256), vec![(0, 0, 256), (1, 0, 1)]);
        assert_eq!(tiles_of(70_000).len(), 274 + 2 + 1);
        assert_eq!(tiles_of(70_000).last(), Some(&(2, 0, 1)));
    }

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
