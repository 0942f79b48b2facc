//! The secretchat engine.
//!
//! - [`crypto`]: AES-256-IGE, MTProto 2.0/1.0 message encryption, DH, files, key visualization.
//! - [`protocol`]: the sans-IO protocol core: one chat's state machine, events in, actions out.
//! - `store` (feature `runtime`): the RocksDB store.

pub mod crypto;
pub mod protocol;
#[cfg(feature = "runtime")]
pub mod runtime;
#[cfg(feature = "sim")]
pub mod sim;
#[cfg(feature = "runtime")]
pub mod store;
#[cfg(feature = "runtime")]
pub mod transport;
