//! Random TL values for property tests and fuzzing ([`TlArbitrary`], derived for every
//! generated type), and the round-trip check the generated `check_roundtrips` runs.

use crate::json::TlJson;
use crate::serialize::VectorItem;
use crate::{Deserialize, Serialize};

/// A small deterministic generator (SplitMix64) with a nesting budget, so that vectors of
/// objects stay small and generation always ends.
#[derive(Debug, Clone)]
pub struct Gen {
    state: u64,
    depth: u32,
}

impl Gen {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Self {
        Self {
            state: seed,
            depth: 0,
        }
    }

    /// 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`0` when `n == 0`).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next_u64() % n as u64) as usize
        }
    }

    /// A fair coin.
    pub fn coin(&mut self) -> bool {
        self.next_u64() & 1 == 1
    }

    /// Enters a nested object.
    pub fn descend(&mut self) {
        self.depth += 1;
    }

    /// Leaves a nested object.
    pub fn ascend(&mut self) {
        self.depth = self.depth.saturating_sub(1);
    }

    /// A collection length: shorter the deeper we are.
    fn len(&mut self) -> usize {
        match self.depth {
            0..=2 => self.below(4),
            3..=4 => self.below(2),
            _ => 0,
        }
    }

    /// A byte length that often crosses the 254-byte length-form boundary.
    fn byte_len(&mut self) -> usize {
        match self.below(8) {
            0 => 253 + self.below(4),
            1 => self.below(600),
            _ => self.below(20),
        }
    }
}

/// A type with random values.
pub trait TlArbitrary {
    /// A random value.
    fn arbitrary(g: &mut Gen) -> Self;
}

impl TlArbitrary for i32 {
    fn arbitrary(g: &mut Gen) -> Self {
        g.next_u64() as i32
    }
}

impl TlArbitrary for i64 {
    fn arbitrary(g: &mut Gen) -> Self {
        g.next_u64() as i64
    }
}

impl TlArbitrary for f64 {
    fn arbitrary(g: &mut Gen) -> Self {
        match g.below(8) {
            0 => f64::from_bits(g.next_u64()), // any bit pattern, NaN included
            1 => -0.0,
            _ => (g.next_u64() as i64 as f64) / 1e9,
        }
    }
}

impl TlArbitrary for bool {
    fn arbitrary(g: &mut Gen) -> Self {
        g.coin()
    }
}

impl TlArbitrary for String {
    fn arbitrary(g: &mut Gen) -> Self {
        const CHARS: &[char] = &['a', 'Z', '0', ' ', 'é', 'ж', '€', '😀', '\u{0}', '"', '\\'];
        let n = g.byte_len() / 2;
        (0..n).map(|_| CHARS[g.below(CHARS.len())]).collect()
    }
}

impl TlArbitrary for Vec<u8> {
    fn arbitrary(g: &mut Gen) -> Self {
        let n = g.byte_len();
        (0..n).map(|_| g.next_u64() as u8).collect()
    }
}

impl<const N: usize> TlArbitrary for [u8; N] {
    fn arbitrary(g: &mut Gen) -> Self {
        std::array::from_fn(|_| g.next_u64() as u8)
    }
}

impl<T: VectorItem + TlArbitrary> TlArbitrary for Vec<T> {
    fn arbitrary(g: &mut Gen) -> Self {
        g.descend();
        let n = g.len();
        let v = (0..n).map(|_| T::arbitrary(g)).collect();
        g.ascend();
        v
    }
}

impl<T: VectorItem + TlArbitrary> TlArbitrary for crate::RawVec<T> {
    fn arbitrary(g: &mut Gen) -> Self {
        crate::RawVec(Vec::arbitrary(g))
    }
}

impl<T: TlArbitrary> TlArbitrary for crate::Bare<T> {
    fn arbitrary(g: &mut Gen) -> Self {
        crate::Bare(T::arbitrary(g))
    }
}

/// Checks on one random `T`: bytes → value → bytes is the identity, JSON → value is the
/// identity, and every strict prefix of the bytes fails to decode (no panic, an error).
///
/// # Errors
/// A description of the first property that failed.
pub fn roundtrip<T>(g: &mut Gen) -> Result<(), String>
where
    T: TlArbitrary + Serialize + Deserialize + TlJson + PartialEq + std::fmt::Debug,
{
    let v = T::arbitrary(g);
    let bytes = v.to_bytes().map_err(|e| format!("{v:?}: encode: {e}"))?;
    let back = T::from_bytes(&bytes).map_err(|e| format!("{v:?}: decode: {e}"))?;
    let again = back
        .to_bytes()
        .map_err(|e| format!("{v:?}: re-encode: {e}"))?;
    if again != bytes {
        return Err(format!("{v:?}: bytes changed on re-encode"));
    }
    let json = v.to_json();
    let from_json = T::from_json(&json).map_err(|e| format!("{json}: from_json: {e}"))?;
    if from_json.to_bytes().ok().as_ref() != Some(&bytes) {
        return Err(format!("{json}: JSON round trip changed the bytes"));
    }
    let text = json.to_string();
    let reparsed: serde_json::Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
    if crate::encode_json(&reparsed).ok().as_ref() != Some(&bytes) {
        return Err(format!("{text}: encode_json(text) differs"));
    }
    for cut in [0, bytes.len() / 2, bytes.len().saturating_sub(1)] {
        if cut < bytes.len() && T::from_bytes(&bytes[..cut]).is_ok() {
            return Err(format!("{v:?}: a {cut}-byte prefix decoded"));
        }
    }
    Ok(())
}
