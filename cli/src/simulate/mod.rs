//! `secretchat simulate`: many accounts and chats on the simulated server, with the real engine,
//! real RocksDB and real crypto; the load benchmark and the first thing a new user runs.
//!
//! Verification is part of the run ([`ledger`]): every message sent must arrive exactly once, in
//! order, identical, on the other side, and every chat must end consistent (both sides on one
//! key, each side's sent count equal to the other's received count). Any violation makes
//! [`Report::ok`] false and names the chat and message.
//!
//! The run, in order: accounts are added; each account requests its chats (the peer accepts on
//! `ChatRequested`); once both sides of a chat are ready, two senders (one per direction) send
//! its messages, each keeping at most `window` messages in flight (sent, not yet delivered);
//! the application side acknowledges every event after checking it. When every stream is
//! complete (or nothing moved for `stall`), the chats are checked for consistency.

mod driver;
pub mod floor;
pub mod html;
pub mod ledger;
pub mod report;
pub mod send;
pub mod workload;

use std::path::PathBuf;
use std::time::Duration;

use secretchat::Durability;
use secretchat::sim::SimFaults;

pub use driver::run;
pub use report::Report;

/// What to simulate.
#[derive(Debug, Clone)]
pub struct SimulateOptions {
    /// Accounts (users on the simulated server; at least 2).
    pub accounts: usize,
    /// Chats each account starts (its peers are the next accounts in turn).
    pub chats: usize,
    /// Messages per chat, both directions together.
    pub messages: usize,
    /// Share of messages that are files (0..=1).
    pub file_share: f64,
    /// Size of each file, bytes.
    pub file_size: usize,
    /// The simulated network and server's faults.
    pub faults: SimFaults,
    /// Seed of the workload and the fault model.
    pub seed: u64,
    /// Stop starting new messages after this long, counted from the end of the chats'
    /// registration (the message count is then an upper bound).
    pub duration: Option<Duration>,
    /// Keep the data here (default: a fresh temporary directory, removed afterwards).
    pub data_dir: Option<PathBuf>,
    /// The engine's records in this PostgreSQL database (`postgres://…`) instead of RocksDB
    /// in the data directory; tables of the run's own, dropped afterwards unless the data
    /// directory was given.
    pub store: Option<String>,
    /// Store durability.
    pub durability: Durability,
    /// Seal the store's records with this key
    /// ([`EngineConfigBuilder::at_rest_key`](secretchat::EngineConfigBuilder::at_rest_key)).
    pub at_rest_key: Option<[u8; 32]>,
    /// Destroyed keys leave the database's files within this time
    /// ([`EngineConfigBuilder::erase_keys_within`](secretchat::EngineConfigBuilder::erase_keys_within)).
    pub erase_keys_within: Duration,
    /// Messages each direction may have in flight (sent, not yet delivered).
    pub window: usize,
    /// Give up when no message was delivered for this long.
    pub stall: Duration,
    /// Also measure the raw floor of the same workload (crypto, DH, RocksDB without the engine).
    pub floor: bool,
    /// Scale mode: provision every chat without a handshake and drive traffic on at most this
    /// many chats at a time (a rotating active subset).
    pub active: Option<usize>,
}

impl Default for SimulateOptions {
    fn default() -> Self {
        Self {
            accounts: 4,
            chats: 4,
            messages: 20_000,
            file_share: 0.01,
            file_size: 64 * 1024,
            faults: SimFaults {
                drop: 0.02,
                duplicate: 0.02,
                reorder: 0.02,
                reorder_ms: 20,
                latency_ms: 1,
                error: 0.01,
                flood: 0.0,
                lost_reply: 0.01,
            },
            seed: 1,
            duration: None,
            data_dir: None,
            store: None,
            at_rest_key: None,
            erase_keys_within: secretchat::DEFAULT_ERASE_WITHIN,
            durability: Durability::GroupCommit {
                interval: Duration::from_millis(2),
            },
            window: 32,
            stall: Duration::from_secs(60),
            floor: false,
            active: None,
        }
    }
}

impl SimulateOptions {
    /// These options, with a random at-rest key of the run's own when they name a shared
    /// database (`store`) and no key: a shared database holds sealed records only.
    pub fn sealed_for_store(&self) -> SimulateOptions {
        let mut o = self.clone();
        if o.store.is_some() && o.at_rest_key.is_none() {
            let mut key = [0u8; 32];
            rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut key);
            o.at_rest_key = Some(key);
        }
        o
    }

    /// Chats in all.
    pub fn pairs(&self) -> usize {
        self.accounts * self.chats
    }

    /// Checks the options.
    ///
    /// # Errors
    /// [`SimulateError::Options`] naming the bad option.
    pub fn validate(&self) -> Result<(), SimulateError> {
        let bad = |m: &str| Err(SimulateError::Options(m.into()));
        let f = &self.faults;
        if self.accounts < 2 {
            return bad("--accounts must be at least 2 (a chat has two ends)");
        }
        if self.chats == 0 {
            return bad("--chats must be at least 1");
        }
        if self.pairs() > 1 << 24 {
            return bad("at most 16,777,216 chats in all");
        }
        if self.messages > 1 << 23 {
            return bad("--messages must be at most 8,388,608 per chat");
        }
        if !(0.0..=1.0).contains(&self.file_share) {
            return bad("--file-share must be between 0 and 1");
        }
        if self.file_share > 0.0 && self.file_size as u64 > 2 * 1024 * 1024 * 1024 {
            return bad("--file-size must be at most 2 GiB");
        }
        for (name, p) in [
            ("--drop", f.drop),
            ("--duplicate", f.duplicate),
            ("--reorder", f.reorder),
            ("--error-rate", f.error),
            ("--flood-rate", f.flood),
            ("--lost-reply", f.lost_reply),
        ] {
            if !(0.0..1.0).contains(&p) {
                return Err(SimulateError::Options(format!(
                    "{name} must be at least 0 and below 1"
                )));
            }
        }
        if self.active == Some(0) {
            return bad("--active must be at least 1");
        }
        if self.window == 0 {
            return bad("--window must be at least 1");
        }
        Ok(())
    }
}

/// Live figures for a progress display.
#[derive(Debug, Clone, Default)]
pub struct Live {
    /// Seconds since the start.
    pub elapsed_s: f64,
    /// Messages accepted for sending.
    pub sent: u64,
    /// Messages delivered (verified).
    pub delivered: u64,
    /// Messages the run will send (the upper bound with `--duration`).
    pub planned: u64,
    /// Chats with both sides ready.
    pub chats_ready: usize,
    /// Chats in all.
    pub chats: usize,
    /// `Rekeyed` events so far (each re-key completes on both sides: two events).
    pub rekey_events: u64,
    /// Holes open now.
    pub holes_open: u64,
    /// Chat actors the engine holds in memory now (both ends of a chat count).
    pub loaded: u64,
    /// Violations so far.
    pub violations: u64,
}

/// Simulation failures (violations are not errors: they are in the [`Report`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SimulateError {
    /// A bad option.
    #[error("invalid options: {0}")]
    Options(String),
    /// The data directory could not be used.
    #[error("data directory: {0}")]
    Io(#[from] std::io::Error),
    /// The engine could not start.
    #[error(transparent)]
    Engine(#[from] secretchat::Error),
    /// The floor measurement failed.
    #[error("floor: {0}")]
    Floor(String),
}

/// Peak resident memory of this process (VmHWM), bytes; 0 where unknown.
pub fn peak_rss() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// CPU time (user + system) of this process so far, seconds; 0 where unknown. Linux reports
/// it in clock ticks of 1/100 s.
pub fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // Fields after the command name (which may hold spaces) start at ") ".
    let Some(rest) = stat.rsplit_once(") ").map(|(_, r)| r) else {
        return 0.0;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of the full line: 12 and 13 after the name.
    (ticks(11) + ticks(12)) / 100.0
}
