//! Key visualization (`pfs.md`, `end-to-end.md`): the first 128 bits of SHA1(initial key)
//! followed by the first 160 bits of SHA256(key in use when the chat reached layer 46) — the
//! 36 bytes TDLib calls `secretChat.key_hash`.
//!
//! Rendered the way the official apps show it, so that a user can compare our screen with the
//! peer's phone (Telegram Android `IdenticonDrawable` and `IdenticonActivity`):
//! - an image of 12 × 12 cells (8 × 8 for the 16-byte pre-layer-46 form), read row by row, left
//!   to right: cell *k* has colour index `(bytes[2k / 8] >> (2k mod 8)) & 3` ([`pixels`]) into
//!   [`COLORS`];
//! - the first 32 bytes as hex, 4 lines of 8 uppercase bytes, a space between bytes and two
//!   after the fourth ([`hex_lines`]).

use sha1::Sha1;
use sha2::{Digest, Sha256};

use super::AuthKey;

/// The 36-byte visualization (or 16 bytes when no layer-46 key is given).
pub fn visualization(initial: &AuthKey, layer46: Option<&AuthKey>) -> Vec<u8> {
    let mut out = Sha1::digest(initial.bytes())[..16].to_vec();
    if let Some(k) = layer46 {
        out.extend_from_slice(&Sha256::digest(k.bytes())[..20]);
    }
    out
}

/// The four cell colours as RGB, by colour index (`IdenticonDrawable.colors`: white, light
/// blue, dark blue, blue).
pub const COLORS: [[u8; 3]; 4] = [
    [0xFF, 0xFF, 0xFF],
    [0xD5, 0xE6, 0xF3],
    [0x2D, 0x57, 0x75],
    [0x2F, 0x99, 0xC9],
];

/// Cells per side of the image: 12 for the 36-byte form, 8 for the 16-byte one (each cell
/// takes two bits, so the image uses every bit). `None` for any other length.
pub fn grid_side(vis: &[u8]) -> Option<usize> {
    match vis.len() {
        36 => Some(12),
        16 => Some(8),
        _ => None,
    }
}

/// The colour index (0..=3) of every cell, row by row, left to right: 144 values for the 36-byte
/// form, 64 for the 16-byte one, none for any other length.
pub fn pixels(vis: &[u8]) -> Vec<u8> {
    let Some(side) = grid_side(vis) else {
        return Vec::new();
    };
    (0..side * side)
        .map(|k| {
            let bit = 2 * k;
            (vis[bit / 8] >> (bit % 8)) & 3
        })
        .collect()
}

/// The hex the apps print under the image: the first 32 bytes, 4 lines of 8 uppercase bytes
/// (`"1A 2B 3C 4D  5E 6F 70 81"`). Empty for the 16-byte form, which the apps show as an image
/// only.
pub fn hex_lines(vis: &[u8]) -> Vec<String> {
    if vis.len() < 32 {
        return Vec::new();
    }
    vis[..32]
        .chunks(8)
        .map(|line| {
            let half = |b: &[u8]| {
                b.iter()
                    .map(|x| format!("{x:02X}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            };
            format!("{}  {}", half(&line[..4]), half(&line[4..]))
        })
        .collect()
}

/// The image as a standalone SVG document: one `<rect>` per cell, `cell` units wide. Empty for
/// a length [`grid_side`] does not know.
pub fn svg(vis: &[u8], cell: u32) -> String {
    let Some(side) = grid_side(vis) else {
        return String::new();
    };
    let size = cell as usize * side;
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{size}\" height=\"{size}\" \
         viewBox=\"0 0 {size} {size}\" shape-rendering=\"crispEdges\">\n"
    );
    for (k, p) in pixels(vis).into_iter().enumerate() {
        let [r, g, b] = COLORS[usize::from(p)];
        let (x, y) = ((k % side) * cell as usize, (k / side) * cell as usize);
        out.push_str(&format!(
            "<rect x=\"{x}\" y=\"{y}\" width=\"{cell}\" height=\"{cell}\" \
             fill=\"#{r:02X}{g:02X}{b:02X}\"/>\n"
        ));
    }
    out.push_str("</svg>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout() {
        let (a, b) = (AuthKey::new([1; 256]), AuthKey::new([2; 256]));
        let v = visualization(&a, Some(&b));
        assert_eq!(v.len(), 36);
        assert_eq!(&v[..16], &Sha1::digest([1u8; 256])[..16]);
        assert_eq!(&v[16..], &Sha256::digest([2u8; 256])[..20]);
        assert_eq!(visualization(&a, None).len(), 16);
    }

    /// Hand-made bytes whose cells are known: byte 0 = 0b11_10_01_00 gives cells 0, 1, 2, 3
    /// (two bits each, lowest first, as `IdenticonDrawable.getBits`).
    #[test]
    fn cells_read_two_bits_at_a_time_lowest_first() {
        let mut v = [0u8; 36];
        v[0] = 0b1110_0100;
        v[1] = 0b0000_0011;
        v[35] = 0b1100_0000;
        let p = pixels(&v);
        assert_eq!(p.len(), 144);
        assert_eq!(&p[..6], &[0, 1, 2, 3, 3, 0]);
        assert_eq!(p[143], 3);
        assert!(p[6..143].iter().all(|&c| c == 0));
        assert_eq!(pixels(&v[..16]).len(), 64);
        assert!(pixels(&v[..20]).is_empty());
    }

    #[test]
    fn hex_lines_as_the_apps_print_them() {
        let v: Vec<u8> = (0..36).map(|i| i * 7).collect();
        let lines = hex_lines(&v);
        assert_eq!(lines.len(), 4);
        assert_eq!(lines[0], "00 07 0E 15  1C 23 2A 31");
        assert_eq!(lines[3], "A8 AF B6 BD  C4 CB D2 D9");
        assert!(hex_lines(&v[..16]).is_empty());
    }

    #[test]
    fn svg_has_one_cell_per_pixel_in_the_four_colours() {
        let v: Vec<u8> = (0..36u32).map(|i| (i * 37) as u8).collect();
        let s = svg(&v, 10);
        assert_eq!(s.matches("<rect").count(), 144);
        assert!(s.contains("width=\"120\""));
        let fills: std::collections::BTreeSet<&str> = s
            .match_indices("fill=\"#")
            .map(|(i, _)| &s[i + 7..i + 13])
            .collect();
        assert!(fills.is_subset(&["FFFFFF", "D5E6F3", "2D5775", "2F99C9"].into()));
        assert!(svg(&v[..3], 10).is_empty());
    }
}
