//! secretchat: a Telegram Secret Chats engine (end-to-end encryption per MTProto 2.0).
//!
//! This facade re-exports the workspace crates and holds the `secretchat` command-line tool's
//! commands ([`cli`]).
//!
//! - [`schema`]: the TL types of the end-to-end schema (layers 8–144) and the server-API subset.
//! - [`engine`]: crypto, the protocol core, actors and storage.

#![forbid(unsafe_code)]

pub mod cli;

pub use secretchat_engine as engine;
pub use secretchat_schema as schema;
