//! The run's figures: a human summary, the JSON that scripts read (key names are stable), and
//! the data behind the HTML report.

use serde_json::{Value, json};

use super::SimulateOptions;
use super::floor::Floor;
use super::ledger::{Ledger, Violation};
use secretchat::PhaseTimes;
use secretchat::sim::SimStats;

/// Chats that ended consistent or not.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Consistency {
    /// Both sides ready, on one key, counters agreeing.
    pub consistent: usize,
    /// Anything else.
    pub inconsistent: usize,
}

/// Figures gathered outside the ledger.
#[derive(Debug, Clone, Default)]
pub struct Figures {
    /// Messages sent and never delivered.
    pub lost: u64,
    /// Re-keys both sides completed.
    pub rekeys: u64,
    /// Stored messages sent again (Resend answers, retransmits).
    pub resends: u64,
    /// Holes that opened.
    pub holes: u64,
    /// Resend requests sent.
    pub resend_requests: u64,
    /// Incoming messages the engine refused.
    pub rejected: u64,
    /// DH exponentiations the engine computed.
    pub dh_exponentiations: u64,
    /// Seconds from the start to the last delivery check.
    pub wall_s: f64,
    /// CPU seconds over the same time.
    pub cpu_s: f64,
    /// Peak resident memory.
    pub peak_rss_bytes: u64,
    /// RocksDB's size on disk.
    pub db_bytes: u64,
    /// Passes that erased destroyed keys from the database's files.
    pub key_erasures: u64,
    /// Chats whose both sides became ready.
    pub chats_ready: usize,
    /// The simulated server's counters.
    pub server: SimStats,
    /// Seconds from reopening the store to the first message served after a restart.
    pub restart_s: f64,
    /// Seconds to register the chats (handshake requests, or bulk provisioning).
    pub provision_s: f64,
    /// The most chats that had traffic running at once.
    pub active_peak: usize,
    /// The most chat actors the engine held in memory at once (both ends count).
    pub loaded_peak: u64,
    /// The engine's time per phase over the same span as `cpu_s`.
    pub cpu_split: PhaseTimes,
}

/// Everything a run found.
#[derive(Debug, Clone)]
pub struct Report {
    /// The options it ran with.
    pub options: SimulateOptions,
    /// Messages accepted for sending.
    pub messages_sent: u64,
    /// Delivered exactly once, in order.
    pub messages_delivered: u64,
    /// Sent, never delivered.
    pub lost: u64,
    /// Delivered more than once.
    pub duplicated: u64,
    /// Delivered ahead of an earlier one.
    pub misordered: u64,
    /// Delivered with other content (or a file that did not verify).
    pub corrupted: u64,
    /// Files sent.
    pub files: u64,
    /// Files downloaded and verified.
    pub files_verified: u64,
    /// p50, p90, p99, max end-to-end latency (ms): send call → the peer's application event.
    pub latency_ms: [f64; 4],
    /// p50, p90, p99, max accept latency (ms): send call → the engine stored the message.
    pub accept_ms: [f64; 4],
    /// The other figures.
    pub figures: Figures,
    /// Chats consistent at the end.
    pub consistency: Consistency,
    /// The first violations.
    pub violations: Vec<Violation>,
    /// Violations in all.
    pub violation_count: u64,
    /// Deliveries per second of the run.
    pub per_second: Vec<u32>,
    /// Re-key completions per second (both sides' events, halved).
    pub rekeys_per_second: Vec<f64>,
    /// Latency samples (ms) for the histogram.
    pub latencies: Vec<f32>,
    /// The floor, when measured.
    pub floor: Option<Floor>,
    /// How long the store's writes waited for durability, when the backend measures it
    /// (PostgreSQL: submission to commit).
    pub commit_latency: Option<secretchat::StoreLatency>,
}

impl Report {
    /// CPU µs per delivered message by phase: the engine's chat steps (protocol and message
    /// crypto), DH, storage, file crypto and loading sleeping chats as the engine measured
    /// them, and the rest of the process's CPU time (actor hops and wake-ups, the simulated
    /// server, the simulator's own checks and sends).
    pub fn cpu_split_us(&self) -> [(&'static str, f64); 6] {
        let f = &self.figures;
        let per = |d: f64| d * 1e6 / (self.messages_delivered.max(1) as f64);
        let c = f.cpu_split;
        let measured = c.protocol + c.dh + c.store + c.files + c.load;
        let rest = (f.cpu_s - measured.as_secs_f64()).max(0.0);
        [
            ("steps", per(c.protocol.as_secs_f64())),
            ("DH", per(c.dh.as_secs_f64())),
            ("store", per(c.store.as_secs_f64())),
            ("files", per(c.files.as_secs_f64())),
            ("loads", per(c.load.as_secs_f64())),
            ("rest", per(rest)),
        ]
    }

    /// Assembles the report (takes the ledger's samples).
    pub fn build(
        options: &SimulateOptions,
        ledger: &mut Ledger,
        figures: Figures,
        consistency: Consistency,
    ) -> Self {
        Self {
            options: options.clone(),
            messages_sent: ledger.sent_total(),
            messages_delivered: ledger.delivered,
            lost: figures.lost,
            duplicated: ledger.duplicated,
            misordered: ledger.misordered,
            corrupted: ledger.corrupted,
            files: ledger.files_sent,
            files_verified: ledger.files_verified,
            latency_ms: ledger.percentiles(),
            accept_ms: ledger.accept_percentiles(),
            figures,
            consistency,
            violations: ledger.violations.clone(),
            violation_count: ledger.violation_count,
            per_second: std::mem::take(&mut ledger.per_second),
            rekeys_per_second: ledger
                .rekeys_per_second
                .iter()
                .map(|&n| f64::from(n) / 2.0)
                .collect(),
            latencies: std::mem::take(&mut ledger.latencies),
            floor: None,
            commit_latency: None,
        }
    }

    /// No message lost, duplicated, misordered or corrupted, every chat (checked) consistent,
    /// every chat ready, every file verified.
    pub fn ok(&self) -> bool {
        self.violation_count == 0
            && self.lost == 0
            && self.consistency.inconsistent == 0
            && self.figures.chats_ready == self.options.pairs()
            && self.messages_delivered == self.messages_sent
            && self.files_verified == self.files
    }

    /// Delivered messages per second of the run.
    pub fn msgs_per_sec(&self) -> f64 {
        self.messages_delivered as f64 / self.figures.wall_s.max(1e-9)
    }

    /// The floor ratio (engine throughput / floor throughput), when measured.
    pub fn floor_ratio(&self) -> Option<f64> {
        self.floor
            .as_ref()
            .map(|f| self.msgs_per_sec() / f.msgs_per_sec.max(1e-9))
    }

    /// The JSON document (`--json`).
    pub fn to_json(&self) -> Value {
        let o = &self.options;
        let f = &self.figures;
        let [p50, p90, p99, max] = self.latency_ms;
        let round = |v: f64| (v * 1000.0).round() / 1000.0;
        let mut v = json!({
            "ok": self.ok(),
            "messages_sent": self.messages_sent,
            "messages_delivered": self.messages_delivered,
            "lost": self.lost,
            "duplicated": self.duplicated,
            "misordered": self.misordered,
            "corrupted": self.corrupted,
            "msgs_per_sec": round(self.msgs_per_sec()),
            "latency_ms": { "p50": round(p50), "p90": round(p90), "p99": round(p99), "max": round(max) },
            "accept_ms": {
                "p50": round(self.accept_ms[0]),
                "p90": round(self.accept_ms[1]),
                "p99": round(self.accept_ms[2]),
                "max": round(self.accept_ms[3]),
            },
            "rekeys": f.rekeys,
            "resends": f.resends,
            "resend_requests": f.resend_requests,
            "holes": f.holes,
            "rejected": f.rejected,
            "dh_exponentiations": f.dh_exponentiations,
            "files": self.files,
            "files_verified": self.files_verified,
            "bytes": self.bytes(),
            "peak_rss_bytes": f.peak_rss_bytes,
            "db_bytes": f.db_bytes,
            "key_erasures": f.key_erasures,
            "wall_s": round(f.wall_s),
            "cpu_s": round(f.cpu_s),
            "cpu_us_per_msg": round(f.cpu_s * 1e6 / (self.messages_delivered.max(1) as f64)),
            "chats": o.pairs(),
            "chats_ready": f.chats_ready,
            "chats_consistent": self.consistency.consistent,
            "chats_checked": self.consistency.consistent + self.consistency.inconsistent,
            "restart_s": round(f.restart_s),
            "provision_s": round(f.provision_s),
            "active_peak": f.active_peak,
            "loaded_peak": f.loaded_peak,
            "cpu_split_us_per_msg": self
                .cpu_split_us()
                .iter()
                .map(|(k, v)| ((*k).to_string(), serde_json::json!(round(*v))))
                .collect::<serde_json::Map<_, _>>(),
            "violations": self.violation_count,
            "first_violations": self.violations.iter().map(|v| json!({
                "chat": v.pair, "direction": v.dir, "message": v.idx, "kind": v.kind, "detail": v.detail,
            })).collect::<Vec<_>>(),
            "server": {
                "requests": f.server.requests,
                "updates_dropped": f.server.dropped,
                "updates_duplicated": f.server.duplicated,
                "injected_errors": f.server.injected_errors,
                "deduplicated_sends": f.server.deduplicated,
            },
            "options": {
                "accounts": o.accounts, "chats": o.chats, "messages": o.messages,
                "file_share": o.file_share, "file_size": o.file_size,
                "drop": o.faults.drop, "duplicate": o.faults.duplicate, "reorder": o.faults.reorder,
                "delay_ms": o.faults.latency_ms, "error_rate": o.faults.error,
                "seed": o.seed, "durability": durability_name(&o.durability), "window": o.window,
                "active": o.active, "store": if o.store.is_some() { "postgres" } else { "rocksdb" },
            },
        });
        if let (Some(c), Some(obj)) = (&self.commit_latency, v.as_object_mut()) {
            obj.insert(
                "commit_latency_ms".into(),
                json!({"writes": c.count, "p50": round(c.p50_ms), "p99": round(c.p99_ms), "max": round(c.max_ms)}),
            );
        }
        if let (Some(fl), Some(ratio), Some(obj)) =
            (&self.floor, self.floor_ratio(), v.as_object_mut())
        {
            obj.insert("floor_msgs_per_sec".into(), json!(round(fl.msgs_per_sec)));
            obj.insert("floor_ratio".into(), json!(round(ratio)));
            obj.insert("floor".into(), fl.to_json());
        }
        v
    }

    /// Bytes of application payload sent (texts and files).
    pub fn bytes(&self) -> u64 {
        // Texts average ~110 bytes (8..=200 payload plus the prefix); files are exact.
        let texts = self.messages_sent.saturating_sub(self.files);
        texts * 110 + self.files * self.options.file_size as u64
    }

    /// The human summary.
    pub fn summary(&self) -> String {
        let f = &self.figures;
        let [p50, p90, p99, max] = self.latency_ms;
        let mut s = String::new();
        let verdict = if self.ok() { "OK" } else { "FAILED" };
        s.push_str(&format!(
            "{verdict}: {} chats ({} ready, {} consistent), {} messages sent, {} delivered, \
             {} lost, {} duplicated, {} misordered, {} corrupted\n",
            self.options.pairs(),
            f.chats_ready,
            self.consistency.consistent,
            self.messages_sent,
            self.messages_delivered,
            self.lost,
            self.duplicated,
            self.misordered,
            self.corrupted
        ));
        s.push_str(&format!(
            "throughput: {:.0} msgs/s over {:.1} s; latency p50 {p50:.1} ms, p90 {p90:.1} ms, \
             p99 {p99:.1} ms, max {max:.1} ms; accepted (stored) p50 {:.1} ms, p99 {:.1} ms\n",
            self.msgs_per_sec(),
            f.wall_s,
            self.accept_ms[0],
            self.accept_ms[2],
        ));
        s.push_str(&format!(
            "recovery: {} re-keys ({} DH exponentiations), {} holes, {} Resend requests, {} \
             re-sent, {} rejected; server dropped {} and duplicated {} updates, failed {} \
             requests\n",
            f.rekeys,
            f.dh_exponentiations,
            f.holes,
            f.resend_requests,
            f.resends,
            f.rejected,
            f.server.dropped,
            f.server.duplicated,
            f.server.injected_errors
        ));
        s.push_str(&format!(
            "files: {} sent, {} verified; CPU {:.1} s ({:.0} µs/msg: {}); peak RSS {} MiB; \
             RocksDB {} MiB; chats registered in {:.1} s, {} active at peak ({} chat ends in \
             memory); restart to serving {:.2} s\n",
            self.files,
            self.files_verified,
            f.cpu_s,
            f.cpu_s * 1e6 / (self.messages_delivered.max(1) as f64),
            self.cpu_split_us()
                .iter()
                .map(|(k, v)| format!("{k} {v:.0}"))
                .collect::<Vec<_>>()
                .join(", "),
            f.peak_rss_bytes >> 20,
            f.db_bytes >> 20,
            f.provision_s,
            f.active_peak,
            f.loaded_peak,
            f.restart_s
        ));
        if let Some(c) = &self.commit_latency {
            s.push_str(&format!(
                "store commits: {} writes, p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms\n",
                c.count, c.p50_ms, c.p99_ms, c.max_ms
            ));
        }
        if let (Some(fl), Some(r)) = (&self.floor, self.floor_ratio()) {
            s.push_str(&format!(
                "floor: {:.0} msgs/s (crypto {:.1} µs, DH {:.1} µs, RocksDB {:.1} µs per \
                 message); engine at {r:.2}x the floor\n",
                fl.msgs_per_sec, fl.crypto_us_per_msg, fl.dh_us_per_msg, fl.store_us_per_msg
            ));
        }
        for v in &self.violations {
            s.push_str(&format!(
                "violation: chat {} direction {} message {}: {} — {}\n",
                v.pair,
                v.dir,
                v.idx.map_or("-".to_string(), |i| i.to_string()),
                v.kind,
                v.detail
            ));
        }
        if self.violation_count > self.violations.len() as u64 {
            s.push_str(&format!(
                "… and {} more violations\n",
                self.violation_count - self.violations.len() as u64
            ));
        }
        s
    }
}

/// The `--durability` name of a mode.
pub fn durability_name(d: &secretchat::Durability) -> String {
    use secretchat::Durability as D;
    match d {
        D::Sync => "sync".into(),
        D::GroupCommit { interval } => format!("group:{}ms", interval.as_millis()),
        D::Buffered => "buffered".into(),
    }
}
