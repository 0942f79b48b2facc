//! Secret newtypes: zeroized on drop, redacted in `Debug`, compared in constant time.

use std::fmt;

use sha1::{Digest, Sha1};
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop};

use super::CryptoError;

/// Which side of the chat sent a message: selects `x` in the key derivation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    /// The chat's creator (who called `requestEncryption`): x = 0.
    Originator,
    /// The other party: x = 8.
    Participant,
}

impl Side {
    /// `x` for MTProto 2.0: 0 for messages from the originator, 8 the other way.
    pub fn x(self) -> usize {
        match self {
            Side::Originator => 0,
            Side::Participant => 8,
        }
    }

    /// The other side.
    pub fn peer(self) -> Side {
        match self {
            Side::Originator => Side::Participant,
            Side::Participant => Side::Originator,
        }
    }
}

/// A 256-byte shared secret-chat key.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct AuthKey {
    bytes: [u8; 256],
    fingerprint: i64,
}

impl AuthKey {
    /// Wraps 256 key bytes.
    pub fn new(bytes: [u8; 256]) -> Self {
        let fingerprint = fingerprint_of(&bytes);
        Self { bytes, fingerprint }
    }

    /// From a slice that must be exactly 256 bytes.
    ///
    /// # Errors
    /// [`CryptoError::BadKeyLength`].
    pub fn from_slice(bytes: &[u8]) -> Result<Self, CryptoError> {
        let arr: [u8; 256] = bytes.try_into().map_err(|_| CryptoError::BadKeyLength {
            expected: 256,
            found: bytes.len(),
        })?;
        Ok(Self::new(arr))
    }

    /// The key bytes (for key derivation; never log them).
    pub fn bytes(&self) -> &[u8; 256] {
        &self.bytes
    }

    /// `key_fingerprint`: the last 64 bits of SHA1(key) as a little-endian signed integer.
    pub fn fingerprint(&self) -> i64 {
        self.fingerprint
    }
}

/// The last 8 bytes of SHA1(key), little-endian.
fn fingerprint_of(key: &[u8; 256]) -> i64 {
    let digest = Sha1::digest(key);
    let mut last = [0u8; 8];
    last.copy_from_slice(&digest[12..20]);
    i64::from_le_bytes(last)
}

/// Whether two 64-bit key fingerprints are equal, in constant time (`subtle`). Every
/// fingerprint check of the engine goes through here: the message header's, the handshake's
/// (`encryptedChat.key_fingerprint`), the re-key's (`acceptKey`/`commitKey`) and the old-key
/// lookup.
pub fn fingerprints_equal(a: i64, b: i64) -> bool {
    a.ct_eq(&b).into()
}

/// Whether two 32-bit file-key fingerprints are equal, in constant time.
pub fn file_fingerprints_equal(a: i32, b: i32) -> bool {
    a.ct_eq(&b).into()
}

/// Whether two msg_keys are equal, in constant time: the MTProto 2.0 and 1.0 decryptions
/// compare the recomputed msg_key with the received one through this.
pub fn msg_keys_equal(a: &[u8; 16], b: &[u8; 16]) -> bool {
    a.ct_eq(b).into()
}

impl AuthKey {
    /// Whether `fp` is this key's fingerprint (constant time).
    pub fn has_fingerprint(&self, fp: i64) -> bool {
        fingerprints_equal(self.fingerprint, fp)
    }
}

impl PartialEq for AuthKey {
    fn eq(&self, other: &Self) -> bool {
        self.bytes.ct_eq(&other.bytes).into()
    }
}

impl Eq for AuthKey {}

impl fmt::Debug for AuthKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "AuthKey(fingerprint {:#018x}, <redacted>)",
            self.fingerprint
        )
    }
}

/// 32 secret bytes (AES keys, IVs, file keys).
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct Secret32(pub [u8; 32]);

impl PartialEq for Secret32 {
    fn eq(&self, other: &Self) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl Eq for Secret32 {}

impl fmt::Debug for Secret32 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret32(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_is_redacted() {
        let k = AuthKey::new([0x5a; 256]);
        let s = format!("{k:?}");
        assert!(!s.contains("5a5a") && !s.contains("90, 90"), "{s}");
        assert!(!format!("{:?}", Secret32([0x5a; 32])).contains("90"));
    }

    #[test]
    fn fingerprint_is_last_8_bytes_of_sha1_le() {
        let k = AuthKey::new([1; 256]);
        let d = Sha1::digest([1u8; 256]);
        assert_eq!(k.fingerprint().to_le_bytes(), d[12..20]);
        assert!(AuthKey::from_slice(&[0; 255]).is_err());
    }
}
