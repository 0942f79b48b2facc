//! The embedded backend: one RocksDB database, a column family per [`Family`].

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rocksdb::{
    BottommostLevelCompaction, ColumnFamilyDescriptor, CompactOptions, DB, Direction, FlushOptions,
    IteratorMode, Options, WriteBatch, WriteOptions,
};

use super::backend::{Backend, Batch, Family, KeyRange, Op, Synced, Ticket, WriteMode};
use super::{Durability, KeyValue, StoreError};

/// All memtables together (RocksDB's default is 64 MiB × 2 per column family: up to 768 MiB).
const MEMTABLE_BUDGET: usize = 128 << 20;
/// One column family's memtable before it is flushed.
const MEMTABLE_BYTES: usize = 32 << 20;
/// The write-ahead log, at most: older column families are flushed beyond it, which bounds
/// what an open after a crash replays.
const MAX_WAL_BYTES: u64 = 128 << 20;
/// Beyond this many ranges to erase at once, the whole column family is compacted in one pass.
const WHOLE_FAMILY_FROM: usize = 256;

/// A RocksDB database.
pub struct Rocks {
    db: DB,
    /// Group commit keeps the write-ahead log in RocksDB's buffer until the group-commit
    /// thread flushes and fsyncs it (no `write` system call per step); [`WriteMode::Flushed`]
    /// writes flush it to the file at once, so they survive a process crash.
    manual_wal: bool,
    written: AtomicU64,
    synced: tokio::sync::watch::Sender<u64>,
    grouped: bool,
}

impl std::fmt::Debug for Rocks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rocks")
            .field("grouped", &self.grouped)
            .finish_non_exhaustive()
    }
}

impl Rocks {
    /// Opens (creating if needed) the database at `path`; with [`Durability::GroupCommit`] a
    /// thread fsyncs the log every interval.
    ///
    /// # Errors
    /// RocksDB's.
    pub fn open(path: &Path, durability: Durability) -> Result<Arc<Self>, StoreError> {
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
        let cfs = Family::ALL.iter().map(|f| {
            let mut o = Options::default();
            o.set_write_buffer_size(MEMTABLE_BYTES);
            o.set_compression_type(rocksdb::DBCompressionType::Lz4);
            ColumnFamilyDescriptor::new(f.name(), o)
        });
        let manual_wal = matches!(durability, Durability::GroupCommit { .. });
        opts.set_manual_wal_flush(manual_wal);
        let db = DB::open_cf_descriptors(&opts, path, cfs)?;
        let (synced, _) = tokio::sync::watch::channel(0);
        let rocks = Arc::new(Rocks {
            db,
            manual_wal,
            written: AtomicU64::new(0),
            synced,
            grouped: manual_wal,
        });
        if let Durability::GroupCommit { interval } = durability {
            let weak = Arc::downgrade(&rocks);
            std::thread::Builder::new()
                .name("secretchat-group-commit".into())
                .spawn(move || group_commit(weak, interval))
                .map_err(|_| StoreError::Corrupt("thread"))?;
        }
        Ok(rocks)
    }

    #[allow(clippy::expect_used)]
    fn cf(&self, family: Family) -> &rocksdb::ColumnFamily {
        // Every family is created on open.
        self.db
            .cf_handle(family.name())
            .expect("column family created on open")
    }

    fn sync_now(&self) -> Result<(), StoreError> {
        let upto = self.written.load(Ordering::SeqCst);
        self.db.flush_wal(true)?;
        self.synced.send_replace(upto);
        Ok(())
    }
}

impl Backend for Rocks {
    fn get(&self, family: Family, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.db.get_cf(self.cf(family), key)?)
    }

    fn range(
        &self,
        family: Family,
        from: &[u8],
        to: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<KeyValue>, StoreError> {
        let mut out = Vec::new();
        let mode = IteratorMode::From(from, Direction::Forward);
        for item in self.db.iterator_cf(self.cf(family), mode) {
            if out.len() >= limit {
                break;
            }
            let (k, v) = item?;
            if to.is_some_and(|to| &*k >= to) {
                break;
            }
            out.push((k.to_vec(), v.to_vec()));
        }
        Ok(out)
    }

    fn last_key(&self, family: Family) -> Result<Option<Vec<u8>>, StoreError> {
        let last = self
            .db
            .iterator_cf(self.cf(family), IteratorMode::End)
            .next()
            .transpose()?;
        Ok(last.map(|(k, _)| k.to_vec()))
    }

    fn write(&self, batch: Batch, mode: WriteMode) -> Result<Ticket, StoreError> {
        let mut b = WriteBatch::default();
        for op in batch.ops {
            match op {
                Op::Put(f, k, v) => b.put_cf(self.cf(f), k, v),
                Op::Delete(f, k) => b.delete_cf(self.cf(f), k),
                Op::DeleteRange(f, lo, hi) => b.delete_range_cf(self.cf(f), lo, hi),
            }
        }
        let mut w = WriteOptions::default();
        w.set_sync(mode == WriteMode::Sync);
        self.db.write_opt(b, &w)?;
        if mode == WriteMode::Flushed && self.manual_wal {
            self.db.flush_wal(false)?;
        }
        Ok(Ticket(self.written.fetch_add(1, Ordering::SeqCst) + 1))
    }

    fn synced(&self, ticket: Ticket) -> Synced<'_> {
        Box::pin(async move {
            if self.grouped {
                let mut rx = self.synced.subscribe();
                let _ = rx.wait_for(|&s| s >= ticket.0).await;
            }
            Ok(())
        })
    }

    fn flush(&self) -> Result<(), StoreError> {
        let cfs: Vec<_> = Family::ALL.iter().map(|f| self.cf(*f)).collect();
        self.db.flush_cfs_opt(&cfs, &FlushOptions::default())?;
        Ok(())
    }

    /// Every column family is flushed (a log file is deleted only once no family needs it, and
    /// the log holds the old versions), then the table files holding the ranges are compacted
    /// down to the bottom level, which drops every version but the newest.
    fn erase(&self, family: Family, ranges: Option<&[KeyRange]>) -> Result<(), StoreError> {
        if self.manual_wal {
            self.db.flush_wal(false)?;
        }
        let cfs: Vec<_> = Family::ALL.iter().map(|f| self.cf(*f)).collect();
        let mut flush = FlushOptions::default();
        flush.set_wait(true);
        self.db.flush_cfs_opt(&cfs, &flush)?;
        let mut opts = CompactOptions::default();
        opts.set_bottommost_level_compaction(BottommostLevelCompaction::Force);
        opts.set_exclusive_manual_compaction(false);
        let cf = self.cf(family);
        match ranges {
            Some(ranges) if ranges.len() < WHOLE_FAMILY_FROM => {
                for (lo, hi) in ranges {
                    self.db.compact_range_cf_opt(cf, Some(lo), Some(hi), &opts);
                }
            }
            _ => self
                .db
                .compact_range_cf_opt(cf, None::<&[u8]>, None::<&[u8]>, &opts),
        }
        Ok(())
    }

    fn disk_size(&self) -> u64 {
        self.db
            .property_int_value("rocksdb.total-sst-files-size")
            .ok()
            .flatten()
            .unwrap_or(0)
    }
}

/// The group-commit loop: one fsync per interval covers every batch written before it.
fn group_commit(rocks: std::sync::Weak<Rocks>, interval: Duration) {
    loop {
        std::thread::sleep(interval);
        let Some(r) = rocks.upgrade() else {
            return;
        };
        if r.written.load(Ordering::SeqCst) > *r.synced.borrow() {
            let _ = r.sync_now();
        }
    }
}
