//! The chat's state as bytes for the store, and back (`records.rs` has the record
//! types); a record from a newer format is refused.
//!
//! The outbox and the waiting queue are stored as separate records ([`OutboxEntry::to_bytes`],
//! [`WaitingEntry::to_bytes`]) so a step writes only what changed (see [`super::Persist`]).
//! Restoring re-issues what was in flight: DH-config requests, handshake computations, timers;
//! a re-key computation that had sent nothing is dropped, one whose answer was owed is aborted
//! with AbortKey (allowed: we had not sent AcceptKey/CommitKey yet).

use std::sync::Arc;

use secretchat_schema::api::enums as api;
use secretchat_schema::e2e::{enums, types};
use secretchat_schema::{DecodeError, Deserialize, Serialize};
use zeroize::Zeroizing;

use super::records::{StoredChat, opt_bytes, opt_from};
use super::{
    Action, ChatConfig, ChatCore, CloseReason, Millis, Out, OutboxEntry, PendingSend, Phase, Timer,
    WaitingEntry,
};
use crate::crypto::dh::DhParams;
use crate::crypto::{AuthKey, CryptoError, Side};
use crate::protocol::dh_job::{DhJob, DhPurpose};
use crate::protocol::gaps::WaitingQueue;
use crate::protocol::layer::LayerState;
use crate::protocol::rekey::{Rekey, abort_action};
use crate::protocol::seq_no::SeqNo;
use crate::protocol::session::Session;

/// The record format this build writes (it reads this one and every earlier one). Format 2
/// added four counters: the position of the peer's first MTProto 2.0 message, and the re-key
/// exchange (a flag, its id, the new key's fingerprint) we switched to before its CommitKey
/// arrived, whose Noop we still owe. Format 3 added two: the other user's id and the
/// self-destruct timer. Format 4 appends the server date of each message held in the early
/// queue (one counter per `early` entry, in order).
pub const FORMAT: i32 = 4;

/// `counters` entries in each format.
const COUNTERS_V1: usize = 8;
const COUNTERS_V2: usize = 12;
const COUNTERS_V3: usize = 14;

/// Why stored state could not be restored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RestoreError {
    /// The bytes are not a state record.
    #[error("corrupt chat record: {0}")]
    Decode(#[from] DecodeError),
    /// Written by a newer version of this library.
    #[error("chat record format {0} is newer than this build ({FORMAT})")]
    NewerFormat(i32),
    /// A field is out of range.
    #[error("corrupt chat record: bad {0}")]
    Field(&'static str),
    /// The outbox holds a message the state record has not counted: the record is older than
    /// the rest of the chat's data (restored from an old copy, or rolled back on purpose).
    /// Going on would reuse sequence numbers.
    #[error("chat record rolled back: outbox holds message {outbox}, the record counts {sent}")]
    RolledBack {
        /// The outgoing message's raw position.
        outbox: u32,
        /// Messages the record says were sent.
        sent: u32,
    },
    /// The record names DH parameters the caller does not have.
    #[error("DH parameters of the chat are not available")]
    NoDhParams,
}

impl From<CryptoError> for RestoreError {
    fn from(_: CryptoError) -> Self {
        RestoreError::Field("key")
    }
}

const TIMERS: [Timer; 3] = [Timer::ResendRetry, Timer::Retransmit, Timer::KeyAge];

impl ChatCore {
    /// The chat's state (without outbox and waiting queue) for the store. Holds key material:
    /// the buffer is zeroized on drop; encrypt it at rest if the application asks for that.
    pub fn snapshot(&self) -> Zeroizing<Vec<u8>> {
        let mut s = StoredChat::default();
        s.format = FORMAT;
        s.side = match self.side {
            Side::Originator => 0,
            Side::Participant => 1,
        };
        s.chat_id = self.chat_id;
        s.access_hash = self.access_hash;
        s.phase = match &self.phase {
            Phase::OriginatorConfig { user, random_id }
            | Phase::OriginatorPublic {
                user, random_id, ..
            } => {
                // Nothing was sent yet: a restart simply fetches the config again.
                s.phase_user = user.to_bytes().unwrap_or_default();
                s.phase_random_id = *random_id;
                0
            }
            Phase::OriginatorWaiting { a } => {
                s.phase_secret = a.to_vec();
                2
            }
            Phase::OriginatorKey {
                a,
                g_b,
                fingerprint,
            } => {
                s.phase_secret = a.to_vec();
                s.phase_peer = g_b.clone();
                s.phase_fingerprint = *fingerprint;
                3
            }
            Phase::Requested { g_a } => {
                s.phase_peer = g_a.clone();
                4
            }
            Phase::ParticipantConfig { g_a } | Phase::ParticipantKey { g_a } => {
                s.phase_peer = g_a.clone();
                5
            }
            Phase::ParticipantAccepting { key, g_b } => {
                s.phase_secret = key.bytes().to_vec();
                s.phase_peer = g_b.clone();
                6
            }
            Phase::Ready => 7,
            Phase::Closed(r) => {
                s.closed_kind = r.kind().to_owned();
                8
            }
        };
        if let Some(dh) = &self.dh {
            s.dh_p = dh.p_bytes().to_vec();
            s.dh_g = dh.g() as i32;
        }
        if let Some(session) = &self.session {
            s.key = session.key().bytes().to_vec();
            s.previous = session
                .previous_keys()
                .iter()
                .map(|k| k.bytes().to_vec())
                .collect();
            let (a, b, c) = session.seq().parts();
            s.seq = vec![a as i32, b as i32, c as i32];
            let (peer, v2_from) = session.layer().parts();
            s.peer_layer = peer;
            s.mtproto2 = v2_from.is_some();
        }
        match &self.rekey {
            Rekey::Idle | Rekey::Starting { .. } => s.rekey = 0,
            Rekey::Requested { exchange_id, a } => {
                s.rekey = 1;
                s.rekey_exchange = *exchange_id;
                s.rekey_secret = a.to_vec();
            }
            Rekey::Accepted {
                exchange_id,
                new_key,
            } => {
                s.rekey = 2;
                s.rekey_exchange = *exchange_id;
                s.rekey_secret = new_key.bytes().to_vec();
            }
            Rekey::Committed {
                exchange_id,
                new_fingerprint,
            } => {
                s.rekey = 3;
                s.rekey_exchange = *exchange_id;
                s.rekey_fingerprint = *new_fingerprint;
            }
            Rekey::Accepting { exchange_id } | Rekey::Committing { exchange_id, .. } => {
                s.rekey = 4; // abort on restore
                s.rekey_exchange = *exchange_id;
            }
        }
        s.visualization = self.visualization.clone();
        s.counters = vec![
            i64::from(self.key_uses),
            i64::from(self.key_sent),
            self.key_since as i64,
            i64::from(self.rekeys),
            self.switch_seen.map_or(-1, i64::from),
            self.next_job as i64,
            i64::from(self.resend_attempts),
            self.retransmit_backoff as i64,
            self.session
                .as_ref()
                .and_then(|s| s.layer().parts().1)
                .map_or(-1, i64::from),
            i64::from(self.switched_early.is_some()),
            self.switched_early.map_or(0, |(x, _)| x),
            self.switched_early.map_or(0, |(_, fp)| fp),
            self.peer_user_id,
            i64::from(self.ttl),
        ];
        s.counters
            .extend(self.early.iter().map(|(.., date)| i64::from(*date)));
        s.timers = TIMERS
            .iter()
            .map(|t| self.timers.get(*t).map_or(-1, |at| at as i64))
            .collect();
        s.unhealthy_reported = self.unhealthy_reported;
        for (wire, file, _) in &self.early {
            s.early.push(wire.clone());
            s.early_files.push(opt_bytes(file));
        }
        for p in &self.pending_sends {
            let (m, file) = match p {
                PendingSend::Message(m, file) => (
                    enums::DecryptedMessage::DecryptedMessage73((**m).clone()),
                    opt_bytes(file),
                ),
                PendingSend::Action(a) => (
                    enums::DecryptedMessage::Service23(types::DecryptedMessageService23 {
                        random_id: 0,
                        action: a.clone(),
                    }),
                    Vec::new(),
                ),
            };
            s.pending.push(m.to_bytes().unwrap_or_default());
            s.pending_files.push(file);
        }
        Zeroizing::new(s.to_bytes().unwrap_or_default())
    }

    /// Rebuilds a chat from [`ChatCore::snapshot`] bytes plus its stored outbox and waiting
    /// entries. `dh_for(p, g)` supplies the (shared, already validated) parameters the chat
    /// uses. Returns the actions to resume: timers to arm, requests and computations to
    /// re-issue (and an AbortKey for a re-key answer that was being computed).
    ///
    /// # Errors
    /// [`RestoreError`] for corrupt or newer records.
    pub fn restore(
        config: ChatConfig,
        state: &[u8],
        outbox: Vec<(u32, OutboxEntry)>,
        waiting: Vec<(u32, WaitingEntry)>,
        dh_for: impl FnOnce(&[u8], i32) -> Option<Arc<DhParams>>,
        now: Millis,
        rng: &mut impl rand_core::RngCore,
    ) -> Result<(Self, Vec<Action>), RestoreError> {
        let mut s = StoredChat::from_bytes(state)?;
        if s.format > FORMAT {
            return Err(RestoreError::NewerFormat(s.format));
        }
        let side = match s.side {
            0 => Side::Originator,
            1 => Side::Participant,
            _ => return Err(RestoreError::Field("side")),
        };
        let secret = |b: &[u8]| -> Result<Zeroizing<[u8; 256]>, RestoreError> {
            let arr: [u8; 256] = b.try_into().map_err(|_| RestoreError::Field("secret"))?;
            Ok(Zeroizing::new(arr))
        };
        let mut out = Out::new();
        let phase = match s.phase {
            0 => {
                out.push(Action::NeedDhConfig);
                Phase::OriginatorConfig {
                    user: api::InputUser::from_bytes(&s.phase_user)?,
                    random_id: s.phase_random_id,
                }
            }
            2 => Phase::OriginatorWaiting {
                a: secret(&s.phase_secret)?,
            },
            3 => Phase::OriginatorKey {
                a: secret(&s.phase_secret)?,
                g_b: std::mem::take(&mut s.phase_peer),
                fingerprint: s.phase_fingerprint,
            },
            4 => Phase::Requested {
                g_a: std::mem::take(&mut s.phase_peer),
            },
            5 => {
                out.push(Action::NeedDhConfig);
                Phase::ParticipantConfig {
                    g_a: std::mem::take(&mut s.phase_peer),
                }
            }
            6 => Phase::ParticipantAccepting {
                key: AuthKey::from_slice(&s.phase_secret)?,
                g_b: std::mem::take(&mut s.phase_peer),
            },
            7 => Phase::Ready,
            8 => Phase::Closed(CloseReason::from_kind(&s.closed_kind)),
            _ => return Err(RestoreError::Field("phase")),
        };
        let mut core = Self::blank(config, side, phase);
        core.chat_id = s.chat_id;
        core.access_hash = s.access_hash;
        if !s.dh_p.is_empty() {
            core.dh = Some(dh_for(&s.dh_p, s.dh_g).ok_or(RestoreError::NoDhParams)?);
        }
        if !s.key.is_empty() {
            let key = AuthKey::from_slice(&s.key)?;
            let previous = s
                .previous
                .iter()
                .map(|k| AuthKey::from_slice(k))
                .collect::<Result<Vec<_>, _>>()?;
            let [sent, received, peer_in] = s.seq[..] else {
                return Err(RestoreError::Field("seq"));
            };
            let raw = |v: i32| u32::try_from(v).map_err(|_| RestoreError::Field("seq"));
            let seq = SeqNo::from_parts(side, raw(sent)?, raw(received)?, raw(peer_in)?);
            // Format 1 kept only whether a 2.0 message had arrived, and accepted 1.0 in holes:
            // take the switch as after the last message waiting behind a hole (or at the next
            // expected position when none waits), so those holes can still fill.
            let v2_from = match s.counters.get(8) {
                Some(&at) => u32::try_from(at).ok(),
                None if s.mtproto2 => {
                    let after_waiting = waiting.iter().map(|(r, _)| r.saturating_add(1)).max();
                    Some(raw(received)?.max(after_waiting.unwrap_or(0)))
                }
                None => None,
            };
            let layer = LayerState::from_parts(s.peer_layer, v2_from, config.layer);
            core.session = Some(Session::from_parts(key, previous, side, seq, layer));
        }
        core.rekey = match s.rekey {
            0 => Rekey::Idle,
            1 => Rekey::Requested {
                exchange_id: s.rekey_exchange,
                a: secret(&s.rekey_secret)?,
            },
            2 => Rekey::Accepted {
                exchange_id: s.rekey_exchange,
                new_key: AuthKey::from_slice(&s.rekey_secret)?,
            },
            3 => Rekey::Committed {
                exchange_id: s.rekey_exchange,
                new_fingerprint: s.rekey_fingerprint,
            },
            4 => Rekey::Idle,
            _ => return Err(RestoreError::Field("rekey")),
        };
        core.visualization = std::mem::take(&mut s.visualization);
        let expected_counters = match s.format {
            ..=1 => COUNTERS_V1,
            2 => COUNTERS_V2,
            3 => COUNTERS_V3,
            _ => COUNTERS_V3 + s.early.len(),
        };
        if s.counters.len() != expected_counters {
            return Err(RestoreError::Field("counters"));
        }
        let [
            uses,
            sent,
            since,
            rekeys,
            discard,
            next_job,
            attempts,
            backoff,
        ] = s.counters[..COUNTERS_V1]
        else {
            return Err(RestoreError::Field("counters"));
        };
        if let Some([_, 1, exchange, fingerprint]) = s.counters.get(COUNTERS_V1..COUNTERS_V2) {
            core.switched_early = Some((*exchange, *fingerprint));
        }
        if let Some([peer, ttl]) = s.counters.get(COUNTERS_V2..COUNTERS_V3) {
            core.peer_user_id = *peer;
            core.ttl = i32::try_from(*ttl).map_err(|_| RestoreError::Field("counters"))?;
        }
        let u32_of = |v: i64| u32::try_from(v).map_err(|_| RestoreError::Field("counters"));
        let u64_of = |v: i64| u64::try_from(v).map_err(|_| RestoreError::Field("counters"));
        core.key_uses = u32_of(uses)?;
        core.key_sent = u32_of(sent)?;
        core.key_since = u64_of(since)?;
        core.rekeys = u32_of(rekeys)?;
        core.switch_seen = u32::try_from(discard).ok();
        core.next_job = u64_of(next_job)?;
        core.resend_attempts = u32_of(attempts)?;
        core.retransmit_backoff = u64_of(backoff)?;
        core.unhealthy_reported = s.unhealthy_reported;
        if s.timers.len() != TIMERS.len() {
            return Err(RestoreError::Field("timers"));
        }
        for (t, &at) in TIMERS.iter().zip(&s.timers) {
            if let Ok(at) = u64::try_from(at) {
                core.timers.insert(*t, at);
                out.push(Action::ArmTimer { timer: *t, at });
            }
        }
        if s.early.len() != s.early_files.len()
            || s.early.len() > super::MAX_EARLY
            || s.early.iter().map(Vec::len).sum::<usize>() > super::MAX_EARLY_BYTES
        {
            return Err(RestoreError::Field("early"));
        }
        // Format 4 keeps each held message's date after the fixed counters; earlier formats
        // did not (0: unknown).
        let dates = s.counters.get(COUNTERS_V3..).unwrap_or_default().to_vec();
        for (i, (wire, file)) in s.early.drain(..).zip(&s.early_files).enumerate() {
            let date = dates.get(i).map_or(Ok(0), |d| i32::try_from(*d));
            let date = date.map_err(|_| RestoreError::Field("counters"))?;
            core.early.push((wire, opt_from(file)?, date));
        }
        if s.pending.len() != s.pending_files.len() {
            return Err(RestoreError::Field("pending"));
        }
        for (m, file) in s.pending.iter().zip(&s.pending_files) {
            core.pending_sends
                .push(match enums::DecryptedMessage::from_bytes(m)? {
                    enums::DecryptedMessage::DecryptedMessage73(m) => {
                        PendingSend::Message(Box::new(m), opt_from(file)?)
                    }
                    enums::DecryptedMessage::Service23(s) => PendingSend::Action(s.action),
                    _ => return Err(RestoreError::Field("pending")),
                });
        }
        // Every stored outgoing message was counted by the state written with it: one the
        // state does not know means the state record is older than the outbox (rolled back).
        // A closed chat keeps no outbox.
        if !matches!(core.phase, Phase::Closed(_)) {
            let sent = core.session.as_ref().map_or(0, |s| s.seq().parts().0);
            if let Some((raw, _)) = outbox.iter().find(|(raw, _)| *raw >= sent) {
                return Err(RestoreError::RolledBack { outbox: *raw, sent });
            }
            core.outbox = super::outbox::Outbox::from_entries(outbox);
        }
        let mut queue = WaitingQueue::default();
        let expected = core.session.as_ref().map_or(0, |s| s.seq().parts().1);
        for (raw, w) in waiting {
            if raw >= expected {
                let _ = queue
                    .push(expected, raw, w)
                    .map_err(|_| RestoreError::Field("waiting"))?;
            }
        }
        core.waiting = queue;
        // Re-issue what was in flight.
        if let (Phase::OriginatorKey { a, g_b, .. }, Some(dh)) = (&core.phase, &core.dh) {
            let id = core.next_job + 1;
            core.next_job = id;
            core.handshake_job = Some(id);
            let job = DhJob::new(
                id,
                DhPurpose::Handshake,
                dh.clone(),
                a.clone(),
                Some(g_b.clone()),
                false,
            );
            out.push(Action::Compute(Box::new(job)));
        }
        if let Phase::ParticipantAccepting { key, g_b } = &core.phase {
            // The answer to acceptEncryption may have been lost with the crash: ask again (the
            // server answers a repeat from the accepting device with the chat).
            out.call(super::Call::AcceptEncryption(
                secretchat_schema::api::functions::messages::AcceptEncryption {
                    peer: core.input_chat(),
                    g_b: g_b.clone(),
                    key_fingerprint: key.fingerprint(),
                },
            ));
        }
        if s.rekey == 4 && core.is_ready() {
            let step = abort_action(s.rekey_exchange);
            core.apply_rekey_step(step, now, rng, &mut out);
        }
        Ok((core, out.finish()))
    }
}

impl CloseReason {
    /// The reason recorded under `kind` (details are not stored).
    pub fn from_kind(kind: &str) -> Self {
        match kind {
            "local" => Self::Local,
            "declined" => Self::Declined,
            "discarded" => Self::Discarded,
            "fingerprint_mismatch" => Self::FingerprintMismatch,
            _ => Self::Protocol("closed before the restart"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::prime::TELEGRAM_DH_PRIME;
    use secretchat_schema::e2e::types as e2e_t;

    /// A format-1 record as an earlier build wrote it: 8 counters, `mtproto2` set.
    fn format_1_record() -> Vec<u8> {
        let dh = Arc::new(DhParams::new(&TELEGRAM_DH_PRIME, 3).unwrap());
        let key = AuthKey::new([7; 256]);
        let (core, _) = ChatCore::provisioned(
            ChatConfig::default(),
            Side::Originator,
            5,
            55,
            key,
            dh,
            144,
            0,
        );
        let mut s = StoredChat::from_bytes(&core.snapshot()).unwrap();
        s.format = 1;
        s.counters.truncate(COUNTERS_V1);
        s.mtproto2 = true;
        s.to_bytes().unwrap()
    }

    /// Randomness for the restore (none is needed for a ready chat).
    struct Zeros;
    impl rand_core::RngCore for Zeros {
        fn next_u32(&mut self) -> u32 {
            0
        }
        fn next_u64(&mut self) -> u64 {
            0
        }
        fn fill_bytes(&mut self, dest: &mut [u8]) {
            dest.fill(0);
        }
        fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
            dest.fill(0);
            Ok(())
        }
    }

    fn restore_with(waiting: Vec<(u32, WaitingEntry)>) -> ChatCore {
        let dh = Arc::new(DhParams::new(&TELEGRAM_DH_PRIME, 3).unwrap());
        let mut rng = Zeros;
        ChatCore::restore(
            ChatConfig::default(),
            &format_1_record(),
            Vec::new(),
            waiting,
            |_, _| Some(dh),
            0,
            &mut rng,
        )
        .unwrap()
        .0
    }

    #[test]
    fn format_1_records_restore_and_keep_their_holes_open_to_1_0() {
        // Nothing waits: the switch is the next expected position.
        let core = restore_with(Vec::new());
        let session = core.session.as_ref().unwrap();
        assert_eq!(session.layer().parts().1, Some(0));
        assert!(core.switched_early.is_none());
        // A message waits at position 3 (a hole at 0..=2, which format 1 let 1.0 fill): the
        // switch is taken after it.
        let waiting = WaitingEntry {
            layer: e2e_t::DecryptedMessageLayer {
                random_bytes: vec![0; 15],
                layer: 144,
                in_seq_no: 0,
                out_seq_no: 6,
                message: crate::protocol::layer::text_message(144, 1, 0, "w".into(), vec![]),
            },
            file: None,
            date: 0,
            resend_done: false,
        };
        let core = restore_with(vec![(3, waiting)]);
        let layer = *core.session.as_ref().unwrap().layer();
        assert_eq!(layer.parts().1, Some(4));
        assert_eq!(layer.mtproto1_allowed(Some(46), Some(2)), Ok(()));
        assert!(layer.mtproto1_allowed(Some(46), Some(4)).is_err());
    }

    fn restore_record(record: &[u8]) -> Result<ChatCore, RestoreError> {
        let dh = Arc::new(DhParams::new(&TELEGRAM_DH_PRIME, 3).unwrap());
        ChatCore::restore(
            ChatConfig::default(),
            record,
            Vec::new(),
            Vec::new(),
            |_, _| Some(dh),
            0,
            &mut Zeros,
        )
        .map(|(core, _)| core)
    }

    #[test]
    fn messages_held_early_keep_their_dates_across_a_restart() {
        let mut core = restore_with(Vec::new());
        core.early = vec![
            (vec![1; 64], None, 1_700_000_005),
            (vec![2; 64], None, 1_700_000_006),
        ];
        let record = core.snapshot();
        let dates = |c: &ChatCore| c.early.iter().map(|(.., d)| *d).collect::<Vec<_>>();
        assert_eq!(
            dates(&restore_record(&record).unwrap()),
            [1_700_000_005, 1_700_000_006]
        );
        // A format-3 record (no dates) restores its early messages with date 0.
        let mut s = StoredChat::from_bytes(&record).unwrap();
        s.format = 3;
        s.counters.truncate(COUNTERS_V3);
        let v3 = s.to_bytes().unwrap();
        assert_eq!(dates(&restore_record(&v3).unwrap()), [0, 0]);
        // A date count that does not match the early queue is refused.
        let mut s = StoredChat::from_bytes(&record).unwrap();
        s.counters.pop();
        assert_eq!(
            restore_record(&s.to_bytes().unwrap()).err(),
            Some(RestoreError::Field("counters"))
        );
    }
}
