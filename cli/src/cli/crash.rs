//! `secretchat crash-test` (and the hidden `crash-engine`, the process it kills).
//!
//! Prints `N kills, M messages, 0 lost, 0 duplicated, 0 misordered, C/C chats working` (or the
//! first violation) on stdout, a line per kill on stderr; `--json` writes the figures. Exit 0
//! when the run verified clean, 1 on any violation, 2 on bad options or a failed start.

use std::path::PathBuf;

use super::{CliError, log_to_stderr, runtime};
use crate::crash::{self, CrashOptions};

/// The flags of `secretchat crash-test`.
#[derive(Debug, Clone, clap::Args)]
pub struct CrashArgs {
    /// How many times the engine process is killed with SIGKILL and restarted.
    #[arg(long, default_value_t = 10)]
    pub kills: u32,
    /// Seed of the workload, the server's faults and the kill times.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Chats between the two accounts.
    #[arg(long, default_value_t = 4)]
    pub chats: usize,
    /// Share of messages that are files (each more than one upload part).
    #[arg(long, default_value_t = 0.03)]
    pub file_share: f64,
    /// File size in bytes.
    #[arg(long, default_value_t = 600 * 1024)]
    pub file_size: usize,
    /// Probability that an update push is dropped (gap recovery runs).
    #[arg(long, default_value_t = 0.05)]
    pub drop: f64,
    /// Shortest life of an engine process before its kill, ms.
    #[arg(long, default_value_t = 150)]
    pub min_life_ms: u64,
    /// Longest life of an engine process before its kill, ms.
    #[arg(long, default_value_t = 1500)]
    pub max_life_ms: u64,
    /// Write the figures as JSON here (keys `kills`, `messages`, `lost`, `duplicated`,
    /// `misordered`, `chats_working`, `chats`, …).
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Keep the data directory here (default: a fresh temporary one).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Seal the engine's database at rest with the key in this file (32 bytes, or 64 hex
    /// digits). A shared database needs one: a run key is made when it is not given.
    #[arg(long)]
    pub at_rest_key_file: Option<PathBuf>,
    /// Run the engines as nodes of this PostgreSQL database (`postgres://…`) instead of on
    /// RocksDB; its tables are made for the run and dropped after it.
    #[arg(long)]
    pub store: Option<String>,
    /// Engine processes sharing the accounts (with `--store`): each kill is a SIGKILL or a
    /// SIGSTOP past the lease, the other node takes the accounts over, the stopped one comes
    /// back and is handed one again.
    #[arg(long, default_value_t = 1)]
    pub nodes: usize,
    /// The accounts' lease on the shared database, ms (short, so that take-overs are many;
    /// below about 2 s a loaded machine's renewals come late and leases lapse on their own).
    #[arg(long, default_value_t = 2000)]
    pub lease_ms: u64,
    /// Of the stops with `--nodes 2`, the share that are cuts: the node runs in a network
    /// namespace of its own, and its link to the database is taken down while it keeps
    /// running; it must stop its accounts by itself (needs root, for `ip netns`).
    #[arg(long, default_value_t = 0.0)]
    pub cut_share: f64,
}

/// The flags of the hidden `secretchat crash-engine` (started by `crash-test`).
#[derive(Debug, Clone, clap::Args)]
pub struct EngineArgs {
    /// The data directory.
    #[arg(long)]
    pub data_dir: PathBuf,
    /// The workload's seed.
    #[arg(long)]
    pub seed: u64,
    /// The workload's file share.
    #[arg(long)]
    pub file_share: f64,
    /// The workload's file size.
    #[arg(long)]
    pub file_size: usize,
    /// The at-rest key file.
    #[arg(long)]
    pub at_rest_key_file: Option<PathBuf>,
    /// A shared PostgreSQL database (`postgres://…`): this process is one node of it.
    #[arg(long)]
    pub store: Option<String>,
    /// This node's name on the shared database.
    #[arg(long, default_value = "node0")]
    pub node: String,
    /// The shared database's table prefix.
    #[arg(long, default_value = "crash_")]
    pub pg_prefix: String,
    /// The lease of an account on the shared database, ms.
    #[arg(long, default_value_t = 1000)]
    pub lease_ms: u64,
}

/// Runs `crash-test`; returns the exit status.
pub fn run(args: &CrashArgs) -> u8 {
    let mut opts = CrashOptions {
        kills: args.kills,
        seed: args.seed,
        chats: args.chats,
        file_share: args.file_share,
        file_size: args.file_size,
        life_ms: (args.min_life_ms, args.max_life_ms),
        data_dir: args.data_dir.clone(),
        at_rest_key_file: args.at_rest_key_file.clone(),
        store: args.store.clone(),
        nodes: args.nodes,
        lease_ms: args.lease_ms,
        cut_share: args.cut_share,
        ..CrashOptions::default()
    };
    // A bad key file is reported before any engine process starts.
    if let Err(e) = super::at_rest_key(args.at_rest_key_file.as_deref()) {
        println!("{}", e.to_json());
        return 2;
    }
    opts.faults.drop = args.drop;
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(e) => {
            println!("{}", e.to_json());
            return 2;
        }
    };
    let mut progress = |r: &crash::CrashReport| {
        eprintln!("[{:>6.1}s] {}", r.wall_s, r.line());
    };
    let report = match rt.block_on(crash::run(&opts, &mut progress)) {
        Ok(r) => r,
        Err(e) => {
            let kind = match e {
                crash::CrashError::BadOption(..) => "bad_option",
                _ => "crash_test_failed",
            };
            println!("{}", CliError::new(kind, e).to_json());
            return 2;
        }
    };
    println!("{}", report.line());
    if let Some(p) = &args.json {
        if !super::write_json(p, &report.to_json()) {
            return 2;
        }
    }
    u8::from(!report.clean())
}

/// Runs the engine process; returns the exit status (it normally ends by being killed). Its
/// log goes to stderr (the driver's `engine.log`) at `SECRETCHAT_LOG` (default `warn`).
pub fn engine(args: &EngineArgs) -> u8 {
    log_to_stderr();
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("{}", e.to_json());
            return 2;
        }
    };
    let work = crate::simulate::workload::Workload {
        seed: args.seed,
        file_share: args.file_share,
        file_size: args.file_size,
    };
    let key = match super::at_rest_key(args.at_rest_key_file.as_deref()) {
        Ok(k) => k,
        Err(e) => {
            eprintln!("{}", e.to_json());
            return 2;
        }
    };
    let store = match &args.store {
        None => crash::child::ChildStore::Embedded,
        Some(url) => {
            let mut db = secretchat::PgOptions::new(url.clone());
            db.node = args.node.clone();
            db.prefix = args.pg_prefix.clone();
            db.lease_ttl = std::time::Duration::from_millis(args.lease_ms);
            crash::child::ChildStore::Shared(db)
        }
    };
    match rt.block_on(crash::child::run(&args.data_dir, store, work, key)) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("crash-engine: {e}");
            2
        }
    }
}
