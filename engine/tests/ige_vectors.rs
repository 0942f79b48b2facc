//! AES-IGE known answers.
//!
//! - Cross-check against the RustCrypto `ige` crate (block-modes) for AES-256 over random
//!   keys, IVs and lengths.
//! - The first AES-IGE vector of OpenSSL's `test/igetest.c` (Ben Laurie's published IGE test
//!   vectors, AES-128): key 00..0f, iv 00..1f, 32 zero bytes →
//!   1a8519a6557be652e9da8e43da4ef4453cf456b4ca488aa383c79c98b34797cb — checked through the
//!   `ige` crate to validate the cross-check reference itself.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use aes::cipher::{BlockDecryptMut, BlockEncryptMut, KeyIvInit, block_padding::NoPadding};
use proptest::prelude::*;
use secretchat_engine::crypto::{ige, ige_batch};

type RefEnc256 = ::ige::Encryptor<aes::Aes256>;
type RefDec256 = ::ige::Decryptor<aes::Aes256>;

#[test]
fn reference_matches_openssl_vector() {
    let key: Vec<u8> = (0..16).collect();
    let iv: Vec<u8> = (0..32).collect();
    let mut buf = [0u8; 32];
    ::ige::Encryptor::<aes::Aes128>::new(key.as_slice().into(), iv.as_slice().into())
        .encrypt_padded_mut::<NoPadding>(&mut buf, 32)
        .unwrap();
    assert_eq!(
        hex::encode(buf),
        "1a8519a6557be652e9da8e43da4ef4453cf456b4ca488aa383c79c98b34797cb"
    );
}

proptest! {
    #[test]
    fn matches_rustcrypto_ige(key in any::<[u8; 32]>(), iv in any::<[u8; 32]>(), blocks in 0usize..40, fill in any::<u8>()) {
        let data: Vec<u8> = (0..blocks * 16).map(|i| (i as u8).wrapping_mul(fill)).collect();
        let mut ours = data.clone();
        ige::encrypt(&key, &iv, &mut ours).unwrap();
        let mut theirs = data.clone();
        let n = theirs.len();
        RefEnc256::new(&key.into(), &iv.into()).encrypt_padded_mut::<NoPadding>(&mut theirs, n).unwrap();
        prop_assert_eq!(&ours, &theirs);
        RefDec256::new(&key.into(), &iv.into()).decrypt_padded_mut::<NoPadding>(&mut theirs).unwrap();
        prop_assert_eq!(&theirs, &data);
        ige::decrypt(&key, &iv, &mut ours).unwrap();
        prop_assert_eq!(ours, data);
    }

    #[test]
    fn batch_equals_one_by_one(seeds in proptest::collection::vec((any::<u8>(), 0usize..20), 0..12)) {
        let mut singles = Vec::new();
        let mut datas = Vec::new();
        for (s, blocks) in &seeds {
            let d: Vec<u8> = (0..blocks * 16).map(|i| (i as u8) ^ s).collect();
            let mut one = d.clone();
            ige::encrypt(&[*s; 32], &[s.wrapping_add(1); 32], &mut one).unwrap();
            singles.push(one);
            datas.push(d);
        }
        let mut lanes: Vec<ige_batch::Lane<'_>> = datas.iter_mut().zip(&seeds)
            .map(|(d, (s, _))| ige_batch::Lane::new(&[*s; 32], &[s.wrapping_add(1); 32], ige::Direction::Encrypt, d))
            .collect();
        ige_batch::run(&mut lanes, ige::Direction::Encrypt).unwrap();
        drop(lanes);
        prop_assert_eq!(datas, singles);
    }
}
