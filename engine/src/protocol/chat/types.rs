//! What goes into and comes out of a [`super::ChatCore`]: events, actions, application events,
//! commands and close reasons.

use std::sync::Arc;

use secretchat_schema::api::enums as api;
use secretchat_schema::api::functions::messages as calls;
use secretchat_schema::e2e::enums;

use crate::crypto::dh::{DhError, DhParams};
use crate::protocol::dh_job::{DhJob, DhOutput};
use crate::protocol::gaps::GapError;
use crate::protocol::rekey::RekeyError;
use crate::protocol::seq_no::SeqError;
use crate::protocol::session::SessionError;

/// Milliseconds since the Unix epoch (passed in: the core never reads a clock).
pub type Millis = u64;

/// Something that happened to the chat.
#[derive(Debug)]
#[non_exhaustive]
pub enum Event {
    /// The DH config the chat asked for with [`Action::NeedDhConfig`], already validated (safe
    /// prime, generator), and the server's `random` to mix into our exponent.
    DhConfig {
        /// The parameters.
        params: Arc<DhParams>,
        /// The server's `random` (may be empty).
        random: Vec<u8>,
    },
    /// The DH config could not be had or did not validate: the handshake fails.
    DhConfigFailed(DhError),
    /// A [`DhJob`] finished.
    DhDone(Box<DhOutput>),
    /// An `updateEncryption` (or a method's `EncryptedChat` result) for this chat.
    ChatUpdate(api::EncryptedChat),
    /// An `updateNewEncryptedMessage` for this chat: the `bytes` of the `encryptedMessage*`
    /// and its `file` (if any).
    Incoming {
        /// The encrypted bytes.
        wire: Vec<u8>,
        /// The attached file (`encryptedMessage.file`).
        file: Option<api::EncryptedFile>,
        /// The server's date of the message (`encryptedMessage.date`; 0 when unknown).
        date: i32,
    },
    /// The server answered our `messages.acceptEncryption` with `ENCRYPTION_ALREADY_ACCEPTED`:
    /// a repeat (after a lost answer or a restart) of an accept that went through.
    AlreadyAccepted,
    /// The application's command.
    Command(Command),
    /// A timer armed with [`Action::ArmTimer`] fired (early or repeated firings are ignored).
    Timer(Timer),
}

/// What the application asks of a chat.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Command {
    /// Accept a requested chat.
    Accept,
    /// Decline a requested chat.
    Decline,
    /// Send a message.
    Send(Box<Outgoing>),
    /// Send a service action (TTL, read, delete, screenshot, flush, typing).
    Service(ServiceAction),
    /// Start a re-key now (normally automatic).
    Rekey,
    /// Close the chat (`messages.discardEncryption`).
    Close {
        /// Ask the server to delete the history too.
        delete_history: bool,
    },
}

/// The service actions an application sends.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ServiceAction {
    /// `decryptedMessageActionSetMessageTTL`.
    SetTtl(i32),
    /// `decryptedMessageActionReadMessages`.
    Read(Vec<i64>),
    /// `decryptedMessageActionDeleteMessages`.
    Delete(Vec<i64>),
    /// `decryptedMessageActionScreenshotMessages`.
    Screenshot(Vec<i64>),
    /// `decryptedMessageActionFlushHistory`.
    FlushHistory,
    /// `decryptedMessageActionTyping`.
    Typing(enums::SendMessageAction),
}

/// An ordinary outgoing message; fields the negotiated layer lacks are dropped.
#[derive(Debug, Clone, Default)]
pub struct Outgoing {
    /// The message's random id (also the server call's `random_id`).
    pub random_id: i64,
    /// Text (the caption for media).
    pub text: String,
    /// Formatting entities.
    pub entities: Vec<enums::MessageEntity>,
    /// Media with its file key/iv, and the uploaded file to attach.
    pub media: Option<(enums::DecryptedMessageMedia, api::InputEncryptedFile)>,
    /// Reply to this message.
    pub reply_to_random_id: Option<i64>,
    /// Self-destruct timer (seconds).
    pub ttl: i32,
    /// Send without notification (layer ≥ 73).
    pub silent: bool,
    /// Disable link previews (layer ≥ 73).
    pub no_webpage: bool,
    /// Sent via this inline bot.
    pub via_bot_name: Option<String>,
    /// Album id (layer ≥ 73).
    pub grouped_id: Option<i64>,
}

impl Outgoing {
    /// A plain text message.
    pub fn text(random_id: i64, text: impl Into<String>) -> Self {
        Self {
            random_id,
            text: text.into(),
            ..Self::default()
        }
    }
}

/// The chat's timers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Timer {
    /// Ask again for holes that stayed open.
    ResendRetry,
    /// Re-send our newest unacknowledged message (tail loss: the peer cannot see a hole).
    Retransmit,
    /// The key's one-week age limit.
    KeyAge,
}

/// When each armed [`Timer`] is due (inline: a map allocated a node per chat).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Timers([Option<Millis>; 3]);

impl Timers {
    fn slot(t: Timer) -> usize {
        match t {
            Timer::ResendRetry => 0,
            Timer::Retransmit => 1,
            Timer::KeyAge => 2,
        }
    }

    /// When `t` is due, if armed.
    pub(crate) fn get(&self, t: Timer) -> Option<Millis> {
        self.0.get(Self::slot(t)).copied().flatten()
    }

    /// Arms `t` for `at`.
    pub(crate) fn insert(&mut self, t: Timer, at: Millis) {
        if let Some(s) = self.0.get_mut(Self::slot(t)) {
            *s = Some(at);
        }
    }

    /// Disarms `t`.
    pub(crate) fn remove(&mut self, t: Timer) {
        if let Some(s) = self.0.get_mut(Self::slot(t)) {
            *s = None;
        }
    }

    /// The earliest due time.
    pub(crate) fn earliest(&self) -> Option<Millis> {
        self.0.iter().flatten().min().copied()
    }

    /// Disarms all.
    pub(crate) fn clear(&mut self) {
        *self = Self::default();
    }
}

/// A server method the chat wants called. Send calls carry the message's raw out_seq_no.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Call {
    /// `messages.requestEncryption`.
    RequestEncryption(calls::RequestEncryption),
    /// `messages.acceptEncryption`.
    AcceptEncryption(calls::AcceptEncryption),
    /// `messages.discardEncryption`.
    DiscardEncryption(calls::DiscardEncryption),
    /// `messages.sendEncrypted`.
    SendEncrypted(calls::SendEncrypted),
    /// `messages.sendEncryptedService`.
    SendEncryptedService(calls::SendEncryptedService),
    /// `messages.sendEncryptedFile`.
    SendEncryptedFile(calls::SendEncryptedFile),
}

impl Call {
    /// The encrypted bytes a send call carries.
    pub fn data(&self) -> Option<&[u8]> {
        match self {
            Call::SendEncrypted(c) => Some(&c.data),
            Call::SendEncryptedService(c) => Some(&c.data),
            Call::SendEncryptedFile(c) => Some(&c.data),
            _ => None,
        }
    }
}

/// One stored outgoing message: its exact wire bytes, kept until the peer acknowledges it.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxEntry {
    /// The message's random id.
    pub random_id: i64,
    /// The encrypted bytes (resends reuse them byte for byte).
    pub wire: Vec<u8>,
    /// The wire in_seq_no it carries.
    pub in_seq_no: i32,
    /// The wire out_seq_no it carries.
    pub out_seq_no: i32,
    /// Whether it is a service message (`sendEncryptedService`).
    pub service: bool,
    /// The file attached when it was first sent (resends use `inputEncryptedFile` by id).
    pub file: Option<api::InputEncryptedFile>,
    /// `silent` flag for `sendEncrypted*`.
    pub silent: bool,
}

/// An incoming message waiting behind a hole (already decrypted and authenticated).
#[derive(Debug, Clone, PartialEq)]
pub struct WaitingEntry {
    /// The decrypted envelope.
    pub layer: secretchat_schema::e2e::types::DecryptedMessageLayer,
    /// The file attached to it.
    pub file: Option<api::EncryptedFile>,
    /// The server's date of its envelope (0 when unknown).
    pub date: i32,
    /// A Resend in it was already acted on (on arrival); it is not interpreted again.
    pub resend_done: bool,
}

/// State changes to store, in one batch, before executing the actions after it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Persist {
    /// New or replaced outbox entries by raw out_seq_no.
    pub outbox_put: Vec<(u32, OutboxEntry)>,
    /// Raw out_seq_no of outbox entries the peer acknowledged (they can go). Listed one by
    /// one rather than as a range: a store deletes exactly these keys (a range tombstone per
    /// acknowledgement slowed every later write and read of RocksDB's memtable).
    pub outbox_done: Vec<u32>,
    /// Incoming messages that entered the waiting queue, by raw out_seq_no.
    pub waiting_put: Vec<(u32, WaitingEntry)>,
    /// Raw out_seq_no of incoming messages that left the waiting queue (processed).
    pub waiting_done: Vec<u32>,
    /// The chat was closed: drop its keys, outbox and waiting queue.
    pub closed: bool,
    /// The step destroyed a key or a DH exponent (a re-key finished, an old key went, the chat
    /// closed): earlier copies of the state record must go from disk too (pfs.md: old keys
    /// "cannot be reconstructed").
    pub secrets_dropped: bool,
}

impl Persist {
    /// Whether there is nothing to store beyond the chat's own state.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// What the chat asks its executor to do, in order.
#[derive(Debug)]
#[non_exhaustive]
pub enum Action {
    /// Store the chat's state (from the core's accessors) and these changes, durably, before
    /// executing any action that follows.
    Persist(Box<Persist>),
    /// Fetch and validate the DH config; answer with [`Event::DhConfig`].
    NeedDhConfig,
    /// Run this DH job (off the chat's thread) and answer with [`Event::DhDone`].
    Compute(Box<DhJob>),
    /// Call the server.
    Call(Box<Call>),
    /// Hand this to the application.
    Deliver(AppEvent),
    /// Fire [`Event::Timer`] at (or after) `at`.
    ArmTimer {
        /// Which timer.
        timer: Timer,
        /// When.
        at: Millis,
    },
    /// An incoming message was refused without changing the chat (forged, wrong key, garbage).
    Rejected(SessionError),
}

/// What the application sees.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum AppEvent {
    /// A user asks to open a secret chat; answer with [`Command::Accept`] or [`Command::Decline`].
    ChatRequested {
        /// The requesting user.
        admin_id: i64,
        /// When (server time, seconds).
        date: i32,
    },
    /// The key is agreed: the chat is usable.
    ChatReady {
        /// The key visualization (SHA1(initial key)[..16] ‖ SHA256(layer-46 key)[..20]).
        visualization: Vec<u8>,
    },
    /// An ordinary message from the peer.
    Message {
        /// The message as sent (the layered constructor).
        message: Box<enums::DecryptedMessage>,
        /// The encrypted file attached, if any.
        file: Option<api::EncryptedFile>,
        /// The server's date of the message's envelope (0 when unknown).
        date: i32,
    },
    /// The peer deleted these messages (`decryptedMessageActionDeleteMessages`).
    MessagesDeleted {
        /// The deleted messages' random ids.
        random_ids: Vec<i64>,
    },
    /// Another user-visible service action from the peer (TTL, read, screenshot, flush,
    /// typing).
    Service {
        /// The message's random id.
        random_id: i64,
        /// The action.
        action: enums::DecryptedMessageAction,
    },
    /// The peer's layer rose.
    PeerLayer(i32),
    /// The peer uses a layer newer than ours: the user should update.
    PeerNewerThanUs(i32),
    /// A re-key finished; the new key's fingerprint.
    Rekeyed(i64),
    /// The chat is not making progress: holes stayed open through several Resend attempts,
    /// or the peer has not acknowledged [`ChatConfig::max_unacknowledged`] of our messages
    /// (the application's new sends then wait: [`ChatCore::accepts_sends`]).
    ///
    /// [`ChatConfig::max_unacknowledged`]: super::ChatConfig::max_unacknowledged
    /// [`ChatCore::accepts_sends`]: super::ChatCore::accepts_sends
    ChatUnhealthy {
        /// The missing raw out_seq_no ranges.
        holes: Vec<(u32, u32)>,
        /// Our messages the peer has not acknowledged.
        unacknowledged: usize,
    },
    /// The chat is closed for good.
    ChatClosed(CloseReason),
}

/// Why a chat closed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CloseReason {
    /// We closed it.
    #[error("closed locally")]
    Local,
    /// We declined the request.
    #[error("request declined")]
    Declined,
    /// The server discarded it (the peer closed it, or another device accepted it).
    #[error("discarded by the server or the peer")]
    Discarded,
    /// The handshake's key fingerprint did not match.
    #[error("key fingerprint mismatch")]
    FingerprintMismatch,
    /// A DH value or the DH config failed the checks.
    #[error("DH check failed: {0}")]
    Dh(#[from] DhError),
    /// A sequence-number rule was broken.
    #[error("sequence violation: {0}")]
    Seq(#[from] SeqError),
    /// A peer's Resend asked for messages we no longer hold.
    #[error("cannot satisfy resend of raw {lo}..={hi}")]
    ResendUnsatisfiable {
        /// First raw out_seq_no asked for.
        lo: u32,
        /// Last raw out_seq_no asked for.
        hi: u32,
    },
    /// Too many messages wait behind holes.
    #[error(transparent)]
    Gap(#[from] GapError),
    /// A re-key message broke the rules badly enough to distrust the peer.
    #[error("re-key failed: {0}")]
    Rekey(#[from] RekeyError),
    /// An authenticated message could not be understood or broke the protocol.
    #[error("protocol violation: {0}")]
    Protocol(&'static str),
}

impl CloseReason {
    /// A stable snake_case name.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Local => "local",
            Self::Declined => "declined",
            Self::Discarded => "discarded",
            Self::FingerprintMismatch => "fingerprint_mismatch",
            Self::Dh(_) => "dh",
            Self::Seq(_) => "seq",
            Self::ResendUnsatisfiable { .. } => "resend_unsatisfiable",
            Self::Gap(_) => "gap",
            Self::Rekey(_) => "rekey",
            Self::Protocol(_) => "protocol",
        }
    }
}
