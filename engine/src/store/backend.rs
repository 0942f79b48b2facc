//! What the store asks of a database: ordered key-value families, atomic batches, and a ticket
//! per write that says when it is durable.
//!
//! [`Store`](super::Store) keeps everything else above this line — the key layout, the at-rest
//! sealing (a backend only ever sees sealed values when a key is set), the counters — so the
//! embedded RocksDB backend ([`super::rocks`]) and a shared database behave the same, and one
//! conformance suite (`store/conformance.rs`) runs against each.

use std::future::Future;
use std::pin::Pin;

use super::{KeyValue, StoreError};

/// A family of records (a RocksDB column family, a PostgreSQL table).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Family {
    /// Schema version, counters, per-account values (qts, DH config, transfers), prime verdicts.
    Meta,
    /// Chat state records, by account ‖ handle.
    Chats,
    /// Server chat id → handle, by account ‖ chat id.
    ChatIndex,
    /// Outgoing messages until acknowledged, by account ‖ handle ‖ raw out_seq_no.
    Outbox,
    /// Incoming messages behind a hole, by account ‖ handle ‖ raw out_seq_no.
    Waiting,
    /// Application events not yet acknowledged, by sequence number (each stored in a batch
    /// of its account's: a shared database files it under that account).
    Inbox,
}

impl Family {
    /// Every family.
    pub const ALL: [Family; 6] = [
        Family::Meta,
        Family::Chats,
        Family::ChatIndex,
        Family::Outbox,
        Family::Waiting,
        Family::Inbox,
    ];

    /// Its name (the column family's; sealed records are bound to it).
    pub fn name(self) -> &'static str {
        match self {
            Family::Meta => "meta",
            Family::Chats => "chats",
            Family::ChatIndex => "chat_index",
            Family::Outbox => "outbox",
            Family::Waiting => "waiting",
            Family::Inbox => "inbox",
        }
    }
}

/// One change in a [`Batch`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Sets `key` to `value`.
    Put(Family, Vec<u8>, Vec<u8>),
    /// Removes `key`.
    Delete(Family, Vec<u8>),
    /// Removes every key `k` with `from <= k < to`.
    DeleteRange(Family, Vec<u8>, Vec<u8>),
}

/// Changes applied all together or not at all, in order.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Batch {
    /// The account whose records this batch changes, when it is one account's: a shared
    /// database refuses the batch once another node owns that account (see `Fenced`).
    pub account: Option<u64>,
    /// The changes.
    pub ops: Vec<Op>,
}

impl Batch {
    /// An empty batch for `account`'s records.
    pub fn for_account(account: u64) -> Self {
        Batch {
            account: Some(account),
            ops: Vec::new(),
        }
    }

    /// Sets `key` to `value` in `family`.
    pub fn put(&mut self, family: Family, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) {
        self.ops.push(Op::Put(family, key.into(), value.into()));
    }

    /// Removes `key` from `family`.
    pub fn delete(&mut self, family: Family, key: impl Into<Vec<u8>>) {
        self.ops.push(Op::Delete(family, key.into()));
    }

    /// Removes the keys from `from` (inclusive) to `to` (exclusive) from `family`.
    pub fn delete_range(
        &mut self,
        family: Family,
        from: impl Into<Vec<u8>>,
        to: impl Into<Vec<u8>>,
    ) {
        self.ops
            .push(Op::DeleteRange(family, from.into(), to.into()));
    }

    /// Whether it changes nothing.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}

/// When a write returns, and what it guarantees then.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteMode {
    /// Durable (fsynced, committed) when the write returns.
    Sync,
    /// Returns at once; durable once [`Backend::synced`] resolves for its ticket (group
    /// commit: many writes share one fsync or one transaction).
    Group,
    /// Survives a crash of this process when the write returns (in the operating system's
    /// buffers or committed), not necessarily a power loss.
    Flushed,
}

/// A write's place in the commit order; wait for it with [`Backend::synced`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ticket(pub u64);

/// Keys from the first to the second, both included.
pub type KeyRange = (Vec<u8>, Vec<u8>);

/// The future of [`Backend::synced`].
pub type Synced<'a> = Pin<Box<dyn Future<Output = Result<(), StoreError>> + Send + 'a>>;

/// An ordered key-value database with atomic batches. Keys compare as byte strings (RocksDB's
/// default comparator; PostgreSQL's `bytea`). Reads see every write that returned before them.
pub trait Backend: Send + Sync + std::fmt::Debug {
    /// The value of `key`.
    ///
    /// # Errors
    /// The database's.
    fn get(&self, family: Family, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;

    /// At most `limit` entries with `from <= key` and, when `to` is given, `key < to`, in key
    /// order.
    ///
    /// # Errors
    /// The database's.
    fn range(
        &self,
        family: Family,
        from: &[u8],
        to: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<KeyValue>, StoreError>;

    /// Like [`Backend::range`], but only the records of `accounts` (a shared database holds
    /// every node's; the inbox's account is the one its batch was written for). Only a shared
    /// backend ([`Backend::is_shared`]) has it: an embedded one holds one node's accounts.
    ///
    /// # Errors
    /// The database's; [`StoreError::Corrupt`] on a backend that is not shared.
    fn range_of(
        &self,
        accounts: &[u64],
        family: Family,
        from: &[u8],
        to: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<KeyValue>, StoreError> {
        let _ = (accounts, family, from, to, limit);
        Err(StoreError::Corrupt("no per-account reads"))
    }

    /// The account each of `keys` in `family` that exists is filed under (on a shared
    /// database: the inbox's account is not in its key). Only a shared backend has it.
    ///
    /// # Errors
    /// The database's; [`StoreError::Corrupt`] on a backend that is not shared.
    fn filed_under(
        &self,
        family: Family,
        keys: &[Vec<u8>],
    ) -> Result<Vec<(Vec<u8>, u64)>, StoreError> {
        let _ = (family, keys);
        Err(StoreError::Corrupt("no per-account filing"))
    }

    /// Whether this node holds `account` now (always, on an embedded database).
    fn holds(&self, account: u64) -> bool {
        let _ = account;
        true
    }

    /// The accounts this node holds on a shared database; `None` on an embedded one (every
    /// account in it is this node's).
    fn held_accounts(&self) -> Option<Vec<u64>> {
        None
    }

    /// The greatest key of `family`.
    ///
    /// # Errors
    /// The database's.
    fn last_key(&self, family: Family) -> Result<Option<Vec<u8>>, StoreError>;

    /// Applies `batch` atomically.
    ///
    /// # Errors
    /// The database's; [`StoreError::Fenced`] when another node owns the batch's account.
    /// Nothing of the batch is applied then.
    fn write(&self, batch: Batch, mode: WriteMode) -> Result<Ticket, StoreError>;

    /// Resolves once the write with `ticket` is durable; an error when it never will be (the
    /// account was fenced off before it committed).
    fn synced(&self, ticket: Ticket) -> Synced<'_>;

    /// Makes what was written durable and compact on disk (a clean close).
    ///
    /// # Errors
    /// The database's.
    fn flush(&self) -> Result<(), StoreError>;

    /// Removes earlier versions of the records of `family` in `ranges` (each `from..=to`; every
    /// record when `None`) from the storage, so that a destroyed key cannot be read back from
    /// its files.
    ///
    /// # Errors
    /// The database's.
    fn erase(&self, family: Family, ranges: Option<&[KeyRange]>) -> Result<(), StoreError>;

    /// Bytes the data occupies.
    fn disk_size(&self) -> u64;

    /// Makes `account` this node's: on a shared database, takes its lease (refused while
    /// another node's runs) so that its writes are accepted; nothing to do on an embedded one.
    ///
    /// # Errors
    /// [`StoreError::Owned`], the database's.
    fn acquire(&self, account: u64) -> Result<(), StoreError> {
        let _ = account;
        Ok(())
    }

    /// Gives `account` up (on a shared database another node may take it at once).
    ///
    /// # Errors
    /// The database's.
    fn release(&self, account: u64) -> Result<(), StoreError> {
        let _ = account;
        Ok(())
    }

    /// The accounts this node lost to another node or to the database (a shared database's
    /// leases): the engine stops them. `None` on an embedded database.
    fn lost_accounts(&self) -> Option<tokio::sync::watch::Receiver<Vec<u64>>> {
        None
    }

    /// How long writes waited for durability (from submission to commit), when the backend
    /// measures it.
    fn commit_latency(&self) -> Option<Latency> {
        None
    }

    /// Takes `n` consecutive numbers, none below `floor`, from the counter `name` that every
    /// node sharing the database draws from; returns the first. Only a shared backend
    /// ([`Backend::is_shared`]) has such counters: an embedded one is used by one process,
    /// whose store counts by itself.
    ///
    /// # Errors
    /// The database's; [`StoreError::Corrupt`] on a backend without shared counters.
    fn reserve(&self, name: &str, n: u64, floor: u64) -> Result<u64, StoreError> {
        let _ = (name, n, floor);
        Err(StoreError::Corrupt("no shared counters"))
    }

    /// Whether other machines reach this database (then the store refuses to open without an
    /// at-rest key: it must see ciphertext only).
    fn is_shared(&self) -> bool {
        false
    }
}

/// A summary of commit latencies (the most recent writes, up to [`Latencies::WINDOW`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Latency {
    /// Writes measured.
    pub count: u64,
    /// Median, milliseconds.
    pub p50_ms: f64,
    /// 99th percentile, milliseconds.
    pub p99_ms: f64,
    /// Longest, milliseconds.
    pub max_ms: f64,
}

/// The latencies of the most recent writes.
#[derive(Debug, Default)]
pub struct Latencies {
    inner: std::sync::Mutex<(u64, Vec<u32>)>,
}

impl Latencies {
    /// Writes remembered.
    pub const WINDOW: usize = 1 << 16;

    /// Records one write's latency.
    pub fn record(&self, d: std::time::Duration) {
        let us = u32::try_from(d.as_micros()).unwrap_or(u32::MAX);
        if let Ok(mut g) = self.inner.lock() {
            let (count, samples) = &mut *g;
            let i = (*count % Self::WINDOW as u64) as usize;
            if samples.len() < Self::WINDOW {
                samples.push(us);
            } else if let Some(slot) = samples.get_mut(i) {
                *slot = us;
            }
            *count += 1;
        }
    }

    /// The summary, once anything was recorded.
    pub fn summary(&self) -> Option<Latency> {
        let (count, mut samples) = self.inner.lock().ok().map(|g| (g.0, g.1.clone()))?;
        if samples.is_empty() {
            return None;
        }
        samples.sort_unstable();
        let at = |q: f64| {
            let i = ((samples.len() - 1) as f64 * q).round() as usize;
            f64::from(samples.get(i).copied().unwrap_or(0)) / 1000.0
        };
        Some(Latency {
            count,
            p50_ms: at(0.5),
            p99_ms: at(0.99),
            max_ms: at(1.0),
        })
    }
}
