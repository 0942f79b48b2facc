//! Everything cryptographic that secret chats need, one primitive a file, byte-exact to
//! `../shared/spec/end-to-end.md`, `end-to-end-v1.md`, `pfs.md` and `security-guidelines.md`.
//!
//! - [`aesni`]: the AES-NI IGE kernels (the engine's only `unsafe`, justified there).
//! - [`ige`]: AES-256-IGE, one-shot, streaming ([`ige::IgeStream`]) and batched.
//! - [`ige_batch`]: many IGE chains interleaved 8 at a time.
//! - [`message`]: MTProto 2.0 and 1.0 secret-message encryption and checked decryption.
//! - [`dh`]: DH parameter validation, g_a/g_b range checks, shared key and fingerprint.
//! - [`fixed_base`]: precomputed constant-time `g^a` for the fixed generator.
//! - [`prime`]: the (expensive) safe-prime check, separate so callers can cache verdicts.
//! - [`file`](mod@file): one-time file keys, their 32-bit fingerprint, part-by-part file encryption.
//! - [`visualize`]: key visualization.
//! - [`keys`]: secret newtypes (zeroized, redacted `Debug`, constant-time equality).
//!
//! Nothing here reads the clock or the OS RNG: randomness is passed in.

pub mod aesni;
pub mod dh;
pub mod file;
pub mod fixed_base;
pub mod ige;
pub mod ige_batch;
pub mod keys;
pub mod message;
pub mod prime;
pub mod visualize;

pub use keys::{AuthKey, Side};

/// Why a cryptographic operation was refused. Every variant is a distinct check.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CryptoError {
    /// IGE input not a multiple of 16 bytes.
    #[error("IGE data length {len} is not a multiple of 16")]
    UnalignedLength {
        /// The length.
        len: usize,
    },
    /// Wire message shorter than fingerprint + msg_key + one block... (or not block-aligned).
    #[error("encrypted message of {len} bytes is too short or not block-aligned")]
    BadWireLength {
        /// The length.
        len: usize,
    },
    /// The key fingerprint in the message is not this chat's key.
    #[error("key fingerprint {found} does not match the chat key {expected}")]
    FingerprintMismatch {
        /// Our key's fingerprint.
        expected: i64,
        /// The message's.
        found: i64,
    },
    /// msg_key recomputed from the plaintext differs (tampering or wrong key/direction).
    #[error("msg_key mismatch")]
    MsgKeyMismatch,
    /// The 4-byte length prefix is out of bounds.
    #[error("length prefix {len} out of bounds for {plaintext} plaintext bytes")]
    BadLengthPrefix {
        /// The prefix.
        len: u32,
        /// Plaintext size.
        plaintext: usize,
    },
    /// The length prefix is not a multiple of 4.
    #[error("length prefix {len} is not a multiple of 4")]
    UnalignedPayload {
        /// The prefix.
        len: u32,
    },
    /// Padding outside 12..=1024 (MTProto 2.0) or 0..=15 (1.0).
    #[error("padding of {padding} bytes is out of range")]
    BadPadding {
        /// The padding length.
        padding: usize,
    },
    /// Payload too large to send (beyond the TL/AES limits chosen).
    #[error("payload of {len} bytes is too large")]
    PayloadTooLarge {
        /// The length.
        len: usize,
    },
    /// A fixed padding that does not produce a valid length.
    #[error(
        "padding of {padding} bytes does not fit the payload (need 12..=1024, total a multiple of 16)"
    )]
    InvalidFixedPadding {
        /// The padding length given.
        padding: usize,
    },
    /// A key of the wrong size.
    #[error("key must be {expected} bytes, got {found}")]
    BadKeyLength {
        /// Expected size.
        expected: usize,
        /// Given size.
        found: usize,
    },
    /// DH parameters or values rejected.
    #[error("DH check failed: {0}")]
    Dh(#[from] dh::DhError),
}

impl CryptoError {
    /// A stable snake_case name for the variant (the CLI's `{"error": kind}`).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::UnalignedLength { .. } => "unaligned_length",
            Self::BadWireLength { .. } => "bad_wire_length",
            Self::FingerprintMismatch { .. } => "fingerprint_mismatch",
            Self::MsgKeyMismatch => "msg_key_mismatch",
            Self::BadLengthPrefix { .. } => "bad_length_prefix",
            Self::UnalignedPayload { .. } => "unaligned_payload",
            Self::BadPadding { .. } => "bad_padding",
            Self::PayloadTooLarge { .. } => "payload_too_large",
            Self::InvalidFixedPadding { .. } => "invalid_padding",
            Self::BadKeyLength { .. } => "bad_key_length",
            Self::Dh(e) => e.kind(),
        }
    }
}
