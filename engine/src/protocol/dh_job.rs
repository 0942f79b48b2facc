//! DH exponentiations as work items: the protocol core never runs a 2048-bit modexp itself. It
//! returns a [`DhJob`] (inside an action); the engine runs [`DhJob::run`] wherever it likes (a
//! thread pool) and feeds the [`DhOutput`] back as an event. Jobs carry everything they need, so
//! running one touches no chat state.

use std::sync::Arc;

use zeroize::Zeroizing;

use crate::crypto::AuthKey;
use crate::crypto::dh::{DhError, DhParams};

/// What a job is for (the chat checks that the answer matches what it waits for).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DhPurpose {
    /// The first key exchange of the chat.
    Handshake,
    /// A PFS re-key.
    Rekey,
}

/// One DH computation: `g^x` and/or `peer^x` for a secret exponent `x`.
///
/// `Debug` never shows the exponent.
pub struct DhJob {
    /// Chat-local job number; a result for another number is stale and ignored.
    pub id: u64,
    /// What it is for.
    pub purpose: DhPurpose,
    params: Arc<DhParams>,
    exponent: Zeroizing<[u8; 256]>,
    peer: Option<Vec<u8>>,
    want_public: bool,
}

impl std::fmt::Debug for DhJob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DhJob")
            .field("id", &self.id)
            .field("purpose", &self.purpose)
            .field("public", &self.want_public)
            .field("shared", &self.peer.is_some())
            .finish_non_exhaustive()
    }
}

/// The answer to a [`DhJob`].
pub struct DhOutput {
    /// The job's number.
    pub id: u64,
    /// What it was for.
    pub purpose: DhPurpose,
    /// `g^x mod p`, when asked for.
    pub public: Option<[u8; 256]>,
    /// `peer^x mod p` as a key, when a peer value was given (or why it failed).
    pub shared: Option<Result<AuthKey, DhError>>,
}

impl std::fmt::Debug for DhOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DhOutput")
            .field("id", &self.id)
            .field("purpose", &self.purpose)
            .field("public", &self.public.is_some())
            .field("shared", &self.shared)
            .finish()
    }
}

impl DhJob {
    /// A job computing `g^x` (when `want_public`) and `peer^x` (when `peer` is given).
    pub fn new(
        id: u64,
        purpose: DhPurpose,
        params: Arc<DhParams>,
        exponent: Zeroizing<[u8; 256]>,
        peer: Option<Vec<u8>>,
        want_public: bool,
    ) -> Self {
        Self {
            id,
            purpose,
            params,
            exponent,
            peer,
            want_public,
        }
    }

    /// Runs the exponentiations (constant-time in the exponent; milliseconds each).
    pub fn run(self) -> DhOutput {
        let public = self.want_public.then(|| self.params.public(&self.exponent));
        let shared = self
            .peer
            .as_ref()
            .map(|p| self.params.shared_key(p, &self.exponent));
        DhOutput {
            id: self.id,
            purpose: self.purpose,
            public,
            shared,
        }
    }
}
