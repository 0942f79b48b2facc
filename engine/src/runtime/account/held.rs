//! What waits for a read of the database is bounded.
//!
//! While a chat's records or a chat id's index entry are read, what arrives for that chat waits
//! in the account (`load.rs`, `lookup.rs`); a read the database failed is tried again until it
//! answers. During an outage that lasts — or against a server that pushes updates for many
//! unknown chat ids while reads are slow — those queues would grow without end. At most
//! `EngineConfig::max_waiting_for_reads` inputs wait across the account; past that, what
//! arrives is given up:
//!
//! - a live update's qts is **not** acknowledged: the queue forgets it was routed, the
//!   watermark stops before it, and the difference is fetched at each check until a batch
//!   brings it again;
//! - a command answers [`EngineError::Busy`] (nothing of it was stored);
//! - a notice that needs no step (typing, read receipts) is dropped, and so is a chat request
//!   that came while the bound was reached: that chat is not started, and the peer's request
//!   stays unanswered (a load shed only while the bound holds).
//!
//! The messages of a difference batch always wait (and count): a batch is already in memory,
//! one at a time, as the server's answer, and giving part of it up would fetch it again
//! behind the same wait — a batch larger than the bound for a chat asleep each time it came
//! would never be stored.

use super::AccountActor;
use super::lookup::Waiting;
use crate::runtime::chat::ChatInput;
use crate::runtime::{AckToken, EngineError};

impl AccountActor {
    /// Whether another input (acknowledging `ack`) may wait for a read; counted when it may.
    pub(super) fn may_hold(&mut self, ack: Option<AckToken>) -> bool {
        if self.full_of_waiting() && !matches!(ack, Some(AckToken::Difference)) {
            return false;
        }
        self.held += 1;
        true
    }

    /// Whether as many inputs wait for reads as allowed.
    pub(super) fn full_of_waiting(&self) -> bool {
        self.held >= self.shared.config.max_waiting_for_reads
    }

    /// `n` inputs stopped waiting (their read answered).
    pub(super) fn released(&mut self, n: usize) {
        self.held = self.held.saturating_sub(n);
    }

    /// Gives up an input that found no room: see the module docs.
    pub(super) fn give_up(&mut self, input: ChatInput) {
        if let Some(a) = input.ack {
            self.give_up_ack(a);
        }
        if let Some(d) = input.done {
            let _ = d.send(Err(EngineError::Busy));
        }
        self.warn_given_up();
    }

    /// Gives up something that waited for a chat id's index entry: see the module docs.
    pub(super) fn give_up_waiting(&mut self, w: Waiting) {
        if let Waiting::Input(_, Some(a), _) = w {
            self.give_up_ack(a);
        }
        self.warn_given_up();
    }

    fn give_up_ack(&mut self, a: AckToken) {
        if let AckToken::Qts(q) = a {
            self.queue.give_up(q);
        }
    }

    fn warn_given_up(&mut self) {
        self.given_up += 1;
        if self.given_up.is_power_of_two() {
            tracing::warn!(
                account = self.account,
                given_up = self.given_up,
                "too much waits for the database; updates are left for the difference"
            );
        }
    }
}
