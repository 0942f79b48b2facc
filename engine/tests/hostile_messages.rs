//! Hostile input to message decryption: never a panic, always a typed error, and only a message
//! that was really encrypted with the key and direction decrypts.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use proptest::prelude::*;
use secretchat_engine::crypto::message::{self, decrypt_v1, decrypt_v2, encrypt_v2};
use secretchat_engine::crypto::{AuthKey, CryptoError, Side};

fn key() -> AuthKey {
    AuthKey::new([0x3c; 256])
}

proptest! {
    #[test]
    fn garbage_is_rejected_without_panic(mut bytes in proptest::collection::vec(any::<u8>(), 0..600), keep_fp in any::<bool>()) {
        let k = key();
        if keep_fp && bytes.len() >= 8 {
            bytes[..8].copy_from_slice(&k.fingerprint().to_le_bytes());
        }
        prop_assert!(decrypt_v2(&k, Side::Originator, &bytes).is_err());
        prop_assert!(decrypt_v1(&k, &bytes).is_err());
    }

    #[test]
    fn any_single_bit_flip_is_detected(payload_words in 0usize..64, r in any::<u32>(), bit in any::<usize>()) {
        let k = key();
        let payload = vec![0x5au8; payload_words * 4];
        let pad = vec![0u8; message::padding_len(payload.len(), r)];
        let mut w = encrypt_v2(&k, Side::Participant, &payload, &pad).unwrap();
        let bit = bit % (w.len() * 8);
        w[bit / 8] ^= 1 << (bit % 8);
        let err = decrypt_v2(&k, Side::Participant, &w).unwrap_err();
        prop_assert!(matches!(err, CryptoError::FingerprintMismatch { .. } | CryptoError::MsgKeyMismatch), "{err:?}");
    }

    #[test]
    fn round_trip_any_payload(payload_words in 0usize..300, r in any::<u32>(), side in any::<bool>()) {
        let k = key();
        let side = if side { Side::Originator } else { Side::Participant };
        let payload: Vec<u8> = (0..payload_words * 4).map(|i| i as u8).collect();
        let pad = vec![7u8; message::padding_len(payload.len(), r)];
        let w = encrypt_v2(&k, side, &payload, &pad).unwrap();
        let d = decrypt_v2(&k, side, &w).unwrap();
        prop_assert_eq!(d.payload, payload);
        prop_assert_eq!(d.padding_len, pad.len());
    }
}
