//! Key visualization (`pfs.md`, `end-to-end.md`): the first 128 bits of SHA1(initial key)
//! followed by the first 160 bits of SHA256(key in use when the chat reached layer 46).
//!
//! Rendering: a hex grid (4 rows of the 36 bytes, 9 bytes each) and an emoji sequence: each of
//! the 36 bytes indexes a fixed table of 64 emoji with its low 6 bits (documented in
//! `docs/crypto.md`; a rendering for people, not a protocol value).

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

const EMOJI: [&str; 64] = [
    "😀", "😎", "🤖", "👻", "🐶", "🐱", "🦊", "🐻", "🐼", "🐨", "🐯", "🦁", "🐮", "🐷", "🐸", "🐵",
    "🐔", "🐧", "🐦", "🦆", "🦉", "🐺", "🐴", "🦄", "🐝", "🐛", "🦋", "🐌", "🐞", "🐢", "🐍", "🐙",
    "🦀", "🐬", "🐳", "🦈", "🐊", "🐘", "🦒", "🐪", "🌵", "🌲", "🌻", "🍄", "🌍", "🌙", "⭐", "🔥",
    "🌈", "⛄", "🍎", "🍌", "🍇", "🍓", "🥕", "🌽", "🍕", "🍩", "⚽", "🎲", "🎸", "🚀", "⌛", "🔑",
];

/// The emoji rendering of a visualization.
pub fn emoji(vis: &[u8]) -> String {
    vis.iter().map(|b| EMOJI[usize::from(b & 63)]).collect()
}

/// The hex grid: rows of 9 bytes.
pub fn hex_grid(vis: &[u8]) -> String {
    vis.chunks(9)
        .map(hex::encode)
        .collect::<Vec<_>>()
        .join("\n")
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
        assert_eq!(emoji(&v).chars().count(), 36);
        assert_eq!(hex_grid(&v).lines().count(), 4);
    }
}
