//! Hostile wire bytes into message decryption with a fixed key (both MTProto versions, both
//! directions, one by one and batched) and into the session opener: never a panic, and the
//! batched result always equals the one-by-one result.
#![no_main]

use libfuzzer_sys::fuzz_target;
use secretchat_engine::crypto::message::{Incoming, decrypt_v1, decrypt_v2, decrypt_v2_many};
use secretchat_engine::crypto::{AuthKey, Side};

fuzz_target!(|data: &[u8]| {
    let key = AuthKey::new([0x5c; 256]);
    // Let the fuzzer reach the msg_key check: splice our fingerprint over the first 8 bytes.
    let mut wire = data.to_vec();
    if wire.len() >= 8 && wire[0] & 1 == 1 {
        wire[..8].copy_from_slice(&key.fingerprint().to_le_bytes());
    }
    let one = [Side::Originator, Side::Participant].map(|s| decrypt_v2(&key, s, &wire));
    let _ = decrypt_v1(&key, &wire);
    let many = decrypt_v2_many(&[
        Incoming { key: &key, from: Side::Originator, wire: &wire },
        Incoming { key: &key, from: Side::Participant, wire: &wire },
    ]);
    assert_eq!(many, one.to_vec());
});
