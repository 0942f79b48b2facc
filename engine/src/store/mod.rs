//! The store: the engine's records in an ordered key-value [`Backend`] — RocksDB embedded
//! ([`rocks`]) by default — one family per kind of record, and one atomic [`Batch`] per
//! protocol step.
//!
//! | family | key | value |
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
mod counters;
mod inbox;
pub use inbox::InboxEvent;
pub mod backend;
pub mod cipher;
mod erase;
mod migrate;
#[cfg(feature = "postgres")]
pub mod postgres;
pub mod rocks;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::protocol::chat::{AppEvent, OutboxEntry, Persist, WaitingEntry};
pub use backend::{Backend, Batch, Family, Latency, Ticket, WriteMode};
use cipher::RecordCipher;

/// The on-disk schema version this build writes. Version 1 sealed only chat state, waiting
/// messages and inbox events, with a cipher not bound to the record's place; version 2 seals
/// every value but the schema version (`migrate.rs` converts on open).
pub const SCHEMA_VERSION: u32 = 2;
/// The `meta` key of the schema version (stored unsealed).
const SCHEMA_KEY: &[u8] = b"schema_version";
/// The `meta` key of the record that proves the at-rest key (present only in sealed databases).
const AT_REST_CHECK: &[u8] = b"at_rest_check";

/// When a write is durable (on RocksDB: on a shared database every step is one committed
/// transaction, `synchronous_commit` on, which the chat awaits without holding its thread,
/// whatever the mode).
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
#[derive(Debug, Clone, thiserror::Error)]
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
    /// A shared database refused a write: another node owns this account now (its epoch moved
    /// past the one this node holds). The account must stop on this node.
    #[error("account {account} is owned by another node (fenced off)")]
    Fenced {
        /// The account.
        account: u64,
    },
    /// Another node's lease on this account runs: it cannot be taken yet.
    #[error("account {account} is owned by node {owner:?}")]
    Owned {
        /// The account.
        account: u64,
        /// The node that owns it.
        owner: String,
    },
    /// A shared database failed or could not be reached.
    #[error("database: {0}")]
    Remote(String),
    /// A shared database needs an at-rest key (it sees only sealed values).
    #[error("a shared database needs an at-rest key")]
    AtRestKeyRequired,
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
    /// Metadata records removed with the step (an upload's record, once its message is
    /// stored: see `runtime/files/upload.rs`).
    pub forget: &'a [Vec<u8>],
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

/// The engine's records over a [`Backend`].
pub struct Store {
    db: Arc<dyn Backend>,
    durability: Durability,
    cipher: Option<RecordCipher>,
    next_inbox: AtomicU64,
    /// Inbox numbers below this are reserved in `meta/next_inbox`.
    inbox_reserved: std::sync::Mutex<u64>,
    next_handle: AtomicU64,
    /// On a shared database: the blocks of handles and inbox numbers this node holds, taken
    /// from the database's counters (two nodes never hand out the same number).
    shared: Option<counters::SharedCounters>,
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
        let db = rocks::Rocks::open(path, options.durability)?;
        Self::with_backend(db, options)
    }

    /// Opens the store over `db` (see [`Store::open`]).
    ///
    /// # Errors
    /// As [`Store::open`].
    pub fn with_backend(
        db: Arc<dyn Backend>,
        options: StoreOptions,
    ) -> Result<Arc<Self>, StoreError> {
        let shared = db.is_shared();
        if shared && options.at_rest_key.is_none() {
            return Err(StoreError::AtRestKeyRequired);
        }
        let store = Store {
            db,
            durability: options.durability,
            cipher: options.at_rest_key.map(|k| RecordCipher::new(&k)),
            next_inbox: AtomicU64::new(0),
            inbox_reserved: std::sync::Mutex::new(0),
            next_handle: AtomicU64::new(1),
            shared: shared.then(counters::SharedCounters::default),
            erase_pending: std::sync::Mutex::default(),
            erasing: std::sync::Mutex::default(),
            erasures: AtomicU64::new(0),
        };
        // The schema version is the one value never sealed: it says how to read the rest.
        let stored = store.db.get(Family::Meta, SCHEMA_KEY)?;
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
        let mut b = Batch::default();
        b.put(Family::Meta, SCHEMA_KEY, SCHEMA_VERSION.to_be_bytes());
        store.db.write(b, WriteMode::Sync)?;
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
        let mut next = match store.db.last_key(Family::Inbox)? {
            Some(k) => u64_of(&k).ok_or(StoreError::Corrupt("inbox"))? + 1,
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
        let found = self.db.get(Family::Meta, AT_REST_CHECK)?;
        match (&self.cipher, found) {
            (Some(c), Some(v)) if c.open("meta", AT_REST_CHECK, &v).is_some() => Ok(()),
            (None, None) => Ok(()),
            (Some(_), None) if new => self.put_meta(AT_REST_CHECK, AT_REST_CHECK),
            _ => Err(StoreError::WrongAtRestKey),
        }
    }

    fn meta(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.get(Family::Meta, key)
    }

    /// The value of `key` in `family`, opened.
    fn get(&self, family: Family, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        match self.db.get(family, key)? {
            Some(v) => Ok(Some(self.open_sealed(family, key, &v)?)),
            None => Ok(None),
        }
    }

    /// Puts `plain` as the value of `key` in `family`, sealed when there is an at-rest key.
    fn put(&self, b: &mut Batch, family: Family, key: &[u8], plain: &[u8]) {
        b.put(family, key, self.seal(family, key, plain));
    }

    /// A write whose dependants wait for its [`Ticket`] ([`Store::synced`]).
    fn write(&self, batch: Batch) -> Result<Ticket, StoreError> {
        // A shared database commits every group durably; the writer awaits the ticket
        // rather than hold its thread for the round trip.
        if self.shared.is_some() {
            return self.db.write(batch, WriteMode::Group);
        }
        let mode = match self.durability {
            Durability::Sync => WriteMode::Sync,
            Durability::GroupCommit { .. } => WriteMode::Group,
            Durability::Buffered => WriteMode::Flushed,
        };
        self.db.write(batch, mode)
    }

    /// A write nothing waits for: durable when `sync`, otherwise at least in the operating
    /// system's buffers when this returns (it survives a process crash).
    fn write_now(&self, batch: Batch, sync: bool) -> Result<Ticket, StoreError> {
        let mode = if sync {
            WriteMode::Sync
        } else {
            WriteMode::Flushed
        };
        self.db.write(batch, mode)
    }

    /// Writes a metadata value durably.
    ///
    /// # Errors
    /// RocksDB errors.
    pub fn put_meta(&self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        let mut b = Batch::default();
        self.put(&mut b, Family::Meta, key, value);
        self.write_now(b, true)?;
        Ok(())
    }

    /// Writes a metadata value without waiting for fsync (progress records whose loss only
    /// repeats work).
    ///
    /// # Errors
    /// RocksDB errors.
    pub fn put_meta_lazy(&self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        let mut b = Batch::default();
        self.put(&mut b, Family::Meta, key, value);
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
        let mut b = Batch::default();
        b.delete(Family::Meta, key);
        self.write_now(b, false)?;
        Ok(())
    }

    /// Metadata entries whose key starts with `prefix`.
    ///
    /// # Errors
    /// RocksDB errors.
    pub fn meta_with_prefix(&self, prefix: &[u8]) -> Result<Vec<KeyValue>, StoreError> {
        let mut out = Vec::new();
        for (k, v) in self.prefixed(Family::Meta, prefix)? {
            let v = self.open_sealed(Family::Meta, &k, &v)?;
            out.push((k, v));
        }
        Ok(out)
    }

    /// Waits until the write with `ticket` is durable (at once on RocksDB except in group
    /// commit; on a shared database when its transaction commits).
    ///
    /// # Errors
    /// [`StoreError::Fenced`] when it never will be (its account moved to another node before
    /// it committed): nothing that depends on it may happen.
    pub async fn synced(&self, ticket: Ticket) -> Result<(), StoreError> {
        self.db.synced(ticket).await
    }

    /// The entries of `family` whose key starts with `prefix`, in key order (values as stored).
    fn prefixed(&self, family: Family, prefix: &[u8]) -> Result<Vec<KeyValue>, StoreError> {
        match prefix_end(prefix) {
            Some(end) => self.db.range(family, prefix, Some(&end), usize::MAX),
            None => self.db.range(family, prefix, None, usize::MAX),
        }
    }

    /// Makes `account` this node's (see [`Backend::acquire`]).
    ///
    /// # Errors
    /// [`StoreError::Owned`] while another node owns it; the database's.
    pub fn acquire_account(&self, account: u64) -> Result<(), StoreError> {
        self.db.acquire(account)
    }

    /// How long writes waited for durability, when the backend measures it.
    pub fn commit_latency(&self) -> Option<Latency> {
        self.db.commit_latency()
    }

    /// Accounts lost to another node (see [`Backend::lost_accounts`]).
    pub fn lost_accounts(&self) -> Option<tokio::sync::watch::Receiver<Vec<u64>>> {
        self.db.lost_accounts()
    }

    /// Gives `account` up (see [`Backend::release`]).
    ///
    /// # Errors
    /// The database's.
    pub fn release_account(&self, account: u64) -> Result<(), StoreError> {
        self.db.release(account)
    }

    /// A new chat handle (persisted before it is returned).
    ///
    /// # Errors
    /// RocksDB errors.
    pub fn new_handle(&self) -> Result<u64, StoreError> {
        if self.shared.is_some() {
            return self.new_handles(1);
        }
        let h = self.next_handle.fetch_add(1, Ordering::SeqCst);
        self.put_meta(b"next_handle", &(h + 1).to_be_bytes())?;
        Ok(h)
    }

    /// Reserves `n` consecutive handles with one durable write; returns the first.
    ///
    /// # Errors
    /// RocksDB errors.
    pub fn new_handles(&self, n: u64) -> Result<u64, StoreError> {
        if let Some(shared) = &self.shared {
            let floor = self.next_handle.load(Ordering::SeqCst);
            return shared.take(&self.db, counters::Counter::Handle, n, 64, floor);
        }
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
        let mut b = Batch::default();
        if let Some(first) = chats.first() {
            if chats.iter().all(|c| c.account == first.account) {
                b.account = Some(first.account);
            }
        }
        for c in chats {
            self.put(
                &mut b,
                Family::Chats,
                &chat_key(c.account, c.handle),
                &c.state,
            );
            self.put(
                &mut b,
                Family::ChatIndex,
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
        let mut b = Batch::for_account(w.account);
        self.put(&mut b, Family::Chats, &key, w.state);
        if w.chat_id != 0 {
            self.put(
                &mut b,
                Family::ChatIndex,
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
            self.put(&mut b, Family::Inbox, &seq.to_be_bytes(), &rec);
            seqs.push(seq);
        }
        if let Some(qts) = w.qts {
            self.put(
                &mut b,
                Family::Meta,
                &qts_key(w.account),
                &qts.to_be_bytes(),
            );
        }
        for key in w.forget {
            b.delete(Family::Meta, key.clone());
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
    fn put_persist(&self, b: &mut Batch, key: &[u8], p: &Persist) -> Result<(), StoreError> {
        if p.closed {
            // Last: nothing the closing step put survives it.
            let lo = cat(&[key, &0u32.to_be_bytes()]);
            let hi = cat(&[key, &u32::MAX.to_be_bytes(), &[0xff]]);
            b.delete_range(Family::Outbox, lo.clone(), hi.clone());
            b.delete_range(Family::Waiting, lo, hi);
            return Ok(());
        }
        for raw in &p.outbox_done {
            b.delete(Family::Outbox, cat(&[key, &raw.to_be_bytes()]));
        }
        for (raw, e) in &p.outbox_put {
            let v = e.to_bytes().map_err(|_| StoreError::Corrupt("outbox"))?;
            self.put(b, Family::Outbox, &cat(&[key, &raw.to_be_bytes()]), &v);
        }
        for (raw, e) in &p.waiting_put {
            let v = e.to_bytes().map_err(|_| StoreError::Corrupt("waiting"))?;
            self.put(b, Family::Waiting, &cat(&[key, &raw.to_be_bytes()]), &v);
        }
        for raw in &p.waiting_done {
            b.delete(Family::Waiting, cat(&[key, &raw.to_be_bytes()]));
        }
        Ok(())
    }

    /// Loads one chat (state, outbox, waiting queue), if stored.
    ///
    /// # Errors
    /// RocksDB errors, [`StoreError::Corrupt`].
    pub fn load_chat(&self, account: u64, handle: u64) -> Result<Option<StoredChat>, StoreError> {
        let key = chat_key(account, handle);
        let Some(state) = self.get(Family::Chats, &key)? else {
            return Ok(None);
        };
        let mut out = StoredChat {
            state,
            ..StoredChat::default()
        };
        for (raw, v) in self.queue(Family::Outbox, &key)? {
            out.outbox.push((
                raw,
                OutboxEntry::from_bytes(&v).map_err(|_| StoreError::Corrupt("outbox"))?,
            ));
        }
        for (raw, v) in self.queue(Family::Waiting, &key)? {
            out.waiting.push((
                raw,
                WaitingEntry::from_bytes(&v).map_err(|_| StoreError::Corrupt("waiting"))?,
            ));
        }
        Ok(Some(out))
    }

    /// The entries under `chat` (a chat key) by raw out_seq_no, opened.
    fn queue(&self, family: Family, chat: &[u8]) -> Result<Vec<(u32, Vec<u8>)>, StoreError> {
        let corrupt = || StoreError::Corrupt(family.name());
        self.prefixed(family, chat)?
            .into_iter()
            .map(|(k, v)| {
                let raw = k
                    .get(chat.len()..)
                    .and_then(|r| r.try_into().ok())
                    .map(u32::from_be_bytes)
                    .ok_or_else(corrupt)?;
                Ok((raw, self.open_sealed(family, &k, &v)?))
            })
            .collect()
    }

    /// Records that server chat `chat_id` of `account` is `handle` (durably, at once: a repeated
    /// request update must find it).
    ///
    /// # Errors
    /// RocksDB errors.
    pub fn index_chat(&self, account: u64, chat_id: i32, handle: u64) -> Result<(), StoreError> {
        let mut b = Batch::for_account(account);
        self.put(
            &mut b,
            Family::ChatIndex,
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
            .get(Family::Chats, &chat_key(account, handle))?
            .is_some())
    }

    /// The handle of server chat `chat_id` of `account`.
    ///
    /// # Errors
    /// RocksDB errors.
    pub fn handle_of(&self, account: u64, chat_id: i32) -> Result<Option<u64>, StoreError> {
        match self.get(Family::ChatIndex, &index_key(account, chat_id))? {
            Some(v) => Ok(Some(u64_of(&v).ok_or(StoreError::Corrupt("chat_index"))?)),
            None => Ok(None),
        }
    }

    /// The chat of server chat id `chat_id`: its index entry, if the chat it names has a
    /// state record (an entry without one was left by a chat that never existed).
    ///
    /// # Errors
    /// The database's.
    pub fn find_chat(&self, account: u64, chat_id: i32) -> Result<Option<u64>, StoreError> {
        match self.handle_of(account, chat_id)? {
            Some(h) if self.has_chat(account, h)? => Ok(Some(h)),
            _ => Ok(None),
        }
    }

    /// Handles of every chat of `account` (for listing; not used on open).
    ///
    /// # Errors
    /// RocksDB errors.
    pub fn chats_of(&self, account: u64) -> Result<Vec<u64>, StoreError> {
        let mut out = Vec::new();
        for (k, _) in self.prefixed(Family::Chats, &account.to_be_bytes())? {
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
        for family in [Family::Outbox, Family::Waiting] {
            let mut from = Vec::new();
            while !cancel.load(Ordering::Relaxed) {
                let Some((k, _)) = self.db.range(family, &from, None, 1)?.into_iter().next() else {
                    break;
                };
                let (Some(a), Some(h)) =
                    (k.get(..8).and_then(u64_of), k.get(8..16).and_then(u64_of))
                else {
                    return Err(StoreError::Corrupt(family.name()));
                };
                out.insert((a, h));
                // Skip past this chat's entries.
                from = chat_key(a, h);
                from.extend_from_slice(&[0xff; 5]);
            }
        }
        Ok(out.into_iter().collect())
    }

    /// Handles of `account`'s chats with unacknowledged outgoing or queued incoming messages
    /// (one seek per such chat).
    ///
    /// # Errors
    /// The database's, [`StoreError::Corrupt`].
    pub fn pending_work_of(&self, account: u64) -> Result<Vec<u64>, StoreError> {
        let prefix = account.to_be_bytes();
        let end = prefix_end(&prefix);
        let mut out = std::collections::BTreeSet::new();
        for family in [Family::Outbox, Family::Waiting] {
            let mut from = prefix.to_vec();
            while let Some((k, _)) = self
                .db
                .range(family, &from, end.as_deref(), 1)?
                .into_iter()
                .next()
            {
                let h = k
                    .get(8..16)
                    .and_then(u64_of)
                    .ok_or(StoreError::Corrupt(family.name()))?;
                out.insert(h);
                from = chat_key(account, h);
                from.extend_from_slice(&[0xff; 5]);
            }
        }
        Ok(out.into_iter().collect())
    }

    /// Whether other machines reach the database (see [`Backend::is_shared`]).
    pub fn is_shared(&self) -> bool {
        self.shared.is_some()
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
        let mut b = Batch::for_account(account);
        self.put(&mut b, Family::Meta, &qts_key(account), &qts.to_be_bytes());
        self.write_now(b, self.durability == Durability::Sync)
    }

    /// [`Store::set_qts`] as a write whose caller waits for its [`Ticket`] with
    /// [`Store::synced`] (in group commit it returns at once: an account's thread never waits
    /// for the database).
    ///
    /// # Errors
    /// RocksDB errors; [`StoreError::Fenced`].
    pub fn submit_qts(&self, account: u64, qts: i32) -> Result<Ticket, StoreError> {
        let mut b = Batch::for_account(account);
        self.put(&mut b, Family::Meta, &qts_key(account), &qts.to_be_bytes());
        self.write(b)
    }

    /// Writes the memtables out (a clean close: the next open has no log to replay).
    ///
    /// # Errors
    /// RocksDB errors.
    pub fn flush(&self) -> Result<(), StoreError> {
        self.db.flush()
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
        self.db.disk_size()
    }

    /// `plain` as stored under `key` in `family`: sealed when there is an at-rest key.
    fn seal(&self, family: Family, key: &[u8], plain: &[u8]) -> Vec<u8> {
        match &self.cipher {
            Some(c) => c.seal(family.name(), key, plain),
            None => plain.to_vec(),
        }
    }

    /// A stored value of `key` in `family`, opened and authenticated.
    fn open_sealed(&self, family: Family, key: &[u8], v: &[u8]) -> Result<Vec<u8>, StoreError> {
        match &self.cipher {
            Some(c) => c
                .open(family.name(), key, v)
                .map(|mut z| std::mem::take(&mut *z))
                .ok_or(StoreError::Corrupt(family.name())),
            None => Ok(v.to_vec()),
        }
    }
}

/// The least key greater than every key starting with `prefix` (`None`: there is none, the
/// prefix is all 0xff).
fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
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
