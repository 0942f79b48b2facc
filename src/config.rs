//! [`EngineConfig`] and its builder.

use std::time::Duration;

use secretchat_engine::protocol::chat::ChatConfig;
use secretchat_engine::runtime::EngineConfig as Inner;
use secretchat_engine::store::Durability;

/// How an [`Engine`](crate::Engine) runs: durability, at-rest sealing, threads, timers,
/// memory bounds. Made with [`EngineConfig::builder`]; [`EngineConfig::default`] suits a
/// real network on one machine.
#[derive(Debug, Clone, Default)]
pub struct EngineConfig(pub(crate) Inner);

impl EngineConfig {
    /// A builder starting from the defaults.
    pub fn builder() -> EngineConfigBuilder {
        EngineConfigBuilder(Inner::default())
    }

    /// The durability mode.
    pub fn durability(&self) -> Durability {
        self.0.store.durability
    }

    /// Whether records are sealed at rest.
    pub fn is_sealed(&self) -> bool {
        self.0.store.at_rest_key.is_some()
    }

    /// The pace of the account's server calls: `(ack_interval, difference_interval,
    /// idle_difference_interval)` (see the builder's methods of those names).
    pub fn intervals(&self) -> (Duration, Duration, Duration) {
        (
            self.0.ack_interval,
            self.0.difference_interval,
            self.0.idle_difference_interval,
        )
    }
}

/// Builds an [`EngineConfig`]; every setting has a default.
#[derive(Debug, Clone)]
#[must_use]
pub struct EngineConfigBuilder(Inner);

impl EngineConfigBuilder {
    /// When a stored step counts as durable (default [`Durability::Sync`]: fsync before
    /// anything that depends on it is sent or acknowledged).
    pub fn durability(mut self, d: Durability) -> Self {
        self.0.store.durability = d;
        self
    }

    /// Seal every record at rest with this application key (XChaCha20-Poly1305). A
    /// database sealed with a key opens only with it. See `docs/reliability.md`.
    pub fn at_rest_key(mut self, key: [u8; 32]) -> Self {
        self.0.store.at_rest_key = Some(key);
        self
    }

    /// A destroyed key (after a re-key, a closed chat) is gone from every file of the
    /// database within this time (default 60 s).
    pub fn erase_keys_within(mut self, d: Duration) -> Self {
        self.0.store.erase_keys_within = d;
        self
    }

    /// The protocol's timers and limits (resend, retransmit, backpressure, our layer).
    pub fn chat(mut self, chat: ChatConfig) -> Self {
        self.0.chat = chat;
        self
    }

    /// Threads running chats (default: the machine's cores).
    pub fn chat_threads(mut self, n: usize) -> Self {
        self.0.chat_threads = n.max(1);
        self
    }

    /// Threads for DH exponentiations (default: the machine's cores).
    pub fn dh_threads(mut self, n: usize) -> Self {
        self.0.dh_threads = n.max(1);
        self
    }

    /// Threads for file encryption (default: up to 4).
    pub fn file_threads(mut self, n: usize) -> Self {
        self.0.file_threads = n.max(1);
        self
    }

    /// How often stored messages are acknowledged to the server with
    /// `messages.receivedQueue` (default 200 ms).
    pub fn ack_interval(mut self, d: Duration) -> Self {
        self.0.ack_interval = d;
        self
    }

    /// How often a gap in the secret-chat queue is checked for; one that outlived an interval
    /// is fetched with `updates.getDifference` (default 5 s).
    pub fn difference_interval(mut self, d: Duration) -> Self {
        self.0.difference_interval = d;
        self
    }

    /// With no gap seen, how often `updates.getDifference` polls anyway, for a lost push that
    /// left no gap behind it (the last message of a conversation). Default 5 s, the
    /// simulator's pace; on Telegram a minute or more (docs/grammers.md, "Rates"). Checked
    /// at each `difference_interval` tick.
    pub fn idle_difference_interval(mut self, d: Duration) -> Self {
        self.0.idle_difference_interval = d;
        self
    }

    /// Chats not addressed for this long leave memory (default 60 s; their records stay).
    pub fn idle_after(mut self, d: Duration) -> Self {
        self.0.idle_after = d;
        self
    }

    /// Chats kept in memory at most, over all accounts (a soft limit; default 50,000).
    pub fn max_loaded_chats(mut self, n: usize) -> Self {
        self.0.max_loaded_chats = n.max(1);
        self
    }

    /// Inputs an account holds at most while the database reads the chats they are for
    /// (default 4096). Past it, updates are left for `updates.getDifference` (their qts is
    /// not acknowledged) and commands fail with [`Error::Busy`](crate::Error::Busy); it
    /// bounds memory during a database outage.
    pub fn max_waiting_for_reads(mut self, n: usize) -> Self {
        self.0.max_waiting_for_reads = n.max(1);
        self
    }

    /// Events queued for the application at most (default 1024): beyond them stored
    /// events wait in the store, the others are dropped and counted
    /// ([`EventStream::dropped`](crate::EventStream::dropped)).
    pub fn event_capacity(mut self, n: usize) -> Self {
        self.0.event_capacity = n.max(1);
        self
    }

    /// The configuration.
    pub fn build(self) -> EngineConfig {
        EngineConfig(self.0)
    }
}
