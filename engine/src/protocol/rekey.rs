//! Perfect-forward-secrecy re-keying (`pfs.md`): the four-step exchange, aborts, concurrent
//! requests and when to start one. Pure: the DH work uses the chat's [`DhParams`] and randomness
//! passed in; results are returned as [`Step`]s for the caller to send, store and apply.

use secretchat_schema::e2e::{enums, types};
use zeroize::Zeroizing;

use crate::crypto::AuthKey;
use crate::crypto::dh::{DhError, DhParams, secret_exponent};

/// Start re-keying after this many messages with one key (pfs.md).
pub const REKEY_AFTER_MESSAGES: u32 = 100;
/// … or after this long, if the key encrypted at least one message.
pub const REKEY_AFTER_SECS: u64 = 7 * 24 * 3600;

/// Why a re-keying message was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RekeyError {
    /// A message for an exchange we are not in (or in the wrong step).
    #[error("unexpected {step} for exchange {exchange_id}")]
    Unexpected {
        /// Which message.
        step: &'static str,
        /// Its exchange id.
        exchange_id: i64,
    },
    /// The peer's DH value failed the checks: abort the exchange (and consider closing the chat).
    #[error("peer's DH value rejected: {0}")]
    Dh(#[from] DhError),
    /// The fingerprint the peer computed differs from ours.
    #[error("key fingerprint mismatch in {step}")]
    FingerprintMismatch {
        /// Which message.
        step: &'static str,
    },
}

/// Where the exchange stands. `Debug` shows the step and exchange id, never key material.
#[derive(Default)]
pub enum Rekey {
    /// No exchange in progress.
    #[default]
    Idle,
    /// We sent RequestKey and wait for AcceptKey.
    Requested {
        /// The exchange.
        exchange_id: i64,
        /// Our secret exponent.
        a: Zeroizing<[u8; 256]>,
    },
    /// We sent AcceptKey: switch on CommitKey or on the first message under the new key.
    Accepted {
        /// The exchange.
        exchange_id: i64,
        /// The new key.
        new_key: AuthKey,
    },
    /// We sent CommitKey and encrypt with the new key; the old one still decrypts until a
    /// message under the new key arrives.
    Committed {
        /// The previous key, for late messages.
        old_key: AuthKey,
        /// The new key's fingerprint.
        new_fingerprint: i64,
    },
}

impl std::fmt::Debug for Rekey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Rekey::Idle => f.write_str("Idle"),
            Rekey::Requested { exchange_id, .. } => {
                write!(f, "Requested({exchange_id}, a: <redacted>)")
            }
            Rekey::Accepted {
                exchange_id,
                new_key,
            } => write!(f, "Accepted({exchange_id}, {new_key:?})"),
            Rekey::Committed {
                new_fingerprint, ..
            } => write!(f, "Committed(new key {new_fingerprint:#x})"),
        }
    }
}

/// What a step asks the caller to do (in this order: store, install, send).
#[derive(Debug, Default)]
#[must_use]
pub struct Step {
    /// A service action to send (wrapped in `decryptedMessageService`).
    pub send: Option<enums::DecryptedMessageAction>,
    /// Switch to this key for sending and receiving.
    pub install: Option<AuthKey>,
    /// The previous key can be destroyed now.
    pub discard_old: bool,
    /// Send `decryptedMessageActionNoop` if nothing else is queued (lets the initiator discard).
    pub noop_if_idle: bool,
}

fn action(a: enums::DecryptedMessageAction) -> Step {
    Step {
        send: Some(a),
        ..Step::default()
    }
}

impl Rekey {
    /// Whether an exchange is in progress (never start a second one).
    pub fn in_progress(&self) -> bool {
        !matches!(self, Rekey::Idle)
    }

    /// Whether a re-key is due for a key used for `messages` messages over `age_secs`, of which
    /// `encrypted` were sent by us.
    pub fn due(&self, messages: u32, age_secs: u64, encrypted: u32) -> bool {
        !self.in_progress()
            && encrypted > 0
            && (messages > REKEY_AFTER_MESSAGES || age_secs > REKEY_AFTER_SECS)
    }

    /// Starts an exchange: `random` is 256 fresh bytes, `exchange_id` a random id.
    ///
    /// # Errors
    /// [`RekeyError::Unexpected`] when one is already in progress.
    pub fn start(
        &mut self,
        dh: &DhParams,
        exchange_id: i64,
        random: &[u8; 256],
    ) -> Result<Step, RekeyError> {
        if self.in_progress() {
            return Err(RekeyError::Unexpected {
                step: "start",
                exchange_id,
            });
        }
        let a = secret_exponent(random, &[]);
        let g_a = dh.public(&a).to_vec();
        *self = Rekey::Requested { exchange_id, a };
        Ok(action(enums::DecryptedMessageAction::RequestKey(
            types::DecryptedMessageActionRequestKey { exchange_id, g_a },
        )))
    }

    /// Handles the peer's RequestKey; `random` is 256 fresh bytes for our `b`.
    ///
    /// # Errors
    /// [`RekeyError::Dh`] for a bad `g_a` (answer with AbortKey: [`abort_action`]).
    pub fn on_request(
        &mut self,
        dh: &DhParams,
        exchange_id: i64,
        g_a: &[u8],
        random: &[u8; 256],
    ) -> Result<Step, RekeyError> {
        match self {
            Rekey::Requested {
                exchange_id: ours, ..
            } => {
                // Concurrent requests: the larger exchange_id wins; equal ids abort both silently.
                if *ours > exchange_id {
                    return Ok(Step::default());
                }
                if *ours == exchange_id {
                    *self = Rekey::Idle;
                    return Ok(Step::default());
                }
            }
            Rekey::Accepted { .. } | Rekey::Committed { .. } => {
                return Ok(abort_action(exchange_id));
            }
            Rekey::Idle => {}
        }
        let b = secret_exponent(random, &[]);
        let new_key = dh.shared_key(g_a, &b)?;
        let g_b = dh.public(&b).to_vec();
        let key_fingerprint = new_key.fingerprint();
        *self = Rekey::Accepted {
            exchange_id,
            new_key,
        };
        Ok(action(enums::DecryptedMessageAction::AcceptKey(
            types::DecryptedMessageActionAcceptKey {
                exchange_id,
                g_b,
                key_fingerprint,
            },
        )))
    }

    /// Handles AcceptKey for our request: commits and installs the new key. `current` is the
    /// key in use (kept for late messages).
    ///
    /// # Errors
    /// [`RekeyError::Unexpected`], [`RekeyError::Dh`], [`RekeyError::FingerprintMismatch`]; on
    /// the last two the exchange is dropped and an AbortKey should be sent.
    pub fn on_accept(
        &mut self,
        dh: &DhParams,
        current: &AuthKey,
        exchange_id: i64,
        g_b: &[u8],
        key_fingerprint: i64,
    ) -> Result<Step, RekeyError> {
        let Rekey::Requested {
            exchange_id: ours,
            a,
        } = self
        else {
            return Err(RekeyError::Unexpected {
                step: "AcceptKey",
                exchange_id,
            });
        };
        if *ours != exchange_id {
            return Err(RekeyError::Unexpected {
                step: "AcceptKey",
                exchange_id,
            });
        }
        let checked = dh
            .shared_key(g_b, a)
            .map_err(RekeyError::from)
            .and_then(|k| {
                if k.fingerprint() == key_fingerprint {
                    Ok(k)
                } else {
                    Err(RekeyError::FingerprintMismatch { step: "AcceptKey" })
                }
            });
        let new_key = match checked {
            Ok(k) => k,
            Err(e) => {
                *self = Rekey::Idle;
                return Err(e);
            }
        };
        *self = Rekey::Committed {
            old_key: current.clone(),
            new_fingerprint: key_fingerprint,
        };
        Ok(Step {
            send: Some(enums::DecryptedMessageAction::CommitKey(
                types::DecryptedMessageActionCommitKey {
                    exchange_id,
                    key_fingerprint,
                },
            )),
            install: Some(new_key),
            ..Step::default()
        })
    }

    /// Handles CommitKey for the exchange we accepted: install the new key, discard the old one,
    /// and let the initiator know with a message under the new key.
    ///
    /// # Errors
    /// [`RekeyError::Unexpected`], [`RekeyError::FingerprintMismatch`].
    pub fn on_commit(
        &mut self,
        exchange_id: i64,
        key_fingerprint: i64,
    ) -> Result<Step, RekeyError> {
        let Rekey::Accepted {
            exchange_id: ours,
            new_key,
        } = self
        else {
            return Err(RekeyError::Unexpected {
                step: "CommitKey",
                exchange_id,
            });
        };
        if *ours != exchange_id {
            return Err(RekeyError::Unexpected {
                step: "CommitKey",
                exchange_id,
            });
        }
        if new_key.fingerprint() != key_fingerprint {
            return Err(RekeyError::FingerprintMismatch { step: "CommitKey" });
        }
        let install = new_key.clone();
        *self = Rekey::Idle;
        Ok(Step {
            install: Some(install),
            discard_old: true,
            noop_if_idle: true,
            ..Step::default()
        })
    }

    /// A message arrived encrypted with the key whose fingerprint is `fingerprint`: for the
    /// accepting side this means the initiator switched (its CommitKey may be lost); for the
    /// initiator it means the old key can go. Returns `None` when it changes nothing.
    pub fn on_key_seen(&mut self, fingerprint: i64) -> Option<Step> {
        match self {
            Rekey::Accepted { new_key, .. } if new_key.fingerprint() == fingerprint => {
                let install = new_key.clone();
                *self = Rekey::Idle;
                Some(Step {
                    install: Some(install),
                    discard_old: true,
                    ..Step::default()
                })
            }
            Rekey::Committed {
                new_fingerprint, ..
            } if *new_fingerprint == fingerprint => {
                *self = Rekey::Idle;
                Some(Step {
                    discard_old: true,
                    ..Step::default()
                })
            }
            _ => None,
        }
    }

    /// The previous key while an initiator waits to discard it (for decrypting late messages).
    pub fn old_key(&self) -> Option<&AuthKey> {
        match self {
            Rekey::Committed { old_key, .. } => Some(old_key),
            _ => None,
        }
    }

    /// The peer aborted `exchange_id`.
    ///
    /// # Errors
    /// [`RekeyError::Unexpected`] when it is not an exchange we can still drop (after we sent
    /// CommitKey the peer cannot abort).
    pub fn on_abort(&mut self, exchange_id: i64) -> Result<(), RekeyError> {
        match self {
            Rekey::Requested {
                exchange_id: ours, ..
            }
            | Rekey::Accepted {
                exchange_id: ours, ..
            } if *ours == exchange_id => {
                *self = Rekey::Idle;
                Ok(())
            }
            _ => Err(RekeyError::Unexpected {
                step: "AbortKey",
                exchange_id,
            }),
        }
    }
}

/// `decryptedMessageActionAbortKey` for `exchange_id`.
pub fn abort_action(exchange_id: i64) -> Step {
    action(enums::DecryptedMessageAction::AbortKey(
        types::DecryptedMessageActionAbortKey { exchange_id },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::prime::TELEGRAM_DH_PRIME;
    use enums::DecryptedMessageAction as A;

    fn dh() -> DhParams {
        DhParams::new(&TELEGRAM_DH_PRIME, 3)
            .unwrap()
            .with_fixed_base()
    }

    #[test]
    fn four_steps_both_sides_end_on_the_same_key() {
        let dh = dh();
        let old = AuthKey::new([1; 256]);
        let (mut a, mut b) = (Rekey::default(), Rekey::default());
        assert!(
            a.due(101, 0, 1)
                && !a.due(100, 0, 1)
                && !a.due(500, 0, 0)
                && a.due(1, REKEY_AFTER_SECS + 1, 1)
        );
        let Some(A::RequestKey(req)) = a.start(&dh, 7, &[0x11; 256]).unwrap().send else {
            panic!()
        };
        assert!(
            a.start(&dh, 8, &[0x12; 256]).is_err(),
            "never two exchanges"
        );
        let Some(A::AcceptKey(acc)) = b
            .on_request(&dh, req.exchange_id, &req.g_a, &[0x22; 256])
            .unwrap()
            .send
        else {
            panic!()
        };
        let step = a
            .on_accept(&dh, &old, acc.exchange_id, &acc.g_b, acc.key_fingerprint)
            .unwrap();
        let (Some(A::CommitKey(commit)), Some(a_key)) = (step.send, step.install) else {
            panic!()
        };
        assert_eq!(a.old_key(), Some(&old));
        let step = b
            .on_commit(commit.exchange_id, commit.key_fingerprint)
            .unwrap();
        let b_key = step.install.unwrap();
        assert!(step.discard_old && step.noop_if_idle);
        assert_eq!(a_key, b_key);
        assert_ne!(a_key, old);
        // B's Noop under the new key lets A discard the old one.
        assert!(a.on_key_seen(b_key.fingerprint()).unwrap().discard_old);
        assert!(!a.in_progress() && !b.in_progress());
    }

    #[test]
    fn lost_commit_switch_on_first_message_under_new_key() {
        let dh = dh();
        let (mut a, mut b) = (Rekey::default(), Rekey::default());
        let Some(A::RequestKey(req)) = a.start(&dh, 1, &[3; 256]).unwrap().send else {
            panic!()
        };
        let Some(A::AcceptKey(acc)) = b.on_request(&dh, 1, &req.g_a, &[4; 256]).unwrap().send
        else {
            panic!()
        };
        let a_key = a
            .on_accept(
                &dh,
                &AuthKey::new([9; 256]),
                1,
                &acc.g_b,
                acc.key_fingerprint,
            )
            .unwrap()
            .install
            .unwrap();
        assert!(b.on_key_seen(12345).is_none());
        assert_eq!(
            b.on_key_seen(a_key.fingerprint()).unwrap().install,
            Some(a_key)
        );
    }

    #[test]
    fn concurrent_requests_larger_id_wins() {
        let dh = dh();
        let (mut a, mut b) = (Rekey::default(), Rekey::default());
        let Some(A::RequestKey(ra)) = a.start(&dh, 100, &[5; 256]).unwrap().send else {
            panic!()
        };
        let Some(A::RequestKey(rb)) = b.start(&dh, 200, &[6; 256]).unwrap().send else {
            panic!()
        };
        // A (smaller id) answers B's request; B (larger) silently ignores A's.
        assert!(matches!(
            a.on_request(&dh, rb.exchange_id, &rb.g_a, &[7; 256])
                .unwrap()
                .send,
            Some(A::AcceptKey(_))
        ));
        assert!(
            b.on_request(&dh, ra.exchange_id, &ra.g_a, &[8; 256])
                .unwrap()
                .send
                .is_none()
        );
        assert!(matches!(
            b,
            Rekey::Requested {
                exchange_id: 200,
                ..
            }
        ));
        // Equal ids: both drop theirs without a message.
        let (mut c, mut d) = (Rekey::default(), Rekey::default());
        let Some(A::RequestKey(rc)) = c.start(&dh, 5, &[1; 256]).unwrap().send else {
            panic!()
        };
        let _ = d.start(&dh, 5, &[2; 256]).unwrap();
        assert!(
            d.on_request(&dh, 5, &rc.g_a, &[3; 256])
                .unwrap()
                .send
                .is_none()
        );
        assert!(!d.in_progress());
    }

    #[test]
    fn debug_never_shows_the_exponent() {
        let mut a = Rekey::default();
        let _ = a.start(&dh(), 3, &[0xab; 256]).unwrap();
        let shown = format!("{a:?}");
        assert!(
            shown.contains("redacted") && !shown.contains("171"),
            "{shown}"
        );
    }

    #[test]
    fn bad_values_and_fingerprints_are_refused() {
        let dh = dh();
        let mut b = Rekey::default();
        assert!(matches!(
            b.on_request(&dh, 1, &[2], &[1; 256]),
            Err(RekeyError::Dh(DhError::PublicRange))
        ));
        assert!(
            !b.in_progress(),
            "a refused request leaves no exchange behind"
        );
        let mut a = Rekey::default();
        let Some(A::RequestKey(req)) = a.start(&dh, 9, &[1; 256]).unwrap().send else {
            panic!()
        };
        let Some(A::AcceptKey(acc)) = b.on_request(&dh, 9, &req.g_a, &[2; 256]).unwrap().send
        else {
            panic!()
        };
        let wrong = a.on_accept(
            &dh,
            &AuthKey::new([0; 256]),
            9,
            &acc.g_b,
            acc.key_fingerprint ^ 1,
        );
        assert_eq!(
            wrong.unwrap_err(),
            RekeyError::FingerprintMismatch { step: "AcceptKey" }
        );
        assert!(!a.in_progress());
        assert!(b.on_commit(9, 0).is_err());
        assert!(b.on_abort(8).is_err());
        assert!(b.on_abort(9).is_ok() && !b.in_progress());
    }
}
