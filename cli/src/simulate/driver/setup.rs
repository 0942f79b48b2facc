//! Setting a run up: its data directory, the engine settings, which accounts a chat joins, and
//! the bulk provisioning of scale mode.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use secretchat::sim::SimServer;
use secretchat::{AccountId, ChatConfig, EngineConfig};

use super::Driver;
use crate::simulate::{SimulateError, SimulateOptions};

/// Chats provisioned per round (bounds the keys in memory at once).
const PROVISION_CHUNK: usize = 32 * 1024;

/// The directory the run uses, removed at the end unless the user named it.
pub(super) struct DataDir {
    pub(super) path: PathBuf,
    _temp: Option<tempfile::TempDir>,
}

impl DataDir {
    pub(super) fn new(given: Option<&Path>) -> Result<Self, SimulateError> {
        match given {
            Some(p) => {
                std::fs::create_dir_all(p)?;
                Ok(Self {
                    path: p.to_path_buf(),
                    _temp: None,
                })
            }
            None => {
                let t = tempfile::Builder::new()
                    .prefix("secretchat-simulate-")
                    .tempdir()?;
                Ok(Self {
                    path: t.path().to_path_buf(),
                    _temp: Some(t),
                })
            }
        }
    }
}

/// Opens the run's engine: on RocksDB in `engine_dir`, or on the PostgreSQL database of
/// `--store` (tables named after `engine_dir`, so a reopen finds them; the options carry an
/// at-rest key then: [`SimulateOptions::sealed_for_store`]).
pub(super) fn open_engine(
    opts: &SimulateOptions,
    engine_dir: &Path,
) -> Result<(secretchat::Engine, secretchat::EventStream), SimulateError> {
    let Some(url) = &opts.store else {
        return Ok(secretchat::Engine::open(engine_dir, engine_config(opts))?);
    };
    let config = engine_config(opts);
    let mut db = secretchat::PgOptions::new(url.clone());
    db.prefix = table_prefix(engine_dir);
    db.node = "simulate".into();
    std::fs::create_dir_all(engine_dir)?;
    Ok(secretchat::Engine::open_postgres(engine_dir, db, config)?)
}

/// The PostgreSQL tables' prefix of a run in `engine_dir`.
pub(super) fn table_prefix(engine_dir: &Path) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    engine_dir.hash(&mut h);
    format!("sim{:x}_", h.finish() & 0xffff_ffff_ffff)
}

/// Engine settings for an in-process network: LAN-scale protocol timers (the defaults are for a
/// real network, where a Resend is retried after 30 s).
pub(super) fn engine_config(opts: &SimulateOptions) -> EngineConfig {
    // The tail retransmit only matters for a chat's last message (holes before it are found by
    // later messages): a short one at scale is a retransmit storm (10,000 quiet chats at 600 ms
    // collapsed throughput 20-fold, measured). In scale mode every chat ends quiet, so its last
    // message in each direction is never acknowledged: even 20 s re-sent all of them (200,000
    // re-sends at 100,000 chats, doubling the work), so scale mode keeps the library default
    // (an hour), as a deployment would.
    let tail = if opts.active.is_some() {
        let d = ChatConfig::default();
        (d.retransmit_ms, d.max_backoff_ms)
    } else {
        (20_000, 20_000)
    };
    let mut b = EngineConfig::builder()
        .chat(ChatConfig {
            resend_retry_ms: 300,
            unhealthy_after: 20,
            retransmit_ms: tail.0,
            max_backoff_ms: tail.1,
            ..ChatConfig::default()
        })
        .durability(opts.durability)
        .erase_keys_within(opts.erase_keys_within)
        .ack_interval(Duration::from_millis(50))
        .difference_interval(Duration::from_millis(500))
        // Scale mode rotates through many chats: finished ones leave memory soon.
        .idle_after(if opts.active.is_some() {
            Duration::from_secs(2)
        } else {
            Duration::from_secs(60)
        });
    if let Some(key) = opts.at_rest_key {
        b = b.at_rest_key(key);
    }
    b.build()
}

/// The accounts at the two ends of chat `p`: account `i` starts its chats with the next
/// accounts in turn.
pub(super) fn ends(opts: &SimulateOptions, p: usize) -> (u64, u64) {
    let (i, c) = (p / opts.chats, p % opts.chats);
    let peer = (i + 1 + c % (opts.accounts - 1)) % opts.accounts;
    (i as u64 + 1, peer as u64 + 1)
}

/// Bytes of the files under `dir` (RocksDB's SST files, WAL and manifests).
pub(super) fn dir_size(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_size(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

impl Driver {
    /// Registers every chat ready on both ends without a handshake (the bulk-provisioning
    /// path): the server records the chat, both engines store it with one key.
    pub(super) fn provision(&mut self, sim: &SimServer) -> Result<(), SimulateError> {
        use rand::{RngCore, SeedableRng};
        use secretchat::OUR_LAYER;
        use secretchat::crypto::prime::TELEGRAM_DH_PRIME;
        use secretchat::crypto::{AuthKey, Side};
        use secretchat::sim::ProvisionedChat;
        // Benchmark keys: random, but from the run's seed so a run can be repeated.
        let mut rng = rand::rngs::StdRng::seed_from_u64(self.opts.seed ^ 0x6b65_7973);
        let total = self.pairs.len();
        let mut from = 0;
        while from < total {
            let to = (from + PROVISION_CHUNK).min(total);
            // Per account: the chat ends to write and where each goes (pair, side).
            type Ends = (Vec<ProvisionedChat>, Vec<(usize, usize)>);
            let mut per_account: HashMap<u64, Ends> = HashMap::new();
            for p in from..to {
                let (a, b) = ends(&self.opts, p);
                let (chat_id, access_hash) = sim.provision_chat((a as i64, 0), (b as i64, 0));
                let mut raw = zeroize::Zeroizing::new([0u8; 256]);
                rng.fill_bytes(&mut raw[..]);
                for (side, account, which) in [(Side::Originator, a, 0), (Side::Participant, b, 1)]
                {
                    let e = per_account.entry(account).or_default();
                    e.0.push(ProvisionedChat {
                        side,
                        chat_id,
                        access_hash,
                        key: AuthKey::new(*raw),
                        peer_layer: OUR_LAYER,
                    });
                    e.1.push((p, which));
                }
                self.pairs[p].chat_id = chat_id;
            }
            for (account, (chats, places)) in per_account {
                let handles = self.engine.provision_chats(
                    AccountId(account),
                    &TELEGRAM_DH_PRIME,
                    3,
                    chats,
                )?;
                for (h, (p, which)) in handles.into_iter().map(|c| c.0).zip(places) {
                    self.pairs[p].sides[which] = Some((account, h));
                    self.side_of.insert((account, h), (p, which));
                }
            }
            from = to;
        }
        for p in 0..total {
            self.pairs[p].started = true;
            self.ready += 1;
            self.queue.push_back(p);
        }
        // `--duration` counts traffic time: from here, not from before the provisioning.
        self.deadline = self.opts.duration.map(|t| Instant::now() + t);
        self.start_queued();
        Ok(())
    }
}
