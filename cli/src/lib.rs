//! The `secretchat` command-line tool's library: its commands ([`cli`]), the load benchmark
//! with built-in verification ([`simulate`]) and the crash-kill harness ([`crash`]). Built on
//! the `secretchat` library's public API.

#![forbid(unsafe_code)]
// The simulate report builds one large `json!` object.
#![recursion_limit = "256"]

pub mod cli;
pub mod crash;
pub mod simulate;
