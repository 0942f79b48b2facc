//! Which chat a server chat id belongs to: a chat in memory, the store's index, or a chat
//! started in this run whose first record is not written yet.
//!
//! A requested chat's first write holds its state record, its index entry and the
//! `ChatRequested` event in one batch, so a crash leaves either all of them or none (and the
//! server's repeated `encryptedChatRequested` then starts it again). Until that write lands the
//! id is known here, in memory, so a repeated request does not start it twice. An index entry
//! whose record is missing (left by an earlier build that wrote the index first) counts as
//! unknown: the chat never existed.
//!
//! On an embedded database the index is read in place (microseconds). On a shared one the read
//! is a round trip: it runs on the loader's threads while what arrives for that chat id waits
//! here, in order, and is routed once the answer is in.

use actix::prelude::*;
use secretchat_schema::api::enums as api;

use super::AccountActor;
use crate::protocol::chat::Event;
use crate::runtime::AckToken;
use crate::runtime::EventKind;
use crate::runtime::workers::{ChatLoader, FindChat};
use crate::store::StoreError;

use super::load::READ_RETRY;

/// What is known of a server chat id.
pub(super) enum Lookup {
    /// The chat's handle.
    Known(u64),
    /// Not a chat of this account (as far as the store knows now).
    Unknown,
    /// Its index entry is being read: what arrives for it waits in `resolving`.
    Pending,
}

/// Something that arrived for a chat id whose index entry is being read.
pub(super) enum Waiting {
    /// An update for the chat (with when it first arrived for an unknown chat, if it did).
    Input(Event, Option<AckToken>, Option<std::time::Instant>),
    /// An event for the application that needs no chat step.
    Notify(EventKind),
    /// A chat request: started if the id is not a chat yet.
    Requested(api::EncryptedChat),
}

impl AccountActor {
    /// Whether `handle` is in memory, being read, or waiting for room: while it is, its cached
    /// index entry stands (a chat whose first write failed has stopped and is none of these).
    fn resident(&self, handle: u64) -> bool {
        self.chats.get(&handle).is_some_and(|a| a.connected())
            || self.loading.contains_key(&handle)
            || self.admission.holds(handle)
    }

    /// The handle of server chat `chat_id`, if the chat exists; on a shared database an id not
    /// cached starts a read of the index and answers [`Lookup::Pending`] (what asks for it
    /// acknowledging `ack`: no read starts for a live update while too much waits already).
    pub(super) fn known_chat(
        &mut self,
        chat_id: i32,
        ack: Option<AckToken>,
        ctx: &mut Context<Self>,
    ) -> Lookup {
        if let Some(&h) = self.indexed.get(&chat_id) {
            if self.resident(h) {
                return Lookup::Known(h);
            }
        }
        if self.resolving.contains_key(&chat_id) {
            return Lookup::Pending;
        }
        let Some(loader) = self.shared.loader.clone() else {
            let found = self.shared.store.find_chat(self.account, chat_id);
            return self.learn(chat_id, found.ok().flatten());
        };
        if self.full_of_waiting() && !matches!(ack, Some(AckToken::Difference)) {
            // No read started: what came for it is given up (`wait_for_lookup`).
            return Lookup::Pending;
        }
        self.resolving.insert(chat_id, Vec::new());
        self.read_index(loader, chat_id, ctx);
        Lookup::Pending
    }

    /// Reads `chat_id`'s index entry on the loader's threads. A read the database failed is
    /// tried again after [`READ_RETRY`], with what waits for it kept in order (none of it
    /// is acknowledged before it is stored).
    fn read_index(&mut self, loader: Addr<ChatLoader>, chat_id: i32, ctx: &mut Context<Self>) {
        let account = self.account;
        let retry = loader.clone();
        let read = async move { loader.send(FindChat { account, chat_id }).await };
        ctx.spawn(read.into_actor(self).map(move |found, act, ctx| match found {
            Ok(Ok(found)) => act.resolved(chat_id, found, ctx),
            Ok(Err(e @ StoreError::Remote(_))) => {
                tracing::warn!(account = act.account, chat_id, error = %e, "chat index read failed; trying again");
                ctx.run_later(READ_RETRY, move |act, ctx| act.read_index(retry, chat_id, ctx));
            }
            // A corrupt entry names no chat; the loader stopped: the engine is shutting down.
            Ok(Err(_)) | Err(_) => act.resolved(chat_id, None, ctx),
        }));
    }

    /// Caches what the index answered for `chat_id`.
    fn learn(&mut self, chat_id: i32, found: Option<u64>) -> Lookup {
        match found {
            Some(h) => {
                self.indexed.insert(chat_id, h);
                Lookup::Known(h)
            }
            None => Lookup::Unknown,
        }
    }

    /// The index answered for `chat_id`: what waited for it goes on, in order (a request it
    /// answered unknown starts the chat, and what follows goes to that chat).
    fn resolved(&mut self, chat_id: i32, found: Option<u64>, ctx: &mut Context<Self>) {
        let waiting = self.resolving.remove(&chat_id).unwrap_or_default();
        self.released(waiting.len());
        self.learn(chat_id, found);
        for w in waiting {
            let known = self
                .indexed
                .get(&chat_id)
                .copied()
                .filter(|h| found == Some(*h) || self.resident(*h));
            match (known, w) {
                (Some(h), Waiting::Input(event, ack, _)) => self.route_to(h, event, ack, ctx),
                (None, Waiting::Input(event, ack, since)) => {
                    self.orphan(chat_id, event, ack, since)
                }
                (Some(h), Waiting::Notify(kind)) => self.notify_chat(h, kind),
                (None, Waiting::Notify(_)) | (Some(_), Waiting::Requested(_)) => {}
                (None, Waiting::Requested(chat)) => {
                    if let api::EncryptedChat::Requested(req) = &chat {
                        self.start_requested(req, ctx);
                    }
                }
            }
        }
    }

    /// Queues `w` behind the read of `chat_id`'s index entry (or gives it up when too much
    /// waits already: see `held.rs`).
    pub(super) fn wait_for_lookup(&mut self, chat_id: i32, w: Waiting) {
        let ack = match &w {
            Waiting::Input(_, ack, _) => *ack,
            _ => None,
        };
        if !self.resolving.contains_key(&chat_id) || !self.may_hold(ack) {
            self.give_up_waiting(w);
        } else if let Some(q) = self.resolving.get_mut(&chat_id) {
            q.push(w);
        }
    }

    /// Remembers a new chat's id while its first write may not have landed.
    pub(super) fn remember_new_chat(&mut self, chat_id: i32, handle: u64) {
        self.indexed.insert(chat_id, handle);
    }

    /// Forgets the cached index entries of chats no longer in memory (run with the idle
    /// sweep): what is cached stays bounded by the chats in memory.
    pub(super) fn forget_indexed(&mut self) {
        let indexed = std::mem::take(&mut self.indexed);
        self.indexed = indexed
            .into_iter()
            .filter(|(_, h)| self.resident(*h))
            .collect();
    }
}
