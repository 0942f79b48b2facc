//! An independent MTProto 2.0 sealer (end-to-end.md, "MTProto 2.0"), written from the spec
//! apart from the engine's own KDF so that tests and fuzz targets can build any plaintext —
//! a bad length prefix or padding included — under a correct msg_key.

use secretchat_engine::crypto::{AuthKey, ige};
use sha2::{Digest, Sha256};

/// An independent MTProto 2.0 sealer (end-to-end.md, "MTProto 2.0"): any plaintext, including
/// a bad length prefix or padding, with a correct msg_key; `x` = 8 for the participant.
///
/// # Panics
/// When `plaintext` is not a whole number of 16-byte blocks.
pub fn seal_raw(key: &AuthKey, x: usize, plaintext: &[u8]) -> Vec<u8> {
    let k = key.bytes();
    let large = Sha256::new()
        .chain_update(&k[88 + x..120 + x])
        .chain_update(plaintext)
        .finalize();
    let msg_key = &large[8..24];
    let (aes_key, aes_iv) = kdf_v2(key, x, msg_key);
    let mut body = plaintext.to_vec();
    ige::encrypt(&aes_key, &aes_iv, &mut body).expect("the plaintext is whole blocks");
    let mut wire = key.fingerprint().to_le_bytes().to_vec();
    wire.extend_from_slice(msg_key);
    wire.extend_from_slice(&body);
    wire
}

/// MTProto 2.0's AES key and IV for `msg_key` (end-to-end.md, "MTProto 2.0"); `x` = 8 for the
/// participant's messages.
pub fn kdf_v2(key: &AuthKey, x: usize, msg_key: &[u8]) -> ([u8; 32], [u8; 32]) {
    let k = key.bytes();
    let a = Sha256::new()
        .chain_update(msg_key)
        .chain_update(&k[x..x + 36])
        .finalize();
    let b = Sha256::new()
        .chain_update(&k[40 + x..76 + x])
        .chain_update(msg_key)
        .finalize();
    let mut aes_key = [0u8; 32];
    aes_key[..8].copy_from_slice(&a[..8]);
    aes_key[8..24].copy_from_slice(&b[8..24]);
    aes_key[24..].copy_from_slice(&a[24..]);
    let mut aes_iv = [0u8; 32];
    aes_iv[..8].copy_from_slice(&b[..8]);
    aes_iv[8..24].copy_from_slice(&a[8..24]);
    aes_iv[24..].copy_from_slice(&b[24..]);
    (aes_key, aes_iv)
}

/// What an old (layer < 73) client sends: `envelope` under MTProto 1.0 (end-to-end-v1.md), with
/// the padding 1.0 uses (to a 16-byte block, at most 15 bytes).
// The fuzz checks include this file for `seal_raw` alone.
#[allow(dead_code)]
pub fn seal_v1(
    key: &AuthKey,
    envelope: &secretchat_schema::e2e::types::DecryptedMessageLayer,
) -> Vec<u8> {
    use secretchat_schema::Serialize;
    let payload = envelope.to_bytes().expect("an envelope serializes");
    let pad = vec![0u8; (16 - (payload.len() + 4) % 16) % 16];
    secretchat_engine::crypto::message::encrypt_v1(key, &payload, &pad)
        .expect("a whole number of blocks")
}
