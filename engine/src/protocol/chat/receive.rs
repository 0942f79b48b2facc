//! Receiving: pick the key by fingerprint, decrypt, classify by seq_no (duplicate, in order,
//! past a hole), queue and drain, and interpret each message exactly once, in order.

use rand_core::RngCore;
use secretchat_schema::api::enums as api;
use secretchat_schema::e2e::enums;

use super::{
    Action, AppEvent, ChatCore, CloseReason, MAX_EARLY, MAX_EARLY_BYTES, Millis, Out, Phase,
    WaitingEntry,
};
use crate::crypto::message;
use crate::protocol::gaps::{GapError, Queued};
use crate::protocol::layer::{Observed, Payload};
use crate::protocol::seq_no::Received;
use crate::protocol::session::{SessionError, wire_fingerprint};

impl ChatCore {
    pub(super) fn on_incoming(
        &mut self,
        wire: Vec<u8>,
        file: Option<api::EncryptedFile>,
        date: i32,
        now: Millis,
        rng: &mut impl RngCore,
        out: &mut Out,
    ) {
        if wire.len() > message::MAX_WIRE {
            // Refused before it is held anywhere (the early queue, the state record).
            out.push(Action::Rejected(SessionError::Crypto(
                crate::crypto::CryptoError::BadWireLength { len: wire.len() },
            )));
            return;
        }
        match self.phase {
            Phase::Ready => {}
            Phase::Closed(_) => return,
            _ if self.decrypts_under_pending(&wire) => {
                // The peer holds our key: our accept went through. Ready (the messages held
                // so far are processed), then this one.
                self.accepted_by_proof(now, rng, out);
                if self.is_ready() {
                    self.on_incoming(wire, file, date, now, rng, out);
                }
                return;
            }
            _ => {
                // The peer may write before our key is computed (updates are not ordered).
                let held: usize = self.early.iter().map(|(w, ..)| w.len()).sum();
                if self.early.len() < MAX_EARLY && held + wire.len() <= MAX_EARLY_BYTES {
                    self.early.push((wire, file, date));
                    out.dirty = true;
                } else {
                    out.push(Action::Rejected(SessionError::EarlyFull));
                }
                return;
            }
        }
        let fp = wire_fingerprint(&wire);
        // The initiator switched to the key we accepted before its CommitKey reached us (pfs.md
        // "Final step"): switch too, but only for a message that really decrypts under it.
        if let (Some(fp), Some(pending)) = (fp, self.rekey.pending_key()) {
            if pending.has_fingerprint(fp)
                && message::decrypt_v2(pending, self.side.peer(), &wire).is_ok()
            {
                // Its CommitKey, when it comes, gets the Noop that lets the initiator finish.
                self.switched_early = self.rekey.exchange_id().map(|x| (x, fp));
                if let Some(step) = self.rekey.on_key_seen(fp) {
                    self.apply_rekey_step(step, now, rng, out);
                }
            }
        }
        let Some(session) = self.session.as_mut() else {
            return;
        };
        let opened = match session.open(&wire, self.switch_seen) {
            Ok(o) => o,
            Err(SessionError::Seq(e)) => return self.abort(CloseReason::Seq(e), out),
            Err(e) => return out.push(Action::Rejected(e)),
        };
        let current_fp = session.key().fingerprint();
        let received = session.seq().parts().1;
        out.dirty = true;
        // Under the current key: the peer had switched to it by this message's position.
        let position = match opened.received {
            Some(Received::Gap { raw_out, .. }) => Some(raw_out),
            Some(Received::InOrder { .. }) => Some(received),
            Some(Received::Duplicate) => Some(received.saturating_sub(1)),
            None => None,
        };
        if let (true, Some(at)) = (fp == Some(current_fp), position) {
            self.switch_seen = Some(self.switch_seen.map_or(at, |s| s.min(at)));
        }
        for news in opened.layer_news {
            match news {
                Observed::Raised(l) => out.deliver(AppEvent::PeerLayer(l)),
                Observed::PeerNewerThanUs(l) => out.deliver(AppEvent::PeerNewerThanUs(l)),
                Observed::Same => {}
            }
        }
        let Payload::Layered(layer) = opened.payload else {
            return; // a bare layer-8 NotifyLayer: its layer is applied, nothing else to do
        };
        match opened.received {
            None | Some(Received::Duplicate) => {}
            Some(Received::Gap { raw_out, .. }) => {
                let waiting = WaitingEntry {
                    layer,
                    file,
                    date,
                    resend_done: false,
                };
                self.queue(raw_out, waiting, now, rng, out)
            }
            Some(Received::InOrder { peer_in }) => {
                let entry = WaitingEntry {
                    layer,
                    file,
                    date,
                    resend_done: false,
                };
                self.process(entry, peer_in, now, rng, out);
                self.drain(now, rng, out);
            }
        }
        if fp == Some(current_fp) {
            if let Some(step) = self.rekey.on_key_seen(current_fp) {
                self.apply_rekey_step(step, now, rng, out);
            }
        }
        self.maybe_rekey(now, rng, out);
    }

    /// A message past a hole: act on a Resend in it now (once), queue it, ask for a new hole.
    fn queue(
        &mut self,
        raw_out: u32,
        mut waiting: WaitingEntry,
        now: Millis,
        rng: &mut impl RngCore,
        out: &mut Out,
    ) {
        if self.waiting.contains(raw_out) {
            return;
        }
        let Some(expected) = self.received() else {
            return;
        };
        let resend = resend_of(&waiting.layer.message);
        waiting.resend_done = resend.is_some();
        match self.waiting.push(expected, raw_out, waiting.clone()) {
            Ok(q) => {
                out.persist.waiting_put.push((raw_out, waiting));
                // seq_no.md "Avoiding concurrent gaps": a Resend is interpreted on receipt.
                if let Some((start, end)) = resend {
                    self.answer_resend(start, end, now, rng, out);
                }
                if let Queued::RequestResend { lo, hi } = q {
                    self.counters.holes_opened += 1;
                    self.request_resend(lo, hi, now, rng, out);
                }
            }
            // A full waiting queue is back-pressure, not a broken chat (the crash test's long
            // run closed a chat here after a minute of kills): the message is not kept and the
            // chat is unchanged; the peer holds it until we acknowledge it, and the hole's
            // next Resend (which runs from the queue's frontier) brings it again. A Resend in
            // it is still answered (it is authenticated, and the peer may be waiting on it);
            // coming again later, it is answered again — seq_no.md wants a Resend handled
            // once, but a message we did not keep cannot remember it, and the pace bounds
            // what a repeat costs.
            Err(GapError::QueueFull) => {
                if let Some((start, end)) = resend {
                    self.answer_resend(start, end, now, rng, out);
                }
            }
        }
    }

    /// Interprets one in-order message (a Resend in it only if not `resend_done` already).
    fn process(
        &mut self,
        entry: WaitingEntry,
        peer_in: u32,
        now: Millis,
        rng: &mut impl RngCore,
        out: &mut Out,
    ) {
        let Some(session) = self.session.as_mut() else {
            return;
        };
        if let Err(e) = session.accept(peer_in) {
            return self.abort(
                CloseReason::Protocol(match e {
                    SessionError::Seq(_) => "sequence numbers exhausted",
                    _ => "accept failed",
                }),
                out,
            );
        }
        self.key_uses += 1;
        self.acknowledged(peer_in, now, out);
        let WaitingEntry {
            layer,
            file,
            date,
            resend_done,
        } = entry;
        let (random_id, action) = match layer.message {
            enums::DecryptedMessage::Service8(s) => (s.random_id, s.action),
            enums::DecryptedMessage::Service23(s) => (s.random_id, s.action),
            m => {
                return out.deliver(AppEvent::Message {
                    message: Box::new(m),
                    file,
                    date,
                });
            }
        };
        use enums::DecryptedMessageAction as A;
        match action {
            A::Resend(r) if !resend_done => {
                self.answer_resend(r.start_seq_no, r.end_seq_no, now, rng, out)
            }
            A::Resend(_) | A::NotifyLayer(_) | A::Noop(_) => {}
            A::RequestKey(r) => self.on_request_key(r, now, rng, out),
            A::AcceptKey(a) => self.on_accept_key(a, now, rng, out),
            A::CommitKey(c) => self.on_commit_key(c, now, rng, out),
            A::AbortKey(a) => {
                if self.rekey.on_abort(a.exchange_id).is_ok() {
                    self.rekey_job = None;
                }
            }
            A::DeleteMessages(d) => out.deliver(AppEvent::MessagesDeleted {
                random_ids: d.random_ids,
            }),
            A::SetMessageTTL(t) => {
                self.ttl = t.ttl_seconds;
                out.deliver(AppEvent::Service {
                    random_id,
                    action: A::SetMessageTTL(t),
                });
            }
            action => out.deliver(AppEvent::Service { random_id, action }),
        }
    }

    /// Interprets queued messages that are now in order.
    fn drain(&mut self, now: Millis, rng: &mut impl RngCore, out: &mut Out) {
        loop {
            let Some(expected) = self.received() else {
                return;
            };
            let Some(w) = self.waiting.pop_ready(expected) else {
                break;
            };
            out.persist.waiting_done.push(expected);
            let Some(session) = self.session.as_ref() else {
                return;
            };
            match session
                .seq()
                .classify(w.layer.in_seq_no, w.layer.out_seq_no)
            {
                Ok(Received::InOrder { peer_in }) => self.process(w, peer_in, now, rng, out),
                Ok(_) => {}
                Err(e) => return self.abort(CloseReason::Seq(e), out),
            }
        }
        if self.waiting.is_empty() {
            self.resend_attempts = 0;
            self.unhealthy_reported = false;
            self.timers.remove(super::Timer::ResendRetry);
        }
    }

    /// Drops the superseded keys once every peer message before its switch to the current key
    /// has been processed (pfs.md: "no gaps in received messages up to the switch").
    pub(super) fn discard_previous_if_wanted(&mut self) {
        let Some(session) = self.session.as_mut() else {
            return;
        };
        let switched = self
            .switch_seen
            .is_some_and(|at| session.seq().parts().1 >= at);
        if switched && !session.previous_keys().is_empty() {
            let n = session.previous_keys().len();
            session.discard_oldest(n);
        }
    }
}

/// The wire range of a Resend action in `m`, if it is one.
fn resend_of(m: &enums::DecryptedMessage) -> Option<(i32, i32)> {
    let action = match m {
        enums::DecryptedMessage::Service8(s) => &s.action,
        enums::DecryptedMessage::Service23(s) => &s.action,
        _ => return None,
    };
    match action {
        enums::DecryptedMessageAction::Resend(r) => Some((r.start_seq_no, r.end_seq_no)),
        _ => None,
    }
}
