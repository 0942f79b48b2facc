//! The inbox: application events stored until the application acknowledges them, numbered in
//! one sequence (on a shared database, drawn in blocks from its counter, so two nodes never
//! number two events alike).

use std::sync::atomic::Ordering;

use super::counters::Counter;
use super::{Batch, Durability, Family, Store, StoreError, Ticket, u64_of};
use crate::protocol::chat::AppEvent;

/// An unacknowledged event: `(seq, account, handle, event)`.
pub type InboxEvent = (u64, u64, u64, AppEvent);

/// Inbox numbers a node reserves at once.
const BLOCK: u64 = 4096;

impl Store {
    /// The inbox sequence number the next stored event gets: every event stored from now on
    /// has one at least this high.
    pub fn inbox_seq_floor(&self) -> u64 {
        self.next_inbox.load(Ordering::SeqCst)
    }

    /// The next inbox sequence number, reserving a new block durably when needed.
    pub(super) fn next_inbox_seq(&self) -> Result<u64, StoreError> {
        if let Some(shared) = &self.shared {
            let floor = self.next_inbox.load(Ordering::SeqCst);
            let seq = shared.take(&self.db, Counter::Inbox, 1, BLOCK, floor)?;
            self.next_inbox.fetch_max(seq + 1, Ordering::SeqCst);
            return Ok(seq);
        }
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

    /// Whether this node holds `account` (on a shared database: its lease runs; always on an
    /// embedded one). Events of an account it does not hold are not handed to its application.
    pub fn holds(&self, account: u64) -> bool {
        self.db.holds(account)
    }

    /// Makes `account`'s earlier events this node's to deliver (it has just taken the account
    /// on a shared database): this node's next events are numbered from a fresh block, so
    /// every event of `account` numbered below the returned bound was stored before — by
    /// another node, or by this one under an earlier holding — and is read with
    /// [`Store::inbox_page_of`]. On an embedded database every event is this node's already:
    /// the bound is the next number.
    ///
    /// # Errors
    /// The database's.
    pub fn adopt_inbox(&self, account: u64) -> Result<u64, StoreError> {
        let Some(shared) = &self.shared else {
            return Ok(self.inbox_seq_floor());
        };
        let floor = self.next_inbox.load(Ordering::SeqCst);
        let first = shared.restart(&self.db, Counter::Inbox, BLOCK, floor)?;
        self.next_inbox.fetch_max(first, Ordering::SeqCst);
        tracing::debug!(account, below = first, "inbox adopted");
        Ok(first)
    }

    /// Application events not yet acknowledged, in order: `(seq, account, handle, event)`.
    ///
    /// # Errors
    /// RocksDB errors, [`StoreError::Corrupt`].
    pub fn inbox(&self) -> Result<Vec<InboxEvent>, StoreError> {
        self.inbox_page(0, usize::MAX)
    }

    /// At most `limit` unacknowledged application events from sequence number `from` on, in
    /// order: `(seq, account, handle, event)`.
    ///
    /// # Errors
    /// RocksDB errors, [`StoreError::Corrupt`].
    pub fn inbox_page(&self, from: u64, limit: usize) -> Result<Vec<InboxEvent>, StoreError> {
        let from = from.to_be_bytes();
        let rows = match self.db.held_accounts() {
            // A shared database: only the accounts this node holds.
            Some(held) if held.is_empty() => Vec::new(),
            Some(held) => self.db.range_of(&held, Family::Inbox, &from, None, limit)?,
            None => self.db.range(Family::Inbox, &from, None, limit)?,
        };
        self.open_inbox(rows)
    }

    /// At most `limit` unacknowledged events of `account` numbered from `from` up to (not
    /// including) `below`, in order: the events [`Store::adopt_inbox`] made this node's.
    ///
    /// # Errors
    /// The database's, [`StoreError::Corrupt`].
    pub fn inbox_page_of(
        &self,
        account: u64,
        from: u64,
        below: u64,
        limit: usize,
    ) -> Result<Vec<InboxEvent>, StoreError> {
        let rows = match self.db.held_accounts() {
            Some(_) => self.db.range_of(
                &[account],
                Family::Inbox,
                &from.to_be_bytes(),
                Some(&below.to_be_bytes()),
                limit,
            )?,
            None => Vec::new(),
        };
        self.open_inbox(rows)
    }

    fn open_inbox(&self, rows: Vec<super::KeyValue>) -> Result<Vec<InboxEvent>, StoreError> {
        let mut out = Vec::with_capacity(rows.len());
        for (k, v) in rows {
            let seq = u64_of(&k).ok_or(StoreError::Corrupt("inbox"))?;
            let v = self.open_sealed(Family::Inbox, &k, &v)?;
            let (account, handle, e) =
                AppEvent::from_record(&v).map_err(|_| StoreError::Corrupt("inbox"))?;
            out.push((seq, account, handle, e));
        }
        Ok(out)
    }

    /// The application consumed these inbox events (one batch; on a shared database one per
    /// account).
    ///
    /// On a shared database each event's removal is a write for its account, fenced as any
    /// other: refused with [`StoreError::Fenced`] once another node holds the account (which
    /// then delivers the event again). So an acknowledgement that succeeds means the event
    /// never comes again, on any node. Events already removed are skipped.
    ///
    /// # Errors
    /// The database's; [`StoreError::Fenced`].
    pub fn ack_inbox(&self, seqs: &[u64]) -> Result<Ticket, StoreError> {
        let sync = self.durability == Durability::Sync;
        let keys: Vec<Vec<u8>> = seqs.iter().map(|s| s.to_be_bytes().to_vec()).collect();
        if !self.db.is_shared() {
            let mut b = Batch::default();
            for k in keys {
                b.delete(Family::Inbox, k);
            }
            return self.write_now(b, sync);
        }
        let mut batches: std::collections::BTreeMap<u64, Batch> = Default::default();
        for (k, account) in self.db.filed_under(Family::Inbox, &keys)? {
            batches
                .entry(account)
                .or_insert_with(|| Batch::for_account(account))
                .delete(Family::Inbox, k);
        }
        let mut outcome = None;
        for b in batches.into_values() {
            let r = self.write_now(b, sync);
            if outcome.as_ref().is_none_or(Result::is_ok) {
                outcome = Some(r);
            }
        }
        // Nothing left to remove: an empty write still gives a ticket to wait on.
        outcome.unwrap_or_else(|| self.write_now(Batch::default(), sync))
    }
}
