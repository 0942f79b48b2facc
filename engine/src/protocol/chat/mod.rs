//! One secret chat as a sans-IO state machine: [`ChatCore::handle`] takes an [`Event`] with the
//! current time and a random source and returns the [`Action`]s to execute, in order. The
//! first action of a step that changed anything is [`Action::Persist`]: store, then send.
//!
//! - `handshake`: request/accept/discard and the first key.
//! - `receive`: decrypting, ordering (duplicates, holes, the waiting queue) and interpreting
//!   incoming messages.
//! - `send`: sealing outgoing messages, the outbox, Resend answers, timers.
//! - [`snapshot`]: the state as stored records, and restoring from them.
//! - `rekeying`: driving [`crate::protocol::rekey::Rekey`] from messages and DH results.

mod handshake;
mod outbox;
mod receive;
mod records;
mod rekeying;
mod send;
pub mod snapshot;
pub mod types;

use std::sync::Arc;

use rand_core::RngCore;
use secretchat_schema::api::{enums as api, types as api_types};
use zeroize::Zeroizing;

pub use send::MAX_RESEND_SPAN;
pub use types::*;

use super::gaps::WaitingQueue;
use super::rekey::Rekey;
use super::session::Session;
use crate::crypto::dh::DhParams;
use crate::crypto::{AuthKey, Side};
use secretchat_schema::e2e::types as e2e;

/// Most incoming messages held while the key is not agreed yet.
pub const MAX_EARLY: usize = 64;
/// Most bytes of incoming messages held while the key is not agreed yet: room for two of the
/// longest messages (they are part of the state record, written at every step until then).
pub const MAX_EARLY_BYTES: usize = 2 * crate::crypto::message::MAX_WIRE;

/// Tunables; the defaults suit a real network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChatConfig {
    /// First wait before asking again for a hole (doubles up to [`ChatConfig::max_backoff_ms`]).
    pub resend_retry_ms: Millis,
    /// After this many Resend attempts for the same holes, report [`AppEvent::ChatUnhealthy`].
    pub unhealthy_after: u32,
    /// First wait before re-sending our newest unacknowledged message.
    pub retransmit_ms: Millis,
    /// Cap for both backoffs.
    pub max_backoff_ms: Millis,
    /// A message we sent again for the peer's Resend is not sent again for another Resend
    /// within this time (at most half of `resend_retry_ms` is used): repeated or overlapping
    /// requests cost one re-send per message and interval, not one per request.
    pub resend_pace_ms: Millis,
    /// Backpressure: while this many of our messages (or [`max_unacknowledged_bytes`] of
    /// them) wait for the peer's acknowledgement, [`ChatCore::accepts_sends`] is false and
    /// the application's new sends wait; [`AppEvent::ChatUnhealthy`] reports it once. A peer
    /// that never acknowledges (in_seq_no held at 0) cannot make the outbox grow further.
    ///
    /// [`max_unacknowledged_bytes`]: ChatConfig::max_unacknowledged_bytes
    pub max_unacknowledged: usize,
    /// See [`ChatConfig::max_unacknowledged`].
    pub max_unacknowledged_bytes: usize,
    /// The end-to-end layer we speak: [`OUR_LAYER`](crate::protocol::layer::OUR_LAYER) by
    /// default; lower values (down to 46) make the engine behave as an older client, for
    /// interoperability tests and mixed-layer simulations.
    pub layer: i32,
}

impl Default for ChatConfig {
    fn default() -> Self {
        Self {
            resend_retry_ms: 30_000,
            unhealthy_after: 5,
            // The server keeps an accepted message queued for the peer for 7 days, so the tail
            // retransmit only guards against server-side loss: once an hour is plenty, and a
            // minute made every quiet chat of a large bridge re-send (100,000 chats: 1,600
            // sends a second).
            retransmit_ms: 3_600_000,
            max_backoff_ms: 3_600_000,
            resend_pace_ms: 1_000,
            // A peer offline for days acknowledges nothing; 10,000 messages is far beyond a
            // conversation's backlog and bounds a hostile peer to 64 MiB of stored wires.
            max_unacknowledged: 10_000,
            max_unacknowledged_bytes: 64 << 20,
            layer: super::layer::OUR_LAYER,
        }
    }
}

/// Where the chat's life stands.
enum Phase {
    /// Originator: waiting for the DH config.
    OriginatorConfig {
        user: api::InputUser,
        random_id: i32,
    },
    /// Originator: waiting for `g_a` to be computed.
    OriginatorPublic {
        user: api::InputUser,
        random_id: i32,
        a: Zeroizing<[u8; 256]>,
    },
    /// Originator: `requestEncryption` sent; waiting for `encryptedChat`.
    OriginatorWaiting { a: Zeroizing<[u8; 256]> },
    /// Originator: waiting for the key to be computed.
    OriginatorKey {
        a: Zeroizing<[u8; 256]>,
        g_b: Vec<u8>,
        fingerprint: i64,
    },
    /// Participant: the application decides.
    Requested { g_a: Vec<u8> },
    /// Participant: waiting for the DH config.
    ParticipantConfig { g_a: Vec<u8> },
    /// Participant: waiting for `g_b` and the key to be computed.
    ParticipantKey { g_a: Vec<u8> },
    /// Participant: `acceptEncryption` sent; ready once the server confirms (another device of
    /// the account may have won).
    ParticipantAccepting { key: AuthKey, g_b: Vec<u8> },
    /// The key is agreed.
    Ready,
    /// Closed for good.
    Closed(CloseReason),
}

impl Phase {
    fn name(&self) -> &'static str {
        match self {
            Phase::OriginatorConfig { .. } => "fetching_config",
            Phase::OriginatorPublic { .. } => "computing_g_a",
            Phase::OriginatorWaiting { .. } => "waiting_for_peer",
            Phase::OriginatorKey { .. } => "computing_key",
            Phase::Requested { .. } => "requested",
            Phase::ParticipantConfig { .. } => "fetching_config",
            Phase::ParticipantKey { .. } => "computing_key",
            Phase::ParticipantAccepting { .. } => "accepting",
            Phase::Ready => "ready",
            Phase::Closed(_) => "closed",
        }
    }
}

/// An application send queued until the key is agreed (kept in its richest form; the layer is
/// applied when it goes out).
#[derive(Debug, Clone, PartialEq)]
enum PendingSend {
    Message(
        Box<e2e::DecryptedMessage73>,
        Option<api::InputEncryptedFile>,
    ),
    Action(secretchat_schema::e2e::enums::DecryptedMessageAction),
}

/// A health-check view of one chat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatStatus {
    /// `fetching_config`, `computing_g_a`, `waiting_for_peer`, `computing_key`, `requested`,
    /// `ready` or `closed`.
    pub phase: &'static str,
    /// The close reason, once closed.
    pub closed: Option<CloseReason>,
    /// Server chat id (0 until known).
    pub chat_id: i32,
    /// Our side.
    pub side: Side,
    /// The other user's id (0 until known).
    pub peer_user_id: i64,
    /// The self-destruct timer last set by either side (seconds; 0: off).
    pub ttl: i32,
    /// The peer's layer.
    pub peer_layer: i32,
    /// The layer outgoing messages use.
    pub negotiated_layer: i32,
    /// Raw `(sent, received, acknowledged by the peer)`.
    pub seq: (u32, u32, u32),
    /// Current key fingerprint.
    pub key_fingerprint: Option<i64>,
    /// Superseded keys still kept for the peer's messages from before its switch (pfs.md: only
    /// while a hole before the switch is open).
    pub retained_keys: usize,
    /// Messages encrypted and decrypted with the current key.
    pub key_uses: u32,
    /// Age of the current key.
    pub key_age_ms: Millis,
    /// Missing raw out_seq_no ranges.
    pub holes: Vec<(u32, u32)>,
    /// Outgoing messages not yet acknowledged.
    pub unacknowledged: usize,
    /// Re-keys completed.
    pub rekeys: u32,
    /// A re-key exchange is in progress.
    pub rekeying: bool,
    /// Recovery work since the chat was loaded.
    pub counters: ChatCounters,
    /// The key visualization (36 bytes, empty until the key is agreed): what the users compare
    /// with the peer's screen ([`crate::crypto::visualize`] renders it as the apps do).
    pub visualization: Vec<u8>,
}

/// The part of a chat's state an application displays; an executor compares it after each
/// step and announces a change (cheap: no allocation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChatSummary {
    /// The phase's name (as [`ChatStatus::phase`]).
    pub phase: &'static str,
    /// Server chat id (0 until known).
    pub chat_id: i32,
    /// The other user (0 until known).
    pub peer_user_id: i64,
    /// The negotiated layer.
    pub layer: i32,
    /// The self-destruct timer (seconds).
    pub ttl: i32,
}

/// Recovery work a chat did since it was loaded into memory (not stored: for metrics).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChatCounters {
    /// Holes (missing ranges of the peer's messages) that opened.
    pub holes_opened: u64,
    /// Resend requests we sent (first asks and retries).
    pub resend_requests: u64,
    /// Stored messages sent again: answers to the peer's Resend and tail retransmits.
    pub resent: u64,
    /// Messages a Resend asked for that were not sent again: they had gone out again less
    /// than the pace ago.
    pub resends_paced: u64,
}

impl ChatCounters {
    /// What grew since `earlier`.
    pub fn since(&self, earlier: &ChatCounters) -> ChatCounters {
        ChatCounters {
            holes_opened: self.holes_opened.saturating_sub(earlier.holes_opened),
            resend_requests: self.resend_requests.saturating_sub(earlier.resend_requests),
            resent: self.resent.saturating_sub(earlier.resent),
            resends_paced: self.resends_paced.saturating_sub(earlier.resends_paced),
        }
    }
}

/// One secret chat's protocol state. See the module docs.
pub struct ChatCore {
    config: ChatConfig,
    side: Side,
    chat_id: i32,
    access_hash: i64,
    /// The other user (0 until known).
    peer_user_id: i64,
    /// The self-destruct timer last set in the chat by either side (seconds, 0: off).
    ttl: i32,
    phase: Phase,
    dh: Option<Arc<DhParams>>,
    session: Option<Session>,
    rekey: Rekey,
    waiting: WaitingQueue<WaitingEntry>,
    outbox: outbox::Outbox,
    early: Vec<(Vec<u8>, Option<api::EncryptedFile>, i32)>,
    pending_sends: Vec<PendingSend>,
    visualization: Vec<u8>,
    key_uses: u32,
    key_sent: u32,
    key_since: Millis,
    rekeys: u32,
    /// The exchange (id, new fingerprint) we switched to before its CommitKey arrived.
    switched_early: Option<(i64, i64)>,
    /// The peer's raw out_seq_no of the earliest message seen under the current key (its
    /// switch to this key is at or before it): older keys go once everything before it is in.
    switch_seen: Option<u32>,
    next_job: u64,
    handshake_job: Option<u64>,
    rekey_job: Option<u64>,
    timers: Timers,
    resend_attempts: u32,
    /// Messages processed when the holes were last asked for again (progress resets backoff).
    retry_mark: u32,
    unhealthy_reported: bool,
    /// [`AppEvent::ChatUnhealthy`] was reported for the full outbox (again once it drains).
    backpressure_reported: bool,
    retransmit_backoff: Millis,
    counters: ChatCounters,
}

impl std::fmt::Debug for ChatCore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatCore")
            .field("chat_id", &self.chat_id)
            .field("side", &self.side)
            .field("phase", &self.phase.name())
            .field("rekey", &self.rekey)
            .finish_non_exhaustive()
    }
}

/// Names of the secrets a chat holds (at most the current key, the retained old keys, a
/// pending key and a DH exponent), to tell whether a step destroyed one.
#[derive(Default)]
struct HeldSecrets {
    ids: [i64; 8],
    len: usize,
}

impl HeldSecrets {
    fn add(&mut self, id: i64) {
        if let Some(slot) = self.ids.get_mut(self.len) {
            *slot = id;
            self.len += 1;
        }
    }

    fn ids(&self) -> &[i64] {
        &self.ids[..self.len]
    }

    /// Whether something held `before` is gone now.
    fn lost_any_of(&self, before: &HeldSecrets) -> bool {
        before.ids().iter().any(|id| !self.ids().contains(id))
    }
}

/// The actions of one step, with the changes to persist first.
struct Out {
    actions: Vec<Action>,
    persist: Persist,
    dirty: bool,
}

impl Out {
    fn new() -> Self {
        Self {
            actions: Vec::new(),
            persist: Persist::default(),
            dirty: false,
        }
    }

    fn push(&mut self, a: Action) {
        self.actions.push(a);
    }

    fn deliver(&mut self, e: AppEvent) {
        self.dirty = true;
        self.actions.push(Action::Deliver(e));
    }

    fn call(&mut self, c: Call) {
        self.actions.push(Action::Call(Box::new(c)));
    }

    fn finish(self) -> Vec<Action> {
        if !self.dirty && self.persist.is_empty() {
            return self.actions;
        }
        let mut all = Vec::with_capacity(self.actions.len() + 1);
        all.push(Action::Persist(Box::new(self.persist)));
        all.extend(self.actions);
        all
    }
}

impl ChatCore {
    fn blank(config: ChatConfig, side: Side, phase: Phase) -> Self {
        Self {
            config,
            side,
            chat_id: 0,
            access_hash: 0,
            peer_user_id: 0,
            ttl: 0,
            phase,
            dh: None,
            session: None,
            rekey: Rekey::Idle,
            waiting: WaitingQueue::default(),
            outbox: outbox::Outbox::default(),
            early: Vec::new(),
            pending_sends: Vec::new(),
            visualization: Vec::new(),
            key_uses: 0,
            key_sent: 0,
            key_since: 0,
            rekeys: 0,
            switched_early: None,
            switch_seen: None,
            next_job: 0,
            handshake_job: None,
            rekey_job: None,
            timers: Timers::default(),
            resend_attempts: 0,
            retry_mark: 0,
            unhealthy_reported: false,
            backpressure_reported: false,
            retransmit_backoff: config.retransmit_ms,
            counters: ChatCounters::default(),
        }
    }

    /// Starts a chat with `user` (we are the originator). `random_id` is the
    /// `requestEncryption` random id. The first action asks for the DH config.
    pub fn request(
        config: ChatConfig,
        user: api::InputUser,
        random_id: i32,
    ) -> (Self, Vec<Action>) {
        let peer_user_id = match &user {
            api::InputUser::InputUser(u) => u.user_id,
            _ => 0,
        };
        let mut core = Self::blank(
            config,
            Side::Originator,
            Phase::OriginatorConfig { user, random_id },
        );
        core.peer_user_id = peer_user_id;
        let mut out = Out::new();
        out.dirty = true;
        out.push(Action::NeedDhConfig);
        (core, out.finish())
    }

    /// A chat another user requested (we are the participant): the application is asked.
    pub fn requested(
        config: ChatConfig,
        req: &api_types::EncryptedChatRequested,
    ) -> (Self, Vec<Action>) {
        let mut core = Self::blank(
            config,
            Side::Participant,
            Phase::Requested {
                g_a: req.g_a.clone(),
            },
        );
        core.chat_id = req.id;
        core.access_hash = req.access_hash;
        core.peer_user_id = req.admin_id;
        let mut out = Out::new();
        out.deliver(AppEvent::ChatRequested {
            admin_id: req.admin_id,
            date: req.date,
        });
        (core, out.finish())
    }

    /// A ready chat from a key agreed elsewhere: the bulk-provisioning path for benchmarks and
    /// tests (`secretchat simulate --chats 1000000` registers chats this way instead of running
    /// a million handshakes). Both sides must be provisioned with the same key, opposite sides
    /// and the same `chat_id`/`access_hash`; `peer_layer` is what the peer is known to speak.
    /// Nothing is sent (no NotifyLayer): the caller vouches for the layers. The actions arm
    /// the key-age timer.
    #[allow(clippy::too_many_arguments)]
    pub fn provisioned(
        config: ChatConfig,
        side: Side,
        chat_id: i32,
        access_hash: i64,
        key: crate::crypto::AuthKey,
        dh: Arc<DhParams>,
        peer_layer: i32,
        now: Millis,
    ) -> (Self, Vec<Action>) {
        let mut core = Self::blank(config, side, Phase::Ready);
        core.chat_id = chat_id;
        core.access_hash = access_hash;
        core.visualization = crate::crypto::visualize::visualization(&key, Some(&key));
        let mut layer = super::layer::LayerState::new(config.layer);
        let _ = layer.observe(peer_layer);
        core.session = Some(Session::from_parts(
            key,
            Vec::new(),
            side,
            super::seq_no::SeqNo::new(side),
            layer,
        ));
        core.dh = Some(dh);
        core.key_since = now;
        let mut out = Out::new();
        core.arm(
            Timer::KeyAge,
            now.saturating_add(super::rekey::REKEY_AFTER_MS + 1),
            &mut out,
        );
        (core, out.finish())
    }

    /// Handles one event at time `now`, drawing randomness from `rng`.
    pub fn handle(&mut self, event: Event, now: Millis, rng: &mut impl RngCore) -> Vec<Action> {
        let mut out = Out::new();
        let held = self.held_secrets();
        if !matches!(self.phase, Phase::Closed(_)) {
            match event {
                Event::DhConfig { params, random } => {
                    self.on_dh_config(params, &random, rng, &mut out)
                }
                Event::DhConfigFailed(e) => self.abort(CloseReason::Dh(e), &mut out),
                Event::DhDone(o) => self.on_dh_done(*o, now, rng, &mut out),
                Event::ChatUpdate(c) => self.on_chat_update(c, now, rng, &mut out),
                Event::AlreadyAccepted => self.on_already_accepted(now, rng, &mut out),
                Event::Incoming { wire, file, date } => {
                    self.on_incoming(wire, file, date, now, rng, &mut out)
                }
                Event::Command(c) => self.on_command(c, now, rng, &mut out),
                Event::Timer(t) => self.on_timer(t, now, rng, &mut out),
            }
            // Superseded keys go only at the end of a step, when every message it brought in
            // is classified (a hole it revealed keeps them).
            self.discard_previous_if_wanted();
        }
        out.persist.secrets_dropped = self.held_secrets().lost_any_of(&held);
        out.finish()
    }

    /// The secrets the chat holds: keys by fingerprint, DH exponents by their exchange.
    fn held_secrets(&self) -> HeldSecrets {
        let mut held = HeldSecrets::default();
        if let Some(s) = &self.session {
            held.add(s.key().fingerprint());
            for k in s.previous_keys() {
                held.add(k.fingerprint());
            }
        }
        match &self.rekey {
            Rekey::Starting { exchange_id, .. } | Rekey::Requested { exchange_id, .. } => {
                held.add(!*exchange_id);
            }
            Rekey::Accepted { new_key, .. } => held.add(new_key.fingerprint()),
            _ => {}
        }
        match &self.phase {
            Phase::OriginatorPublic { .. }
            | Phase::OriginatorWaiting { .. }
            | Phase::OriginatorKey { .. } => held.add(i64::MIN),
            Phase::ParticipantAccepting { key, .. } => held.add(key.fingerprint()),
            _ => {}
        }
        held
    }

    /// The chat's server id (0 until the server assigned one).
    pub fn chat_id(&self) -> i32 {
        self.chat_id
    }

    /// Whether the chat is closed.
    pub fn is_closed(&self) -> bool {
        matches!(self.phase, Phase::Closed(_))
    }

    /// Whether the key is agreed and the chat open.
    pub fn is_ready(&self) -> bool {
        matches!(self.phase, Phase::Ready)
    }

    /// Whether the chat may leave memory: key agreed (or closed), no hole open, no re-key or
    /// handshake computation under way. Unacknowledged messages may stay: a quiet peer never
    /// acknowledges the tail of a conversation, and the tail retransmit is a stored timer — the
    /// executor wakes the chat at [`ChatCore::next_wake`] (the timers are re-armed when it is
    /// loaded).
    pub fn can_sleep(&self) -> bool {
        let settled = matches!(self.phase, Phase::Ready | Phase::Closed(_));
        settled
            && self.waiting.is_empty()
            && !self.rekey.in_progress()
            && self.handshake_job.is_none()
            && self.rekey_job.is_none()
    }

    /// When the earliest armed timer is due: a sleeping chat must be loaded again by then.
    pub fn next_wake(&self) -> Option<Millis> {
        self.timers.earliest()
    }

    /// Whether the application may send now: fewer than
    /// [`ChatConfig::max_unacknowledged`] messages (and bytes) wait for the peer's
    /// acknowledgement, counting the sends queued before the key. An executor holds the
    /// application's sends while this is false; each acknowledgement can make room.
    pub fn accepts_sends(&self) -> bool {
        self.outbox.len() + self.pending_sends.len() < self.config.max_unacknowledged
            && self.outbox.bytes() < self.config.max_unacknowledged_bytes
    }

    /// The other user's id (0 until known).
    pub fn peer_user_id(&self) -> i64 {
        self.peer_user_id
    }

    /// The self-destruct timer last set by either side (seconds; 0: off).
    pub fn ttl(&self) -> i32 {
        self.ttl
    }

    /// The negotiated layer outgoing messages use (the initial layer before the key).
    pub fn layer(&self) -> i32 {
        self.session
            .as_ref()
            .map_or(super::layer::INITIAL_PEER_LAYER, |s| s.layer().negotiated())
    }

    /// What an application shows of the chat and is told again whenever it changes: phase,
    /// ids, layer, self-destruct timer (see [`ChatSummary`]).
    pub fn summary(&self) -> ChatSummary {
        ChatSummary {
            phase: self.phase.name(),
            chat_id: self.chat_id,
            peer_user_id: self.peer_user_id,
            layer: self.layer(),
            ttl: self.ttl,
        }
    }

    /// The key visualization (empty until the key is agreed).
    pub fn visualization(&self) -> &[u8] {
        &self.visualization
    }

    /// The stored copy of our outgoing message `raw_out`, while unacknowledged.
    pub fn outbox_entry(&self, raw_out: u32) -> Option<&OutboxEntry> {
        self.outbox.get(raw_out)
    }

    /// A health-check snapshot.
    pub fn status(&self, now: Millis) -> ChatStatus {
        let (peer_layer, negotiated_layer, seq, fp) = match &self.session {
            Some(s) => (
                s.layer().peer(),
                s.layer().negotiated(),
                s.seq().parts(),
                Some(s.key().fingerprint()),
            ),
            None => (
                super::layer::INITIAL_PEER_LAYER,
                super::layer::INITIAL_PEER_LAYER,
                (0, 0, 0),
                None,
            ),
        };
        ChatStatus {
            phase: self.phase.name(),
            closed: match &self.phase {
                Phase::Closed(r) => Some(r.clone()),
                _ => None,
            },
            chat_id: self.chat_id,
            side: self.side,
            peer_user_id: self.peer_user_id,
            ttl: self.ttl,
            peer_layer,
            negotiated_layer,
            seq,
            key_fingerprint: fp,
            retained_keys: self.session.as_ref().map_or(0, |s| s.previous_keys().len()),
            key_uses: self.key_uses,
            key_age_ms: now.saturating_sub(self.key_since),
            holes: self.waiting.holes(seq.1),
            unacknowledged: self.outbox.len(),
            rekeys: self.rekeys,
            rekeying: self.rekey.in_progress(),
            counters: self.counters,
            visualization: self.visualization.clone(),
        }
    }

    /// The recovery counters (cheap; see [`ChatCounters`]).
    pub fn counters(&self) -> ChatCounters {
        self.counters
    }

    /// How many holes are open now (cheap when none are).
    pub fn holes_open(&self) -> usize {
        if self.waiting.is_empty() {
            return 0;
        }
        let received = self.received().unwrap_or(0);
        self.waiting.holes(received).len()
    }

    /// The next raw position expected from the peer (`None` before the key).
    pub(super) fn received(&self) -> Option<u32> {
        self.session.as_ref().map(|s| s.seq().parts().1)
    }

    pub(super) fn input_chat(&self) -> api::InputEncryptedChat {
        api::InputEncryptedChat::InputEncryptedChat(api_types::InputEncryptedChat {
            chat_id: self.chat_id,
            access_hash: self.access_hash,
        })
    }

    fn job_id(&mut self) -> u64 {
        self.next_job += 1;
        self.next_job
    }

    /// Closes the chat for a protocol reason: tells the server and the application, and drops
    /// every key, queued message and timer.
    fn abort(&mut self, reason: CloseReason, out: &mut Out) {
        if self.chat_id != 0 {
            out.call(Call::DiscardEncryption(
                secretchat_schema::api::functions::messages::DiscardEncryption {
                    delete_history: false,
                    chat_id: self.chat_id,
                },
            ));
        }
        self.close(reason, out);
    }

    /// Closes without telling the server (it told us, or the caller already did).
    fn close(&mut self, reason: CloseReason, out: &mut Out) {
        self.phase = Phase::Closed(reason.clone());
        self.session = None;
        self.rekey = Rekey::Idle;
        self.waiting = WaitingQueue::default();
        self.outbox.clear();
        self.early.clear();
        self.pending_sends.clear();
        self.timers.clear();
        self.handshake_job = None;
        self.rekey_job = None;
        out.persist.closed = true;
        out.deliver(AppEvent::ChatClosed(reason));
    }

    fn arm(&mut self, timer: Timer, at: Millis, out: &mut Out) {
        if self.timers.get(timer).is_some_and(|t| t <= at) {
            return;
        }
        self.timers.insert(timer, at);
        out.dirty = true;
        out.push(Action::ArmTimer { timer, at });
    }

    fn on_command(&mut self, c: Command, now: Millis, rng: &mut impl RngCore, out: &mut Out) {
        match c {
            Command::Accept => self.accept(out),
            Command::Decline => {
                if matches!(self.phase, Phase::Requested { .. }) {
                    self.abort(CloseReason::Declined, out);
                }
            }
            Command::Close { delete_history } => {
                out.call(Call::DiscardEncryption(
                    secretchat_schema::api::functions::messages::DiscardEncryption {
                        delete_history,
                        chat_id: self.chat_id,
                    },
                ));
                self.close(CloseReason::Local, out);
            }
            Command::Rekey => self.start_rekey(rng, out),
            Command::Send(m) => {
                let (message, file) = send::full_message(*m);
                self.send_or_queue(PendingSend::Message(message, file), now, rng, out);
            }
            Command::Service(s) => {
                if let ServiceAction::SetTtl(ttl) = &s {
                    self.ttl = *ttl;
                }
                let action = self.service_action(s, rng, out);
                self.send_or_queue(PendingSend::Action(action), now, rng, out);
            }
        }
    }

    fn on_timer(&mut self, t: Timer, now: Millis, rng: &mut impl RngCore, out: &mut Out) {
        match self.timers.get(t) {
            Some(at) if at <= now => {
                self.timers.remove(t);
                out.dirty = true;
            }
            // Early (clocks and timer wheels disagree by a millisecond): ask again rather than
            // lose the timer.
            Some(at) => return out.push(Action::ArmTimer { timer: t, at }),
            None => return,
        }
        match t {
            Timer::ResendRetry => self.retry_holes(now, rng, out),
            Timer::Retransmit => self.retransmit(now, rng, out),
            Timer::KeyAge => self.maybe_rekey(now, rng, out),
        }
    }
}
