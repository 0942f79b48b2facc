//! The chat as an application sees it: [`SecretChat`], in the spirit of TDLib's `secretChat`
//! object — readable at any time (`Engine::chat`) and announced whenever it changes
//! ([`super::EventKind::ChatUpdated`]).

use crate::crypto::Side;
use crate::protocol::chat::{ChatStatus, ChatSummary, CloseReason};

/// An account of the engine: the application's own number for one Telegram login.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AccountId(pub u64);

/// A secret chat of one account: the engine's handle, stable for the chat's life and across
/// restarts (the server's chat id is [`SecretChat::server_chat_id`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChatId(pub u64);

impl std::fmt::Display for AccountId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl std::fmt::Display for ChatId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl From<u64> for AccountId {
    fn from(v: u64) -> Self {
        AccountId(v)
    }
}

impl From<u64> for ChatId {
    fn from(v: u64) -> Self {
        ChatId(v)
    }
}

/// Where a chat's life stands (TDLib: `secretChatStatePending` / `Ready` / `Closed`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ChatState {
    /// The key is not agreed yet: requested by us and waiting for the peer, requested by
    /// the peer and waiting for the application, or being computed.
    Pending,
    /// The key is agreed: messages can be sent and received.
    Ready,
    /// Closed for good, and why.
    Closed(CloseReason),
}

impl ChatState {
    /// `"pending"`, `"ready"` or `"closed"`.
    pub fn name(&self) -> &'static str {
        match self {
            ChatState::Pending => "pending",
            ChatState::Ready => "ready",
            ChatState::Closed(_) => "closed",
        }
    }
}

/// One secret chat as the application shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SecretChat {
    /// The engine's id of the chat.
    pub id: ChatId,
    /// The server's id of the chat (0 until the server assigned one).
    pub server_chat_id: i32,
    /// The other user's id (0 until known: a request to `inputUserSelf` learns it from the
    /// server's answer).
    pub user_id: i64,
    /// Pending, ready or closed.
    pub state: ChatState,
    /// Whether we requested the chat.
    pub is_outbound: bool,
    /// The end-to-end layer both sides use now.
    pub layer: i32,
    /// The self-destruct timer either side set last (seconds; 0: off).
    pub ttl: i32,
    /// The key visualization: 36 bytes once the key is agreed, empty before. The users
    /// compare it with the peer's screen ([`crate::crypto::visualize`] draws it as the
    /// official apps do). It names the chat's first key and stays the same across re-keys.
    pub key_hash: Vec<u8>,
}

impl SecretChat {
    /// The chat as its status reports it.
    pub fn from_status(id: ChatId, s: &ChatStatus) -> Self {
        let state = match (&s.closed, s.phase) {
            (Some(r), _) => ChatState::Closed(r.clone()),
            (None, "ready") => ChatState::Ready,
            _ => ChatState::Pending,
        };
        SecretChat {
            id,
            server_chat_id: s.chat_id,
            user_id: s.peer_user_id,
            state,
            is_outbound: s.side == Side::Originator,
            layer: s.negotiated_layer,
            ttl: s.ttl,
            key_hash: s.visualization.clone(),
        }
    }
}

/// Whether two summaries differ in what [`SecretChat`] shows (a re-key changes the key but
/// not the chat's key visualization: not announced).
pub(crate) fn shown_changed(a: &ChatSummary, b: &ChatSummary) -> bool {
    let class = |p: &str| match p {
        "ready" => 1,
        "closed" => 2,
        _ => 0,
    };
    class(a.phase) != class(b.phase)
        || a.chat_id != b.chat_id
        || a.peer_user_id != b.peer_user_id
        || a.layer != b.layer
        || a.ttl != b.ttl
}
