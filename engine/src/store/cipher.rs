//! Sealing records at rest with an application key: each record is encrypted like an MTProto 2.0
//! message (AES-256-IGE, msg_key over the plaintext and padding, so tampering is detected) under a
//! 256-byte key expanded from the application's 32 bytes with SHA-256.

use sha2::{Digest, Sha256};

use crate::crypto::message::{Version, decrypt_v2, encrypt_v2, random_padding};
use crate::crypto::{AuthKey, Side};

/// Seals and opens records; holds the expanded key (zeroized on drop by `AuthKey`).
pub struct RecordCipher {
    key: AuthKey,
}

impl RecordCipher {
    /// Expands `app_key` into the record key.
    pub fn new(app_key: &[u8; 32]) -> Self {
        let mut k = [0u8; 256];
        for (i, chunk) in k.chunks_mut(32).enumerate() {
            let d = Sha256::new()
                .chain_update(b"secretchat at-rest key")
                .chain_update([i as u8])
                .chain_update(app_key)
                .finalize();
            chunk.copy_from_slice(&d);
        }
        let key = AuthKey::new(k);
        zeroize::Zeroize::zeroize(&mut k);
        Self { key }
    }

    /// Encrypts `plain` (random padding from the OS RNG); `None` beyond 1 MiB. The record is
    /// framed as its length (4 bytes LE) and the bytes, zero-padded to a multiple of 4 (what the
    /// message format carries).
    pub fn seal(&self, plain: &[u8]) -> Option<Vec<u8>> {
        let len = u32::try_from(plain.len()).ok()?;
        let mut framed = zeroize::Zeroizing::new(Vec::with_capacity(plain.len() + 8));
        framed.extend_from_slice(&len.to_le_bytes());
        framed.extend_from_slice(plain);
        let padded = framed.len().next_multiple_of(4);
        framed.resize(padded, 0);
        let pad = random_padding(framed.len(), Version::V2, &mut rand::rngs::OsRng);
        encrypt_v2(&self.key, Side::Originator, &framed, &pad).ok()
    }

    /// Decrypts and authenticates a sealed record.
    pub fn open(&self, sealed: &[u8]) -> Option<Vec<u8>> {
        let framed = decrypt_v2(&self.key, Side::Originator, sealed)
            .ok()?
            .payload;
        let len = u32::from_le_bytes(framed.get(..4)?.try_into().ok()?) as usize;
        framed.get(4..4 + len).map(<[u8]>::to_vec)
    }
}
