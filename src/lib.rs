//! secretchat: Telegram Secret Chats — end-to-end encryption per MTProto 2.0 — for Rust
//! applications, bots and bridges.
//!
//! The application gives the engine a way to call the Telegram API ([`ServerApi`]: raw TL
//! in, raw TL out, over whatever MTProto client it already has) and feeds it the account's
//! secret-chat updates ([`UpdateFeed`]). The engine does the rest: key exchange, encryption,
//! ordering and gap recovery, re-keying, files — and it stores every step before it acts on
//! it, so nothing is lost or delivered twice across crashes.
//!
//! ```no_run
//! use std::sync::Arc;
//! use secretchat::{AccountId, Engine, EngineConfig, InputMessage, ServerApi, Update};
//!
//! # async fn run(api: Arc<dyn ServerApi>) -> Result<(), secretchat::Error> {
//! let (engine, mut events) = Engine::open("chats.db", EngineConfig::default())?;
//! let me = AccountId(1);
//! let feed = engine.add_account(me, api).await?; // give `feed` the account's updates
//! while let Some(event) = events.next().await {
//!     match &event.update {
//!         Update::ChatRequested { .. } => engine.accept_chat(event.account, event.chat).await?,
//!         Update::NewMessage(m) => {
//!             let echo = InputMessage::text(format!("you said: {}", m.text)).reply_to(m.random_id);
//!             engine.send_message(event.account, event.chat, echo).await?;
//!         }
//!         _ => {}
//!     }
//!     if let Some(seq) = event.seq {
//!         engine.ack(seq).await?; // handled: never delivered again, even after a crash
//!     }
//! }
//! engine.shutdown().await?;
//! # Ok(()) }
//! ```
//!
//! `docs/guide.md` walks through everything (its snippets run as this crate's doc tests).
//!
//! # Modules
//! - [`tl`]: the TL types (the end-to-end schema, layers 8–144, and the server-API subset),
//!   for raw messages and for transports.
//! - [`crypto`]: the primitives underneath (AES-256-IGE, MTProto 2.0 message keys, DH,
//!   file encryption, the key visualization the users compare).
//! - `sim` (feature `sim`): an in-process simulated Telegram server for tests, examples and
//!   load benchmarks.
//!
//! # Features
//! - `openssl` (default): the DH exponentiation through OpenSSL's constant-time code (the
//!   system's libssl, ~2.4x faster). Without it a pure-Rust constant-time path is used.
//! - `sim`: the simulated server.

#![forbid(unsafe_code)]

mod config;
mod engine;
mod error;
mod event;
mod files;
mod message;
#[cfg(feature = "sim")]
pub mod sim;

pub use config::{EngineConfig, EngineConfigBuilder};
pub use engine::Engine;
pub use error::Error;
pub use event::{Event, EventStream, PeerAction, Update};
pub use message::{InputFile, InputMessage, Media, Message};

pub use secretchat_engine::crypto;
pub use secretchat_engine::protocol::chat::snapshot::RestoreError;
pub use secretchat_engine::protocol::chat::{ChatConfig, ChatStatus, CloseReason};
pub use secretchat_engine::protocol::layer::OUR_LAYER;
pub use secretchat_engine::runtime::files::FileRef;
pub use secretchat_engine::runtime::metrics::{MetricsSnapshot, PhaseTimes};
pub use secretchat_engine::runtime::model::{AccountId, ChatId, ChatState, SecretChat};
pub use secretchat_engine::store::Latency as StoreLatency;
#[cfg(feature = "postgres")]
pub use secretchat_engine::store::postgres::{PgOptions, drop_tables as drop_postgres_tables};
pub use secretchat_engine::store::{DEFAULT_ERASE_WITHIN, Durability, StoreError, read_key_file};
pub use secretchat_engine::transport::{BoxFuture, ErrorClass, RpcError, ServerApi, UpdateFeed};
pub use secretchat_schema as tl;

/// The guide (`docs/guide.md`), its snippets compiled and run as tests.
#[cfg(all(doctest, feature = "sim"))]
#[doc = include_str!("../docs/guide.md")]
pub struct Guide;
