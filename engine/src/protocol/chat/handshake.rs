//! The first key exchange (`end-to-end.md`, "Key Generation"): request, accept, decline,
//! discard, the fingerprint check, and what follows a successful exchange (NotifyLayer).

use std::sync::Arc;

use rand_core::RngCore;
use secretchat_schema::api::enums as api;
use secretchat_schema::api::functions::messages as calls;
use secretchat_schema::e2e::{enums, types};

use super::{Action, AppEvent, Call, ChatCore, CloseReason, Millis, Out, Phase, Timer};
use crate::crypto::AuthKey;
use crate::crypto::dh::{DhParams, secret_exponent};
use crate::crypto::visualize;
use crate::protocol::dh_job::{DhJob, DhOutput, DhPurpose};
use crate::protocol::layer::{INITIAL_PEER_LAYER, OUR_LAYER};
use crate::protocol::rekey::REKEY_AFTER_MS;
use crate::protocol::session::Session;

impl ChatCore {
    /// Asks for a handshake exponentiation (the answer comes back as `Event::DhDone`).
    fn handshake_compute(
        &mut self,
        params: &Arc<DhParams>,
        exponent: zeroize::Zeroizing<[u8; 256]>,
        peer: Option<Vec<u8>>,
        want_public: bool,
        out: &mut Out,
    ) {
        let id = self.job_id();
        self.handshake_job = Some(id);
        out.push(Action::Compute(Box::new(DhJob::new(
            id,
            DhPurpose::Handshake,
            params.clone(),
            exponent,
            peer,
            want_public,
        ))));
    }

    pub(super) fn accept(&mut self, out: &mut Out) {
        if let Phase::Requested { g_a } = &mut self.phase {
            let g_a = std::mem::take(g_a);
            self.phase = Phase::ParticipantConfig { g_a };
            out.dirty = true;
            out.push(Action::NeedDhConfig);
        }
    }

    pub(super) fn on_dh_config(
        &mut self,
        params: Arc<DhParams>,
        server_random: &[u8],
        rng: &mut impl RngCore,
        out: &mut Out,
    ) {
        let mut local = [0u8; 256];
        rng.fill_bytes(&mut local);
        let secret = secret_exponent(&local, server_random);
        local.fill(0);
        match std::mem::replace(&mut self.phase, Phase::Ready) {
            Phase::OriginatorConfig { user, random_id } => {
                self.handshake_compute(&params, secret.clone(), None, true, out);
                self.phase = Phase::OriginatorPublic {
                    user,
                    random_id,
                    a: secret,
                };
            }
            Phase::ParticipantConfig { g_a } => {
                if let Err(e) = params.check_public(&g_a) {
                    self.abort(CloseReason::Dh(e), out);
                    return;
                }
                self.handshake_compute(&params, secret, Some(g_a.clone()), true, out);
                self.phase = Phase::ParticipantKey { g_a };
            }
            other => {
                // Not waiting for a config: keep the phase as it was.
                self.phase = other;
                return;
            }
        }
        self.dh = Some(params);
        out.dirty = true;
    }

    pub(super) fn on_dh_done(
        &mut self,
        o: DhOutput,
        now: Millis,
        rng: &mut impl RngCore,
        out: &mut Out,
    ) {
        match o.purpose {
            DhPurpose::Rekey => return self.on_rekey_dh_done(o, now, rng, out),
            DhPurpose::Handshake if self.handshake_job != Some(o.id) => return,
            DhPurpose::Handshake => {}
        }
        self.handshake_job = None;
        out.dirty = true;
        match std::mem::replace(&mut self.phase, Phase::Ready) {
            Phase::OriginatorPublic { user, random_id, a } => {
                let Some(g_a) = o.public else {
                    return self.abort(CloseReason::Protocol("DH job without g_a"), out);
                };
                out.call(Call::RequestEncryption(calls::RequestEncryption {
                    user_id: user,
                    random_id,
                    g_a: g_a.to_vec(),
                }));
                self.phase = Phase::OriginatorWaiting { a };
            }
            Phase::OriginatorKey { fingerprint, .. } => match o.shared {
                Some(Ok(key)) if key.has_fingerprint(fingerprint) => self.ready(key, now, rng, out),
                Some(Ok(_)) => self.abort(CloseReason::FingerprintMismatch, out),
                Some(Err(e)) => self.abort(CloseReason::Dh(e), out),
                None => self.abort(CloseReason::Protocol("DH job without key"), out),
            },
            Phase::ParticipantKey { .. } => match (o.public, o.shared) {
                (Some(g_b), Some(Ok(key))) => {
                    out.call(Call::AcceptEncryption(calls::AcceptEncryption {
                        peer: self.input_chat(),
                        g_b: g_b.to_vec(),
                        key_fingerprint: key.fingerprint(),
                    }));
                    self.phase = Phase::ParticipantAccepting {
                        key,
                        g_b: g_b.to_vec(),
                    };
                }
                (_, Some(Err(e))) => self.abort(CloseReason::Dh(e), out),
                _ => self.abort(CloseReason::Protocol("DH job without key"), out),
            },
            other => self.phase = other,
        }
    }

    pub(super) fn on_chat_update(
        &mut self,
        chat: api::EncryptedChat,
        now: Millis,
        rng: &mut impl RngCore,
        out: &mut Out,
    ) {
        match chat {
            api::EncryptedChat::Waiting(w) => {
                if self.peer_user_id == 0 {
                    self.peer_user_id = w.participant_id;
                    out.dirty = true;
                }
                if self.chat_id == 0 {
                    self.chat_id = w.id;
                    self.access_hash = w.access_hash;
                    out.dirty = true;
                }
            }
            api::EncryptedChat::EncryptedChat(c) => {
                if self.peer_user_id == 0 {
                    self.peer_user_id = match self.side {
                        crate::crypto::Side::Originator => c.participant_id,
                        crate::crypto::Side::Participant => c.admin_id,
                    };
                    out.dirty = true;
                }
                if self.chat_id == 0 {
                    self.chat_id = c.id;
                    self.access_hash = c.access_hash;
                    out.dirty = true;
                }
                if let Phase::ParticipantAccepting { key, .. } = &self.phase {
                    // The server confirmed our acceptEncryption: this device won.
                    let key = key.clone();
                    return self.ready(key, now, rng, out);
                }
                let Phase::OriginatorWaiting { a } = &self.phase else {
                    return; // a repeat
                };
                let a = a.clone();
                let Some(dh) = self.dh.clone() else {
                    return self.abort(CloseReason::Protocol("no DH config"), out);
                };
                if let Err(e) = dh.check_public(&c.g_a_or_b) {
                    return self.abort(CloseReason::Dh(e), out);
                }
                self.handshake_compute(&dh, a.clone(), Some(c.g_a_or_b.clone()), false, out);
                self.phase = Phase::OriginatorKey {
                    a,
                    g_b: c.g_a_or_b,
                    fingerprint: c.key_fingerprint,
                };
                out.dirty = true;
            }
            api::EncryptedChat::Discarded(_) => self.close(CloseReason::Discarded, out),
            api::EncryptedChat::Empty(_) | api::EncryptedChat::Requested(_) => {}
        }
    }

    /// Our `acceptEncryption` was refused with `ENCRYPTION_ALREADY_ACCEPTED`. Either an earlier
    /// call of ours went through (its answer was lost, or we restarted while waiting) or
    /// another device of the account accepted first; the error does not say which, so it
    /// neither closes the chat nor makes it ready. The chat stays accepting until the proof
    /// comes: a message from the peer that decrypts under our key (the originator sends
    /// NotifyLayer as soon as it has the key; [`ChatCore::accepted_by_proof`]) — or the
    /// server's `encryptedChatDiscarded`, which every other device gets (end-to-end.md,
    /// "Accepting a Request"), closes it. Messages already held are checked now.
    pub(super) fn on_already_accepted(
        &mut self,
        now: Millis,
        rng: &mut impl RngCore,
        out: &mut Out,
    ) {
        if matches!(self.phase, Phase::ParticipantAccepting { .. }) {
            let proof = self
                .early
                .iter()
                .any(|(wire, ..)| self.decrypts_under_pending(wire));
            if proof {
                self.accepted_by_proof(now, rng, out);
            }
        }
    }

    /// Whether `wire` decrypts under the key we sent `acceptEncryption` for.
    pub(super) fn decrypts_under_pending(&self, wire: &[u8]) -> bool {
        let Phase::ParticipantAccepting { key, .. } = &self.phase else {
            return false;
        };
        crate::crypto::message::decrypt_v2(key, self.side.peer(), wire).is_ok()
            || crate::crypto::message::decrypt_v1(key, wire).is_ok()
    }

    /// A peer message decrypted under the key of our `acceptEncryption`: the peer holds our
    /// `g_b`, so our accept is the one the server took, whatever became of its answer.
    pub(super) fn accepted_by_proof(&mut self, now: Millis, rng: &mut impl RngCore, out: &mut Out) {
        if let Phase::ParticipantAccepting { key, .. } = &self.phase {
            let key = key.clone();
            out.dirty = true;
            self.ready(key, now, rng, out);
        }
    }

    /// The key is agreed: process the messages that arrived early (they may raise the peer's
    /// layer, which picks the constructors of everything we send), then announce our layer and
    /// flush what the application queued.
    fn ready(&mut self, key: AuthKey, now: Millis, rng: &mut impl RngCore, out: &mut Out) {
        // Chats are created at layer ≥ 46, so the layer-46 key is the initial key.
        self.visualization = visualize::visualization(&key, Some(&key));
        self.session = Some(Session::new(key, self.side).with_our_layer(self.config.layer));
        self.phase = Phase::Ready;
        self.key_since = now;
        out.deliver(AppEvent::ChatReady {
            visualization: self.visualization.clone(),
        });
        self.arm(Timer::KeyAge, now.saturating_add(REKEY_AFTER_MS + 1), out);
        for (wire, file, date) in std::mem::take(&mut self.early) {
            if self.is_ready() {
                self.on_incoming(wire, file, date, now, rng, out);
            }
        }
        if !self.is_ready() {
            return;
        }
        let notify =
            enums::DecryptedMessageAction::NotifyLayer(types::DecryptedMessageActionNotifyLayer {
                layer: self.config.layer.clamp(INITIAL_PEER_LAYER, OUR_LAYER),
            });
        self.send_action(notify, now, rng, out);
        for p in std::mem::take(&mut self.pending_sends) {
            if self.is_ready() {
                self.send_pending(p, now, rng, out);
            }
        }
    }
}
