//! `secretchat host`: the secretchat engine for any language.
//!
//! A process that speaks newline-delimited JSON (TDLib's JSON-client style: every object has
//! `"@type"`, a request's `"@extra"` comes back in its answer) while the **host** — a
//! program in Python, Go, TypeScript… that already holds an MTProto session — carries the
//! engine's server calls over its own connection: the engine writes `invoke {id, account,
//! tl}`, the host answers `invokeResult {id, tl}` or `invokeError {id, code, message}`, and
//! pushes the account's secret-chat updates with `pushUpdate {account, tl}`.
//!
//! The protocol, and what a host must do so that nothing is lost, is in `docs/host.md`.
//! [`serve`] runs it over any pair of async streams (the CLI uses stdin/stdout or a unix
//! socket).

mod json;
mod requests;
mod serve;
mod transport;
pub mod wire;

pub use serve::{HostOptions, serve};
