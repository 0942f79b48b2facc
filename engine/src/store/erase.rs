//! Erasing destroyed keys from disk.
//!
//! A chat's state record holds its keys and, during a handshake or re-key, a DH exponent.
//! Writing a new version of the record does not remove the old one from disk: RocksDB keeps it
//! in the write-ahead log until the memtable is flushed, and in older table files until
//! compaction rewrites them. pfs.md asks that old keys "cannot be reconstructed", so once a step
//! destroys a secret ([`Persist::secrets_dropped`](crate::protocol::chat::Persist), or a closed
//! chat) the chat is noted, and within [`StoreOptions::erase_keys_within`](super::StoreOptions)
//! the backend erases them ([`Backend::erase`](super::Backend::erase): RocksDB flushes every
//! column family, so the log files holding the old versions are deleted, and compacts the table
//! files holding that chat's records down to the bottom level, which drops every version but
//! the newest).
//!
//! Deleted files are unlinked, not overwritten: the bytes may survive in free blocks of the
//! file system until reused (a copy of the raw device is outside what this covers; see
//! docs/reliability.md).

use std::sync::atomic::Ordering;
use std::time::Duration;

use super::{Family, Store, StoreError};

impl Store {
    /// Notes that chat `key` (account ‖ handle) destroyed a secret in a write.
    pub(super) fn note_secrets_dropped(&self, key: Vec<u8>) {
        if let Ok(mut pending) = self.erase_pending.lock() {
            pending.insert(key);
        }
    }

    /// Erasure passes done since the store opened.
    pub fn erasures(&self) -> u64 {
        self.erasures.load(Ordering::Relaxed)
    }

    /// Chats whose destroyed secrets may still be on disk.
    pub fn secrets_to_erase(&self) -> usize {
        self.erase_pending.lock().map_or(0, |p| p.len())
    }

    /// Removes every earlier version of the records of chats that destroyed a secret from the
    /// write-ahead log and the table files now (the store also does this on its own within
    /// [`StoreOptions::erase_keys_within`](super::StoreOptions)). Returns how many chats it
    /// covered.
    ///
    /// # Errors
    /// RocksDB errors (the chats stay noted and are tried again).
    pub fn erase_dropped_secrets(&self) -> Result<usize, StoreError> {
        let _one_at_a_time = self
            .erasing
            .lock()
            .map_err(|_| StoreError::Corrupt("erasure"))?;
        let chats = std::mem::take(
            &mut *self
                .erase_pending
                .lock()
                .map_err(|_| StoreError::Corrupt("erasure"))?,
        );
        if chats.is_empty() {
            return Ok(0);
        }
        let result = self.erase(&chats);
        if result.is_err() {
            if let Ok(mut pending) = self.erase_pending.lock() {
                pending.extend(chats.iter().cloned());
            }
        }
        result.map(|()| chats.len())
    }

    fn erase(&self, chats: &std::collections::BTreeSet<Vec<u8>>) -> Result<(), StoreError> {
        let ranges: Vec<_> = chats.iter().map(|k| (k.clone(), k.clone())).collect();
        self.db.erase(Family::Chats, Some(&ranges))?;
        self.erasures.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

/// The erasure loop: every `interval`, erase what the writes since the last pass noted.
pub(super) fn erasure_loop(store: std::sync::Weak<Store>, interval: Duration) {
    loop {
        std::thread::sleep(interval);
        let Some(s) = store.upgrade() else {
            return;
        };
        if s.secrets_to_erase() > 0 {
            if let Err(e) = s.erase_dropped_secrets() {
                tracing::warn!(error = %e, "erasing destroyed keys failed; retrying");
            }
        }
    }
}
