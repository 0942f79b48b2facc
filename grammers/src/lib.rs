//! The secretchat engine over grammers (the Rust MTProto client): the engine's server calls
//! on a grammers connection and the account's secret-chat updates into the engine, with one
//! owner for the secret-chat queue — the engine (docs/grammers.md).
//!
//! [`route`] decides which updates of a connection are the engine's; its unit tests feed it
//! every container shape.

pub mod catch_up;
pub mod dc;
pub mod difference;
pub mod pump;
pub mod route;
pub mod transport;

pub use difference::{difference_request, pts_only};
pub use pump::{PumpStats, pump};
pub use transport::GrammersApi;
