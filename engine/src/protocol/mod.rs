//! The sans-IO secret-chat protocol core. Pure code: no actix, RocksDB, tokio, clock
//! or OS RNG here.
//!
//! - [`chat`]: one chat's state machine (events in, actions out) built on the modules below.
//! - [`dh_config`]: the cached DH config (getDhConfig with the cached version, validation).
//! - [`dh_job`]: DH exponentiations as work items the engine runs off the chat's thread.
//! - [`gaps`]: the waiting queue behind a hole, one Resend per hole, bounded.
//! - [`layer`]: peer layer tracking, per-layer constructors, MTProto 1.0/2.0 choice.
//! - [`session`]: sealing/opening one chat's messages (seq_no + layer + crypto).
//! - [`rekey`]: the PFS re-keying exchange (request/accept/commit/abort, concurrency).
//! - [`seq_no`]: sequence numbers per `seq_no.md` (parity, duplicates, gaps, resend ranges,
//!   in_seq_no validity).

pub mod chat;
pub mod dh_config;
pub mod dh_job;
pub mod gaps;
pub mod layer;
pub mod rekey;
pub mod seq_no;
pub mod session;
