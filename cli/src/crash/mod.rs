//! `secretchat crash-test`: the engine is `kill -9`ed at random moments — inside re-keys, file
//! uploads and gap recovery — and restarted on the same data directory, over and over; at the
//! end every message the application was told was accepted must have reached the peer exactly
//! once, in order and intact, no message may reach the application again after it acknowledged
//! it, and every chat must still work (one re-key and one more message each way).
//!
//! Two processes: the driver (this one) owns the simulated server, which outlives every engine
//! process, and the ledger; the engine process (`secretchat crash-engine`, [`child`]) runs the
//! real engine with RocksDB and talks to the server over its stdin/stdout ([`wire`]). See
//! `docs/reliability.md` for the contract it checks.

pub mod check;
pub mod child;
mod driver;
pub mod wire;

use std::path::PathBuf;

use secretchat::sim::SimFaults;
use serde_json::{Value, json};

pub use driver::run;

use crate::simulate::workload::Workload;

/// Settings of a crash test.
#[derive(Debug, Clone)]
pub struct CrashOptions {
    /// Kills (and restarts) of the engine process.
    pub kills: u32,
    /// Seed of the workload, the faults and the kill times.
    pub seed: u64,
    /// Chats between the two accounts.
    pub chats: usize,
    /// Share of messages that are files.
    pub file_share: f64,
    /// File size in bytes (more than one 512 KiB part: kills land inside uploads).
    pub file_size: usize,
    /// The server's fault model during the kills (turned off for the final checks).
    pub faults: SimFaults,
    /// Sends in flight per stream.
    pub window: u32,
    /// Sends accepted and not yet delivered, per stream, before the driver waits.
    pub backlog: u32,
    /// Each engine life lasts a random time in this range, ms.
    pub life_ms: (u64, u64),
    /// A re-key is started on a random chat this often, ms.
    pub rekey_every_ms: u64,
    /// How long the final phases may take each, s.
    pub settle_s: u64,
    /// The data directory (default: a fresh temporary one).
    pub data_dir: Option<PathBuf>,
    /// The `secretchat` executable for the engine process (default: this one).
    pub engine_exe: Option<PathBuf>,
    /// The engine process seals its store with the key in this file.
    pub at_rest_key_file: Option<PathBuf>,
    /// A shared PostgreSQL database the engine processes are nodes of (RocksDB when `None`).
    pub store: Option<String>,
    /// Engine processes (nodes of `store`; 1 without it).
    pub nodes: usize,
    /// The accounts' lease on the shared database, ms.
    pub lease_ms: u64,
    /// Of the stops with two nodes or more, the share that are SIGSTOPs past the lease
    /// (the rest are SIGKILLs).
    pub pause_share: f64,
    /// Of the stops with two nodes, the share that are cuts: the node's link to the database
    /// taken down while it runs (each node in a network namespace of its own; needs root).
    pub cut_share: f64,
}

impl Default for CrashOptions {
    fn default() -> Self {
        Self {
            kills: 10,
            seed: 1,
            chats: 4,
            file_share: 0.03,
            file_size: 600 * 1024,
            faults: SimFaults {
                drop: 0.05,
                duplicate: 0.05,
                reorder: 0.05,
                reorder_ms: 30,
                latency_ms: 1,
                error: 0.02,
                flood: 0.0,
                lost_reply: 0.02,
            },
            window: 4,
            backlog: 64,
            life_ms: (150, 1500),
            rekey_every_ms: 250,
            settle_s: 90,
            data_dir: None,
            at_rest_key_file: None,
            engine_exe: None,
            store: None,
            nodes: 1,
            lease_ms: 2000,
            pause_share: 0.5,
            cut_share: 0.0,
        }
    }
}

impl CrashOptions {
    /// Checks the options.
    ///
    /// # Errors
    /// [`CrashError::BadOption`] naming the option.
    pub fn validate(&self) -> Result<(), CrashError> {
        let bad = |o: &'static str, why: &str| Err(CrashError::BadOption(o, why.into()));
        if self.chats == 0 || self.chats > 1000 {
            return bad("--chats", "must be 1..=1000");
        }
        if !(0.0..=1.0).contains(&self.file_share) {
            return bad("--file-share", "must be within 0..=1");
        }
        if self.file_size == 0 || self.file_size > 64 << 20 {
            return bad("--file-size", "must be 1 byte..=64 MiB");
        }
        if self.window == 0 || self.backlog <= self.window {
            return bad("window", "must be at least 1 and below the backlog");
        }
        if self.life_ms.0 == 0 || self.life_ms.0 > self.life_ms.1 {
            return bad("--life-ms", "must be MIN..MAX with 0 < MIN <= MAX");
        }
        if self.nodes == 0 || self.nodes > 2 || (self.nodes > 1 && self.store.is_none()) {
            return bad("--nodes", "must be 1, or 2 with --store");
        }
        if self.lease_ms < 100 || self.lease_ms > 60_000 {
            return bad("--lease-ms", "must be 100..=60000");
        }
        if !(0.0..=1.0).contains(&self.pause_share) {
            return bad("pause share", "must be within 0..=1");
        }
        if !(0.0..=1.0).contains(&self.cut_share) || (self.cut_share > 0.0 && self.nodes < 2) {
            return bad("--cut-share", "must be within 0..=1, and needs --nodes 2");
        }
        Ok(())
    }

    /// The deterministic workload (shared with the engine process through the seed).
    pub fn workload(&self) -> Workload {
        Workload {
            seed: self.seed,
            file_share: self.file_share,
            file_size: self.file_size,
        }
    }
}

/// Why a crash test could not run (a violation is a result, not an error).
#[derive(Debug, thiserror::Error)]
pub enum CrashError {
    /// An option is out of range.
    #[error("{0}: {1}")]
    BadOption(&'static str, String),
    /// The engine process failed to start or open.
    #[error("engine process: {0}")]
    Engine(String),
    /// I/O (data directory, process spawn).
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// The outcome of a crash test.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CrashReport {
    /// Kills done.
    pub kills: u32,
    /// Kills while a re-key was running.
    pub kills_in_rekey: u32,
    /// Kills while a file upload was running.
    pub kills_in_upload: u32,
    /// Of the kills, SIGSTOPs past the lease (a node paused, its accounts taken over, then
    /// resumed).
    pub pauses: u32,
    /// Of the kills, cuts: the node's link to the database taken down while it ran; it
    /// stopped its accounts by itself, another node took them over, then the link came back.
    pub cuts: u32,
    /// Longest time from a cut to the cut-off node stopping the last of its accounts by
    /// itself, ms.
    pub cut_stop_ms_max: u64,
    /// Cuts after which the node did not stop its accounts by itself (within a minute):
    /// must be 0.
    pub cut_not_stopped: u32,
    /// Accounts taken over by another node after a kill or a pause.
    pub takeovers: u32,
    /// Longest time from a node's kill (or pause) to another node running its account, ms.
    pub takeover_ms_max: u64,
    /// Writes a node made for an account another node owned, counted by the database itself
    /// (a trigger on every table, by session name): must be 0.
    pub foreign_writes: u64,
    /// Sends a node refused because their account had left it (taken while the node was
    /// paused, or handed over): never accepted, so not expected to arrive.
    pub refused_sends: u64,
    /// Messages a node's application had taken before their account left it (paused past
    /// its lease, or handed over) and reported after (see `Checker::delivered_late`).
    pub late_deliveries: u64,
    /// Messages the engine confirmed as accepted.
    pub messages: u64,
    /// Distinct messages delivered (confirmed or not).
    pub delivered: u64,
    /// Confirmed messages never delivered (at the end).
    pub lost: u64,
    /// Confirmed messages not delivered yet (during the run).
    pub in_flight: u64,
    /// Messages delivered twice.
    pub duplicated: u64,
    /// Messages delivered out of order.
    pub misordered: u64,
    /// Messages with the wrong content.
    pub corrupted: u64,
    /// Chats that re-keyed and carried one more message each way at the end.
    pub chats_working: usize,
    /// Chats in the run.
    pub chats: usize,
    /// Re-key completions seen (both sides count).
    pub rekeys: u64,
    /// Sends the engine refused.
    pub send_failures: u64,
    /// Chats that closed.
    pub chats_closed: u64,
    /// Engine processes that died without being killed.
    pub unexpected_exits: u64,
    /// Longest start-to-hello of an engine process, ms.
    pub restart_ms_max: u64,
    /// Updates the server dropped / duplicated, requests it failed.
    pub server_dropped: u64,
    /// See `server_dropped`.
    pub server_duplicated: u64,
    /// See `server_dropped`.
    pub server_errors: u64,
    /// The first violation, named.
    pub first_violation: Option<String>,
    /// Wall time, s.
    pub wall_s: f64,
}

impl CrashReport {
    /// Whether the run verified clean.
    pub fn clean(&self) -> bool {
        self.lost == 0
            && self.duplicated == 0
            && self.misordered == 0
            && self.corrupted == 0
            && self.send_failures == 0
            && self.chats_closed == 0
            && self.unexpected_exits == 0
            && self.chats_working == self.chats
            && self.foreign_writes == 0
            && self.cut_not_stopped == 0
    }

    /// The one-line summary: `N kills, M messages, 0 lost, 0 duplicated, 0 misordered`, then
    /// the first violation if there is one.
    pub fn line(&self) -> String {
        let mut s = format!(
            "{} kills, {} messages, {} lost, {} duplicated, {} misordered",
            self.kills, self.messages, self.lost, self.duplicated, self.misordered
        );
        if self.corrupted > 0 {
            s += &format!(", {} corrupted", self.corrupted);
        }
        if self.takeovers > 0 || self.foreign_writes > 0 {
            s += &format!(
                ", {} take-overs (longest {} ms), {} foreign writes",
                self.takeovers, self.takeover_ms_max, self.foreign_writes
            );
        }
        if self.cuts > 0 {
            s += &format!(
                ", {} cuts (stopped by itself within {} ms; {} not)",
                self.cuts, self.cut_stop_ms_max, self.cut_not_stopped
            );
        }
        if self.in_flight > 0 {
            s += &format!(", {} awaiting delivery", self.in_flight);
        } else {
            s += &format!(", {}/{} chats working", self.chats_working, self.chats);
        }
        if let Some(v) = self.first_violation.as_ref().filter(|_| !self.clean()) {
            s += &format!("; first violation: {v}");
        }
        s
    }

    /// The JSON report (`kills`, `messages`, `lost`, `duplicated`, `misordered`,
    /// `chats_working`, `chats` and the rest).
    pub fn to_json(&self) -> Value {
        json!({
            "kills": self.kills,
            "messages": self.messages,
            "lost": self.lost,
            "duplicated": self.duplicated,
            "misordered": self.misordered,
            "corrupted": self.corrupted,
            "chats_working": self.chats_working,
            "chats": self.chats,
            "delivered": self.delivered,
            "kills_in_rekey": self.kills_in_rekey,
            "kills_in_upload": self.kills_in_upload,
            "pauses": self.pauses,
            "cuts": self.cuts,
            "cut_stop_ms_max": self.cut_stop_ms_max,
            "cut_not_stopped": self.cut_not_stopped,
            "takeovers": self.takeovers,
            "takeover_ms_max": self.takeover_ms_max,
            "foreign_writes": self.foreign_writes,
            "refused_sends": self.refused_sends,
            "late_deliveries": self.late_deliveries,
            "rekeys": self.rekeys,
            "send_failures": self.send_failures,
            "chats_closed": self.chats_closed,
            "unexpected_exits": self.unexpected_exits,
            "restart_ms_max": self.restart_ms_max,
            "server_dropped": self.server_dropped,
            "server_duplicated": self.server_duplicated,
            "server_errors": self.server_errors,
            "first_violation": self.first_violation,
            "wall_s": self.wall_s,
            "clean": self.clean(),
        })
    }
}
