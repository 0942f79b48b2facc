//! `--floor`: the raw cost of the run's workload without the engine, measured in the same run —
//! every message's MTProto 2.0 encryption and decryption, every DH exponentiation of the
//! handshakes and re-keys, and two RocksDB write batches per message (the sender's and the
//! receiver's step) with the same durability — on as many threads as the engine had.
//!
//! Large workloads are sampled (at most [`MAX_MESSAGES`] messages and [`MAX_DH`]
//! exponentiations) and scaled linearly; each phase is timed on its own and the floor's time is
//! their sum.

use std::path::Path;
use std::time::{Duration, Instant};

use rand::{RngCore, SeedableRng};
use secretchat::Durability;
use secretchat::crypto::dh::DhParams;
use secretchat::crypto::message::{self, Version};
use secretchat::crypto::prime::TELEGRAM_DH_PRIME;
use secretchat::crypto::{AuthKey, Side};
use serde_json::{Value, json};

use super::SimulateError;

/// Most messages actually processed (the rest is scaled).
pub const MAX_MESSAGES: u64 = 200_000;
/// Most exponentiations actually computed.
pub const MAX_DH: u64 = 400;
/// Bytes of a message's TL payload (envelope, random bytes, text): the run's average.
const PAYLOAD: usize = 176;
/// Bytes written per step: the state record plus the outbox entry or the inbox event.
const RECORD: usize = 900;

/// The floor's figures.
#[derive(Debug, Clone, PartialEq)]
pub struct Floor {
    /// Messages the workload has.
    pub messages: u64,
    /// DH exponentiations it has (4 per handshake and per re-key).
    pub dh_ops: u64,
    /// Messages per second the floor sustains.
    pub msgs_per_sec: f64,
    /// Wall time per message of each phase (µs), over all threads.
    pub crypto_us_per_msg: f64,
    /// DH wall time per message (µs).
    pub dh_us_per_msg: f64,
    /// RocksDB wall time per message (µs).
    pub store_us_per_msg: f64,
    /// Threads used.
    pub threads: usize,
}

impl Floor {
    /// JSON for the report.
    pub fn to_json(&self) -> Value {
        json!({
            "messages": self.messages,
            "dh_ops": self.dh_ops,
            "threads": self.threads,
            "crypto_us_per_msg": self.crypto_us_per_msg,
            "dh_us_per_msg": self.dh_us_per_msg,
            "store_us_per_msg": self.store_us_per_msg,
        })
    }
}

/// Runs `work(thread, share)` on `threads` threads, splitting `n` items; returns the wall time.
fn parallel(
    threads: usize,
    n: u64,
    work: impl Fn(usize, u64) -> Result<(), String> + Sync,
) -> Result<Duration, SimulateError> {
    let t = Instant::now();
    let results: Vec<Result<(), String>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|i| {
                let share = n / threads as u64 + u64::from((i as u64) < n % threads as u64);
                let work = &work;
                s.spawn(move || work(i, share))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err("a floor thread panicked".into()))
            })
            .collect()
    });
    for r in results {
        r.map_err(SimulateError::Floor)?;
    }
    Ok(t.elapsed())
}

/// Measures the floor of `messages` messages, `handshakes` handshakes and `rekeys` re-keys,
/// writing to a fresh RocksDB under `dir`.
///
/// # Errors
/// [`SimulateError::Floor`].
pub fn measure(
    messages: u64,
    handshakes: u64,
    rekeys: u64,
    durability: Durability,
    dir: &Path,
    threads: usize,
) -> Result<Floor, SimulateError> {
    let threads = threads.max(1);
    let sample = messages.clamp(1, MAX_MESSAGES);
    let dh_ops = (handshakes + rekeys) * 4;
    let dh_sample = dh_ops.min(MAX_DH);
    let scale = |d: Duration, done: u64, all: u64| {
        if done == 0 {
            0.0
        } else {
            d.as_secs_f64() * all as f64 / done as f64
        }
    };
    // Crypto: each message encrypted by its sender and decrypted by its receiver.
    let crypto = parallel(threads, sample, |i, n| {
        let mut rng = rand::rngs::StdRng::seed_from_u64(i as u64);
        let mut raw = [0u8; 256];
        rng.fill_bytes(&mut raw);
        let key = AuthKey::new(raw);
        let mut payload = vec![0u8; PAYLOAD];
        for _ in 0..n {
            rng.fill_bytes(&mut payload);
            let pad = message::random_padding(payload.len(), Version::V2, &mut rng);
            let wire = message::encrypt_v2(&key, Side::Originator, &payload, &pad)
                .map_err(|e| e.to_string())?;
            message::decrypt_v2(&key, Side::Originator, &wire).map_err(|e| e.to_string())?;
        }
        Ok(())
    })?;
    // DH: g^a and (g_b)^a, twice per exchange, with the parameters set up as the engine sets
    // them up (`DhParams::tuned`).
    let params = DhParams::new(&TELEGRAM_DH_PRIME, 3)
        .map_err(|e| SimulateError::Floor(e.to_string()))?
        .tuned();
    let dh = parallel(threads, dh_sample.div_ceil(2), |i, n| {
        let mut rng = rand::rngs::StdRng::seed_from_u64(100 + i as u64);
        for _ in 0..n {
            let mut a = [0u8; 256];
            rng.fill_bytes(&mut a);
            let mut b = [0u8; 256];
            rng.fill_bytes(&mut b);
            let g_b = params.public(&b);
            params.shared_key(&g_b, &a).map_err(|e| e.to_string())?;
        }
        Ok(())
    })?;
    // RocksDB: two batches per message, with the run's durability.
    let path = dir.join("floor-db");
    let _ = std::fs::remove_dir_all(&path);
    let mut o = rocksdb::Options::default();
    o.create_if_missing(true);
    o.set_compression_type(rocksdb::DBCompressionType::Lz4);
    let db = rocksdb::DB::open(&o, &path).map_err(|e| SimulateError::Floor(e.to_string()))?;
    let group = match durability {
        Durability::GroupCommit { interval } => Some(interval),
        _ => None,
    };
    let store = parallel(threads, sample * 2, |i, n| {
        let mut w = rocksdb::WriteOptions::default();
        w.set_sync(matches!(durability, Durability::Sync));
        let mut rng = rand::rngs::StdRng::seed_from_u64(200 + i as u64);
        let mut value = vec![0u8; RECORD];
        let mut synced = Instant::now();
        for k in 0..n {
            rng.fill_bytes(&mut value);
            let mut batch = rocksdb::WriteBatch::default();
            let key = [(i as u64).to_be_bytes(), k.to_be_bytes()].concat();
            batch.put(&key[..], &value[..RECORD / 3]);
            batch.put([&key[..], b"s"].concat(), &value[RECORD / 3..]);
            db.write_opt(batch, &w).map_err(|e| e.to_string())?;
            if let Some(every) = group {
                if synced.elapsed() >= every {
                    db.flush_wal(true).map_err(|e| e.to_string())?;
                    synced = Instant::now();
                }
            }
        }
        Ok(())
    })?;
    drop(db);
    let _ = std::fs::remove_dir_all(&path);
    let crypto_s = scale(crypto, sample, messages);
    let dh_s = scale(dh, dh_sample.div_ceil(2) * 2, dh_ops);
    let store_s = scale(store, sample, messages);
    let total = crypto_s + dh_s + store_s;
    let per = |s: f64| s * 1e6 / messages.max(1) as f64;
    Ok(Floor {
        messages,
        dh_ops,
        msgs_per_sec: messages as f64 / total.max(1e-9),
        crypto_us_per_msg: per(crypto_s),
        dh_us_per_msg: per(dh_s),
        store_us_per_msg: per(store_s),
        threads,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_small_floor_runs_and_accounts_every_phase() {
        let dir = tempfile::tempdir().unwrap();
        let f = measure(500, 2, 1, Durability::Buffered, dir.path(), 2).unwrap();
        assert_eq!(f.messages, 500);
        assert_eq!(f.dh_ops, 12);
        assert!(f.crypto_us_per_msg > 0.0 && f.dh_us_per_msg > 0.0 && f.store_us_per_msg > 0.0);
        assert!(f.msgs_per_sec > 0.0);
        assert!(
            !dir.path().join("floor-db").exists(),
            "the floor's database is removed"
        );
    }
}
