//! Sealing records at rest with the application's key.
//!
//! A sealed record is `format (1 byte) ‖ nonce (24 bytes) ‖ XChaCha20-Poly1305 ciphertext and
//! tag`, 41 bytes more than the plaintext. The associated data binds it to where it is stored:
//! the column family, the record's key and the format. A record copied to another chat, another
//! column family or another key, or altered in any bit, does not open. Nonces are random: with
//! 192 bits there is no practical limit on how many records one key seals (AES-GCM's 96-bit
//! random nonces would wear out after ~2³² writes, a few days of a busy engine).
//!
//! Databases written before this format sealed records with AES-256-IGE and an MTProto 2.0
//! style msg_key, without binding them to their place; [`RecordCipher::open_legacy`] reads
//! them once, when the store migrates such a database on open.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::crypto::message::decrypt_v2;
use crate::crypto::{AuthKey, Side};

/// The first byte of every sealed record.
pub const SEALED_FORMAT: u8 = 2;
/// Bytes a sealed record adds to its plaintext: format, nonce and tag.
pub const SEALED_OVERHEAD: usize = 1 + 24 + 16;

/// Seals and opens records. Both keys are zeroized on drop (`chacha20poly1305` and
/// [`AuthKey`] wipe theirs).
pub struct RecordCipher {
    aead: XChaCha20Poly1305,
    legacy: AuthKey,
}

impl std::fmt::Debug for RecordCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RecordCipher(<redacted>)")
    }
}

/// What a sealed record is bound to.
fn associated_data(cf: &str, key: &[u8]) -> Vec<u8> {
    let mut ad = Vec::with_capacity(20 + cf.len() + key.len());
    ad.extend_from_slice(b"secretchat record");
    ad.push(SEALED_FORMAT);
    // Lengths keep (cf, key) pairs unambiguous.
    ad.push(cf.len() as u8);
    ad.extend_from_slice(cf.as_bytes());
    ad.extend_from_slice(&(key.len() as u32).to_be_bytes());
    ad.extend_from_slice(key);
    ad
}

impl RecordCipher {
    /// Derives the record key from the application's 32 bytes (SHA-256 with a label, so the
    /// application key itself never encrypts anything).
    pub fn new(app_key: &[u8; 32]) -> Self {
        let mut k = Zeroizing::new([0u8; 32]);
        k.copy_from_slice(
            &Sha256::new()
                .chain_update(b"secretchat at-rest record key, format 2")
                .chain_update(app_key)
                .finalize(),
        );
        let aead = XChaCha20Poly1305::new((&*k).into());
        Self {
            aead,
            legacy: legacy_key(app_key),
        }
    }

    /// Seals `plain` as the value of `key` in column family `cf` (nonce from the OS RNG).
    pub fn seal(&self, cf: &str, key: &[u8], plain: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; 24];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let aad = associated_data(cf, key);
        let mut out = Vec::with_capacity(plain.len() + SEALED_OVERHEAD);
        out.push(SEALED_FORMAT);
        out.extend_from_slice(&nonce);
        // Encryption fails only beyond the cipher's ~256 GiB limit, far above any record.
        if let Ok(ct) = self.aead.encrypt(
            XNonce::from_slice(&nonce),
            Payload {
                msg: plain,
                aad: &aad,
            },
        ) {
            out.extend_from_slice(&ct);
        }
        out
    }

    /// Opens the value of `key` in `cf`; `None` when it was sealed for another place, with
    /// another key, or altered.
    pub fn open(&self, cf: &str, key: &[u8], sealed: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
        let (&format, rest) = sealed.split_first()?;
        if format != SEALED_FORMAT || rest.len() < 24 + 16 {
            return None;
        }
        let (nonce, ct) = rest.split_at(24);
        let aad = associated_data(cf, key);
        self.aead
            .decrypt(XNonce::from_slice(nonce), Payload { msg: ct, aad: &aad })
            .ok()
            .map(Zeroizing::new)
    }

    /// Opens a record sealed by the earlier format (AES-256-IGE under a key expanded from the
    /// application key, not bound to its place): only while migrating a database.
    pub fn open_legacy(&self, sealed: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
        let framed = decrypt_v2(&self.legacy, Side::Originator, sealed)
            .ok()?
            .payload;
        let len = u32::from_le_bytes(framed.get(..4)?.try_into().ok()?) as usize;
        framed
            .get(4..4usize.checked_add(len)?)
            .map(|p| Zeroizing::new(p.to_vec()))
    }
}

/// Seals like the earlier format did (for the migration tests).
#[cfg(test)]
pub(crate) fn seal_legacy(c: &RecordCipher, plain: &[u8]) -> Vec<u8> {
    use crate::crypto::message::{Version, encrypt_v2, random_padding};
    let mut framed = (plain.len() as u32).to_le_bytes().to_vec();
    framed.extend_from_slice(plain);
    framed.resize(framed.len().next_multiple_of(4), 0);
    let pad = random_padding(framed.len(), Version::V2, &mut rand::rngs::OsRng);
    encrypt_v2(&c.legacy, Side::Originator, &framed, &pad).unwrap_or_default()
}

/// The earlier format's 256-byte key: SHA-256 expansion of the application key.
fn legacy_key(app_key: &[u8; 32]) -> AuthKey {
    let mut k = Zeroizing::new([0u8; 256]);
    for (i, chunk) in k.chunks_mut(32).enumerate() {
        let d = Sha256::new()
            .chain_update(b"secretchat at-rest key")
            .chain_update([i as u8])
            .chain_update(app_key)
            .finalize();
        chunk.copy_from_slice(&d);
    }
    AuthKey::new(*k)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_opens_only_where_it_was_sealed() {
        let c = RecordCipher::new(&[7; 32]);
        let sealed = c.seal("chats", b"k1", b"state");
        assert_eq!(sealed.len(), 5 + SEALED_OVERHEAD);
        assert_eq!(
            c.open("chats", b"k1", &sealed).unwrap().as_slice(),
            b"state"
        );
        assert!(
            c.open("chats", b"k2", &sealed).is_none(),
            "moved to another key"
        );
        assert!(
            c.open("inbox", b"k1", &sealed).is_none(),
            "moved to another family"
        );
        assert!(
            RecordCipher::new(&[8; 32])
                .open("chats", b"k1", &sealed)
                .is_none()
        );
        for i in 0..sealed.len() {
            let mut t = sealed.clone();
            t[i] ^= 1;
            assert!(
                c.open("chats", b"k1", &t).is_none(),
                "bit flip at {i} opened"
            );
        }
        assert!(c.open("chats", b"k1", &sealed[..30]).is_none());
        assert!(c.open("chats", b"k1", &[]).is_none());
    }

    #[test]
    fn the_cf_and_key_boundary_is_unambiguous() {
        let c = RecordCipher::new(&[7; 32]);
        let sealed = c.seal("ab", b"c", b"x");
        assert!(c.open("a", b"bc", &sealed).is_none());
    }
}
