//! The RocksDB store: one database per engine, column families per kind of record, and one
//! `WriteBatch` per protocol step.
//!
//! | column family | key | value |
//! |---|---|---|
//! | `meta` | `schema_version`, `next_handle`, `next_inbox`, `qts/<account>`, `dh/<account>`, `prime/<sha256(p)>` | see each |
//! | `chats` | account ‖ handle | [`ChatCore::snapshot`](crate::protocol::chat::ChatCore::snapshot) record |
//! | `chat_index` | account ‖ server chat id | handle |
//! | `outbox` | account ‖ handle ‖ raw out_seq_no | outgoing wire bytes until acknowledged |
//! | `waiting` | account ‖ handle ‖ raw out_seq_no | decrypted messages behind a hole |
//! | `inbox` | sequence | application events not yet acknowledged by the application |
//!
//! All integers in keys are big-endian so iteration follows numeric order. With an at-rest key
//! ([`StoreOptions::at_rest_key`]), records holding key material or plaintext (chat state,
//! waiting messages, inbox events) are sealed with [`cipher::RecordCipher`].

mod account;
pub mod cipher;
mod erase;
mod migrate;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use rocksdb::{
    ColumnFamilyDescriptor, DB, Direction, IteratorMode, Options, WriteBatch, WriteOptions,
};
use sha2::{Digest, Sha256};

use crate::protocol::chat::{AppEvent, OutboxEntry, Persist, WaitingEntry};
use cipher::RecordCipher;

/// The on-disk schema version this build writes. Version 1 sealed only chat state, waiting
/// messages and inbox events, with a cipher not bound to the record's place; version 2 seals
/// every value but the schema version (`migrate.rs` converts on open).
pub const SCHEMA_VERSION: u32 = 2;
/// The `meta` key of the schema version (stored unsealed).
const SCHEMA_KEY: &[u8] = b"schema_version";
/// The `meta` key of the record that proves the at-rest key (present only in sealed databases).
const AT_REST_CHECK: &[u8] = b"at_rest_check";

const CFS: [&str; 6] = ["meta", "chats", "chat_index", "outbox", "waiting", "inbox"];
/// All memtables together (RocksDB's default is 64 MiB × 2 per column family: up to 768 MiB).
const MEMTABLE_BUDGET: usize = 128 << 20;
/// One column family's memtable before it is flushed.
const MEMTABLE_BYTES: usize = 32 << 20;
/// The write-ahead log, at most: older column families are flushed beyond it, which bounds
/// what an open after a crash replays.
const MAX_WAL_BYTES: u64 = 128 << 20;

/// When a write is durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// fsync every batch before anything that depends on it happens (the default).
    #[default]
    Sync,
    /// Batches are written at once but fsynced together every `interval`; whatever depends on a
    /// batch (sends, acknowledgements) waits for its fsync. Many chats share one fsync.
    GroupCommit {
        /// How long a batch may wait for its fsync.
        interval: Duration,
    },
    /// Never wait for fsync: survives a process crash (the WAL is in the OS), not a power loss.
    /// For benchmarks.
    Buffered,
}

/// How to open a store.
#[derive(Clone)]
pub struct StoreOptions {
    /// Durability mode.
    pub durability: Durability,
    /// Seal every record at rest with this application key (XChaCha20-Poly1305, bound to the
    /// record's place; see [`cipher`]).
    pub at_rest_key: Option<[u8; 32]>,
    /// A destroyed key (an old key after a re-key, the keys of a closed chat) is gone from
    /// every file of the database within this time (the default: 60 s). See
    /// [`Store::erase_dropped_secrets`].
    pub erase_keys_within: Duration,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            durability: Durability::default(),
            at_rest_key: None,
            erase_keys_within: DEFAULT_ERASE_WITHIN,
        }
    }
}

/// Reads an at-rest key file: 32 raw bytes, or 64 hex digits (surrounding whitespace
/// ignored). The buffers read are zeroized.
///
/// # Errors
/// [`StoreError::KeyFile`] when the file cannot be read or holds anything else.
pub fn read_key_file(path: &Path) -> Result<[u8; 32], StoreError> {
    let bad = |why: &str| StoreError::KeyFile(format!("{}: {why}", path.display()));
    let bytes = zeroize::Zeroizing::new(std::fs::read(path).map_err(|e| bad(&e.to_string()))?);
    let mut key = [0u8; 32];
    if bytes.len() == 32 {
        key.copy_from_slice(&bytes);
        return Ok(key);
    }
    let text = std::str::from_utf8(&bytes)
        .map(str::trim)
        .map_err(|_| bad("neither 32 bytes nor 64 hex digits"))?;
    hex::decode_to_slice(text, &mut key).map_err(|_| bad("neither 32 bytes nor 64 hex digits"))?;
    Ok(key)
}

/// [`StoreOptions::erase_keys_within`] by default.
pub const DEFAULT_ERASE_WITHIN: Duration = Duration::from_secs(60);

impl std::fmt::Debug for StoreOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreOptions")
            .field("durability", &self.durability)
            .field("at_rest_key", &self.at_rest_key.map(|_| "<redacted>"))
            .field("erase_keys_within", &self.erase_keys_within)
            .finish()
    }
}

/// Store failures.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// RocksDB reported an error.
    #[error("rocksdb: {0}")]
    Db(#[from] rocksdb::Error),
    /// The database was written by a newer version.
    #[error(
        "database schema version {found} is newer than this build's {SCHEMA_VERSION}; upgrade secretchat"
    )]
    NewerSchema {
        /// The version found.
        found: u32,
    },
    /// The database was sealed with another at-rest key, or with one while none was given, or
    /// without one while one was given.
    #[error("the at-rest key does not match the database's")]
    WrongAtRestKey,
    /// An at-rest key file could not be read or is malformed.
    #[error("at-rest key file {0}")]
    KeyFile(String),
    /// A record is corrupt, was altered, or was moved from where it was written.
    #[error("corrupt record in {0}")]
    Corrupt(&'static str),
}

/// A stored chat: its state record, outbox and waiting queue.
#[derive(Debug, Default)]
pub struct StoredChat {
    /// The state record.
    pub state: Vec<u8>,
    /// Unacknowledged outgoing messages by raw out_seq_no.
    pub outbox: Vec<(u32, OutboxEntry)>,
    /// Queued incoming messages by raw out_seq_no.
    pub waiting: Vec<(u32, WaitingEntry)>,
}

/// One protocol step's writes for one chat.
#[derive(Debug)]
pub struct ChatWrite<'a> {
    /// Account id.
    pub account: u64,
    /// The chat's local handle.
    pub handle: u64,
    /// The server chat id to index (0: unknown yet, or already indexed).
    pub chat_id: i32,
    /// The new state record.
    pub state: &'a [u8],
    /// The outbox/waiting changes of the steps this write covers, applied in order.
    pub persist: &'a [Persist],
    /// Application events to put in the inbox.
    pub events: &'a [AppEvent],
    /// Highest qts whose processing this step completes (stored with it), if any.
    pub qts: Option<i32>,
}

/// A chat written by [`Store::write_new_chats`].
pub struct NewChat {
    /// Account id.
    pub account: u64,
    /// Its handle (from [`Store::new_handles`]).
    pub handle: u64,
    /// Server chat id.
    pub chat_id: i32,
    /// The state record (holds the key: zeroized on drop).
    pub state: zeroize::Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for NewChat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewChat")
            .field("account", &self.account)
            .field("handle", &self.handle)
            .field("chat_id", &self.chat_id)
            .field("state", &"<redacted>")
            .finish()
    }
}

/// A key and its value.
pub type KeyValue = (Vec<u8>, Vec<u8>);

/// A write's place in the commit order; wait for it with [`Store::synced`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Ticket(u64);

/// The database.
pub struct Store {
    db: DB,
    durability: Durability,
    cipher: Option<RecordCipher>,
    next_inbox: AtomicU64,
    /// Inbox numbers below this are reserved in `meta/next_inbox`.
    inbox_reserved: std::sync::Mutex<u64>,
    next_handle: AtomicU64,
    written: AtomicU64,
    synced: tokio::sync::watch::Sender<u64>,
    /// Group commit keeps the write-ahead log in RocksDB's buffer until the group-commit
    /// thread flushes and fsyncs it (no `write` system call per step); writes that nothing
    /// waits for are flushed to the file at once ([`Store::write_now`]), so they survive a
    /// process crash as before.
    manual_wal: bool,
    /// Chats (account ‖ handle) that destroyed a secret since the last erasure pass.
    erase_pending: std::sync::Mutex<std::collections::BTreeSet<Vec<u8>>>,
    /// Held by the erasure pass in progress.
    erasing: std::sync::Mutex<()>,
    /// Erasure passes done.
    erasures: AtomicU64,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("durability", &self.durability)
            .finish_non_exhaustive()
    }
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

fn chat_key(account: u64, handle: u64) -> Vec<u8> {
    cat(&[&account.to_be_bytes(), &handle.to_be_bytes()])
}

fn u64_of(v: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(v.try_into().ok()?))
}

impl Store {
    /// Opens (creating if needed) the database at `path`. Reads only the schema version and two
    /// counters: opening does not grow with the number of chats.
    ///
    /// # Errors
    /// [`StoreError::NewerSchema`] for a database from a newer version; RocksDB errors.
    pub fn open(path: &Path, options: StoreOptions) -> Result<Arc<Self>, StoreError> {
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        opts.set_compression_type(rocksdb::DBCompressionType::Lz4);
        // Memory and restart time at a million chats (docs/engine.md, "Store tuning"): one
        // memtable budget for all column families instead of 64 MiB × 2 each, and a bounded
        // write-ahead log (what a restart after a crash replays).
        opts.set_db_write_buffer_size(MEMTABLE_BUDGET);
        opts.set_max_total_wal_size(MAX_WAL_BYTES);
        opts.set_max_background_jobs(2);
        // Old log files are deleted, never archived or reused (they hold old versions of
        // records, keys among them: erase.rs).
        opts.set_recycle_log_file_num(0);
        opts.set_wal_ttl_seconds(0);
        opts.set_wal_size_limit_mb(0);
        let cfs = CFS.iter().map(|n| {
            let mut o = Options::default();
            o.set_write_buffer_size(MEMTABLE_BYTES);
            o.set_compression_type(rocksdb::DBCompressionType::Lz4);
            ColumnFamilyDescriptor::new(*n, o)
        });
        let manual_wal = matches!(options.durability, Durability::GroupCommit { .. });
        opts.set_manual_wal_flush(manual_wal);
        let db = DB::open_cf_descriptors(&opts, path, cfs)?;
        let (synced, _) = tokio::sync::watch::channel(0);
        let store = Store {
            db,
            durability: options.durability,
            cipher: options.at_rest_key.map(|k| RecordCipher::new(&k)),
            next_inbox: AtomicU64::new(0),
            inbox_reserved: std::sync::Mutex::new(0),
            next_handle: AtomicU64::new(1),
            written: AtomicU64::new(0),
            synced,
            manual_wal,
            erase_pending: std::sync::Mutex::default(),
            erasing: std::sync::Mutex::default(),
            erasures: AtomicU64::new(0),
        };
        // The schema version is the one value never sealed: it says how to read the rest.
        let stored = store.db.get_cf(store.cf("meta"), SCHEMA_KEY)?;
        let fresh = stored.is_none();
        let found = match stored {
            Some(v) => v
                .get(..4)
                .and_then(|b| b.try_into().ok())
                .map(u32::from_be_bytes)
                .ok_or(StoreError::Corrupt("meta"))?,
            None => SCHEMA_VERSION,
        };
        if found > SCHEMA_VERSION {
            return Err(StoreError::NewerSchema { found });
        }
        let migrated = found < SCHEMA_VERSION;
        if migrated {
            store.migrate(found)?;
        }
        store.check_at_rest_key(fresh || migrated)?;
        let mut b = WriteBatch::default();
        b.put_cf(store.cf("meta"), SCHEMA_KEY, SCHEMA_VERSION.to_be_bytes());
        store.write_now(b, true)?;
        if let Some(v) = store.meta(b"next_handle")? {
            store.next_handle.store(
                u64_of(&v).ok_or(StoreError::Corrupt("meta"))?,
                Ordering::SeqCst,
            );
        }
        // Inbox sequence numbers are never reused, even after every entry was acknowledged
        // (the crash test found them restarting after the last unacknowledged one): numbers
        // are reserved in blocks, the reservation stored durably before any number of the
        // block is handed out.
        let last = store
            .db
            .iterator_cf(store.cf("inbox"), IteratorMode::End)
            .next()
            .transpose()?;
        let mut next = match last {
            Some((k, _)) => u64_of(&k).ok_or(StoreError::Corrupt("inbox"))? + 1,
            None => 0,
        };
        if let Some(v) = store.meta(b"next_inbox")? {
            next = next.max(u64_of(&v).ok_or(StoreError::Corrupt("meta"))?);
        }
        store.next_inbox.store(next, Ordering::SeqCst);
        *store
            .inbox_reserved
            .lock()
            .map_err(|_| StoreError::Corrupt("inbox"))? = next;
        let store = Arc::new(store);
        if let Durability::GroupCommit { interval } = options.durability {
            let weak = Arc::downgrade(&store);
            std::thread::Builder::new()
                .name("secretchat-group-commit".into())
                .spawn(move || group_commit(weak, interval))
                .map_err(|_| StoreError::Corrupt("thread"))?;
        }
        let weak = Arc::downgrade(&store);
        let within = options.erase_keys_within.max(Duration::from_millis(10));
        std::thread::Builder::new()
            .name("secretchat-key-erasure".into())
            .spawn(move || erase::erasure_loop(weak, within))
            .map_err(|_| StoreError::Corrupt("thread"))?;
        Ok(store)
    }

    /// Checks that the database was sealed with this store's at-rest key, or that both have
    /// none: a sealed record under `meta/at_rest_check` says which. A new (or just migrated)
    /// database gets the record.
    fn check_at_rest_key(&self, new: bool) -> Result<(), StoreError> {
        let found = self.db.get_cf(self.cf("meta"), AT_REST_CHECK)?;
        match (&self.cipher, found) {
            (Some(c), Some(v)) if c.open("meta", AT_REST_CHECK, &v).is_some() => Ok(()),
            (None, None) => Ok(()),
            (Some(_), None) if new => self.put_meta(AT_REST_CHECK, AT_REST_CHECK),
            _ => Err(StoreError::WrongAtRestKey),
        }
    }

    #[allow(clippy::expect_used)]
    fn cf(&self, name: &str) -> &rocksdb::ColumnFamily {
        // Every name in CFS is created on open.
        self.db
            .cf_handle(name)
            .expect("column family created on open")
    }

    fn meta(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.get("meta", key)
    }

    /// The value of `key` in `cf`, opened.
    fn get(&self, cf: &'static str, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        match self.db.get_cf(self.cf(cf), key)? {
            Some(v) => Ok(Some(self.open_sealed(cf, key, &v)?)),
            None => Ok(None),
        }
    }

    /// Puts `plain` as the value of `key` in `cf`, sealed when there is an at-rest key.
    fn put(&self, b: &mut WriteBatch, cf: &'static str, key: &[u8], plain: &[u8]) {
        b.put_cf(self.cf(cf), key, self.seal(cf, key, plain));
    }

    /// A write whose dependants wait for its [`Ticket`] ([`Store::synced`]).
    fn write(&self, batch: WriteBatch) -> Result<Ticket, StoreError> {
        self.commit(batch, self.durability == Durability::Sync, false)
    }

    /// A write nothing waits for: fsynced when `sync`, otherwise at least in the operating
    /// system's buffers when this returns (it survives a process crash).
    fn write_now(&self, batch: WriteBatch, sync: bool) -> Result<Ticket, StoreError> {
        self.commit(batch, sync, !sync && self.manual_wal)
    }

    /// Writes `batch` (fsynced when `sync`; the log buffer written to the file when
    /// `flush_log`) and numbers it.
    fn commit(&self, batch: WriteBatch, sync: bool, flush_log: bool) -> Result<Ticket, StoreError> {
        let mut w = WriteOptions::default();
        w.set_sync(sync);
        self.db.write_opt(batch, &w)?;
        if flush_log {
            self.db.flush_wal(false)?;
        }
        Ok(Ticket(self.written.fetch_add(1, Ordering::SeqCst) + 1))
    }

    /// The inbox sequence number the next stored event gets: every event stored from now on
    /// has one at least this high.
    pub fn inbox_seq_floor(&self) -> u64 {
        self.next_inbox.load(Ordering::SeqCst)
    }

    /// The next inbox sequence number, reserving a new block durably when needed.
    fn next_inbox_seq(&self) -> Result<u64, StoreError> {
        const BLOCK: u64 = 4096;
        let seq = self.next_inbox.fetch_add(1, Ordering::SeqCst);
        let mut reserved = self
            .inbox_reserved
            .lock()
            .map_err(|_| StoreError::Corrupt("inbox"))?;
        if seq >= *reserved {
            let upto = seq + BLOCK;
            self.put_meta(b"next_inbox", &upto.to_be_bytes())?;
            *reserved = upto;
        }
        Ok(seq)
    }

    /// Writes a metadata value durably.
    ///
    /// # Errors
    /// RocksDB errors.
    pub fn put_meta(&self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        let mut b = WriteBatch::default();
        self.put(&mut b, "meta", key, value);
        self.write_now(b, true)?;
        Ok(())
    }

    /// Writes a metadata value without waiting for fsync (progress records whose loss only
    /// repeats work).
    ///
    /// # Errors
    /// RocksDB errors.
    pub fn put_meta_lazy(&self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        let mut b = WriteBatch::default();
        self.put(&mut b, "meta", key, value);
        self.write_now(b, false)?;
        Ok(())
    }

    /// Reads a metadata value.
    ///
    /// # Errors
    /// RocksDB errors.
    pub fn get_meta(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.meta(key)
    }

    /// Removes a metadata value (without waiting for fsync: used for progress records, where a
    /// lost removal only means a finished transfer is looked at again).
    ///
    /// # Errors
    /// RocksDB errors.
    pub fn delete_meta(&self, key: &[u8]) -> Result<(), StoreError> {
        let mut b = WriteBatch::default();
        b.delete_cf(self.cf("meta"), key);
        self.write_now(b, false)?;
        Ok(())
    }

    /// Metadata entries whose key starts with `prefix`.
    ///
    /// # Errors
    /// RocksDB errors.
    pub fn meta_with_prefix(&self, prefix: &[u8]) -> Result<Vec<KeyValue>, StoreError> {
        let mut out = Vec::new();
        for item in self.db.iterator_cf(
            self.cf("meta"),
            IteratorMode::From(prefix, Direction::Forward),
        ) {
            let (k, v) = item?;
            if !k.starts_with(prefix) {
                break;
            }
            let v = self.open_sealed("meta", &k, &v)?;
            out.push((k.to_vec(), v));
        }
        Ok(out)
    }

    /// Waits until the write with `ticket` is durable (at once except in group commit).
    pub async fn synced(&self, ticket: Ticket) {
        if !matches!(self.durability, Durability::GroupCommit { .. }) {
            return;
        }
        let mut rx = self.synced.subscribe();
        let _ = rx.wait_for(|&s| s >= ticket.0).await;
    }

    /// A new chat handle (persisted before it is returned).
    ///
    /// # Errors
    /// RocksDB errors.
    pub fn new_handle(&self) -> Result<u64, StoreError> {
        let h = self.next_handle.fetch_add(1, Ordering::SeqCst);
        self.put_meta(b"next_handle", &(h + 1).to_be_bytes())?;
        Ok(h)
    }

    /// Reserves `n` consecutive handles with one durable write; returns the first.
    ///
    /// # Errors
    /// RocksDB errors.
    pub fn new_handles(&self, n: u64) -> Result<u64, StoreError> {
        let first = self.next_handle.fetch_add(n, Ordering::SeqCst);
        self.put_meta(b"next_handle", &(first + n).to_be_bytes())?;
        Ok(first)
    }

    /// Stores many new chats (state record and chat-id index each) in one batch, synced once:
    /// the bulk-provisioning path.
    ///
    /// # Errors
    /// RocksDB errors; nothing is written then.
    pub fn write_new_chats(&self, chats: &[NewChat]) -> Result<(), StoreError> {
        let mut b = WriteBatch::default();
        for c in chats {
            self.put(&mut b, "chats", &chat_key(c.account, c.handle), &c.state);
            self.put(
                &mut b,
                "chat_index",
                &index_key(c.account, c.chat_id),
                &c.handle.to_be_bytes(),
            );
        }
        self.write_now(b, self.durability != Durability::Buffered)?;
        Ok(())
    }

    /// Stores one step of one chat in one batch: state, outbox and waiting changes, inbox
    /// events, the chat-id index and the account's processed qts.
    ///
    /// # Errors
    /// RocksDB errors; nothing is written then.
    pub fn write_chat(&self, w: &ChatWrite<'_>) -> Result<(Ticket, Vec<u64>), StoreError> {
        let key = chat_key(w.account, w.handle);
        let mut b = WriteBatch::default();
        self.put(&mut b, "chats", &key, w.state);
        if w.chat_id != 0 {
            self.put(
                &mut b,
                "chat_index",
                &index_key(w.account, w.chat_id),
                &w.handle.to_be_bytes(),
            );
        }
        for p in w.persist {
            self.put_persist(&mut b, &key, p)?;
        }

        let mut seqs = Vec::with_capacity(w.events.len());
        for e in w.events {
            let seq = self.next_inbox_seq()?;
            let rec = e
                .to_record(w.account, w.handle)
                .map_err(|_| StoreError::Corrupt("inbox"))?;
            self.put(&mut b, "inbox", &seq.to_be_bytes(), &rec);
            seqs.push(seq);
        }
        if let Some(qts) = w.qts {
            self.put(&mut b, "meta", &qts_key(w.account), &qts.to_be_bytes());
        }
        let ticket = self.write(b)?;
        // Noted once written: an erasure pass before this write would have left the version
        // it replaces.
        if w.persist.iter().any(|p| p.secrets_dropped || p.closed) {
            self.note_secrets_dropped(key);
        }
        Ok((ticket, seqs))
    }

    /// One step's outbox/waiting changes, in the order they happened.
    fn put_persist(&self, b: &mut WriteBatch, key: &[u8], p: &Persist) -> Result<(), StoreError> {
        if p.closed {
            // Last: nothing the closing step put survives it.
            let lo = cat(&[key, &0u32.to_be_bytes()]);
            let hi = cat(&[key, &u32::MAX.to_be_bytes(), &[0xff]]);
            b.delete_range_cf(self.cf("outbox"), &lo, &hi);
            b.delete_range_cf(self.cf("waiting"), &lo, &hi);
            return Ok(());
        }
        for raw in &p.outbox_done {
            b.delete_cf(self.cf("outbox"), cat(&[key, &raw.to_be_bytes()]));
        }
        for (raw, e) in &p.outbox_put {
            let v = e.to_bytes().map_err(|_| StoreError::Corrupt("outbox"))?;
            self.put(b, "outbox", &cat(&[key, &raw.to_be_bytes()]), &v);
        }
        for (raw, e) in &p.waiting_put {
            let v = e.to_bytes().map_err(|_| StoreError::Corrupt("waiting"))?;
            self.put(b, "waiting", &cat(&[key, &raw.to_be_bytes()]), &v);
        }
        for raw in &p.waiting_done {
            b.delete_cf(self.cf("waiting"), cat(&[key, &raw.to_be_bytes()]));
        }
        Ok(())
    }

    /// Loads one chat (state, outbox, waiting queue), if stored.
    ///
    /// # Errors
    /// RocksDB errors, [`StoreError::Corrupt`].
    pub fn load_chat(&self, account: u64, handle: u64) -> Result<Option<StoredChat>, StoreError> {
        let key = chat_key(account, handle);
        let Some(state) = self.get("chats", &key)? else {
            return Ok(None);
        };
        let mut out = StoredChat {
            state,
            ..StoredChat::default()
        };
        for item in self.scan("outbox", &key) {
            let (raw, v) = item?;
            let v = self.open_sealed("outbox", &cat(&[&key, &raw.to_be_bytes()]), &v)?;
            out.outbox.push((
                raw,
                OutboxEntry::from_bytes(&v).map_err(|_| StoreError::Corrupt("outbox"))?,
            ));
        }
        for item in self.scan("waiting", &key) {
            let (raw, v) = item?;
            let v = self.open_sealed("waiting", &cat(&[&key, &raw.to_be_bytes()]), &v)?;
            out.waiting.push((
                raw,
                WaitingEntry::from_bytes(&v).map_err(|_| StoreError::Corrupt("waiting"))?,
            ));
        }
        Ok(Some(out))
    }

    /// The entries under `prefix` (a chat key) by raw out_seq_no.
    fn scan<'a>(
        &'a self,
        cf: &'static str,
        prefix: &'a [u8],
    ) -> impl Iterator<Item = Result<(u32, Vec<u8>), StoreError>> + 'a {
        self.db
            .iterator_cf(self.cf(cf), IteratorMode::From(prefix, Direction::Forward))
            .map_while(move |item| match item {
                Ok((k, v)) if k.starts_with(prefix) => {
                    let raw = k
                        .get(prefix.len()..)
                        .and_then(|r| r.try_into().ok())
                        .map(u32::from_be_bytes);
                    Some(raw.map(|r| (r, v.to_vec())).ok_or(StoreError::Corrupt(cf)))
                }
                Ok(_) => None,
                Err(e) => Some(Err(e.into())),
            })
    }

    /// Records that server chat `chat_id` of `account` is `handle` (durably, at once: a repeated
    /// request update must find it).
    ///
    /// # Errors
    /// RocksDB errors.
    pub fn index_chat(&self, account: u64, chat_id: i32, handle: u64) -> Result<(), StoreError> {
        let mut b = WriteBatch::default();
        self.put(
            &mut b,
            "chat_index",
            &index_key(account, chat_id),
            &handle.to_be_bytes(),
        );
        self.write_now(b, self.durability == Durability::Sync)?;
        Ok(())
    }

    /// Whether chat `handle` of `account` has a state record.
    ///
    /// # Errors
    /// RocksDB errors.
    pub fn has_chat(&self, account: u64, handle: u64) -> Result<bool, StoreError> {
        Ok(self
            .db
            .get_pinned_cf(self.cf("chats"), chat_key(account, handle))?
            .is_some())
    }

    /// The handle of server chat `chat_id` of `account`.
    ///
    /// # Errors
    /// RocksDB errors.
    pub fn handle_of(&self, account: u64, chat_id: i32) -> Result<Option<u64>, StoreError> {
        match self.get("chat_index", &index_key(account, chat_id))? {
            Some(v) => Ok(Some(u64_of(&v).ok_or(StoreError::Corrupt("chat_index"))?)),
            None => Ok(None),
        }
    }

    /// Handles of every chat of `account` (for listing; not used on open).
    ///
    /// # Errors
    /// RocksDB errors.
    pub fn chats_of(&self, account: u64) -> Result<Vec<u64>, StoreError> {
        let prefix = account.to_be_bytes();
        let mut out = Vec::new();
        for item in self.db.iterator_cf(
            self.cf("chats"),
            IteratorMode::From(&prefix, Direction::Forward),
        ) {
            let (k, _) = item?;
            if !k.starts_with(&prefix) {
                break;
            }
            out.push(
                k.get(8..)
                    .and_then(u64_of)
                    .ok_or(StoreError::Corrupt("chats"))?,
            );
        }
        Ok(out)
    }

    /// `(account, handle)` of every chat with unacknowledged outgoing or queued incoming
    /// messages: the ones whose timers must run after a restart. One seek per such chat, none
    /// for idle chats.
    ///
    /// # Errors
    /// RocksDB errors.
    pub fn chats_with_pending_work(&self) -> Result<Vec<(u64, u64)>, StoreError> {
        self.chats_with_pending_work_until(&AtomicBool::new(false))
    }

    /// [`Store::chats_with_pending_work`], ending early (with what it found) once `cancel` is
    /// set.
    ///
    /// # Errors
    /// RocksDB errors.
    pub fn chats_with_pending_work_until(
        &self,
        cancel: &AtomicBool,
    ) -> Result<Vec<(u64, u64)>, StoreError> {
        let mut out = std::collections::BTreeSet::new();
        for cf in ["outbox", "waiting"] {
            let mut from = Vec::new();
            while !cancel.load(Ordering::Relaxed) {
                let mut it = self
                    .db
                    .iterator_cf(self.cf(cf), IteratorMode::From(&from, Direction::Forward));
                let Some(item) = it.next() else {
                    break;
                };
                let (k, _) = item?;
                let (Some(a), Some(h)) =
                    (k.get(..8).and_then(u64_of), k.get(8..16).and_then(u64_of))
                else {
                    return Err(StoreError::Corrupt(cf));
                };
                out.insert((a, h));
                // Skip past this chat's entries.
                from = chat_key(a, h);
                from.extend_from_slice(&[0xff; 5]);
            }
        }
        Ok(out.into_iter().collect())
    }

    /// The highest qts stored as processed for `account`.
    ///
    /// # Errors
    /// RocksDB errors.
    pub fn qts(&self, account: u64) -> Result<Option<i32>, StoreError> {
        Ok(self.meta(&qts_key(account))?.and_then(|v| {
            v.get(..4)
                .and_then(|b| b.try_into().ok())
                .map(i32::from_be_bytes)
        }))
    }

    /// Records `qts` as processed for `account` (for events that touch no chat).
    ///
    /// # Errors
    /// RocksDB errors.
    pub fn set_qts(&self, account: u64, qts: i32) -> Result<Ticket, StoreError> {
        let mut b = WriteBatch::default();
        self.put(&mut b, "meta", &qts_key(account), &qts.to_be_bytes());
        self.write_now(b, self.durability == Durability::Sync)
    }

    /// Application events not yet acknowledged, in order: `(seq, account, handle, event)`.
    ///
    /// # Errors
    /// RocksDB errors, [`StoreError::Corrupt`].
    pub fn inbox(&self) -> Result<Vec<(u64, u64, u64, AppEvent)>, StoreError> {
        self.inbox_page(0, usize::MAX)
    }

    /// At most `limit` unacknowledged application events from sequence number `from` on, in
    /// order: `(seq, account, handle, event)`.
    ///
    /// # Errors
    /// RocksDB errors, [`StoreError::Corrupt`].
    pub fn inbox_page(
        &self,
        from: u64,
        limit: usize,
    ) -> Result<Vec<(u64, u64, u64, AppEvent)>, StoreError> {
        let mut out = Vec::new();
        let start = from.to_be_bytes();
        let mode = IteratorMode::From(&start, Direction::Forward);
        for item in self.db.iterator_cf(self.cf("inbox"), mode).take(limit) {
            let (k, v) = item?;
            let seq = u64_of(&k).ok_or(StoreError::Corrupt("inbox"))?;
            let v = self.open_sealed("inbox", &k, &v)?;
            let (account, handle, e) =
                AppEvent::from_record(&v).map_err(|_| StoreError::Corrupt("inbox"))?;
            out.push((seq, account, handle, e));
        }
        Ok(out)
    }

    /// Writes the memtables out (a clean close: the next open has no log to replay).
    ///
    /// # Errors
    /// RocksDB errors.
    pub fn flush(&self) -> Result<(), StoreError> {
        let cfs: Vec<_> = CFS.iter().map(|n| self.cf(n)).collect();
        self.db
            .flush_cfs_opt(&cfs, &rocksdb::FlushOptions::default())?;
        Ok(())
    }

    /// The application consumed these inbox events (one batch).
    ///
    /// # Errors
    /// RocksDB errors.
    pub fn ack_inbox(&self, seqs: &[u64]) -> Result<Ticket, StoreError> {
        let mut b = WriteBatch::default();
        for seq in seqs {
            b.delete_cf(self.cf("inbox"), seq.to_be_bytes());
        }
        self.write_now(b, self.durability == Durability::Sync)
    }

    /// The stored safe-prime verdict for `p`.
    ///
    /// # Errors
    /// RocksDB errors.
    pub fn prime_verdict(&self, p: &[u8]) -> Result<Option<bool>, StoreError> {
        Ok(self.meta(&prime_key(p))?.map(|v| v.first() == Some(&1)))
    }

    /// Stores the safe-prime verdict for `p`.
    ///
    /// # Errors
    /// RocksDB errors.
    pub fn set_prime_verdict(&self, p: &[u8], safe: bool) -> Result<(), StoreError> {
        self.put_meta(&prime_key(p), &[u8::from(safe)])
    }

    /// The cached DH config of `account`: `(version, g, p)`.
    ///
    /// # Errors
    /// RocksDB errors.
    pub fn dh_config(&self, account: u64) -> Result<Option<(i32, i32, Vec<u8>)>, StoreError> {
        let Some(v) = self.meta(&dh_key(account))? else {
            return Ok(None);
        };
        let (head, p) = v.split_at_checked(8).ok_or(StoreError::Corrupt("meta"))?;
        let version = i32::from_be_bytes(
            head[..4]
                .try_into()
                .map_err(|_| StoreError::Corrupt("meta"))?,
        );
        let g = i32::from_be_bytes(
            head[4..]
                .try_into()
                .map_err(|_| StoreError::Corrupt("meta"))?,
        );
        Ok(Some((version, g, p.to_vec())))
    }

    /// Caches the DH config of `account`.
    ///
    /// # Errors
    /// RocksDB errors.
    pub fn set_dh_config(
        &self,
        account: u64,
        version: i32,
        g: i32,
        p: &[u8],
    ) -> Result<(), StoreError> {
        self.put_meta(
            &dh_key(account),
            &cat(&[&version.to_be_bytes(), &g.to_be_bytes(), p]),
        )
    }

    /// Bytes the database occupies on disk (live SST files + WAL estimate).
    pub fn disk_size(&self) -> u64 {
        self.db
            .property_int_value("rocksdb.total-sst-files-size")
            .ok()
            .flatten()
            .unwrap_or(0)
    }

    /// `plain` as stored under `key` in `cf`: sealed when there is an at-rest key.
    fn seal(&self, cf: &'static str, key: &[u8], plain: &[u8]) -> Vec<u8> {
        match &self.cipher {
            Some(c) => c.seal(cf, key, plain),
            None => plain.to_vec(),
        }
    }

    /// A stored value of `key` in `cf`, opened and authenticated.
    fn open_sealed(&self, cf: &'static str, key: &[u8], v: &[u8]) -> Result<Vec<u8>, StoreError> {
        match &self.cipher {
            Some(c) => c
                .open(cf, key, v)
                .map(|mut z| std::mem::take(&mut *z))
                .ok_or(StoreError::Corrupt(cf)),
            None => Ok(v.to_vec()),
        }
    }

    fn sync_now(&self) -> Result<(), StoreError> {
        let upto = self.written.load(Ordering::SeqCst);
        self.db.flush_wal(true)?;
        self.synced.send_replace(upto);
        Ok(())
    }
}

fn index_key(account: u64, chat_id: i32) -> Vec<u8> {
    cat(&[&account.to_be_bytes(), &chat_id.to_be_bytes()])
}

fn qts_key(account: u64) -> Vec<u8> {
    cat(&[b"qts/", &account.to_be_bytes()])
}

fn dh_key(account: u64) -> Vec<u8> {
    cat(&[b"dh/", &account.to_be_bytes()])
}

fn prime_key(p: &[u8]) -> Vec<u8> {
    cat(&[b"prime/", &Sha256::digest(p)])
}

/// The group-commit loop: one fsync per interval covers every batch written before it.
fn group_commit(store: std::sync::Weak<Store>, interval: Duration) {
    loop {
        std::thread::sleep(interval);
        let Some(s) = store.upgrade() else {
            return;
        };
        if s.written.load(Ordering::SeqCst) > *s.synced.borrow() {
            let _ = s.sync_now();
        }
    }
}
