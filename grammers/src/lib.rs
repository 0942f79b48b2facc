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

use std::time::Duration;

/// The engine's pace for a real Telegram server (docs/grammers.md, "Rates"): the simulator's
/// defaults poll `updates.getDifference` every 5 s per account, which Telegram does not need.
/// - `messages.receivedQueue` at most once a second while messages arrive (one call
///   acknowledges all of them);
/// - a qts gap checked every second, so one that lasts is fetched within about two (TDLib
///   waits for a gap to fill about as long before it asks);
/// - with no gap, one getDifference a minute, for a lost push that left no gap behind it.
///
/// FLOOD_WAIT answers are waited out either way.
pub fn for_telegram(config: secretchat::EngineConfigBuilder) -> secretchat::EngineConfigBuilder {
    config
        .ack_interval(Duration::from_secs(1))
        .difference_interval(Duration::from_secs(1))
        .idle_difference_interval(Duration::from_secs(60))
}
