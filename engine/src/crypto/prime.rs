//! The safe-prime check for DH `p`: `p` and `(p−1)/2` prime. Expensive (tens to hundreds of
//! milliseconds), so it is separate from [`super::dh::DhParams::new`]: callers cache the verdict
//! per `p` (the engine stores it in its database), and the current Telegram prime is known.

use num_bigint::BigUint;

/// The current `dh_prime` as published in `security-guidelines.md` (big-endian).
pub const TELEGRAM_DH_PRIME: [u8; 256] = hex_literal(
    "c71caeb9c6b1c9048e6c522f70f13f73980d40238e3e21c14934d037563d930f48198a0aa7c14058229493d22530f4dbfa336f6e0ac925139543aed44cce7c3720fd51f69458705ac68cd4fe6b6b13abdc9746512969328454f18faf8c595f642477fe96bb2a941d5bcd1d4ac8cc49880708fa9b378e3c4f3a9060bee67cf9a4a4a695811051907e162753b56b0f6b410dba74d8a84b2a14b3144e0ef1284754fd17ed950d5965b4b9dd46582db1178d169c6bc465b0d6ff9ca3928fef5b9ae4e418fc15e83ebea0f87fa9ff5eed70050ded2849f47bf959d956850ce929851f0d8115f635b105ee2e4e15d04b2454bf6f4fadf034b10403119cd8e3b92fcc5b",
);

const fn hex_literal(s: &str) -> [u8; 256] {
    let b = s.as_bytes();
    let mut out = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        out[i] = (nibble(b[2 * i]) << 4) | nibble(b[2 * i + 1]);
        i += 1;
    }
    out
}

const fn nibble(c: u8) -> u8 {
    match c {
        b'0'..=b'9' => c - b'0',
        b'a'..=b'f' => c - b'a' + 10,
        _ => 0,
    }
}

/// Miller–Rabin rounds on `q = (p−1)/2`: error probability ≤ 4^-32 = 2^-64 with random bases.
pub const ROUNDS: usize = 32;

/// Safe primes known in advance: security-guidelines.md suggests embedding "known good" primes,
/// checked ahead of time, instead of testing them at run time. Each is checked in full by the
/// tests (`known_primes_pass_the_full_check`).
pub const KNOWN_SAFE_PRIMES: [&[u8; 256]; 1] = [&TELEGRAM_DH_PRIME];

/// Whether big-endian `p` is a 2048-bit safe prime: at once for a [`KNOWN_SAFE_PRIMES`] entry,
/// otherwise [`check_safe_prime`].
pub fn is_safe_prime(p_be: &[u8], seed: u64) -> bool {
    KNOWN_SAFE_PRIMES.iter().any(|k| k[..] == *p_be) || check_safe_prime(p_be, seed)
}

/// The full test: whether big-endian `p` is a 2048-bit safe prime. `seed` chooses the
/// Miller–Rabin bases (pass fresh randomness: fixed bases can be targeted by a crafted
/// composite).
pub fn check_safe_prime(p_be: &[u8], seed: u64) -> bool {
    if p_be.len() != 256 || p_be[0] & 0x80 == 0 {
        return false;
    }
    let p = BigUint::from_bytes_be(p_be);
    let q: BigUint = (&p - 1u32) >> 1;
    // Cheap sieve first: both must be free of small factors.
    let small_ok = SMALL_PRIMES
        .iter()
        .all(|&s| &p % s != BigUint::ZERO && &q % s != BigUint::ZERO);
    // Once q is prime, p = 2q + 1 is prime iff 3^(p−1) ≡ 1 (mod p) and 3² ≢ 1 (mod p)
    // (Pocklington's criterion with the factor q > √p of p − 1): one exponentiation, not 32.
    small_ok
        && miller_rabin(&q, seed)
        && modpow(&BigUint::from(3u32), &(&p - 1u32), &p) == BigUint::from(1u32)
}

/// `base^exp mod m` for public values. With the `openssl` feature through OpenSSL's
/// assembly kernels (the check is ~33 exponentiations, on the path to every first handshake:
/// 2.4x faster than num-bigint here); otherwise num-bigint.
fn modpow(base: &BigUint, exp: &BigUint, m: &BigUint) -> BigUint {
    #[cfg(feature = "openssl")]
    if let Some(r) = modpow_openssl(base, exp, m) {
        return r;
    }
    base.modpow(exp, m)
}

#[cfg(feature = "openssl")]
fn modpow_openssl(base: &BigUint, exp: &BigUint, m: &BigUint) -> Option<BigUint> {
    use openssl::bn::{BigNum, BigNumContext};
    let b = BigNum::from_slice(&base.to_bytes_be()).ok()?;
    let e = BigNum::from_slice(&exp.to_bytes_be()).ok()?;
    let n = BigNum::from_slice(&m.to_bytes_be()).ok()?;
    let mut ctx = BigNumContext::new().ok()?;
    let mut r = BigNum::new().ok()?;
    r.mod_exp(&b, &e, &n, &mut ctx).ok()?;
    Some(BigUint::from_bytes_be(&r.to_vec()))
}

const SMALL_PRIMES: [u32; 24] = [
    3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59, 61, 67, 71, 73, 79, 83, 89, 97,
];

fn miller_rabin(n: &BigUint, seed: u64) -> bool {
    let one = BigUint::from(1u32);
    let n1 = n - &one;
    let s = n1.trailing_zeros().unwrap_or(0);
    let d = &n1 >> s;
    let mut state = seed;
    for _ in 0..ROUNDS {
        // Base in [2, n-2] from a SplitMix64 stream.
        let mut words = [0u64; 32];
        for w in words.iter_mut() {
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            *w = z ^ (z >> 31);
        }
        let raw = BigUint::from_slice(
            &words
                .iter()
                .flat_map(|w| [*w as u32, (*w >> 32) as u32])
                .collect::<Vec<_>>(),
        );
        let a = raw % (n - 3u32) + 2u32;
        let mut x = modpow(&a, &d, n);
        if x == one || x == n1 {
            continue;
        }
        let mut composite = true;
        for _ in 1..s {
            x = (&x * &x) % n;
            if x == n1 {
                composite = false;
                break;
            }
        }
        if composite {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn telegram_prime_is_safe() {
        assert!(is_safe_prime(&TELEGRAM_DH_PRIME, 1));
    }

    #[test]
    fn known_primes_pass_the_full_check() {
        for p in KNOWN_SAFE_PRIMES {
            assert!(check_safe_prime(p, 7));
        }
    }

    #[test]
    fn pocklington_step_rejects_composite_p_with_prime_q() {
        // q = 11 (prime) gives p = 23, prime: accepted by the criterion; q = 7 gives p = 15 = 3·5.
        let three = BigUint::from(3u32);
        assert_eq!(
            three.modpow(&BigUint::from(22u32), &BigUint::from(23u32)),
            BigUint::from(1u32)
        );
        assert_ne!(
            three.modpow(&BigUint::from(14u32), &BigUint::from(15u32)),
            BigUint::from(1u32)
        );
        assert!(miller_rabin(&BigUint::from(1_000_000_007u32), 3));
        assert!(!miller_rabin(
            &BigUint::from(1_000_000_007u64 * 998_244_353),
            3
        ));
    }

    #[test]
    fn both_exponentiation_backends_agree() {
        let p = BigUint::from_bytes_be(&TELEGRAM_DH_PRIME);
        let base = BigUint::from(123_456_789u64);
        let exp = &p - 12_345u32;
        assert_eq!(modpow(&base, &exp, &p), base.modpow(&exp, &p));
    }

    #[test]
    fn near_misses_are_rejected() {
        let mut p = TELEGRAM_DH_PRIME;
        p[255] ^= 0x04; // still odd, no longer prime (or not safe)
        assert!(!is_safe_prime(&p, 1));
        assert!(!check_safe_prime(&p, 1));
        assert!(!is_safe_prime(&TELEGRAM_DH_PRIME[1..], 1));
    }
}
