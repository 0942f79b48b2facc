//! The committer: every batch waiting when a transaction starts goes into it, up to
//! [`IN_FLIGHT`] transactions at once, an account in one of them at a time.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use deadpool_postgres::Pool;
use tokio::sync::{Notify, Semaphore, watch};

use super::{Leases, Tables, account_of, bounds, column_for, failure, remote};
use crate::store::StoreError;
use crate::store::backend::{Batch, Family, Latencies, Op, Ticket};

/// A boxed database future.
pub(crate) type BoxFut<T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send>>;

/// Batches waiting at most (a write beyond it fails at once rather than queueing without end).
const MAX_WAITING: usize = 1 << 16;
/// Batches in one transaction at most.
const MAX_GROUP: usize = 4096;
/// Transactions in flight at most (PostgreSQL flushes its log once for the commits that
/// wait together); an account's batches are in one of them at a time.
const IN_FLIGHT: usize = 4;
/// Failed tickets whose outcome nobody has read yet, remembered at most (a fenced account
/// stops writing, so few ever are; beyond it, the oldest are forgotten, and a forgotten
/// ticket's outcome is reported as a failure, never as durable).
const MAX_FAILED: usize = 1 << 20;

/// A batch waiting for, or in, a transaction.
pub(crate) struct Pending {
    ticket: u64,
    batch: Batch,
    submitted: Instant,
    /// Every account the batch writes for, with the epoch this node held for it when the
    /// batch was written: it commits only under that epoch.
    stamps: Vec<(u64, i64)>,
}

pub(crate) struct Committer {
    pool: Pool,
    tables: Arc<Tables>,
    leases: Arc<Leases>,
    write_timeout: Duration,
    waiting: Mutex<Vec<Pending>>,
    /// From submission to commit.
    pub(crate) latencies: Latencies,
    wake: Notify,
    /// The last ticket issued.
    issued: std::sync::atomic::AtomicU64,
    /// Every ticket up to this one has its outcome.
    settled: watch::Sender<u64>,
    /// That watermark, and the tickets above it with their outcome.
    done: Mutex<(u64, BTreeSet<u64>)>,
    /// Bumped whenever a transaction ends.
    progress: watch::Sender<u64>,
    /// Accounts whose batches are in a transaction in flight.
    busy: Mutex<HashSet<u64>>,
    /// Transactions in flight at most.
    slots: Arc<Semaphore>,
    failed: Mutex<BTreeMap<u64, StoreError>>,
    /// Failed tickets up to this one may have been forgotten (see [`MAX_FAILED`]).
    forgotten: std::sync::atomic::AtomicU64,
    closed: AtomicBool,
}

impl Committer {
    pub(crate) fn new(
        pool: Pool,
        tables: Arc<Tables>,
        leases: Arc<Leases>,
        write_timeout: Duration,
    ) -> Arc<Self> {
        Arc::new(Committer {
            pool,
            tables,
            leases,
            write_timeout,
            waiting: Mutex::default(),
            latencies: Latencies::default(),
            wake: Notify::new(),
            issued: std::sync::atomic::AtomicU64::new(0),
            settled: watch::channel(0).0,
            done: Mutex::default(),
            progress: watch::channel(0).0,
            busy: Mutex::default(),
            slots: Arc::new(Semaphore::new(IN_FLIGHT)),
            failed: Mutex::default(),
            forgotten: std::sync::atomic::AtomicU64::new(0),
            closed: AtomicBool::new(false),
        })
    }

    /// The last ticket issued.
    pub(crate) fn issued(&self) -> u64 {
        self.issued.load(Ordering::SeqCst)
    }

    /// Queues `batch` for the next transaction. A batch for an account this node does not own
    /// is refused here, before it reaches the database.
    pub(crate) fn submit(&self, batch: Batch) -> Result<Ticket, StoreError> {
        let mut stamps = Vec::new();
        for account in accounts_of(&batch)? {
            match self.leases.epoch(account) {
                Some(epoch) => stamps.push((account, epoch)),
                None => return Err(StoreError::Fenced { account }),
            }
        }
        let mut waiting = self
            .waiting
            .lock()
            .map_err(|_| failure("committer poisoned"))?;
        if waiting.len() >= MAX_WAITING {
            return Err(failure("too many writes waiting for the database"));
        }
        // Issued under the lock: the queue is in ticket order.
        let ticket = self.issued.fetch_add(1, Ordering::SeqCst) + 1;
        waiting.push(Pending {
            ticket,
            batch,
            submitted: Instant::now(),
            stamps,
        });
        drop(waiting);
        self.wake.notify_one();
        Ok(Ticket(ticket))
    }

    /// Waits until every ticket up to `upto` has its outcome.
    pub(crate) async fn settled(&self, upto: u64) {
        let mut rx = self.settled.subscribe();
        let _ = rx.wait_for(|&s| s >= upto).await;
    }

    /// The outcome of `ticket`, once it has one.
    pub(crate) async fn outcome(&self, ticket: Ticket) -> Result<(), StoreError> {
        let mut progress = self.progress.subscribe();
        let _ = progress.wait_for(|_| self.is_done(ticket.0)).await;
        // Read once (each ticket's outcome has one reader: the writer or the one waiting for
        // its durability), then forgotten.
        let failed = self
            .failed
            .lock()
            .map_err(|_| failure("committer poisoned"))?
            .remove(&ticket.0);
        match failed {
            Some(e) => Err(e),
            None if ticket.0 <= self.forgotten.load(Ordering::SeqCst) => {
                Err(failure("the outcome of this write was forgotten"))
            }
            None => Ok(()),
        }
    }

    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.wake.notify_one();
    }

    /// The loop: take what waits, commit it (retrying until the write timeout), settle it.
    pub(crate) async fn run(self: Arc<Self>) {
        loop {
            let Ok(slot) = self.slots.clone().acquire_owned().await else {
                return;
            };
            let group = loop {
                let group = self.take();
                if !group.is_empty() {
                    break group;
                }
                if self.closed.load(Ordering::SeqCst) {
                    return;
                }
                self.wake.notified().await;
            };
            let this = self.clone();
            tokio::spawn(async move {
                let outcome = this.commit_retrying(&group).await;
                this.finish(&group, &outcome);
                drop(slot);
                this.wake.notify_one();
            });
        }
    }

    /// The batches the next transaction takes, in ticket order: every waiting batch of an
    /// account no transaction in flight holds (up to [`MAX_GROUP`]). An account's batches
    /// are in one transaction at a time, so they commit in the order they were written.
    fn take(&self) -> Vec<Pending> {
        let (Ok(mut waiting), Ok(mut busy)) = (self.waiting.lock(), self.busy.lock()) else {
            return Vec::new();
        };
        let mut group = Vec::new();
        let mut left = Vec::new();
        for item in waiting.drain(..) {
            let free = item.stamps.iter().all(|(a, _)| !busy.contains(a));
            if free && group.len() < MAX_GROUP {
                group.push(item);
            } else {
                left.push(item);
            }
        }
        *waiting = left;
        for p in &group {
            busy.extend(p.stamps.iter().map(|(a, _)| *a));
        }
        group
    }

    /// Commits `group`, retrying until the write timeout.
    async fn commit_retrying(&self, group: &[Pending]) -> Result<BTreeMap<u64, u64>, StoreError> {
        let started = Instant::now();
        let mut pause = Duration::from_millis(10);
        loop {
            // An attempt that hangs (the database cut off: nothing answers, nothing closes)
            // is given up after a lease and tried again; a COMMIT that did land meanwhile is
            // harmless to repeat (every statement sets keys to their values, under the same
            // epochs).
            let attempt = tokio::time::timeout(self.leases.ttl(), self.commit(group))
                .await
                .unwrap_or_else(|_| Err(failure("no answer from the database within a lease")));
            // Every batch is for an account this node has lost meanwhile (its lease ran out
            // unrenewed): they fail now rather than at the write timeout. Reporting a write
            // that did land as failed is safe — its chat stops without sending, and the node
            // that takes the account reads it — the reverse never happens.
            let lost = if attempt.is_err() {
                self.all_lost(group)
            } else {
                None
            };
            match attempt {
                Ok(fenced) => return Ok(fenced),
                Err(e) if started.elapsed() >= self.write_timeout => return Err(e),
                Err(_) if lost.is_some() => return Ok(lost.unwrap_or_default()),
                Err(e) => {
                    tracing::warn!(error = %e, batches = group.len(), "commit failed; retrying");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(1));
                }
            }
        }
    }

    /// When every batch of `group` writes for an account this node no longer holds under the
    /// batch's epoch: each ticket with such an account.
    fn all_lost(&self, group: &[Pending]) -> Option<BTreeMap<u64, u64>> {
        group
            .iter()
            .map(|p| {
                p.stamps
                    .iter()
                    .find(|(a, e)| self.leases.epoch(*a) != Some(*e))
                    .map(|(a, _)| (p.ticket, *a))
            })
            .collect()
    }

    /// Records the outcome of `group`'s tickets and frees its accounts.
    fn finish(&self, group: &[Pending], outcome: &Result<BTreeMap<u64, u64>, StoreError>) {
        if outcome.is_ok() {
            for p in group {
                self.latencies.record(p.submitted.elapsed());
            }
        }
        if let Ok(mut failed) = self.failed.lock() {
            for p in group {
                let error = match outcome {
                    Err(e) => Some(e.clone()),
                    Ok(fenced) => fenced
                        .get(&p.ticket)
                        .map(|a| StoreError::Fenced { account: *a }),
                };
                if let Some(e) = error {
                    failed.insert(p.ticket, e);
                }
            }
            while failed.len() > MAX_FAILED {
                if let Some((t, _)) = failed.pop_first() {
                    self.forgotten.fetch_max(t, Ordering::SeqCst);
                }
            }
        }
        if let Ok(mut busy) = self.busy.lock() {
            for p in group {
                for (a, _) in &p.stamps {
                    busy.remove(a);
                }
            }
        }
        if let Ok(mut done) = self.done.lock() {
            let (watermark, above) = &mut *done;
            above.extend(group.iter().map(|p| p.ticket));
            while above.remove(&(*watermark + 1)) {
                *watermark += 1;
            }
            self.settled.send_replace(*watermark);
        }
        self.progress.send_modify(|n| *n += 1);
    }

    /// Whether `ticket` has its outcome.
    fn is_done(&self, ticket: u64) -> bool {
        self.done
            .lock()
            .map_or(true, |d| ticket <= d.0 || d.1.contains(&ticket))
    }

    /// One transaction: the epochs of the group's accounts locked (`FOR SHARE`) and read,
    /// then every batch whose accounts still have the epochs it was written under, and this
    /// node still holds. Returns the fenced batches' tickets, each with an account it lost.
    async fn commit(&self, group: &[Pending]) -> Result<BTreeMap<u64, u64>, StoreError> {
        let mut client = self.pool.get().await.map_err(remote)?;
        let tx = client.transaction().await.map_err(remote)?;
        let accounts: BTreeSet<u64> = group
            .iter()
            .flat_map(|p| p.stamps.iter().map(|(a, _)| *a))
            .collect();
        let stored = self.leases.locked_epochs(&tx, &accounts).await?;
        let mut fenced = BTreeMap::new();
        let mut changes: HashMap<Family, Changes> = HashMap::new();
        for p in group {
            let lost = p
                .stamps
                .iter()
                .find(|(a, e)| stored.get(a) != Some(e) || self.leases.epoch(*a) != Some(*e));
            if let Some((a, _)) = lost {
                fenced.insert(p.ticket, *a);
                continue;
            }
            let batch = &p.batch;
            for op in &batch.ops {
                match op {
                    Op::Put(f, k, v) => {
                        let c = changes.entry(*f).or_default();
                        let column = column_for(batch, *f, k)?;
                        if *f == Family::Inbox {
                            c.columns.insert(k.clone(), column);
                        }
                        c.last.insert((column, k.clone()), Some(v.clone()));
                    }
                    Op::Delete(Family::Inbox, k) => {
                        // By sequence number alone; after what the group put there before.
                        let c = changes.entry(Family::Inbox).or_default();
                        if let Some(column) = c.columns.remove(k) {
                            c.last.remove(&(column, k.clone()));
                        }
                        c.by_key.push(k.clone());
                    }
                    Op::Delete(f, k) => {
                        let c = changes.entry(*f).or_default();
                        c.last.insert((account_of(*f, k)?, k.clone()), None);
                    }
                    Op::DeleteRange(f, lo, hi) => {
                        let c = changes.entry(*f).or_default();
                        // What the group put there before is gone with the rows; what it puts
                        // after stays (range deletions run first).
                        c.last.retain(|(_, k), _| !(k >= lo && k < hi));
                        c.ranges.push((lo.clone(), hi.clone()));
                    }
                }
            }
        }
        // Statements prepared (once per connection: cached), then sent together: one round
        // trip for all of them (the server runs them in order).
        let mut writes = Vec::new();
        for (family, c) in changes {
            let t = self.tables.of(family);
            for (lo, hi) in c.ranges {
                let (lo_account, hi_account) = bounds(family, &lo, Some(&hi));
                let stmt = tx
                    .prepare_cached(&format!(
                        "DELETE FROM {t} WHERE (account, k) >= ($1, $2) AND k >= $2 AND k < $3 \
                         AND account <= $4"
                    ))
                    .await
                    .map_err(remote)?;
                writes.push(Write::Range(stmt, lo_account, lo, hi, hi_account));
            }
            if !c.by_key.is_empty() {
                let stmt = tx
                    .prepare_cached(&format!("DELETE FROM {t} WHERE k = ANY($1::bytea[])"))
                    .await
                    .map_err(remote)?;
                writes.push(Write::ByKey(stmt, c.by_key));
            }
            let (mut da, mut dk) = (Vec::new(), Vec::new());
            let (mut pa, mut pk, mut pv) = (Vec::new(), Vec::new(), Vec::new());
            for ((a, k), v) in c.last {
                match v {
                    Some(v) => {
                        pa.push(a);
                        pk.push(k);
                        pv.push(v);
                    }
                    None => {
                        da.push(a);
                        dk.push(k);
                    }
                }
            }
            if !da.is_empty() {
                let stmt = tx
                    .prepare_cached(&format!(
                        "DELETE FROM {t} USING unnest($1::int8[], $2::bytea[]) AS d(account, k) \
                         WHERE {t}.account = d.account AND {t}.k = d.k"
                    ))
                    .await
                    .map_err(remote)?;
                writes.push(Write::Delete(stmt, da, dk));
            }
            if !pa.is_empty() {
                let stmt = tx
                    .prepare_cached(&format!(
                        "INSERT INTO {t} (account, k, v) \
                         SELECT * FROM unnest($1::int8[], $2::bytea[], $3::bytea[]) \
                         ON CONFLICT (account, k) DO UPDATE SET v = EXCLUDED.v"
                    ))
                    .await
                    .map_err(remote)?;
                writes.push(Write::Upsert(stmt, pa, pk, pv));
            }
        }
        type Param<'a> = &'a (dyn tokio_postgres::types::ToSql + Sync);
        let sent = writes.iter().map(|w| {
            let (stmt, params): (_, Vec<Param<'_>>) = match w {
                Write::Range(stmt, la, lo, hi, ha) => (stmt, vec![la, lo, hi, ha]),
                Write::Delete(stmt, a, k) => (stmt, vec![a, k]),
                Write::ByKey(stmt, k) => (stmt, vec![k]),
                Write::Upsert(stmt, a, k, v) => (stmt, vec![a, k, v]),
            };
            tx.execute_raw(stmt, params)
        });
        futures_util::future::try_join_all(sent)
            .await
            .map_err(remote)?;
        tx.commit().await.map_err(remote)?;
        Ok(fenced)
    }
}

/// The accounts `batch` writes for: its own, and every account its keys belong to (the
/// engine-wide rows, account 0, belong to none).
fn accounts_of(batch: &Batch) -> Result<BTreeSet<u64>, StoreError> {
    let mut out: BTreeSet<u64> = batch.account.into_iter().collect();
    for op in &batch.ops {
        let (Op::Put(f, k, _) | Op::Delete(f, k) | Op::DeleteRange(f, k, _)) = op;
        let column = account_of(*f, k)?;
        if column != super::column(0) {
            out.insert(super::account(column));
        }
    }
    Ok(out)
}

/// A statement of a group's transaction, with its parameters.
enum Write {
    Range(tokio_postgres::Statement, i64, Vec<u8>, Vec<u8>, i64),
    Delete(tokio_postgres::Statement, Vec<i64>, Vec<Vec<u8>>),
    ByKey(tokio_postgres::Statement, Vec<Vec<u8>>),
    Upsert(
        tokio_postgres::Statement,
        Vec<i64>,
        Vec<Vec<u8>>,
        Vec<Vec<u8>>,
    ),
}

/// One family's changes in a group: range deletions, deletions by key alone (the inbox's),
/// then each key's last value.
#[derive(Default)]
struct Changes {
    ranges: Vec<(Vec<u8>, Vec<u8>)>,
    by_key: Vec<Vec<u8>>,
    /// The account column of each inbox key put (its deletion names the key alone).
    columns: HashMap<Vec<u8>, i64>,
    last: BTreeMap<(i64, Vec<u8>), Option<Vec<u8>>>,
}
