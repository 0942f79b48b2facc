//! Secret-chat message encryption: MTProto 2.0 (current) and 1.0 (obsolete, for peers below
//! layer 73), per `end-to-end.md` and `end-to-end-v1.md`.
//!
//! Wire format: `key_fingerprint (8, LE) ‖ msg_key (16) ‖ AES-256-IGE(plaintext)`, where
//! `plaintext = len (4, LE) ‖ payload (len bytes of TL) ‖ padding`.
//!
//! **Padding policy (2.0):** [`padding_len`] picks the smallest padding ≥ 12 that makes the
//! plaintext a multiple of 16, plus a uniformly random 0..=7 extra 16-byte blocks (never past
//! 1024): the length on the wire is not a function of the payload length alone.

use super::keys::msg_keys_equal;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::ige::{Direction, IgeStream};
use super::{AuthKey, CryptoError, Side};

mod batch;
mod v1;

pub use batch::{Incoming, Outgoing, decrypt_v2_many, encrypt_v2_many};
pub use v1::{decrypt_v1, encrypt_v1};

/// Fingerprint + msg_key.
pub const HEADER_LEN: usize = 24;
/// Largest payload accepted for sending (well above Telegram's message limits; bounds memory).
pub const MAX_PAYLOAD: usize = 1 << 20;

/// Which MTProto version encrypted a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// MTProto 2.0 (SHA-256, x = 0/8, 12..1024 padding).
    V2,
    /// MTProto 1.0 (SHA-1, x = 0, 0..15 padding).
    V1,
}

/// A checked, decrypted message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decrypted {
    /// The TL payload (without length prefix and padding).
    pub payload: Vec<u8>,
    /// Padding bytes that followed it.
    pub padding_len: usize,
    /// The verified msg_key.
    pub msg_key: [u8; 16],
    /// Which version it was.
    pub version: Version,
}

/// The padding length for a `payload_len`-byte payload, per the policy above; `random` is any
/// random number (only its low bits are used).
pub fn padding_len(payload_len: usize, random: u32) -> usize {
    let min = 12 + (16 - (4 + payload_len + 12) % 16) % 16;
    let extra_max = ((1024 - min) / 16).min(7);
    min + 16 * (random as usize % (extra_max + 1))
}

/// Random padding bytes for a `payload_len`-byte payload under `version`: the 2.0 policy of
/// [`padding_len`], or the 0..=15 bytes 1.0 needs to reach a multiple of 16. Randomness comes
/// from the caller.
pub fn random_padding(
    payload_len: usize,
    version: Version,
    rng: &mut impl rand_core::RngCore,
) -> Vec<u8> {
    let n = match version {
        Version::V2 => padding_len(payload_len, rng.next_u32()),
        Version::V1 => (16 - (4 + payload_len) % 16) % 16,
    };
    let mut pad = vec![0u8; n];
    rng.fill_bytes(&mut pad);
    pad
}

/// `(aes_key, aes_iv)` for MTProto 2.0 from `msg_key` and the sender's `x`.
fn kdf_v2(
    key: &AuthKey,
    msg_key: &[u8; 16],
    x: usize,
) -> (Zeroizing<[u8; 32]>, Zeroizing<[u8; 32]>) {
    let k = key.bytes();
    // sha256_a = SHA256 (msg_key + substr (key, x, 36));
    let a = Sha256::new()
        .chain_update(msg_key)
        .chain_update(&k[x..x + 36])
        .finalize();
    // sha256_b = SHA256 (substr (key, 40+x, 36) + msg_key);
    let b = Sha256::new()
        .chain_update(&k[40 + x..76 + x])
        .chain_update(msg_key)
        .finalize();
    let mut aes_key = Zeroizing::new([0u8; 32]);
    let mut aes_iv = Zeroizing::new([0u8; 32]);
    // aes_key = substr (sha256_a, 0, 8) + substr (sha256_b, 8, 16) + substr (sha256_a, 24, 8);
    aes_key[..8].copy_from_slice(&a[..8]);
    aes_key[8..24].copy_from_slice(&b[8..24]);
    aes_key[24..].copy_from_slice(&a[24..]);
    // aes_iv = substr (sha256_b, 0, 8) + substr (sha256_a, 8, 16) + substr (sha256_b, 24, 8);
    aes_iv[..8].copy_from_slice(&b[..8]);
    aes_iv[8..24].copy_from_slice(&a[8..24]);
    aes_iv[24..].copy_from_slice(&b[24..]);
    (aes_key, aes_iv)
}

/// msg_key = substr (SHA256 (substr (key, 88+x, 32) + plaintext), 8, 16).
fn msg_key_v2(key: &AuthKey, x: usize, plaintext: &[u8]) -> [u8; 16] {
    let large = Sha256::new()
        .chain_update(&key.bytes()[88 + x..120 + x])
        .chain_update(plaintext)
        .finalize();
    let mut out = [0u8; 16];
    out.copy_from_slice(&large[8..24]);
    out
}

fn plaintext(payload: &[u8], padding: &[u8]) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    if payload.len() > MAX_PAYLOAD {
        return Err(CryptoError::PayloadTooLarge { len: payload.len() });
    }
    if !payload.len().is_multiple_of(4) {
        return Err(CryptoError::UnalignedPayload {
            len: payload.len() as u32,
        });
    }
    let mut pt = Zeroizing::new(Vec::with_capacity(4 + payload.len() + padding.len()));
    pt.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    pt.extend_from_slice(payload);
    pt.extend_from_slice(padding);
    Ok(pt)
}

fn wire(
    key: &AuthKey,
    msg_key: &[u8; 16],
    aes_key: &[u8; 32],
    aes_iv: &[u8; 32],
    pt: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    let mut out = Vec::with_capacity(HEADER_LEN + pt.len());
    out.extend_from_slice(&key.fingerprint().to_le_bytes());
    out.extend_from_slice(msg_key);
    out.extend_from_slice(pt);
    IgeStream::new(aes_key, aes_iv, Direction::Encrypt).process(&mut out[HEADER_LEN..])?;
    Ok(out)
}

/// Encrypts a TL `payload` with MTProto 2.0 as sent by `from`, with the given padding bytes
/// (12..=1024 of them, making the plaintext a multiple of 16; see [`padding_len`]).
///
/// # Errors
/// [`CryptoError::InvalidFixedPadding`], [`CryptoError::UnalignedPayload`],
/// [`CryptoError::PayloadTooLarge`].
pub fn encrypt_v2(
    key: &AuthKey,
    from: Side,
    payload: &[u8],
    padding: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    let p = padding.len();
    if !(12..=1024).contains(&p) || !(4 + payload.len() + p).is_multiple_of(16) {
        return Err(CryptoError::InvalidFixedPadding { padding: p });
    }
    let pt = plaintext(payload, padding)?;
    let x = from.x();
    let msg_key = msg_key_v2(key, x, &pt);
    let (aes_key, aes_iv) = kdf_v2(key, &msg_key, x);
    wire(key, &msg_key, &aes_key, &aes_iv, &pt)
}

/// Splits and checks the header: length, alignment and fingerprint.
/// The longest message on the wire: the largest payload with its length prefix and the
/// largest padding (anything longer is refused before it is copied or decrypted).
pub const MAX_WIRE: usize = HEADER_LEN + 4 + MAX_PAYLOAD + 1024 + 16;

fn header<'a>(key: &AuthKey, wire: &'a [u8]) -> Result<([u8; 16], &'a [u8]), CryptoError> {
    if wire.len() < HEADER_LEN + 16
        || wire.len() > MAX_WIRE
        || !(wire.len() - HEADER_LEN).is_multiple_of(16)
    {
        return Err(CryptoError::BadWireLength { len: wire.len() });
    }
    let (head, body) = wire.split_at(HEADER_LEN);
    let mut fp = [0u8; 8];
    fp.copy_from_slice(&head[..8]);
    let found = i64::from_le_bytes(fp);
    if !key.has_fingerprint(found) {
        return Err(CryptoError::FingerprintMismatch {
            expected: key.fingerprint(),
            found,
        });
    }
    let mut msg_key = [0u8; 16];
    msg_key.copy_from_slice(&head[8..]);
    Ok((msg_key, body))
}

/// Checks the length prefix; returns `(payload length, padding length)`.
fn split_plaintext(
    pt: &[u8],
    padding: std::ops::RangeInclusive<usize>,
) -> Result<(usize, usize), CryptoError> {
    let mut l = [0u8; 4];
    l.copy_from_slice(&pt[..4]);
    let len = u32::from_le_bytes(l);
    let avail = pt.len() - 4;
    if len as usize > avail {
        return Err(CryptoError::BadLengthPrefix {
            len,
            plaintext: pt.len(),
        });
    }
    if len % 4 != 0 {
        return Err(CryptoError::UnalignedPayload { len });
    }
    let pad = avail - len as usize;
    if !padding.contains(&pad) {
        return Err(CryptoError::BadPadding { padding: pad });
    }
    Ok((len as usize, pad))
}

/// Decrypts and checks an MTProto 2.0 message sent by `from`. msg_key is compared in constant
/// time before the length prefix is looked at. Memory used is the size of `wire`.
///
/// # Errors
/// [`CryptoError::BadWireLength`], [`CryptoError::FingerprintMismatch`],
/// [`CryptoError::MsgKeyMismatch`], [`CryptoError::BadLengthPrefix`],
/// [`CryptoError::UnalignedPayload`], [`CryptoError::BadPadding`].
pub fn decrypt_v2(key: &AuthKey, from: Side, wire: &[u8]) -> Result<Decrypted, CryptoError> {
    let (msg_key, body) = header(key, wire)?;
    let x = from.x();
    let (aes_key, aes_iv) = kdf_v2(key, &msg_key, x);
    let mut pt = Zeroizing::new(body.to_vec());
    IgeStream::new(&aes_key, &aes_iv, Direction::Decrypt).process(&mut pt)?;
    check_v2(key, x, msg_key, &pt)
}

/// The checks after MTProto 2.0 decryption: msg_key (constant time), then length and padding.
fn check_v2(
    key: &AuthKey,
    x: usize,
    msg_key: [u8; 16],
    pt: &[u8],
) -> Result<Decrypted, CryptoError> {
    let expect = msg_key_v2(key, x, pt);
    if !msg_keys_equal(&expect, &msg_key) {
        return Err(CryptoError::MsgKeyMismatch);
    }
    let (len, padding_len) = split_plaintext(pt, 12..=1024)?;
    Ok(Decrypted {
        payload: pt[4..4 + len].to_vec(),
        padding_len,
        msg_key,
        version: Version::V2,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> AuthKey {
        let mut k = [0u8; 256];
        k.iter_mut().enumerate().for_each(|(i, b)| *b = i as u8);
        AuthKey::new(k)
    }

    #[test]
    fn padding_policy_bounds() {
        for len in (0..2000).step_by(4) {
            for r in 0..16 {
                let p = padding_len(len, r);
                assert!(
                    (12..=1024).contains(&p) && (4 + len + p).is_multiple_of(16),
                    "{len} {r} {p}"
                );
            }
        }
    }

    #[test]
    fn v2_round_trip_and_direction() {
        let k = key();
        let payload = [7u8; 20];
        let pad = vec![0xabu8; padding_len(20, 3)];
        let w = encrypt_v2(&k, Side::Originator, &payload, &pad).unwrap();
        let d = decrypt_v2(&k, Side::Originator, &w).unwrap();
        assert_eq!(
            (d.payload.as_slice(), d.padding_len),
            (&payload[..], pad.len())
        );
        assert_eq!(
            decrypt_v2(&k, Side::Participant, &w),
            Err(CryptoError::MsgKeyMismatch)
        );
    }

    #[test]
    fn v2_rejections_are_distinct() {
        let k = key();
        let w = encrypt_v2(&k, Side::Participant, &[1; 8], &[0; 20]).unwrap();
        assert!(matches!(
            decrypt_v2(&k, Side::Participant, &w[..w.len() - 1]),
            Err(CryptoError::BadWireLength { .. })
        ));
        assert!(matches!(
            decrypt_v2(&k, Side::Participant, &w[..24]),
            Err(CryptoError::BadWireLength { .. })
        ));
        let mut bad = w.clone();
        bad[0] ^= 1;
        assert!(matches!(
            decrypt_v2(&k, Side::Participant, &bad),
            Err(CryptoError::FingerprintMismatch { .. })
        ));
        let mut bad = w.clone();
        bad[30] ^= 1;
        assert_eq!(
            decrypt_v2(&k, Side::Participant, &bad),
            Err(CryptoError::MsgKeyMismatch)
        );
        let mut bad = w.clone();
        bad[10] ^= 1;
        assert_eq!(
            decrypt_v2(&k, Side::Participant, &bad),
            Err(CryptoError::MsgKeyMismatch)
        );
    }
}
