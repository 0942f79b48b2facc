//! What the engine tells the application: [`Event`]s from an [`EventStream`].

use secretchat_engine::protocol::chat::{AppEvent, CloseReason};
use secretchat_engine::runtime::{EngineEvent, EventKind, Events};
use secretchat_engine::transport::RpcError;
use secretchat_schema::e2e::enums as e2e;

use crate::message::Message;
use crate::{AccountId, ChatId, SecretChat};

/// One thing that happened in a chat.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Event {
    /// Acknowledge the event with `Engine::ack(seq)` once it is handled: until then it is
    /// delivered again after a restart (so handle messages idempotently, by
    /// [`Message::random_id`]). `None`: the event was not stored and needs no
    /// acknowledgement.
    pub seq: Option<u64>,
    /// The account.
    pub account: AccountId,
    /// The chat.
    pub chat: ChatId,
    /// What happened.
    pub update: Update,
}

/// What happened. Stored updates (acknowledge them) and informational ones (`seq` is
/// `None`) are marked in each variant's documentation.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Update {
    /// A user asks to open a secret chat: answer with `Engine::accept_chat` or
    /// `Engine::decline_chat`. Stored.
    ChatRequested {
        /// The user asking.
        user_id: i64,
        /// When (server time, seconds).
        date: i32,
    },
    /// The chat changed: state, server id, the other user, layer or self-destruct timer
    /// (TDLib's `updateSecretChat`). Not stored: after a restart read the chat with
    /// `Engine::chat`.
    ChatUpdated(Box<SecretChat>),
    /// The key is agreed; compare `key_hash` (36 bytes) with the peer's screen. Stored.
    ChatReady {
        /// The key visualization.
        key_hash: Vec<u8>,
    },
    /// A message from the peer. Stored.
    NewMessage(Box<Message>),
    /// The peer deleted these messages. Stored.
    MessagesDeleted {
        /// Their ids.
        random_ids: Vec<i64>,
    },
    /// The peer's service action (timer, read, screenshot, history cleared, typing).
    /// Stored.
    PeerAction {
        /// The service message's id.
        random_id: i64,
        /// What the peer did.
        action: PeerAction,
    },
    /// The peer read our messages sent up to `max_date` (`updateEncryptedMessagesRead`).
    /// Not stored.
    MessagesRead {
        /// Messages sent at or before this server time (seconds) are read.
        max_date: i32,
        /// When.
        date: i32,
    },
    /// The peer is typing (`updateEncryptedChatTyping`). Not stored.
    Typing,
    /// The server accepted our message, with its date. A message sent again (for the
    /// peer's Resend, or after a restart) may be confirmed again. Not stored.
    MessageSent {
        /// The message.
        random_id: i64,
        /// The server's date.
        date: i32,
    },
    /// A server call failed for a reason the engine cannot fix. A message stays stored and
    /// the protocol's timers send it again. Not stored.
    CallFailed {
        /// The method.
        method: &'static str,
        /// The message the call carried, if any.
        random_id: Option<i64>,
        /// The server's error (code and message).
        error: RpcError,
    },
    /// The peer's layer rose to this. Stored.
    PeerLayer(i32),
    /// The peer speaks a layer newer than ours: the user should update. Stored.
    PeerNewerThanUs(i32),
    /// A re-key finished (every 100 messages or a week, pfs.md): the new key's
    /// fingerprint. Nothing changes for the users. Stored.
    Rekeyed {
        /// The new key's fingerprint.
        key_fingerprint: i64,
    },
    /// The chat is not making progress: messages from the peer stay missing, or the peer
    /// acknowledges none of ours (new sends then wait). Stored.
    ChatUnhealthy {
        /// Missing ranges of the peer's messages (raw positions).
        holes: Vec<(u32, u32)>,
        /// Our messages the peer has not acknowledged.
        unacknowledged: usize,
    },
    /// The chat is closed for good. Stored.
    ChatClosed(CloseReason),
    /// A file transfer advanced. Not stored.
    FileProgress {
        /// The server's file id.
        file_id: i64,
        /// Encrypted bytes done.
        done: u64,
        /// Encrypted bytes in all.
        total: u64,
        /// An upload (else a download).
        upload: bool,
    },
    /// A write to the store failed: the chat stopped and restarts from its last stored
    /// state when next addressed. Not stored.
    StoreFailed(String),
    /// On a shared database, the engine stopped this account by itself: another node took
    /// it over, or its lease ran out while the database was unreachable. Calls for it fail
    /// with [`Error::NoSuchAccount`](crate::Error::NoSuchAccount) until it is added again
    /// ([`Engine::take_over`](crate::Engine::take_over) waits for the other node's lease).
    /// Not stored; the event's chat is 0.
    AccountLost,
}

/// A service action of the peer.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum PeerAction {
    /// Set the chat's self-destruct timer (seconds; 0: off).
    SetTtl(i32),
    /// Read these messages (with a self-destruct timer: it starts now).
    Read(Vec<i64>),
    /// Took a screenshot of these messages.
    Screenshot(Vec<i64>),
    /// Cleared the chat's history.
    FlushHistory,
    /// Typing (the layer-17 service form).
    Typing(e2e::SendMessageAction),
    /// Another action, as decrypted.
    Other(Box<e2e::DecryptedMessageAction>),
}

impl From<e2e::DecryptedMessageAction> for PeerAction {
    fn from(a: e2e::DecryptedMessageAction) -> Self {
        use e2e::DecryptedMessageAction as A;
        match a {
            A::SetMessageTTL(t) => PeerAction::SetTtl(t.ttl_seconds),
            A::ReadMessages(r) => PeerAction::Read(r.random_ids),
            A::ScreenshotMessages(s) => PeerAction::Screenshot(s.random_ids),
            A::FlushHistory(_) => PeerAction::FlushHistory,
            A::Typing(t) => PeerAction::Typing(t.action),
            other => PeerAction::Other(Box::new(other)),
        }
    }
}

impl Event {
    /// The typed form of an engine event (`None` for kinds this version does not show; the
    /// engine has none today).
    pub(crate) fn from_engine(e: EngineEvent) -> Option<Self> {
        let update = match e.kind {
            EventKind::App(app) => match app {
                AppEvent::ChatRequested { admin_id, date } => Update::ChatRequested {
                    user_id: admin_id,
                    date,
                },
                AppEvent::ChatReady { visualization } => Update::ChatReady {
                    key_hash: visualization,
                },
                AppEvent::Message {
                    message,
                    file,
                    date,
                } => Update::NewMessage(Box::new(Message::from_raw(*message, file.as_ref(), date))),
                AppEvent::MessagesDeleted { random_ids } => Update::MessagesDeleted { random_ids },
                AppEvent::Service { random_id, action } => Update::PeerAction {
                    random_id,
                    action: action.into(),
                },
                AppEvent::PeerLayer(l) => Update::PeerLayer(l),
                AppEvent::PeerNewerThanUs(l) => Update::PeerNewerThanUs(l),
                AppEvent::Rekeyed(fp) => Update::Rekeyed {
                    key_fingerprint: fp,
                },
                AppEvent::ChatUnhealthy {
                    holes,
                    unacknowledged,
                } => Update::ChatUnhealthy {
                    holes,
                    unacknowledged,
                },
                AppEvent::ChatClosed(r) => Update::ChatClosed(r),
                _ => return None,
            },
            EventKind::ChatUpdated(c) => Update::ChatUpdated(c),
            EventKind::MessagesRead { max_date, date } => Update::MessagesRead { max_date, date },
            EventKind::Typing => Update::Typing,
            EventKind::MessageSent { random_id, date } => Update::MessageSent { random_id, date },
            EventKind::CallFailed {
                method,
                random_id,
                error,
            } => Update::CallFailed {
                method,
                random_id,
                error,
            },
            EventKind::FileProgress {
                file_id,
                done,
                total,
                upload,
            } => Update::FileProgress {
                file_id,
                done,
                total,
                upload,
            },
            EventKind::StoreFailed(s) => Update::StoreFailed(s),
            EventKind::AccountLost => Update::AccountLost,
            _ => return None,
        };
        Some(Event {
            seq: e.seq,
            account: AccountId(e.account),
            chat: ChatId(e.chat),
            update,
        })
    }
}

/// The engine's events, in order per chat: the unacknowledged ones from before a restart
/// first (read from the store page by page), then new ones.
///
/// Bounded: at most the configured capacity (`EngineConfigBuilder::event_capacity`) waits
/// in memory. While the application is behind, stored events stay in the store and are read
/// from there when it catches up — nothing is lost, and the engine does not slow down;
/// informational events (`seq == None`) arriving meanwhile are dropped and counted
/// ([`EventStream::dropped`]).
#[derive(Debug)]
pub struct EventStream {
    pub(crate) inner: Events,
}

impl EventStream {
    /// The next event; `None` once the engine has stopped and every queued event was read.
    pub async fn next(&mut self) -> Option<Event> {
        loop {
            if let Some(ev) = Event::from_engine(self.inner.recv().await?) {
                return Some(ev);
            }
        }
    }

    /// The next event if one is ready now.
    pub fn try_next(&mut self) -> Option<Event> {
        loop {
            if let Some(ev) = Event::from_engine(self.inner.try_recv().ok()?) {
                return Some(ev);
            }
        }
    }

    /// Informational events dropped because the application was behind.
    pub fn dropped(&self) -> u64 {
        self.inner.dropped()
    }
}

/// The same events as [`EventStream::next`], for stream combinators
/// (`futures::StreamExt`, `tokio_stream`).
impl futures_core::Stream for EventStream {
    type Item = Event;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Event>> {
        loop {
            match self.inner.poll_recv(cx) {
                std::task::Poll::Ready(Some(e)) => {
                    if let Some(ev) = Event::from_engine(e) {
                        return std::task::Poll::Ready(Some(ev));
                    }
                }
                std::task::Poll::Ready(None) => return std::task::Poll::Ready(None),
                std::task::Poll::Pending => return std::task::Poll::Pending,
            }
        }
    }
}
