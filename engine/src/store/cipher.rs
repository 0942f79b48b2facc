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

    /// Encrypts `plain` (random padding from the OS RNG); `None` beyond 1 MiB.
    pub fn seal(&self, plain: &[u8]) -> Option<Vec<u8>> {
        let pad = random_padding(plain.len(), Version::V2, &mut rand::rngs::OsRng);
        encrypt_v2(&self.key, Side::Originator, plain, &pad).ok()
    }

    /// Decrypts and authenticates a sealed record.
    pub fn open(&self, sealed: &[u8]) -> Option<Vec<u8>> {
        decrypt_v2(&self.key, Side::Originator, sealed)
            .ok()
            .map(|d| d.payload)
    }
}
