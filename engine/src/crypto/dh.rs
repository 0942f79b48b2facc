//! Diffie–Hellman for secret chats (`end-to-end.md` "Key generation", `security-guidelines.md`).
//!
//! - [`DhParams::new`] checks `g` and `p` cheaply (size, `g ∈ 2..=7`, the quadratic-residue
//!   condition on `p mod 4g`); the safe-prime test lives in [`super::prime`] so callers can
//!   cache its verdict per `p`.
//! - [`DhParams::check_public`] range-checks `g_a`/`g_b`: `1 < v < p−1` and `2^1984 ≤ v ≤ p − 2^1984`.
//! - [`secret_exponent`] mixes 256 local random bytes with the server's `random` (XOR).
//! - [`DhParams::power`] is a constant-time exponentiation for the secret exponent: OpenSSL's
//!   `BN_mod_exp_mont_consttime` with the `openssl` feature (default; assembly kernels, secure
//!   and cleared bignums), else crypto-bigint's Montgomery ladder; [`DhParams::shared_key`]
//!   left-pads the result to 256 bytes. `g^a` uses the fixed-base table instead when built.

use crypto_bigint::modular::{MontyForm, MontyParams};
use crypto_bigint::{Odd, U2048};
use zeroize::Zeroizing;

use super::AuthKey;
use super::fixed_base::FixedBase;

/// Why DH parameters or values were rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DhError {
    /// `p` is not 256 bytes with its top bit set (2^2047 < p < 2^2048).
    #[error("p is not a 2048-bit number")]
    PrimeSize,
    /// `p` is even.
    #[error("p is even")]
    PrimeEven,
    /// `g` outside 2..=7.
    #[error("g = {0} is not in 2..=7")]
    GeneratorRange(i64),
    /// `p mod 4g` fails the condition that makes `g` generate the subgroup of order (p−1)/2.
    #[error("g = {g} does not satisfy the residue condition for p (p mod {modulus} = {residue})")]
    GeneratorResidue {
        /// g
        g: u32,
        /// the modulus used (4g or g)
        modulus: u32,
        /// p modulo it
        residue: u32,
    },
    /// `p` or `(p−1)/2` is not prime.
    #[error("p is not a safe prime")]
    NotSafePrime,
    /// A public value outside the allowed range.
    #[error("public value out of range (need 1 < v < p-1 and 2^1984 <= v <= p - 2^1984)")]
    PublicRange,
    /// A public value longer than 256 bytes.
    #[error("public value longer than 256 bytes")]
    PublicSize,
}

impl DhError {
    /// A stable snake_case name for the variant (the CLI's `{"error": kind}`).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::PrimeSize => "prime_size",
            Self::PrimeEven => "prime_even",
            Self::GeneratorRange(_) => "generator_range",
            Self::GeneratorResidue { .. } => "generator_residue",
            Self::NotSafePrime => "not_safe_prime",
            Self::PublicRange => "public_range",
            Self::PublicSize => "public_size",
        }
    }
}

/// Validated `(p, g)` with precomputed Montgomery parameters.
///
/// Cloning is cheap: the fixed-base table (when built) is shared.
#[derive(Clone)]
pub struct DhParams {
    p: U2048,
    g: u32,
    monty: MontyParams<{ U2048::LIMBS }>,
    fixed: Option<std::sync::Arc<FixedBase>>,
}

impl std::fmt::Debug for DhParams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "DhParams(g = {}, p = {}…)",
            self.g,
            &hex::encode(&self.p.to_be_bytes()[..4])
        )
    }
}

impl DhParams {
    /// Checks everything about `(p, g)` except primality (see [`super::prime::is_safe_prime`]).
    ///
    /// # Errors
    /// [`DhError::PrimeSize`], [`DhError::PrimeEven`], [`DhError::GeneratorRange`],
    /// [`DhError::GeneratorResidue`].
    pub fn new(p_be: &[u8], g: i64) -> Result<Self, DhError> {
        if p_be.len() != 256 || p_be[0] & 0x80 == 0 {
            return Err(DhError::PrimeSize);
        }
        if !(2..=7).contains(&g) {
            return Err(DhError::GeneratorRange(g));
        }
        let g = g as u32;
        let p = U2048::from_be_slice(p_be);
        let odd = Option::<Odd<U2048>>::from(Odd::new(p)).ok_or(DhError::PrimeEven)?;
        let m = |k: u32| mod_small(p_be, k);
        // security-guidelines.md: g = 2: p mod 8 = 7; g = 3: p mod 3 = 2; g = 4: no extra
        // condition; g = 5: p mod 5 = 1 or 4; g = 6: p mod 24 = 19 or 23; g = 7: p mod 7 = 3, 5 or 6.
        let (modulus, ok) = match g {
            2 => (8, m(8) == 7),
            3 => (3, m(3) == 2),
            4 => (4, true),
            5 => (5, matches!(m(5), 1 | 4)),
            6 => (24, matches!(m(24), 19 | 23)),
            _ => (7, matches!(m(7), 3 | 5 | 6)),
        };
        if !ok {
            return Err(DhError::GeneratorResidue {
                g,
                modulus,
                residue: m(modulus),
            });
        }
        Ok(Self {
            p,
            g,
            monty: MontyParams::new(odd),
            fixed: None,
        })
    }

    /// Precomputes the fixed-base table for `g` (2 MiB, a few ms once), after which
    /// [`DhParams::public`] costs about a quarter of a generic exponentiation. Worth it for a
    /// config that serves many handshakes and re-keys.
    pub fn with_fixed_base(mut self) -> Self {
        self.fixed = Some(std::sync::Arc::new(FixedBase::new(self.g, self.monty)));
        self
    }

    /// These parameters set up for many exchanges: the fixed-base table where it pays. With
    /// the `openssl` feature it does not — OpenSSL's constant-time exponentiation computes
    /// `g^a` in 3.2 ms against 4.5 ms for the table (and 37 ms to build it; `cargo bench
    /// --bench crypto -- pow_a`) — so no table is built; without it the table beats
    /// crypto-bigint's generic exponentiation.
    pub fn tuned(self) -> Self {
        if cfg!(feature = "openssl") {
            self
        } else {
            self.with_fixed_base()
        }
    }

    /// The generator.
    pub fn g(&self) -> u32 {
        self.g
    }

    /// `p`, big-endian.
    pub fn p_bytes(&self) -> [u8; 256] {
        let mut out = [0u8; 256];
        out.copy_from_slice(&self.p.to_be_bytes());
        out
    }

    /// `base^exp mod p` in constant time (for a secret `exp`), 256 bytes big-endian.
    pub fn power(&self, base: &U2048, exp: &[u8; 256]) -> Zeroizing<[u8; 256]> {
        #[cfg(feature = "openssl")]
        if let Some(r) = self.power_openssl(base, exp) {
            return r;
        }
        self.power_rust(base, exp)
    }

    /// OpenSSL's `BN_mod_exp_mont_consttime` (chosen by `BN_FLG_CONSTTIME` on the exponent);
    /// secure bignums and context, cleared before they are freed. `None` only if OpenSSL fails
    /// to allocate.
    #[cfg(feature = "openssl")]
    fn power_openssl(&self, base: &U2048, exp: &[u8; 256]) -> Option<Zeroizing<[u8; 256]>> {
        use openssl::bn::{BigNum, BigNumContext};
        let mut ctx = BigNumContext::new_secure().ok()?;
        let p = BigNum::from_slice(&self.p.to_be_bytes()).ok()?;
        let b = BigNum::from_slice(&base.to_be_bytes()).ok()?;
        let mut e = BigNum::new_secure().ok()?;
        e.copy_from_slice(exp).ok()?;
        e.set_const_time();
        let mut r = BigNum::new_secure().ok()?;
        r.set_const_time();
        let done = r.mod_exp(&b, &e, &p, &mut ctx);
        e.clear();
        let mut out = Zeroizing::new([0u8; 256]);
        let ok = done.is_ok()
            && r.to_vec_padded(256).ok().is_some_and(|v| {
                let v = Zeroizing::new(v);
                out.copy_from_slice(&v);
                true
            });
        r.clear();
        ok.then_some(out)
    }

    /// crypto-bigint's constant-time Montgomery exponentiation.
    fn power_rust(&self, base: &U2048, exp: &[u8; 256]) -> Zeroizing<[u8; 256]> {
        let e = Zeroizing::new(U2048::from_be_slice(exp));
        let r = MontyForm::new(base, self.monty).pow(&*e).retrieve();
        let mut out = Zeroizing::new([0u8; 256]);
        out.copy_from_slice(&r.to_be_bytes());
        out
    }

    /// Our public value `g^a mod p` (constant-time; uses the fixed-base table when built).
    pub fn public(&self, a: &[u8; 256]) -> [u8; 256] {
        match &self.fixed {
            Some(t) => {
                let mut out = [0u8; 256];
                out.copy_from_slice(&t.pow(a).to_be_bytes());
                out
            }
            None => *self.power(&U2048::from_u32(self.g), a),
        }
    }

    /// The shared key `peer^a mod p` (left-padded to 256 bytes), after range-checking `peer`.
    ///
    /// # Errors
    /// [`DhError::PublicSize`], [`DhError::PublicRange`].
    pub fn shared_key(&self, peer: &[u8], a: &[u8; 256]) -> Result<AuthKey, DhError> {
        let v = self.check_public(peer)?;
        Ok(AuthKey::new(*self.power(&v, a)))
    }

    /// `1 < v < p−1` and `2^1984 ≤ v ≤ p − 2^1984` (security-guidelines.md).
    ///
    /// # Errors
    /// [`DhError::PublicSize`], [`DhError::PublicRange`].
    pub fn check_public(&self, v_be: &[u8]) -> Result<U2048, DhError> {
        let v = to_u2048(v_be).ok_or(DhError::PublicSize)?;
        let bound = U2048::ONE.shl_vartime(1984);
        let upper = self.p.wrapping_sub(&bound);
        if v <= U2048::ONE || v >= self.p.wrapping_sub(&U2048::ONE) || v < bound || v > upper {
            return Err(DhError::PublicRange);
        }
        Ok(v)
    }
}

/// Big-endian bytes (≤ 256, leading zeros allowed) as a U2048.
fn to_u2048(be: &[u8]) -> Option<U2048> {
    let start = be.iter().position(|&b| b != 0).unwrap_or(be.len());
    let trimmed = &be[start..];
    if trimmed.len() > 256 {
        return None;
    }
    let mut buf = [0u8; 256];
    buf[256 - trimmed.len()..].copy_from_slice(trimmed);
    Some(U2048::from_be_slice(&buf))
}

/// `p mod k` for a small k, from big-endian bytes.
fn mod_small(p_be: &[u8], k: u32) -> u32 {
    p_be.iter().fold(0u32, |r, &b| (r * 256 + u32::from(b)) % k)
}

/// The secret exponent: 256 local random bytes XOR the server's `random` (when it has 256
/// bytes; shorter server randomness is XORed into the leading bytes).
pub fn secret_exponent(local: &[u8; 256], server_random: &[u8]) -> Zeroizing<[u8; 256]> {
    let mut a = Zeroizing::new(*local);
    for (x, r) in a.iter_mut().zip(server_random) {
        *x ^= r;
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_power_backends_agree() {
        let dh = DhParams::new(&crate::crypto::prime::TELEGRAM_DH_PRIME, 3).unwrap();
        let base = dh.check_public(&dh.public(&[0x21; 256])).unwrap();
        for seed in [1u8, 0x7f, 0xff] {
            let mut exp = [seed; 256];
            exp[0] ^= 0x80;
            let rust = dh.power_rust(&base, &exp);
            assert_eq!(*dh.power(&base, &exp), *rust);
            #[cfg(feature = "openssl")]
            assert_eq!(*dh.power_openssl(&base, &exp).unwrap(), *rust);
        }
    }

    #[test]
    fn generator_and_size_checks() {
        let p = crate::crypto::prime::TELEGRAM_DH_PRIME;
        assert!(DhParams::new(&p, 3).is_ok());
        assert_eq!(
            DhParams::new(&p, 1).unwrap_err(),
            DhError::GeneratorRange(1)
        );
        assert_eq!(DhParams::new(&p[1..], 3).unwrap_err(), DhError::PrimeSize);
        let mut even = p;
        even[255] &= 0xfe;
        assert_eq!(DhParams::new(&even, 3).unwrap_err(), DhError::PrimeEven);
    }

    #[test]
    fn two_parties_agree() {
        let params = DhParams::new(&crate::crypto::prime::TELEGRAM_DH_PRIME, 3).unwrap();
        let a = secret_exponent(&[0x11; 256], &[0x22; 256]);
        let b = secret_exponent(&[0x33; 256], &[]);
        let (ga, gb) = (params.public(&a), params.public(&b));
        let with_table = params.clone().with_fixed_base();
        assert_eq!((with_table.public(&a), with_table.public(&b)), (ga, gb));
        let k1 = params.shared_key(&gb, &a).unwrap();
        let k2 = params.shared_key(&ga, &b).unwrap();
        assert_eq!(k1, k2);
        assert_eq!(k1.fingerprint(), k2.fingerprint());
    }

    #[test]
    fn public_range() {
        let params = DhParams::new(&crate::crypto::prime::TELEGRAM_DH_PRIME, 3).unwrap();
        for bad in [
            vec![1u8],
            vec![2u8],
            vec![0xff; 257],
            params.p_bytes().to_vec(),
        ] {
            assert!(params.check_public(&bad).is_err());
        }
        let mut just_below = [0u8; 256];
        just_below[8] = 0x80; // 2^1983
        assert_eq!(
            params.check_public(&just_below).unwrap_err(),
            DhError::PublicRange
        );
        let mut at = [0u8; 256];
        at[7] = 0x01; // 2^1984
        assert!(params.check_public(&at).is_ok());
    }
}
