//! Sending: sealing messages for the negotiated layer, the outbox of unacknowledged wire bytes,
//! answering the peer's Resend byte-identically, asking for our own holes again, and re-sending
//! our newest unacknowledged message when the peer stays silent (tail loss).

use rand_core::RngCore;
use secretchat_schema::api::enums as api;
use secretchat_schema::api::functions::messages as calls;
use secretchat_schema::e2e::{enums, types};

use super::{
    AppEvent, Call, ChatCore, CloseReason, Millis, Out, OutboxEntry, Outgoing, PendingSend, Phase,
    ServiceAction, Timer,
};
use crate::protocol::layer::message_for_layer;

/// How far a Resend we send may reach past its first message: TDLib's
/// `SecretChatActor::MAX_RESEND_COUNT` (a receiver refuses `start + 1000 < end`, raw).
pub const MAX_RESEND_SPAN: u32 = 1000;

/// The message in its richest form (layer 73+ constructor) and the file to attach.
pub(super) fn full_message(
    m: Outgoing,
) -> (
    Box<types::DecryptedMessage73>,
    Option<api::InputEncryptedFile>,
) {
    let (media, file) = match m.media {
        Some((media, file)) => (Some(media), Some(file)),
        None => (None, None),
    };
    let message = types::DecryptedMessage73 {
        no_webpage: m.no_webpage,
        silent: m.silent,
        random_id: m.random_id,
        ttl: m.ttl,
        message: m.text,
        media,
        entities: Some(m.entities).filter(|e| !e.is_empty()),
        via_bot_name: m.via_bot_name,
        reply_to_random_id: m.reply_to_random_id,
        grouped_id: m.grouped_id,
    };
    (Box::new(message), file)
}

impl ChatCore {
    /// The action for an application's service command (a delete also rewrites our stored
    /// unacknowledged copies).
    pub(super) fn service_action(
        &mut self,
        s: ServiceAction,
        rng: &mut impl RngCore,
        out: &mut Out,
    ) -> enums::DecryptedMessageAction {
        match s {
            ServiceAction::SetTtl(ttl_seconds) => enums::DecryptedMessageAction::SetMessageTTL(
                types::DecryptedMessageActionSetMessageTTL { ttl_seconds },
            ),
            ServiceAction::Read(random_ids) => enums::DecryptedMessageAction::ReadMessages(
                types::DecryptedMessageActionReadMessages { random_ids },
            ),
            ServiceAction::Delete(random_ids) => {
                self.delete_unacknowledged(&random_ids, rng, out);
                enums::DecryptedMessageAction::DeleteMessages(
                    types::DecryptedMessageActionDeleteMessages { random_ids },
                )
            }
            ServiceAction::Screenshot(random_ids) => {
                enums::DecryptedMessageAction::ScreenshotMessages(
                    types::DecryptedMessageActionScreenshotMessages { random_ids },
                )
            }
            ServiceAction::FlushHistory => enums::DecryptedMessageAction::FlushHistory(
                types::DecryptedMessageActionFlushHistory {},
            ),
            ServiceAction::Typing(action) => {
                enums::DecryptedMessageAction::Typing(types::DecryptedMessageActionTyping {
                    action,
                })
            }
        }
    }

    /// Sends now when the key is agreed, queues (durably) until then, drops once closed.
    pub(super) fn send_or_queue(
        &mut self,
        p: PendingSend,
        now: Millis,
        rng: &mut impl RngCore,
        out: &mut Out,
    ) {
        match self.phase {
            Phase::Ready => self.send_pending(p, now, rng, out),
            Phase::Closed(_) => {}
            _ => {
                out.dirty = true;
                self.pending_sends.push(p);
            }
        }
    }

    pub(super) fn send_pending(
        &mut self,
        p: PendingSend,
        now: Millis,
        rng: &mut impl RngCore,
        out: &mut Out,
    ) {
        match p {
            PendingSend::Action(a) => self.send_action(a, now, rng, out),
            PendingSend::Message(m, file) => {
                let Some(layer) = self.session.as_ref().map(|s| s.layer().negotiated()) else {
                    return;
                };
                let (random_id, silent) = (m.random_id, m.silent);
                let message = message_for_layer(layer, *m);
                self.seal_and_send(message, random_id, false, file, silent, now, rng, out);
            }
        }
    }

    /// Sends a service action (wrapped in `decryptedMessageService`).
    pub(super) fn send_action(
        &mut self,
        action: enums::DecryptedMessageAction,
        now: Millis,
        rng: &mut impl RngCore,
        out: &mut Out,
    ) {
        let random_id = rng.next_u64() as i64;
        let message = enums::DecryptedMessage::Service23(types::DecryptedMessageService23 {
            random_id,
            action,
        });
        self.seal_and_send(message, random_id, true, None, false, now, rng, out);
    }

    #[allow(clippy::too_many_arguments)]
    fn seal_and_send(
        &mut self,
        message: enums::DecryptedMessage,
        random_id: i64,
        service: bool,
        file: Option<api::InputEncryptedFile>,
        silent: bool,
        now: Millis,
        rng: &mut impl RngCore,
        out: &mut Out,
    ) {
        let Some(session) = self.session.as_mut() else {
            return;
        };
        let raw_out = session.seq().parts().0;
        let sealed = match session.seal(message, rng) {
            Ok(s) => s,
            Err(e) => {
                return self.abort(
                    CloseReason::Protocol(match e {
                        crate::protocol::session::SessionError::Seq(_) => {
                            "sequence numbers exhausted"
                        }
                        _ => "could not seal a message",
                    }),
                    out,
                );
            }
        };
        self.key_uses += 1;
        self.key_sent += 1;
        let entry = OutboxEntry {
            random_id,
            wire: sealed.wire,
            in_seq_no: sealed.in_seq_no,
            out_seq_no: sealed.out_seq_no,
            service,
            file,
            silent,
        };
        out.call(send_call(self.input_chat(), &entry, random_id));
        out.persist.outbox_put.push((raw_out, entry.clone()));
        self.outbox.insert(raw_out, entry);
        out.dirty = true;
        if !self.accepts_sends() && !self.backpressure_reported {
            // The peer acknowledges nothing: say so once; the application's sends wait.
            self.backpressure_reported = true;
            let holes = self.waiting.holes(self.received().unwrap_or(0));
            out.deliver(AppEvent::ChatUnhealthy {
                holes,
                unacknowledged: self.outbox.len(),
            });
        }
        self.arm(
            Timer::Retransmit,
            now.saturating_add(self.retransmit_backoff),
            out,
        );
        self.maybe_rekey(now, rng, out);
    }

    /// seq_no.md "Deleting unacknowledged messages": a deleted message the peer has not
    /// acknowledged is replaced, under the same sequence numbers and the same key, by a
    /// self-delete (so a Resend never brings its content back). A message whose key is already
    /// gone keeps its stored bytes: sealed under the new key it would move the peer's view of
    /// our switch back and strand our other old-key messages in its holes; the peer then gets
    /// the original, and the delete that follows it.
    fn delete_unacknowledged(&mut self, random_ids: &[i64], rng: &mut impl RngCore, out: &mut Out) {
        let Some(session) = self.session.as_ref() else {
            return;
        };
        let mut replaced = Vec::new();
        for (raw, entry) in self.outbox.iter() {
            if entry.service || !random_ids.contains(&entry.random_id) {
                continue;
            }
            let random_id = entry.random_id;
            let message = enums::DecryptedMessage::Service23(types::DecryptedMessageService23 {
                random_id,
                action: enums::DecryptedMessageAction::DeleteMessages(
                    types::DecryptedMessageActionDeleteMessages {
                        random_ids: vec![random_id],
                    },
                ),
            });
            let original = crate::protocol::session::wire_fingerprint(&entry.wire);
            if let Ok(sealed) =
                session.seal_at(message, entry.in_seq_no, entry.out_seq_no, original, rng)
            {
                let entry = OutboxEntry {
                    random_id,
                    wire: sealed.wire,
                    in_seq_no: entry.in_seq_no,
                    out_seq_no: entry.out_seq_no,
                    service: true,
                    file: None,
                    silent: false,
                };
                replaced.push((raw, entry));
            }
        }
        for (raw, entry) in replaced {
            out.persist.outbox_put.push((raw, entry.clone()));
            self.outbox.insert(raw, entry);
        }
    }

    /// The peer asks for our messages `start..=end` (wire): re-send the stored bytes, or abort
    /// if we cannot (seq_no.md: a Resend we are unable to satisfy aborts the chat).
    ///
    /// The work is bounded whatever the peer asks: at most the first [`MAX_RESEND_SPAN`] + 1
    /// messages of the range are sent (no real client asks for more; the peer asks again for
    /// the rest), and a message that went out again less than the pace ago
    /// ([`ChatConfig::resend_pace_ms`](super::ChatConfig::resend_pace_ms)) is not sent again —
    /// the same Resend repeated, or overlapping ones, cost one re-send per message and pace.
    pub(super) fn answer_resend(
        &mut self,
        start: i32,
        end: i32,
        now: Millis,
        rng: &mut impl RngCore,
        out: &mut Out,
    ) {
        let Some(session) = self.session.as_ref() else {
            return;
        };
        let range = match session.seq().resend_range(start, end) {
            Ok(r) => r,
            Err(e) => return self.abort(CloseReason::Seq(e), out),
        };
        let (lo, hi) = (*range.start(), *range.end());
        if !self.outbox.covers(lo, hi) {
            return self.abort(CloseReason::ResendUnsatisfiable { lo, hi }, out);
        }
        let input = self.input_chat();
        let pace = self.resend_pace();
        for raw in lo..=hi.min(lo.saturating_add(MAX_RESEND_SPAN)) {
            match self.outbox.resend_due(raw, now, pace) {
                Some(entry) => {
                    self.counters.resent += 1;
                    out.call(send_call(input.clone(), entry, rng.next_u64() as i64));
                }
                None => self.counters.resends_paced += 1,
            }
        }
    }

    /// How long a re-sent message is not sent again: the configured pace, kept below half the
    /// peer's retry interval (which we assume is like ours) so that a retry is always answered.
    fn resend_pace(&self) -> Millis {
        self.config
            .resend_pace_ms
            .min(self.config.resend_retry_ms / 2)
    }

    /// Asks the peer for raw out_seq_no `lo..=hi` of its messages — at most the first
    /// [`MAX_RESEND_SPAN`] + 1 of them: TDLib refuses a longer range ("Can't resend too many
    /// messages"); the rest of a longer hole is asked for by the retries once this part is in.
    pub(super) fn request_resend(
        &mut self,
        lo: u32,
        hi: u32,
        now: Millis,
        rng: &mut impl RngCore,
        out: &mut Out,
    ) {
        let Some(session) = self.session.as_ref() else {
            return;
        };
        let hi = hi.min(lo.saturating_add(MAX_RESEND_SPAN));
        let (Ok(start_seq_no), Ok(end_seq_no)) = (
            session.seq().peer_out_wire(lo),
            session.seq().peer_out_wire(hi),
        ) else {
            return;
        };
        let resend = enums::DecryptedMessageAction::Resend(types::DecryptedMessageActionResend {
            start_seq_no,
            end_seq_no,
        });
        self.counters.resend_requests += 1;
        self.send_action(resend, now, rng, out);
        let wait = self
            .config
            .resend_retry_ms
            .saturating_mul(1 << self.resend_attempts.min(16))
            .min(self.config.max_backoff_ms);
        self.arm(Timer::ResendRetry, now.saturating_add(wait), out);
    }

    /// The retry timer fired: ask again for every hole still open.
    pub(super) fn retry_holes(&mut self, now: Millis, rng: &mut impl RngCore, out: &mut Out) {
        let Some(session) = self.session.as_ref() else {
            return;
        };
        let received = session.seq().parts().1;
        let holes = self.waiting.holes(received);
        if holes.is_empty() {
            self.resend_attempts = 0;
            return;
        }
        // Back off only while nothing moves: under steady loss new holes keep opening, but as
        // long as old ones fill the chat is healthy and should keep asking at the base pace.
        if received > self.retry_mark {
            self.resend_attempts = 0;
            self.unhealthy_reported = false;
        }
        self.retry_mark = received;
        self.resend_attempts += 1;
        if self.resend_attempts >= self.config.unhealthy_after && !self.unhealthy_reported {
            self.unhealthy_reported = true;
            out.deliver(AppEvent::ChatUnhealthy {
                holes: holes.clone(),
                unacknowledged: self.outbox.len(),
            });
        }
        for (lo, hi) in holes {
            self.request_resend(lo, hi, now, rng, out);
        }
    }

    /// The peer acknowledged our messages below raw `peer_in`: forget them.
    pub(super) fn acknowledged(&mut self, peer_in: u32, now: Millis, out: &mut Out) {
        if self
            .outbox
            .acknowledge_below(peer_in, &mut out.persist.outbox_done)
        {
            if self.accepts_sends() {
                self.backpressure_reported = false;
            }
            self.retransmit_backoff = self.config.retransmit_ms;
            self.timers.remove(Timer::Retransmit);
            if !self.outbox.is_empty() {
                self.arm(
                    Timer::Retransmit,
                    now.saturating_add(self.retransmit_backoff),
                    out,
                );
            }
        }
    }

    /// The retransmit timer fired: re-send our newest unacknowledged message (harmless if the
    /// peer has it; reveals the hole if not) and back off.
    pub(super) fn retransmit(&mut self, now: Millis, rng: &mut impl RngCore, out: &mut Out) {
        let input = self.input_chat();
        let Some(entry) = self.outbox.resend_last(now) else {
            self.retransmit_backoff = self.config.retransmit_ms;
            return;
        };
        out.call(send_call(input, entry, rng.next_u64() as i64));
        self.counters.resent += 1;
        if self.retransmit_backoff >= self.config.max_backoff_ms {
            // The backoff reached its cap and the tail went out once more: a quiet peer never
            // acknowledges the end of a conversation, so stop here (the message is in the
            // peer's server queue; its next message acknowledges it or asks for a Resend).
            // Without this every quiet chat would re-send forever — 100,000 chats at a 3 s
            // cap are 33,000 sends a second.
            return;
        }
        self.retransmit_backoff = self
            .retransmit_backoff
            .saturating_mul(2)
            .min(self.config.max_backoff_ms);
        self.arm(
            Timer::Retransmit,
            now.saturating_add(self.retransmit_backoff),
            out,
        );
    }
}

/// The `messages.sendEncrypted*` call for a stored message.
fn send_call(peer: api::InputEncryptedChat, e: &OutboxEntry, random_id: i64) -> Call {
    match (&e.file, e.service) {
        (Some(file), _) => Call::SendEncryptedFile(calls::SendEncryptedFile {
            silent: e.silent,
            peer,
            random_id,
            data: e.wire.clone(),
            file: file.clone(),
        }),
        (None, true) => Call::SendEncryptedService(calls::SendEncryptedService {
            peer,
            random_id,
            data: e.wire.clone(),
        }),
        (None, false) => Call::SendEncrypted(calls::SendEncrypted {
            silent: e.silent,
            peer,
            random_id,
            data: e.wire.clone(),
        }),
    }
}
