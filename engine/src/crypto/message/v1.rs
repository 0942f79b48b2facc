//! Obsolete MTProto 1.0 (`end-to-end-v1.md`): SHA-1 msg_key over the unpadded plaintext,
//! x = 0, 0..15 padding. Only for peers below layer 73.

use crate::crypto::keys::msg_keys_equal;
use sha1::{Digest, Sha1};
use zeroize::Zeroizing;

use super::{Decrypted, Version, header, plaintext, split_plaintext, wire};
use crate::crypto::ige::{Direction, IgeStream};
use crate::crypto::{AuthKey, CryptoError};

/// `(aes_key, aes_iv)` for MTProto 1.0 (x = 0).
fn kdf_v1(key: &AuthKey, msg_key: &[u8; 16]) -> (Zeroizing<[u8; 32]>, Zeroizing<[u8; 32]>) {
    let k = key.bytes();
    let x = 0;
    // sha1_a = SHA1 (msg_key + substr (key, x, 32));
    let a = Sha1::new()
        .chain_update(msg_key)
        .chain_update(&k[x..x + 32])
        .finalize();
    // sha1_b = SHA1 (substr (key, 32+x, 16) + msg_key + substr (key, 48+x, 16));
    let b = Sha1::new()
        .chain_update(&k[32 + x..48 + x])
        .chain_update(msg_key)
        .chain_update(&k[48 + x..64 + x])
        .finalize();
    // sha1_c = SHA1 (substr (key, 64+x, 32) + msg_key);
    let c = Sha1::new()
        .chain_update(&k[64 + x..96 + x])
        .chain_update(msg_key)
        .finalize();
    // sha1_d = SHA1 (msg_key + substr (key, 96+x, 32));
    let d = Sha1::new()
        .chain_update(msg_key)
        .chain_update(&k[96 + x..128 + x])
        .finalize();
    let mut aes_key = Zeroizing::new([0u8; 32]);
    let mut aes_iv = Zeroizing::new([0u8; 32]);
    // aes_key = substr (sha1_a, 0, 8) + substr (sha1_b, 8, 12) + substr (sha1_c, 4, 12);
    aes_key[..8].copy_from_slice(&a[..8]);
    aes_key[8..20].copy_from_slice(&b[8..20]);
    aes_key[20..].copy_from_slice(&c[4..16]);
    // aes_iv = substr (sha1_a, 8, 12) + substr (sha1_b, 0, 8) + substr (sha1_c, 16, 4) + substr (sha1_d, 0, 8);
    aes_iv[..12].copy_from_slice(&a[8..20]);
    aes_iv[12..20].copy_from_slice(&b[..8]);
    aes_iv[20..24].copy_from_slice(&c[16..20]);
    aes_iv[24..].copy_from_slice(&d[..8]);
    (aes_key, aes_iv)
}

/// msg_key = substr (SHA1 (plaintext without padding), 4, 16).
fn msg_key_v1(unpadded: &[u8]) -> [u8; 16] {
    let d = Sha1::digest(unpadded);
    let mut out = [0u8; 16];
    out.copy_from_slice(&d[4..20]);
    out
}

/// Encrypts with obsolete MTProto 1.0 (only for peers below layer 73); 0..=15 padding bytes.
///
/// # Errors
/// [`CryptoError::InvalidFixedPadding`], [`CryptoError::UnalignedPayload`],
/// [`CryptoError::PayloadTooLarge`].
pub fn encrypt_v1(key: &AuthKey, payload: &[u8], padding: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let p = padding.len();
    if p > 15 || !(4 + payload.len() + p).is_multiple_of(16) {
        return Err(CryptoError::InvalidFixedPadding { padding: p });
    }
    let pt = plaintext(payload, padding)?;
    let msg_key = msg_key_v1(&pt[..4 + payload.len()]);
    let (aes_key, aes_iv) = kdf_v1(key, &msg_key);
    wire(key, &msg_key, &aes_key, &aes_iv, &pt)
}

/// Decrypts and checks an MTProto 1.0 message.
///
/// # Errors
/// As [`decrypt_v2`](super::decrypt_v2) (padding must be 0..=15).
pub fn decrypt_v1(key: &AuthKey, wire: &[u8]) -> Result<Decrypted, CryptoError> {
    let (msg_key, body) = header(key, wire)?;
    let (aes_key, aes_iv) = kdf_v1(key, &msg_key);
    let mut pt = Zeroizing::new(body.to_vec());
    IgeStream::new(&aes_key, &aes_iv, Direction::Decrypt).process(&mut pt)?;
    // 1.0 hashes only the unpadded part, so the length must be read first; a bad length is
    // reported as a msg_key mismatch so as not to reveal which check failed.
    let (len, padding_len) =
        split_plaintext(&pt, 0..=15).map_err(|_| CryptoError::MsgKeyMismatch)?;
    let expect = msg_key_v1(&pt[..4 + len]);
    if !msg_keys_equal(&expect, &msg_key) {
        return Err(CryptoError::MsgKeyMismatch);
    }
    Ok(Decrypted {
        payload: pt[4..4 + len].to_vec(),
        padding_len,
        msg_key,
        version: Version::V1,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::Side;
    use crate::crypto::message::decrypt_v2;

    fn key() -> AuthKey {
        AuthKey::new(std::array::from_fn(|i| i as u8))
    }

    #[test]
    fn v1_round_trip() {
        let k = key();
        let w = encrypt_v1(&k, &[5; 8], &[0; 4]).unwrap();
        let d = decrypt_v1(&k, &w).unwrap();
        assert_eq!((d.payload, d.version), (vec![5; 8], Version::V1));
        assert!(decrypt_v2(&k, Side::Originator, &w).is_err());
    }
}
