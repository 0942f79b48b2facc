//! Driving the PFS exchange ([`crate::protocol::rekey::Rekey`]) from the chat: when to start,
//! feeding it the peer's messages and the DH results, and applying its steps (send, install,
//! discard, Noop).

use rand_core::RngCore;
use secretchat_schema::e2e::{enums, types};
use zeroize::Zeroizing;

use super::{Action, AppEvent, ChatCore, CloseReason, Millis, Out, Timer};
use crate::protocol::dh_job::DhOutput;
use crate::protocol::rekey::{REKEY_AFTER_MS, RekeyError, Step};

impl ChatCore {
    /// Starts a re-key if one is due.
    pub(super) fn maybe_rekey(&mut self, now: Millis, rng: &mut impl RngCore, out: &mut Out) {
        if self.is_ready()
            && self.rekey.due(
                self.side,
                self.key_uses,
                now.saturating_sub(self.key_since),
                self.key_sent,
            )
        {
            self.start_rekey(rng, out);
        }
    }

    pub(super) fn start_rekey(&mut self, rng: &mut impl RngCore, out: &mut Out) {
        if !self.is_ready() || self.rekey.in_progress() {
            return;
        }
        let Some(dh) = self.dh.clone() else {
            return;
        };
        let mut random = Zeroizing::new([0u8; 256]);
        rng.fill_bytes(&mut *random);
        let id = self.job_id();
        let exchange_id = rng.next_u64() as i64;
        if let Ok(step) = self.rekey.start(&dh, id, exchange_id, &random) {
            self.rekey_job = Some(id);
            out.dirty = true;
            self.push_step(step, out);
        }
    }

    pub(super) fn on_rekey_dh_done(
        &mut self,
        o: DhOutput,
        now: Millis,
        rng: &mut impl RngCore,
        out: &mut Out,
    ) {
        if self.rekey_job != Some(o.id) {
            return; // stale: the exchange moved on
        }
        self.rekey_job = None;
        out.dirty = true;
        match self.rekey.on_dh_done(o) {
            Ok(step) => self.apply_rekey_step(step, now, rng, out),
            Err(RekeyError::Unexpected { .. }) => {}
            Err(e) => self.abort(CloseReason::Rekey(e), out),
        }
    }

    pub(super) fn on_request_key(
        &mut self,
        r: types::DecryptedMessageActionRequestKey,
        now: Millis,
        rng: &mut impl RngCore,
        out: &mut Out,
    ) {
        let Some(dh) = self.dh.clone() else {
            return self.abort(CloseReason::Protocol("no DH config for re-key"), out);
        };
        let mut random = Zeroizing::new([0u8; 256]);
        rng.fill_bytes(&mut *random);
        let id = self.job_id();
        match self
            .rekey
            .on_request(&dh, id, r.exchange_id, &r.g_a, &random)
        {
            Ok(step) => {
                if step.compute.is_some() {
                    self.rekey_job = Some(id);
                } else if !self.rekey.in_progress() {
                    self.rekey_job = None;
                }
                self.apply_rekey_step(step, now, rng, out);
            }
            Err(e) => self.abort(CloseReason::Rekey(e), out),
        }
    }

    pub(super) fn on_accept_key(
        &mut self,
        a: types::DecryptedMessageActionAcceptKey,
        now: Millis,
        rng: &mut impl RngCore,
        out: &mut Out,
    ) {
        let Some(dh) = self.dh.clone() else {
            return;
        };
        let id = self.job_id();
        match self
            .rekey
            .on_accept(&dh, id, a.exchange_id, &a.g_b, a.key_fingerprint)
        {
            Ok(step) => {
                self.rekey_job = Some(id);
                self.apply_rekey_step(step, now, rng, out);
            }
            Err(RekeyError::Unexpected { .. }) => {}
            Err(e) => self.abort(CloseReason::Rekey(e), out),
        }
    }

    pub(super) fn on_commit_key(
        &mut self,
        c: types::DecryptedMessageActionCommitKey,
        now: Millis,
        rng: &mut impl RngCore,
        out: &mut Out,
    ) {
        match self.rekey.on_commit(c.exchange_id, c.key_fingerprint) {
            Ok(step) => {
                self.apply_rekey_step(step, now, rng, out);
                // The CommitKey is processed in order, so every message the initiator sent
                // before it (under the old key) is in: its switch is the next position, and
                // the old key can go at the end of this step (pfs.md: "no gaps in received
                // messages up to the switch").
                self.switch_seen = self.received();
            }
            Err(RekeyError::Unexpected { .. })
                if self.switched_early.is_some_and(|(x, fp)| {
                    x == c.exchange_id
                        && crate::crypto::keys::fingerprints_equal(fp, c.key_fingerprint)
                }) =>
            {
                // We switched on an early message under the new key; answer the CommitKey as if
                // it had come first, so the initiator (waiting for a message under the new key)
                // finishes even if we have nothing else to say (pfs.md "Discarding").
                self.switched_early = None;
                let noop =
                    enums::DecryptedMessageAction::Noop(types::DecryptedMessageActionNoop {});
                self.send_action(noop, now, rng, out);
            }
            Err(RekeyError::Unexpected { .. }) => {}
            // We sent AcceptKey and can no longer abort: the chat cannot continue.
            Err(e) => self.abort(CloseReason::Rekey(e), out),
        }
    }

    fn push_step(&mut self, step: Step, out: &mut Out) {
        if let Some(job) = step.compute {
            out.push(Action::Compute(Box::new(job)));
        }
    }

    /// Applies a step: compute, send (under the current key), install, discard, Noop (under the
    /// new key).
    pub(super) fn apply_rekey_step(
        &mut self,
        mut step: Step,
        now: Millis,
        rng: &mut impl RngCore,
        out: &mut Out,
    ) {
        out.dirty = true;
        if let Some(job) = step.compute.take() {
            out.push(Action::Compute(Box::new(job)));
        }
        if let Some(action) = step.send.take() {
            self.send_action(action, now, rng, out);
        }
        if let Some(key) = step.install.take() {
            let fp = key.fingerprint();
            if let Some(s) = self.session.as_mut() {
                let _ = s.install(key);
            }
            // Not seen from the peer under the new key yet.
            self.switch_seen = None;
            self.key_uses = 0;
            self.key_sent = 0;
            self.key_since = now;
            self.rekeys += 1;
            out.deliver(AppEvent::Rekeyed(fp));
            self.timers.remove(Timer::KeyAge);
            self.arm(Timer::KeyAge, now.saturating_add(REKEY_AFTER_MS + 1), out);
        }
        // `step.discard_old` is not needed: superseded keys go when the peer's messages before
        // its switch are all in (see `discard_previous_if_wanted`, run at the end of each step).
        if step.noop_if_idle {
            let noop = enums::DecryptedMessageAction::Noop(types::DecryptedMessageActionNoop {});
            self.send_action(noop, now, rng, out);
        }
    }
}
