//! What the simulator sends: deterministic from the seed, so the receiving side can recompute
//! and compare every message and file without keeping a copy.
//!
//! A stream is one direction of one chat (`pair × 2 + dir`). Message `idx` of a stream is a text
//! `"{pair}:{dir}:{idx}:{payload}"` or, for the configured share, a file whose caption has the
//! same prefix and whose bytes are a function of (seed, stream, idx).

use secretchat::tl::api::{enums as api, types as api_types};
use secretchat::tl::e2e::enums as e2e;

/// SplitMix64: a tiny, well-mixed hash for deterministic choices.
pub fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// The deterministic plan of a run.
#[derive(Debug, Clone, Copy)]
pub struct Workload {
    /// Seed of every choice.
    pub seed: u64,
    /// Share of messages that are files (0..=1).
    pub file_share: f64,
    /// Size of each file in bytes.
    pub file_size: usize,
}

/// What message `idx` of a stream is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// A text message.
    Text(String),
    /// A file with this caption.
    File(String),
}

impl Workload {
    fn key(&self, stream: usize, idx: u32) -> u64 {
        mix(self.seed ^ mix((stream as u64) << 32 | u64::from(idx)))
    }

    /// The prefix every message carries: which chat, which direction, which position.
    pub fn prefix(pair: usize, dir: usize, idx: u32) -> String {
        format!("{pair}:{dir}:{idx}:")
    }

    /// Message `idx` of `pair`'s direction `dir`.
    pub fn item(&self, pair: usize, dir: usize, idx: u32) -> Item {
        let k = self.key(pair * 2 + dir, idx);
        let is_file =
            self.file_share > 0.0 && (k >> 11) as f64 / (1u64 << 53) as f64 <= self.file_share;
        let mut text = Self::prefix(pair, dir, idx);
        if is_file {
            text.push_str("file");
            return Item::File(text);
        }
        // 8..=200 characters of payload, a typical chat message.
        let len = 8 + (k % 193) as usize;
        let mut s = mix(k);
        for _ in 0..len {
            s = mix(s);
            text.push(char::from(b'a' + (s % 26) as u8));
        }
        Item::Text(text)
    }

    /// The bytes of the file message `idx` of a stream.
    pub fn file_bytes(&self, pair: usize, dir: usize, idx: u32) -> Vec<u8> {
        let mut s = self.key(pair * 2 + dir, idx) ^ 0xf11e;
        let mut out = Vec::with_capacity(self.file_size + 8);
        while out.len() < self.file_size {
            s = mix(s);
            out.extend_from_slice(&s.to_le_bytes());
        }
        out.truncate(self.file_size);
        out
    }

    /// The random id of message `idx` of a stream: unique in the run (the server
    /// de-duplicates by it), never 0.
    pub fn random_id(pair: usize, dir: usize, idx: u32) -> i64 {
        (((pair as i64) << 25) | ((dir as i64) << 24) | i64::from(idx)) + 1
    }
}

/// A received text's position: `(pair, dir, idx)`, if it has the simulator's prefix.
pub fn parse_prefix(text: &str) -> Option<(usize, usize, u32)> {
    let mut it = text.splitn(4, ':');
    let pair = it.next()?.parse().ok()?;
    let dir = it.next()?.parse().ok()?;
    let idx = it.next()?.parse().ok()?;
    it.next()?;
    Some((pair, dir, idx))
}

/// The simulated server's user `id`.
pub fn user(id: u64) -> api::InputUser {
    api::InputUser::InputUser(api_types::InputUser {
        user_id: id as i64,
        access_hash: 0,
    })
}

/// The text (or caption) of a received message.
pub fn text_of(m: &e2e::DecryptedMessage) -> Option<&str> {
    match m {
        e2e::DecryptedMessage::DecryptedMessage73(m) => Some(&m.message),
        e2e::DecryptedMessage::DecryptedMessage46(m) => Some(&m.message),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_are_deterministic_and_carry_their_position() {
        let w = Workload {
            seed: 9,
            file_share: 0.25,
            file_size: 1000,
        };
        let mut files = 0;
        for idx in 0..400 {
            let a = w.item(3, 1, idx);
            assert_eq!(a, w.item(3, 1, idx));
            let (Item::Text(t) | Item::File(t)) = &a;
            assert_eq!(parse_prefix(t), Some((3, 1, idx)));
            if matches!(a, Item::File(_)) {
                files += 1;
            }
        }
        assert!((60..140).contains(&files), "{files} files of 400 at 25%");
        assert_eq!(w.file_bytes(1, 0, 5).len(), 1000);
        assert_eq!(w.file_bytes(1, 0, 5), w.file_bytes(1, 0, 5));
        assert_ne!(w.file_bytes(1, 0, 5), w.file_bytes(1, 0, 6));
        assert_ne!(Workload::random_id(0, 0, 0), 0);
        assert_ne!(Workload::random_id(1, 0, 0), Workload::random_id(0, 1, 0));
    }
}
