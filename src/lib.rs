//! secretchat: a Telegram Secret Chats engine (end-to-end encryption per MTProto 2.0).
//!
//! The engine in a few lines (see `examples/two_accounts.rs` for a complete run):
//!
//! ```no_run
//! # async fn demo(api: std::sync::Arc<dyn secretchat::ServerApi>) -> Result<(), secretchat::EngineError> {
//! use secretchat::{Engine, EngineConfig, EventKind, AppEvent};
//! let (engine, mut events) = Engine::open("chats.db".as_ref(), EngineConfig::default())?;
//! let feed = engine.add_account(1, api).await?; // give `feed` to the transport for updates
//! # let user = secretchat::schema::api::enums::InputUser::InputUserSelf(secretchat::schema::api::types::InputUserSelf {});
//! let chat = engine.request_chat(1, user).await?;
//! while let Some(e) = events.recv().await {
//!     if let EventKind::App(AppEvent::ChatReady { .. }) = e.kind {
//!         engine.send_text(1, chat, "hello").await?;
//!     }
//!     if let Some(seq) = e.seq {
//!         engine.ack(seq)?; // handled: never delivered again, even after a crash
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! - [`schema`]: the TL types of the end-to-end schema (layers 8–144) and the server-API subset.
//! - [`engine`]: crypto, the protocol core, actors and storage.
//!
//! Features: `openssl` (default) computes the DH exponentiation with OpenSSL's constant-time
//! code; without it a pure-Rust constant-time path is used. `sim` adds the in-process simulated
//! Telegram server (`SimServer`) for tests and benchmarks. The `secretchat` command-line
//! tool is its own crate, `secretchat-cli`.

#![forbid(unsafe_code)]

pub use secretchat_engine as engine;
pub use secretchat_schema as schema;

pub use secretchat_engine::protocol::chat::{
    AppEvent, ChatConfig, ChatStatus, CloseReason, Command, Outgoing, ServiceAction,
};
pub use secretchat_engine::runtime::{
    Engine, EngineConfig, EngineError, EngineEvent, EventKind, Events,
};
#[cfg(feature = "sim")]
pub use secretchat_engine::sim::{SimDevice, SimFaults, SimServer};
pub use secretchat_engine::store::{Durability, StoreOptions};
pub use secretchat_engine::transport::{RpcError, ServerApi, UpdateFeed};
