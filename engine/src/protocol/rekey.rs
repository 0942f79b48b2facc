//! Perfect-forward-secrecy re-keying (`pfs.md`): the four-step exchange, aborts, concurrent
//! requests and when to start one. Pure: the DH work uses the chat's [`DhParams`] and randomness
//! passed in; results are returned as [`Step`]s for the caller to send, store and apply.

use std::sync::Arc;

use secretchat_schema::e2e::{enums, types};
use zeroize::Zeroizing;

use super::dh_job::{DhJob, DhOutput, DhPurpose};
use crate::crypto::AuthKey;
use crate::crypto::dh::{DhError, DhParams, secret_exponent};
use crate::crypto::keys::Side;

/// Start re-keying after this many messages with one key (pfs.md).
pub const REKEY_AFTER_MESSAGES: u32 = 100;
/// The participant waits this many messages more before it starts a re-key itself. Both ends
/// count the same messages (each one is encrypted by one and decrypted by the other), so with
/// one threshold they start at the same moment: pfs.md's concurrent-request rule then aborts
/// one exchange, whose exponentiation is wasted (81 of 501 in a default simulation). The
/// creator starts at 101, as official clients do ("more than 100"); the participant only if
/// the creator did not (it is still "more than 100").
pub const PARTICIPANT_REKEY_DELAY: u32 = 50;
/// … or after this long (milliseconds), if the key encrypted at least one message.
pub const REKEY_AFTER_MS: u64 = 7 * 24 * 3600 * 1000;

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

impl RekeyError {
    /// A stable snake_case name.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Unexpected { .. } => "unexpected",
            Self::Dh(_) => "dh",
            Self::FingerprintMismatch { .. } => "fingerprint_mismatch",
        }
    }
}

/// Where the exchange stands. `Debug` shows the step and exchange id, never key material.
#[derive(Default)]
pub enum Rekey {
    /// No exchange in progress.
    #[default]
    Idle,
    /// We decided to start and wait for `g_a` to be computed (nothing sent yet).
    Starting {
        /// The exchange.
        exchange_id: i64,
        /// Our secret exponent.
        a: Zeroizing<[u8; 256]>,
    },
    /// We sent RequestKey and wait for AcceptKey.
    Requested {
        /// The exchange.
        exchange_id: i64,
        /// Our secret exponent.
        a: Zeroizing<[u8; 256]>,
    },
    /// We answer the peer's RequestKey and wait for `g_b` and the key to be computed.
    Accepting {
        /// The exchange.
        exchange_id: i64,
    },
    /// We sent AcceptKey: switch on CommitKey or on the first message under the new key.
    Accepted {
        /// The exchange.
        exchange_id: i64,
        /// The new key.
        new_key: AuthKey,
    },
    /// We got a valid-looking AcceptKey and wait for the new key to be computed.
    Committing {
        /// The exchange.
        exchange_id: i64,
        /// The fingerprint the peer announced.
        key_fingerprint: i64,
    },
    /// We sent CommitKey and encrypt with the new key; the old one may go once a message under
    /// the new key arrives.
    Committed {
        /// The exchange.
        exchange_id: i64,
        /// The new key's fingerprint.
        new_fingerprint: i64,
    },
}

impl std::fmt::Debug for Rekey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Rekey::Idle => f.write_str("Idle"),
            Rekey::Starting { exchange_id, .. } => {
                write!(f, "Starting({exchange_id}, a: <redacted>)")
            }
            Rekey::Requested { exchange_id, .. } => {
                write!(f, "Requested({exchange_id}, a: <redacted>)")
            }
            Rekey::Accepting { exchange_id } => write!(f, "Accepting({exchange_id})"),
            Rekey::Accepted {
                exchange_id,
                new_key,
            } => write!(f, "Accepted({exchange_id}, {new_key:?})"),
            Rekey::Committing { exchange_id, .. } => write!(f, "Committing({exchange_id})"),
            Rekey::Committed {
                exchange_id,
                new_fingerprint,
            } => write!(f, "Committed({exchange_id}, new key {new_fingerprint:#x})"),
        }
    }
}

/// What a step asks the caller to do (in this order: store, install, send, compute).
#[derive(Debug, Default)]
#[must_use]
pub struct Step {
    /// A service action to send (wrapped in `decryptedMessageService`).
    pub send: Option<enums::DecryptedMessageAction>,
    /// Switch to this key for sending and receiving (the current one becomes the previous key).
    pub install: Option<AuthKey>,
    /// The previous key is no longer needed by the exchange (the caller still keeps it while a
    /// gap before the switch is open).
    pub discard_old: bool,
    /// Send `decryptedMessageActionNoop` if nothing else is queued (lets the initiator discard).
    pub noop_if_idle: bool,
    /// A DH computation to run; feed its output to [`Rekey::on_dh_done`].
    pub compute: Option<DhJob>,
}

fn action(a: enums::DecryptedMessageAction) -> Step {
    Step {
        send: Some(a),
        ..Step::default()
    }
}

fn compute(job: DhJob) -> Step {
    Step {
        compute: Some(job),
        ..Step::default()
    }
}

impl Rekey {
    /// Whether an exchange is in progress (never start a second one).
    pub fn in_progress(&self) -> bool {
        !matches!(self, Rekey::Idle)
    }

    /// The exchange id in progress, if any.
    pub fn exchange_id(&self) -> Option<i64> {
        match self {
            Rekey::Idle => None,
            Rekey::Starting { exchange_id, .. }
            | Rekey::Requested { exchange_id, .. }
            | Rekey::Accepting { exchange_id }
            | Rekey::Accepted { exchange_id, .. }
            | Rekey::Committing { exchange_id, .. }
            | Rekey::Committed { exchange_id, .. } => Some(*exchange_id),
        }
    }

    /// Whether a re-key is due for a key used for `messages` messages over `age_ms`, of which
    /// `encrypted` were sent by us; `side` picks the message threshold
    /// ([`PARTICIPANT_REKEY_DELAY`]).
    pub fn due(&self, side: Side, messages: u32, age_ms: u64, encrypted: u32) -> bool {
        let after = match side {
            Side::Originator => REKEY_AFTER_MESSAGES,
            Side::Participant => REKEY_AFTER_MESSAGES + PARTICIPANT_REKEY_DELAY,
        };
        !self.in_progress() && encrypted > 0 && (messages > after || age_ms > REKEY_AFTER_MS)
    }

    /// Starts an exchange: `random` is 256 fresh bytes, `exchange_id` a random id. Returns the
    /// job computing `g_a`; RequestKey goes out when it is done.
    ///
    /// # Errors
    /// [`RekeyError::Unexpected`] when one is already in progress.
    pub fn start(
        &mut self,
        dh: &Arc<DhParams>,
        job_id: u64,
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
        let job = DhJob::new(job_id, DhPurpose::Rekey, dh.clone(), a.clone(), None, true);
        *self = Rekey::Starting { exchange_id, a };
        Ok(compute(job))
    }

    /// Handles the peer's RequestKey; `random` is 256 fresh bytes for our `b`. Returns the job
    /// computing `g_b` and the key (AcceptKey goes out when it is done), nothing when the
    /// concurrency rule drops the request, or an AbortKey while we are in another exchange.
    ///
    /// # Errors
    /// [`RekeyError::Dh`] for a bad `g_a` (answer with AbortKey: [`abort_action`]); the state is
    /// unchanged then.
    pub fn on_request(
        &mut self,
        dh: &Arc<DhParams>,
        job_id: u64,
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
            // Ours was never sent: the peer cannot know it, so simply take part in theirs.
            Rekey::Starting { .. } | Rekey::Idle => {}
            Rekey::Accepting { .. }
            | Rekey::Accepted { .. }
            | Rekey::Committing { .. }
            | Rekey::Committed { .. } => return Ok(abort_action(exchange_id)),
        }
        dh.check_public(g_a)?;
        let b = secret_exponent(random, &[]);
        let job = DhJob::new(
            job_id,
            DhPurpose::Rekey,
            dh.clone(),
            b,
            Some(g_a.to_vec()),
            true,
        );
        *self = Rekey::Accepting { exchange_id };
        Ok(compute(job))
    }

    /// Handles AcceptKey for our request: returns the job computing the new key (CommitKey goes
    /// out when it is done and the fingerprint matches).
    ///
    /// # Errors
    /// [`RekeyError::Unexpected`], [`RekeyError::Dh`]; on the last the exchange is dropped and
    /// an AbortKey should be sent.
    pub fn on_accept(
        &mut self,
        dh: &Arc<DhParams>,
        job_id: u64,
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
        if let Err(e) = dh.check_public(g_b) {
            *self = Rekey::Idle;
            return Err(e.into());
        }
        let job = DhJob::new(
            job_id,
            DhPurpose::Rekey,
            dh.clone(),
            a.clone(),
            Some(g_b.to_vec()),
            false,
        );
        *self = Rekey::Committing {
            exchange_id,
            key_fingerprint,
        };
        Ok(compute(job))
    }

    /// Feeds the result of the last job this exchange asked for.
    ///
    /// # Errors
    /// [`RekeyError::Unexpected`] for an answer no step waits for, [`RekeyError::Dh`],
    /// [`RekeyError::FingerprintMismatch`] (the exchange is dropped; send AbortKey).
    pub fn on_dh_done(&mut self, out: DhOutput) -> Result<Step, RekeyError> {
        match std::mem::take(self) {
            Rekey::Starting { exchange_id, a } => {
                let Some(g_a) = out.public else {
                    return Err(unexpected_job(exchange_id));
                };
                *self = Rekey::Requested { exchange_id, a };
                Ok(action(enums::DecryptedMessageAction::RequestKey(
                    types::DecryptedMessageActionRequestKey {
                        exchange_id,
                        g_a: g_a.to_vec(),
                    },
                )))
            }
            Rekey::Accepting { exchange_id } => {
                let (Some(g_b), Some(shared)) = (out.public, out.shared) else {
                    return Err(unexpected_job(exchange_id));
                };
                let new_key = shared?;
                let key_fingerprint = new_key.fingerprint();
                *self = Rekey::Accepted {
                    exchange_id,
                    new_key,
                };
                Ok(action(enums::DecryptedMessageAction::AcceptKey(
                    types::DecryptedMessageActionAcceptKey {
                        exchange_id,
                        g_b: g_b.to_vec(),
                        key_fingerprint,
                    },
                )))
            }
            Rekey::Committing {
                exchange_id,
                key_fingerprint,
            } => {
                let Some(shared) = out.shared else {
                    return Err(unexpected_job(exchange_id));
                };
                let new_key = shared?;
                if !new_key.has_fingerprint(key_fingerprint) {
                    return Err(RekeyError::FingerprintMismatch { step: "AcceptKey" });
                }
                *self = Rekey::Committed {
                    exchange_id,
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
            other => {
                let id = other.exchange_id().unwrap_or(0);
                *self = other;
                Err(unexpected_job(id))
            }
        }
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
        if !new_key.has_fingerprint(key_fingerprint) {
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

    /// The key the peer may switch to before we heard its CommitKey (we sent AcceptKey).
    pub fn pending_key(&self) -> Option<&AuthKey> {
        match self {
            Rekey::Accepted { new_key, .. } => Some(new_key),
            _ => None,
        }
    }

    /// A message arrived encrypted with the key whose fingerprint is `fingerprint`: for the
    /// accepting side this means the initiator switched (its CommitKey may be lost); for the
    /// initiator it means the old key can go. Returns `None` when it changes nothing.
    pub fn on_key_seen(&mut self, fingerprint: i64) -> Option<Step> {
        match self {
            Rekey::Accepted { new_key, .. } if new_key.has_fingerprint(fingerprint) => {
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
            } if crate::crypto::keys::fingerprints_equal(*new_fingerprint, fingerprint) => {
                *self = Rekey::Idle;
                Some(Step {
                    discard_old: true,
                    ..Step::default()
                })
            }
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
            | Rekey::Accepting { exchange_id: ours }
            | Rekey::Accepted {
                exchange_id: ours, ..
            }
            | Rekey::Committing {
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

fn unexpected_job(exchange_id: i64) -> RekeyError {
    RekeyError::Unexpected {
        step: "DH result",
        exchange_id,
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

    fn dh() -> Arc<DhParams> {
        Arc::new(
            DhParams::new(&TELEGRAM_DH_PRIME, 3)
                .unwrap()
                .with_fixed_base(),
        )
    }

    /// Runs the step's job and feeds the answer back, as the engine does.
    fn finish(r: &mut Rekey, step: Result<Step, RekeyError>) -> Result<Step, RekeyError> {
        let job = step.unwrap().compute.expect("a DH job");
        r.on_dh_done(job.run())
    }

    fn request(r: &mut Rekey, id: i64, seed: u8) -> types::DecryptedMessageActionRequestKey {
        let dh = dh();
        let step = r.start(&dh, 1, id, &[seed; 256]);
        let Some(A::RequestKey(req)) = finish(r, step).unwrap().send else {
            panic!()
        };
        req
    }

    fn accept(
        r: &mut Rekey,
        req: &types::DecryptedMessageActionRequestKey,
        seed: u8,
    ) -> types::DecryptedMessageActionAcceptKey {
        let dh = dh();
        let step = r.on_request(&dh, 2, req.exchange_id, &req.g_a, &[seed; 256]);
        let Some(A::AcceptKey(acc)) = finish(r, step).unwrap().send else {
            panic!()
        };
        acc
    }

    #[test]
    fn four_steps_both_sides_end_on_the_same_key() {
        let dh = dh();
        let (mut a, mut b) = (Rekey::default(), Rekey::default());
        let o = Side::Originator;
        assert!(
            a.due(o, 101, 0, 1)
                && !a.due(o, 100, 0, 1)
                && !a.due(o, 500, 0, 0)
                && a.due(o, 1, REKEY_AFTER_MS + 1, 1)
        );
        // The participant waits longer, except for the key's age.
        let p = Side::Participant;
        assert!(
            !a.due(p, 101, 0, 1)
                && !a.due(p, 150, 0, 1)
                && a.due(p, 151, 0, 1)
                && a.due(p, 1, REKEY_AFTER_MS + 1, 1)
        );
        let req = request(&mut a, 7, 0x11);
        assert!(
            a.start(&dh, 9, 8, &[0x12; 256]).is_err(),
            "never two exchanges"
        );
        let acc = accept(&mut b, &req, 0x22);
        let step = a.on_accept(&dh, 3, acc.exchange_id, &acc.g_b, acc.key_fingerprint);
        let step = finish(&mut a, step).unwrap();
        let (Some(A::CommitKey(commit)), Some(a_key)) = (step.send, step.install) else {
            panic!()
        };
        let step = b
            .on_commit(commit.exchange_id, commit.key_fingerprint)
            .unwrap();
        let b_key = step.install.unwrap();
        assert!(step.discard_old && step.noop_if_idle);
        assert_eq!(a_key, b_key);
        // B's Noop under the new key lets A discard the old one.
        assert!(a.on_key_seen(b_key.fingerprint()).unwrap().discard_old);
        assert!(!a.in_progress() && !b.in_progress());
    }

    #[test]
    fn lost_commit_switch_on_first_message_under_new_key() {
        let dh = dh();
        let (mut a, mut b) = (Rekey::default(), Rekey::default());
        let req = request(&mut a, 1, 3);
        let acc = accept(&mut b, &req, 4);
        let step = a.on_accept(&dh, 5, 1, &acc.g_b, acc.key_fingerprint);
        let a_key = finish(&mut a, step).unwrap().install.unwrap();
        assert!(b.on_key_seen(12345).is_none());
        assert_eq!(b.pending_key(), Some(&a_key));
        assert_eq!(
            b.on_key_seen(a_key.fingerprint()).unwrap().install,
            Some(a_key)
        );
    }

    #[test]
    fn concurrent_requests_larger_id_wins() {
        let dh = dh();
        let (mut a, mut b) = (Rekey::default(), Rekey::default());
        let ra = request(&mut a, 100, 5);
        let rb = request(&mut b, 200, 6);
        // A (smaller id) answers B's request; B (larger) silently ignores A's.
        let step = a.on_request(&dh, 7, rb.exchange_id, &rb.g_a, &[7; 256]);
        assert!(matches!(
            finish(&mut a, step).unwrap().send,
            Some(A::AcceptKey(_))
        ));
        let step = b
            .on_request(&dh, 8, ra.exchange_id, &ra.g_a, &[8; 256])
            .unwrap();
        assert!(step.send.is_none() && step.compute.is_none());
        assert_eq!(b.exchange_id(), Some(200));
        // Equal ids: both drop theirs without a message.
        let (mut c, mut d) = (Rekey::default(), Rekey::default());
        let rc = request(&mut c, 5, 1);
        let _ = request(&mut d, 5, 2);
        let step = d.on_request(&dh, 9, 5, &rc.g_a, &[3; 256]).unwrap();
        assert!(step.send.is_none() && step.compute.is_none());
        assert!(!d.in_progress());
        // A request arriving while our own is still being computed (never sent) wins.
        let mut e = Rekey::default();
        let _ = e.start(&dh, 10, 1_000, &[4; 256]).unwrap();
        let step = e.on_request(&dh, 11, 1, &rc.g_a, &[5; 256]);
        assert!(matches!(
            finish(&mut e, step).unwrap().send,
            Some(A::AcceptKey(_))
        ));
    }

    #[test]
    fn debug_never_shows_the_exponent() {
        let mut a = Rekey::default();
        let step = a.start(&dh(), 1, 3, &[0xab; 256]).unwrap();
        let shown = format!("{a:?} {:?}", step.compute);
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
            b.on_request(&dh, 1, 1, &[2], &[1; 256]),
            Err(RekeyError::Dh(DhError::PublicRange))
        ));
        assert!(
            !b.in_progress(),
            "a refused request leaves no exchange behind"
        );
        let mut a = Rekey::default();
        let req = request(&mut a, 9, 1);
        let acc = accept(&mut b, &req, 2);
        let step = a.on_accept(&dh, 3, 9, &acc.g_b, acc.key_fingerprint ^ 1);
        assert_eq!(
            finish(&mut a, step).unwrap_err(),
            RekeyError::FingerprintMismatch { step: "AcceptKey" }
        );
        assert!(!a.in_progress());
        let mut a2 = Rekey::default();
        let _ = request(&mut a2, 4, 1);
        assert!(matches!(
            a2.on_accept(&dh, 3, 4, &[1; 300], 0),
            Err(RekeyError::Dh(DhError::PublicSize))
        ));
        assert!(!a2.in_progress());
        assert!(b.on_commit(9, 0).is_err());
        assert!(b.on_abort(8).is_err());
        assert!(b.on_abort(9).is_ok() && !b.in_progress());
    }
}
