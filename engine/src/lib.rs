//! The secretchat engine.
//!
//! - [`crypto`]: AES-256-IGE, MTProto 2.0/1.0 message encryption, DH, files, key visualization.
//! - [`protocol`]: the sans-IO protocol core (sequence numbers so far).
//!
//! The protocol core, actors and store build on these (see the project's issues).

pub mod crypto;
pub mod protocol;
