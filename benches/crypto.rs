//! Crypto benches with their baselines in the same run:
//! - `ige/*`: our AES-256-IGE vs OpenSSL's AES-256-CBC encryption (same serial dependency).
//! - `ige_batch/*`: 8 independent 64 KiB chains, batched vs one after another.
//! - `message/*`: whole MTProto 2.0 message encrypt/decrypt (KDF + IGE + msg_key check).
//! - `dh/*`: 2048-bit exponentiations with a 2048-bit secret exponent, ours (crypto-bigint,
//!   constant-time) vs OpenSSL `BN_mod_exp` with `BN_FLG_CONSTTIME` (BN_mod_exp_mont_consttime).
//! - `prime/*`: the safe-prime check of the Telegram prime.
//!
//! `python3 benches/ratios.py` prints the ratios from criterion's estimates.

#![allow(missing_docs, clippy::unwrap_used)] // criterion_group! generates undocumented items

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use openssl::bn::{BigNum, BigNumContext};
use openssl::symm::{Cipher, Crypter, Mode};
use secretchat::crypto::dh::DhParams;
use secretchat::crypto::ige::{self, Direction};
use secretchat::crypto::ige_batch::{self, Lane};
use secretchat::crypto::prime::{TELEGRAM_DH_PRIME, check_safe_prime};
use secretchat::crypto::{AuthKey, Side, message};
use std::hint::black_box;

const KEY: [u8; 32] = [0x42; 32];
const IV: [u8; 32] = [0x24; 32];

fn ige_single(c: &mut Criterion) {
    let mut g = c.benchmark_group("ige");
    for size in [1024usize, 64 * 1024, 1024 * 1024] {
        g.throughput(Throughput::Bytes(size as u64));
        let mut buf = vec![0u8; size];
        g.bench_with_input(BenchmarkId::new("encrypt", size), &size, |b, _| {
            b.iter(|| ige::encrypt(&KEY, &IV, black_box(&mut buf)))
        });
        g.bench_with_input(BenchmarkId::new("decrypt", size), &size, |b, _| {
            b.iter(|| ige::decrypt(&KEY, &IV, black_box(&mut buf)))
        });
        let input = vec![0u8; size];
        let mut out = vec![0u8; size + 32];
        g.bench_with_input(
            BenchmarkId::new("openssl_cbc_encrypt", size),
            &size,
            |b, _| {
                b.iter(|| {
                    let mut cr =
                        Crypter::new(Cipher::aes_256_cbc(), Mode::Encrypt, &KEY, Some(&IV[..16]))
                            .unwrap();
                    cr.pad(false);
                    cr.update(black_box(&input), &mut out).unwrap()
                })
            },
        );
    }
    g.finish();
}

fn ige_batch(c: &mut Criterion) {
    let mut g = c.benchmark_group("ige_batch");
    const SIZE: usize = 64 * 1024;
    g.throughput(Throughput::Bytes((8 * SIZE) as u64));
    let mut bufs = vec![vec![0u8; SIZE]; 8];
    g.bench_function("batch_of_8", |b| {
        b.iter(|| {
            let mut lanes: Vec<Lane<'_>> = bufs
                .iter_mut()
                .enumerate()
                .map(|(i, d)| Lane::new(&[i as u8; 32], &IV, Direction::Encrypt, d))
                .collect();
            ige_batch::run(black_box(&mut lanes), Direction::Encrypt).unwrap();
        })
    });
    g.bench_function("sequential_8", |b| {
        b.iter(|| {
            for (i, d) in bufs.iter_mut().enumerate() {
                ige::encrypt(&[i as u8; 32], &IV, black_box(d)).unwrap();
            }
        })
    });
    g.finish();
}

fn messages(c: &mut Criterion) {
    let mut g = c.benchmark_group("message");
    let key = AuthKey::new([7u8; 256]);
    for size in [16usize, 1024, 10 * 1024] {
        let payload = vec![1u8; size];
        let pad = vec![0u8; message::padding_len(size, 0)];
        g.bench_with_input(BenchmarkId::new("encrypt_v2", size), &size, |b, _| {
            b.iter(|| {
                message::encrypt_v2(&key, Side::Originator, black_box(&payload), &pad).unwrap()
            })
        });
        let wire = message::encrypt_v2(&key, Side::Originator, &payload, &pad).unwrap();
        g.bench_with_input(BenchmarkId::new("decrypt_v2", size), &size, |b, _| {
            b.iter(|| message::decrypt_v2(&key, Side::Originator, black_box(&wire)).unwrap())
        });
    }
    g.finish();
}

fn dh(c: &mut Criterion) {
    let mut g = c.benchmark_group("dh");
    g.sample_size(20);
    let params = DhParams::new(&TELEGRAM_DH_PRIME, 3).unwrap();
    let mut a = [0u8; 256];
    a.iter_mut()
        .enumerate()
        .for_each(|(i, x)| *x = (i as u8).wrapping_mul(167).wrapping_add(13));
    a[0] |= 0x80;
    let g_b = params.public(&[0x5au8; 256]);
    g.bench_function("g_pow_a", |b| b.iter(|| params.public(black_box(&a))));
    let fixed = params.clone().with_fixed_base();
    g.bench_function("g_pow_a_fixed_base", |b| {
        b.iter(|| fixed.public(black_box(&a)))
    });
    g.bench_function("fixed_base_precompute", |b| {
        b.iter(|| params.clone().with_fixed_base())
    });
    g.bench_function("gb_pow_a", |b| {
        b.iter(|| params.shared_key(black_box(&g_b), &a).unwrap())
    });
    // The exponentiation alone (shared_key adds the range check and the SHA1 fingerprint).
    let base_checked = params.check_public(&g_b).unwrap();
    g.bench_function("gb_pow_a_power_only", |b| {
        b.iter(|| params.power(black_box(&base_checked), &a))
    });
    let p = BigNum::from_slice(&TELEGRAM_DH_PRIME).unwrap();
    let mut e = BigNum::from_slice(&a).unwrap();
    e.set_const_time();
    let base = BigNum::from_slice(&g_b).unwrap();
    let mut ctx = BigNumContext::new().unwrap();
    let mut r = BigNum::new().unwrap();
    g.bench_function("openssl_consttime_gb_pow_a", |b| {
        b.iter(|| r.mod_exp(black_box(&base), &e, &p, &mut ctx).unwrap())
    });
    g.finish();
}

fn prime(c: &mut Criterion) {
    let mut g = c.benchmark_group("prime");
    g.sample_size(10);
    g.bench_function("safe_prime_check", |b| {
        b.iter(|| assert!(check_safe_prime(black_box(&TELEGRAM_DH_PRIME), 7)))
    });
    g.finish();
}

criterion_group!(benches, ige_single, ige_batch, messages, dh, prime);
criterion_main!(benches);
