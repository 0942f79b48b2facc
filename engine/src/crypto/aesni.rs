//! AES-NI kernels for IGE: the one module with `unsafe` (see `docs/crypto.md`).
//!
//! Why: an IGE chain is a serial dependency, so its speed is the latency of one AES block.
//! Calling the `aes` crate once per block (or once per round for 8 blocks, via its hazmat
//! API) adds a dispatch and a round trip through memory to every block; measured here that
//! left single-stream IGE at 0.58x OpenSSL's CBC and 8 interleaved chains at 1.7x one chain.
//! These kernels keep the round keys and chain state in registers for the whole loop.
//!
//! Safety: every function here is `#[target_feature(enable = "aes")]` and is only called
//! after `is_x86_feature_detected!("aes")` returned true ([`available`]). Memory is accessed
//! only through `_mm_loadu_si128`/`_mm_storeu_si128` on 16-byte chunks obtained from
//! `chunks_exact(16)` of slices we hold, so every load and store is in bounds and unaligned
//! access is allowed by those intrinsics. No pointer outlives the borrow it came from.
#![allow(unsafe_code)]

#[cfg(target_arch = "x86_64")]
use core::arch::x86_64::{
    __m128i, _mm_aesdec_si128, _mm_aesdeclast_si128, _mm_aesenc_si128, _mm_aesenclast_si128,
    _mm_loadu_si128, _mm_storeu_si128, _mm_xor_si128,
};

/// Whether the AES-NI kernels can run on this CPU.
pub fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("aes")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// One chain's state for the kernels: round keys (encryption or equivalent-inverse schedule)
/// and the two chaining blocks.
pub struct ChainState<'a> {
    /// 15 round keys.
    pub keys: &'a [[u8; 16]; 15],
    /// Previous ciphertext block.
    pub prev_c: &'a mut [u8; 16],
    /// Previous plaintext block.
    pub prev_m: &'a mut [u8; 16],
}

/// Runs IGE over `data` (a multiple of 16 bytes). `encrypt` picks the direction; the key
/// schedule in `s` must match it.
///
/// Returns false (doing nothing) when AES-NI is not available.
pub fn ige(s: &mut ChainState<'_>, data: &mut [u8], encrypt: bool) -> bool {
    if !available() {
        return false;
    }
    #[cfg(target_arch = "x86_64")]
    // SAFETY: AES-NI presence was checked just above (module docs).
    unsafe {
        ige_x86(s, data, encrypt);
    }
    true
}

/// Runs up to 8 chains of exactly `blocks` blocks each in lock step (`datas[i]` is lane i's
/// data, at least `blocks * 16` bytes). Returns false (doing nothing) without AES-NI.
pub fn ige8(
    states: &mut [ChainState<'_>],
    datas: &mut [&mut [u8]],
    blocks: usize,
    encrypt: bool,
) -> bool {
    if !available()
        || states.len() != datas.len()
        || states.len() > 8
        || datas.iter().any(|d| d.len() < blocks * 16)
    {
        return false;
    }
    #[cfg(target_arch = "x86_64")]
    // SAFETY: AES-NI presence and every lane's length were checked just above (module docs).
    unsafe {
        if let (Ok(states), Ok(datas)) = (
            <&mut [ChainState<'_>; 8]>::try_from(&mut *states),
            <&mut [&mut [u8]; 8]>::try_from(&mut *datas),
        ) {
            ige_lanes_x86::<8>(states, datas, blocks, encrypt);
        } else {
            for (s, d) in states.iter_mut().zip(datas.iter_mut()) {
                ige_x86(s, &mut d[..blocks * 16], encrypt);
            }
        }
    }
    true
}

/// The AES-256 encryption key schedule (15 round keys) with `AESKEYGENASSIST`, or `None`
/// without AES-NI.
pub fn expand_key(key: &[u8; 32], encrypt: bool) -> Option<[[u8; 16]; 15]> {
    if !available() {
        return None;
    }
    #[cfg(target_arch = "x86_64")]
    // SAFETY: AES-NI presence was checked just above.
    unsafe {
        Some(expand_x86(key, encrypt))
    }
    #[cfg(not(target_arch = "x86_64"))]
    None
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "aes")]
unsafe fn expand_x86(key: &[u8; 32], encrypt: bool) -> [[u8; 16]; 15] {
    use core::arch::x86_64::{
        _mm_aesimc_si128, _mm_aeskeygenassist_si128, _mm_shuffle_epi32, _mm_slli_si128,
    };
    #[target_feature(enable = "aes")]
    unsafe fn mix(a: __m128i) -> __m128i {
        let a = _mm_xor_si128(a, _mm_slli_si128::<4>(a));
        let a = _mm_xor_si128(a, _mm_slli_si128::<4>(a));
        _mm_xor_si128(a, _mm_slli_si128::<4>(a))
    }
    // SAFETY: 16-byte halves of the key and 16-byte round-key arrays.
    unsafe {
        let mut k = [load(&key[..16]), load(&key[16..])];
        let mut rk = [k[0]; 15];
        rk[0] = k[0];
        rk[1] = k[1];
        // Even round keys: RotWord/SubWord/Rcon from the odd key before; odd ones: SubWord only.
        macro_rules! even {
            ($i:expr, $rcon:expr) => {{
                let t = _mm_shuffle_epi32::<0xff>(_mm_aeskeygenassist_si128::<$rcon>(k[1]));
                k[0] = _mm_xor_si128(mix(k[0]), t);
                rk[$i] = k[0];
            }};
        }
        macro_rules! odd {
            ($i:expr) => {{
                let t = _mm_shuffle_epi32::<0xaa>(_mm_aeskeygenassist_si128::<0>(k[0]));
                k[1] = _mm_xor_si128(mix(k[1]), t);
                rk[$i] = k[1];
            }};
        }
        even!(2, 0x01);
        odd!(3);
        even!(4, 0x02);
        odd!(5);
        even!(6, 0x04);
        odd!(7);
        even!(8, 0x08);
        odd!(9);
        even!(10, 0x10);
        odd!(11);
        even!(12, 0x20);
        odd!(13);
        even!(14, 0x40);
        let mut out = [[0u8; 16]; 15];
        for (r, o) in out.iter_mut().enumerate() {
            // Equivalent inverse cipher: reversed order, InvMixColumns on the middle keys.
            let v = if encrypt {
                rk[r]
            } else if r == 0 || r == 14 {
                rk[14 - r]
            } else {
                _mm_aesimc_si128(rk[14 - r])
            };
            store(o, v);
        }
        out
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "aes")]
unsafe fn load(b: &[u8]) -> __m128i {
    debug_assert_eq!(b.len(), 16);
    // SAFETY: `b` is 16 readable bytes (callers pass 16-byte arrays or chunks); loadu allows
    // any alignment.
    unsafe { _mm_loadu_si128(b.as_ptr().cast()) }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "aes")]
unsafe fn store(b: &mut [u8], v: __m128i) {
    debug_assert_eq!(b.len(), 16);
    // SAFETY: `b` is 16 writable bytes; storeu allows any alignment.
    unsafe { _mm_storeu_si128(b.as_mut_ptr().cast(), v) }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "aes")]
unsafe fn block(b: __m128i, k: &[__m128i; 15], encrypt: bool) -> __m128i {
    let mut b = _mm_xor_si128(b, k[0]);
    if encrypt {
        for rk in &k[1..14] {
            b = _mm_aesenc_si128(b, *rk);
        }
        _mm_aesenclast_si128(b, k[14])
    } else {
        for rk in &k[1..14] {
            b = _mm_aesdec_si128(b, *rk);
        }
        _mm_aesdeclast_si128(b, k[14])
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "aes")]
unsafe fn keys(raw: &[[u8; 16]; 15]) -> [__m128i; 15] {
    // SAFETY: each round key is a 16-byte array.
    core::array::from_fn(|r| unsafe { load(&raw[r]) })
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "aes")]
unsafe fn ige_x86(s: &mut ChainState<'_>, data: &mut [u8], encrypt: bool) {
    // SAFETY (all blocks below): 16-byte arrays and `chunks_exact_mut(16)` chunks.
    unsafe {
        let k = keys(s.keys);
        let (mut c, mut m) = (load(&s.prev_c[..]), load(&s.prev_m[..]));
        for chunk in data.chunks_exact_mut(16) {
            let x = load(chunk);
            if encrypt {
                let out = _mm_xor_si128(block(_mm_xor_si128(x, c), &k, true), m);
                store(chunk, out);
                (c, m) = (out, x);
            } else {
                let out = _mm_xor_si128(block(_mm_xor_si128(x, m), &k, false), c);
                store(chunk, out);
                (m, c) = (out, x);
            }
        }
        store(&mut s.prev_c[..], c);
        store(&mut s.prev_m[..], m);
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "aes")]
unsafe fn ige_lanes_x86<const N: usize>(
    states: &mut [ChainState<'_>; N],
    datas: &mut [&mut [u8]; N],
    blocks: usize,
    encrypt: bool,
) {
    // SAFETY (all blocks below): round keys and chain blocks are 16-byte arrays; data offsets
    // are below `blocks * 16`, which the caller checked against every lane's length.
    unsafe {
        let mut c: [__m128i; N] = core::array::from_fn(|l| load(&states[l].prev_c[..]));
        let mut m: [__m128i; N] = core::array::from_fn(|l| load(&states[l].prev_m[..]));
        for i in 0..blocks {
            let at = i * 16..i * 16 + 16;
            let x: [__m128i; N] = core::array::from_fn(|l| load(&datas[l][at.clone()]));
            let mut b: [__m128i; N] = core::array::from_fn(|l| {
                let whiten = if encrypt { c[l] } else { m[l] };
                _mm_xor_si128(_mm_xor_si128(x[l], whiten), load(&states[l].keys[0]))
            });
            for r in 1..14 {
                for l in 0..N {
                    let rk = load(&states[l].keys[r]);
                    b[l] = if encrypt {
                        _mm_aesenc_si128(b[l], rk)
                    } else {
                        _mm_aesdec_si128(b[l], rk)
                    };
                }
            }
            for l in 0..N {
                let rk = load(&states[l].keys[14]);
                if encrypt {
                    let out = _mm_xor_si128(_mm_aesenclast_si128(b[l], rk), m[l]);
                    store(&mut datas[l][at.clone()], out);
                    (c[l], m[l]) = (out, x[l]);
                } else {
                    let out = _mm_xor_si128(_mm_aesdeclast_si128(b[l], rk), c[l]);
                    store(&mut datas[l][at.clone()], out);
                    (m[l], c[l]) = (out, x[l]);
                }
            }
        }
        for (l, s) in states.iter_mut().enumerate() {
            store(&mut s.prev_c[..], c[l]);
            store(&mut s.prev_m[..], m[l]);
        }
    }
}
