//! `secretchat simulate`: options, the live progress display, the outputs.
//!
//! Progress goes to stderr: an indicatif bar on a terminal, a plain line every 5 s otherwise
//! (CI logs). The summary goes to stdout; `--json` and `--report` write files. The exit status
//! is 0 only when the run verified clean, 1 on any violation, 2 on bad options.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use super::CliError;
use crate::simulate::{self, Live, SimulateOptions};
use secretchat::Durability;

/// The flags of `secretchat simulate` (names are stable: scripts and dashboards use them).
#[derive(Debug, Clone, clap::Args)]
pub struct SimulateArgs {
    /// Accounts (users on the simulated server), at least 2.
    #[arg(long, default_value_t = 4)]
    pub accounts: usize,
    /// Chats each account starts (with the next accounts in turn).
    #[arg(long, default_value_t = 4)]
    pub chats: usize,
    /// Messages per chat, both directions together (the default run takes about 40 s on 2
    /// cores: long enough for the throughput to be the sustained one).
    #[arg(long, default_value_t = 20_000)]
    pub messages: usize,
    /// Share of messages that are encrypted files (0..=1).
    #[arg(long, default_value_t = 0.01)]
    pub file_share: f64,
    /// Size of each file in bytes.
    #[arg(long, default_value_t = 64 * 1024)]
    pub file_size: usize,
    /// Probability that an update push is dropped (the server keeps it queued).
    #[arg(long, default_value_t = 0.02)]
    pub drop: f64,
    /// Probability that an update is pushed twice.
    #[arg(long, default_value_t = 0.02)]
    pub duplicate: f64,
    /// Probability that an update is held back (reordered) by up to --reorder-ms.
    #[arg(long, default_value_t = 0.02)]
    pub reorder: f64,
    /// Longest extra delay of a reordered update, ms.
    #[arg(long, default_value_t = 20)]
    pub reorder_ms: u64,
    /// Base delay of every update, ms.
    #[arg(long, default_value_t = 1)]
    pub delay_ms: u64,
    /// Probability that a request fails with 500 before running.
    #[arg(long, default_value_t = 0.01)]
    pub error_rate: f64,
    /// Probability that a request runs but its reply is lost.
    #[arg(long, default_value_t = 0.01)]
    pub lost_reply: f64,
    /// Probability that a request fails with FLOOD_WAIT_1 (the engine waits a second).
    #[arg(long, default_value_t = 0.0)]
    pub flood_rate: f64,
    /// Seed of the workload and the fault model.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Stop starting new messages after this many seconds of traffic, counted once the chats
    /// are registered (then --messages is an upper bound).
    #[arg(long)]
    pub duration: Option<f64>,
    /// Keep the data here (default: a fresh temporary directory, removed afterwards).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Keep the engine's records in this PostgreSQL database (`postgres://user@host:port/db`)
    /// instead of RocksDB: the same workload runs on RocksDB first, and both figures are
    /// reported (docs/store.md). Records are sealed (with the run's own key when no
    /// --at-rest-key-file is given).
    #[arg(long)]
    pub store: Option<String>,
    /// Seal the database at rest with the key in this file (32 bytes, or 64 hex digits).
    #[arg(long)]
    pub at_rest_key_file: Option<PathBuf>,
    /// A destroyed key (after a re-key, of a closed chat) is gone from every file of the
    /// database within this many seconds.
    #[arg(long, default_value_t = 60.0)]
    pub erase_keys_within: f64,
    /// Store durability: `sync` (fsync every step), `group` (steps share an fsync every 2 ms;
    /// `group:MS` for another interval) or `buffered` (no fsync: survives a process crash, not
    /// a power loss).
    #[arg(long, default_value = "group")]
    pub durability: String,
    /// Messages each direction of a chat may have in flight.
    #[arg(long, default_value_t = 32)]
    pub window: usize,
    /// Give up when nothing was delivered for this many seconds.
    #[arg(long, default_value_t = 60)]
    pub stall_s: u64,
    /// Write the figures as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write a self-contained HTML report with charts here.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Also measure the raw floor of the same workload (crypto, DH, RocksDB without the engine)
    /// and print the engine's throughput as a ratio to it.
    #[arg(long)]
    pub floor: bool,
    /// Scale mode: register every chat cheaply (bulk provisioning, no DH handshakes) and drive
    /// traffic on at most this many chats at a time, rotating through all of them. Also reports
    /// RSS and the restart-to-serving time.
    #[arg(long)]
    pub active: Option<usize>,
}

/// Parses a `--durability` value.
///
/// # Errors
/// `bad_option`.
pub fn durability(s: &str) -> Result<Durability, CliError> {
    let bad = || {
        CliError::new(
            "bad_option",
            format!("--durability {s}: sync, group[:MS] or buffered"),
        )
    };
    match s {
        "sync" => Ok(Durability::Sync),
        "buffered" => Ok(Durability::Buffered),
        "group" => Ok(Durability::GroupCommit {
            interval: Duration::from_millis(2),
        }),
        _ => {
            let ms: u64 = s
                .strip_prefix("group:")
                .and_then(|v| v.parse().ok())
                .filter(|&v| (1..=1000).contains(&v))
                .ok_or_else(bad)?;
            Ok(Durability::GroupCommit {
                interval: Duration::from_millis(ms),
            })
        }
    }
}

impl SimulateArgs {
    /// The options these flags describe.
    ///
    /// # Errors
    /// `bad_option`.
    pub fn options(&self) -> Result<SimulateOptions, CliError> {
        let duration = match self.duration {
            Some(s) if s.is_finite() && s > 0.0 => Some(Duration::from_secs_f64(s)),
            Some(_) => return Err(CliError::new("bad_option", "--duration must be positive")),
            None => None,
        };
        let o = SimulateOptions {
            accounts: self.accounts,
            chats: self.chats,
            messages: self.messages,
            file_share: self.file_share,
            file_size: self.file_size,
            faults: secretchat::sim::SimFaults {
                drop: self.drop,
                duplicate: self.duplicate,
                reorder: self.reorder,
                reorder_ms: self.reorder_ms,
                latency_ms: self.delay_ms,
                error: self.error_rate,
                flood: self.flood_rate,
                lost_reply: self.lost_reply,
            },
            seed: self.seed,
            duration,
            data_dir: self.data_dir.clone(),
            store: self.store.clone(),
            at_rest_key: super::at_rest_key(self.at_rest_key_file.as_deref())?,
            erase_keys_within: match self.erase_keys_within {
                s if s.is_finite() && s > 0.0 => Duration::from_secs_f64(s),
                _ => {
                    return Err(CliError::new(
                        "bad_option",
                        "--erase-keys-within must be positive",
                    ));
                }
            },
            durability: durability(&self.durability)?,
            window: self.window,
            stall: Duration::from_secs(self.stall_s.max(1)),
            floor: self.floor,
            active: self.active,
        };
        o.validate().map_err(|e| CliError::new("bad_option", e))?;
        Ok(o)
    }
}

fn line(l: &Live) -> String {
    format!(
        "{:.0} msgs/s, chats ready {}/{}, in memory {}, re-keys {}, holes open {}, violations {}",
        l.delivered as f64 / l.elapsed_s.max(1e-3),
        l.chats_ready,
        l.chats,
        l.loaded,
        l.rekey_events / 2,
        l.holes_open,
        l.violations
    )
}

/// Runs the simulation with a progress display; prints the summary; writes `--json` and
/// `--report`. Returns the exit status.
pub fn run(args: &SimulateArgs) -> u8 {
    let mut opts = match args.options() {
        Ok(o) => o,
        Err(e) => {
            println!("{}", e.to_json());
            return 2;
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            println!("{}", CliError::new("runtime", e).to_json());
            return 2;
        }
    };
    // A shared database holds sealed records only; the RocksDB baseline seals with the same
    // key, so both runs do the same work.
    opts = opts.sealed_for_store();
    let tty = std::io::stderr().is_terminal();
    let bar = ProgressBar::new((opts.pairs() * opts.messages) as u64);
    if tty {
        bar.set_style(
            ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
    } else {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let mut last_line = Instant::now();
    let mut tick = |l: &Live| {
        bar.set_position(l.delivered);
        bar.set_message(line(l));
        if !tty && last_line.elapsed() >= Duration::from_secs(5) {
            last_line = Instant::now();
            eprintln!(
                "[{:>6.1}s] {}/{} delivered; {}",
                l.elapsed_s,
                l.delivered,
                l.planned,
                line(l)
            );
        }
    };
    // On a shared database the same workload runs on RocksDB first: the baseline of the
    // figures, measured in the same run.
    let baseline = match &opts.store {
        Some(_) => {
            let mut rocks = opts.clone();
            rocks.store = None;
            match rt.block_on(simulate::run(&rocks, &mut tick)) {
                Ok(r) => Some(r),
                Err(e) => {
                    bar.finish_and_clear();
                    println!("{}", CliError::new("simulate_failed", e).to_json());
                    return 2;
                }
            }
        }
        None => None,
    };
    bar.reset();
    let result = rt.block_on(simulate::run(&opts, &mut tick));
    bar.finish_and_clear();
    let report = match result {
        Ok(r) => r,
        Err(e) => {
            let kind = match e {
                simulate::SimulateError::Options(_) => "bad_option",
                _ => "simulate_failed",
            };
            println!("{}", CliError::new(kind, e).to_json());
            return 2;
        }
    };
    let mut json = report.to_json();
    if let Some(base) = &baseline {
        println!("## RocksDB (baseline, same workload)");
        print!("{}", base.summary());
        println!("## PostgreSQL");
    }
    print!("{}", report.summary());
    if let Some(base) = &baseline {
        let ratio = report.msgs_per_sec() / base.msgs_per_sec().max(f64::MIN_POSITIVE);
        println!(
            "store: PostgreSQL {:.0} msgs/s = {ratio:.2}x RocksDB's {:.0} msgs/s in this run",
            report.msgs_per_sec(),
            base.msgs_per_sec()
        );
        json = serde_json::json!({
            "postgres": json,
            "rocksdb": base.to_json(),
            "ratio": ratio,
        });
    }
    if let Some(p) = &args.json {
        if !super::write_json(p, &json) {
            return 2;
        }
    }
    if let Some(p) = &args.report {
        match simulate::html::render(&report) {
            Ok(html) => {
                if let Err(e) = std::fs::write(p, html) {
                    eprintln!("could not write {}: {e}", p.display());
                    return 2;
                }
            }
            Err(e) => {
                eprintln!("could not draw the report: {e}");
                return 2;
            }
        }
    }
    u8::from(!report.ok() || baseline.is_some_and(|b| !b.ok()))
}
