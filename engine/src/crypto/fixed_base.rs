//! Constant-time fixed-base exponentiation for `g^a mod p` (the generator is small and fixed per
//! DH config, so it can be precomputed once and reused for every handshake and re-key).
//!
//! Table: `row[j][d] = g^(d·16^j)` for the 512 nibble positions `j` of a 2048-bit exponent and
//! digits `d ∈ 0..16` (2 MiB). `g^a = ∏ⱼ row[j][aⱼ]`: 512 Montgomery multiplications instead of
//! 2048 squarings plus 512 multiplications, and every lookup scans the whole row with
//! constant-time selection, so neither timing nor memory access depends on `a`.

use crypto_bigint::U2048;
use crypto_bigint::modular::{MontyForm, MontyParams};
use subtle::{ConditionallySelectable, ConstantTimeEq};
use zeroize::Zeroize;

type Monty = MontyForm<{ U2048::LIMBS }>;

/// Nibble positions of a 2048-bit exponent.
const ROWS: usize = 512;

/// The precomputed powers of one generator modulo one prime.
pub struct FixedBase {
    rows: Vec<[Monty; 16]>,
    params: MontyParams<{ U2048::LIMBS }>,
}

impl std::fmt::Debug for FixedBase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FixedBase({} rows)", self.rows.len())
    }
}

impl FixedBase {
    /// Precomputes the table for `g` (about 7,700 multiplications, once per DH config).
    pub fn new(g: u32, params: MontyParams<{ U2048::LIMBS }>) -> Self {
        let one = Monty::one(params);
        let mut base = Monty::new(&U2048::from_u32(g), params);
        let mut rows = Vec::with_capacity(ROWS);
        for _ in 0..ROWS {
            let mut row = [one; 16];
            for d in 1..16 {
                row[d] = row[d - 1] * base;
            }
            base = row[15] * base; // g^(16^(j+1))
            rows.push(row);
        }
        Self { rows, params }
    }

    /// `g^exp mod p` for a big-endian 256-byte secret exponent, in constant time.
    pub fn pow(&self, exp: &[u8; 256]) -> U2048 {
        let mut acc = Monty::one(self.params);
        for (j, row) in self.rows.iter().enumerate() {
            let byte = exp[255 - j / 2];
            let mut nibble = if j % 2 == 0 { byte & 15 } else { byte >> 4 };
            let mut sel = row[0];
            for (d, v) in row.iter().enumerate().skip(1) {
                sel.conditional_assign(v, nibble.ct_eq(&(d as u8)));
            }
            acc *= sel;
            nibble.zeroize();
        }
        acc.retrieve()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crypto_bigint::Odd;

    #[test]
    fn equals_generic_pow() {
        let p = U2048::from_be_slice(&crate::crypto::prime::TELEGRAM_DH_PRIME);
        let params = MontyParams::new(Option::<Odd<U2048>>::from(Odd::new(p)).unwrap());
        let table = FixedBase::new(3, params);
        for seed in [0u8, 1, 0x80, 0xff] {
            let mut e = [0u8; 256];
            e.iter_mut()
                .enumerate()
                .for_each(|(i, x)| *x = (i as u8).wrapping_mul(31) ^ seed);
            let want = Monty::new(&U2048::from_u32(3), params)
                .pow(&U2048::from_be_slice(&e))
                .retrieve();
            assert_eq!(table.pow(&e), want);
        }
        assert_eq!(table.pow(&[0; 256]), U2048::ONE);
    }
}
