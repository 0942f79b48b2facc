//! Removing an account: every record of it, and its keys gone from disk.

use super::{Batch, Family, Store, StoreError, cat, chat_key, dh_key, qts_key, u64_of};
use crate::protocol::chat::AppEvent;

impl Store {
    /// Deletes everything stored for `account` — its chats (state records with their keys,
    /// outboxes, waiting queues, the chat-id index), its unacknowledged events, its qts, DH
    /// config and file-transfer records — in one write, then erases the deleted keys from the
    /// log and the table files at once (as [`Store::erase_dropped_secrets`] does). Returns how
    /// many chats it removed.
    ///
    /// The caller stops the account first: a chat writing meanwhile could survive.
    ///
    /// # Errors
    /// RocksDB errors, [`StoreError::Corrupt`] for an inbox record that cannot be read
    /// (nothing is deleted then).
    pub fn remove_account(&self, account: u64) -> Result<usize, StoreError> {
        let chats = self.chats_of(account)?;
        let lo = account.to_be_bytes().to_vec();
        let hi = cat(&[&account.to_be_bytes(), &[0xff; 17]]);
        let mut b = Batch::for_account(account);
        for family in [
            Family::Chats,
            Family::ChatIndex,
            Family::Outbox,
            Family::Waiting,
        ] {
            b.delete_range(family, lo.clone(), hi.clone());
        }
        b.delete(Family::Meta, qts_key(account));
        b.delete(Family::Meta, dh_key(account));
        for prefix in [b"upload/".as_slice(), b"download/".as_slice()] {
            let from = cat(&[prefix, &account.to_be_bytes()]);
            let to = cat(&[&from, &[0xff; 9]]);
            b.delete_range(Family::Meta, from, to);
        }
        // On a shared database the inbox is filed by account: only this account's rows.
        let inbox = match self.db.is_shared() {
            true => self
                .db
                .range_of(&[account], Family::Inbox, &[], None, usize::MAX)?,
            false => self.db.range(Family::Inbox, &[], None, usize::MAX)?,
        };
        for (k, v) in inbox {
            u64_of(&k).ok_or(StoreError::Corrupt("inbox"))?;
            let v = self.open_sealed(Family::Inbox, &k, &v)?;
            let (owner, _, _) =
                AppEvent::from_record(&v).map_err(|_| StoreError::Corrupt("inbox"))?;
            if owner == account {
                b.delete(Family::Inbox, k);
            }
        }
        self.write_now(b, true)?;
        for handle in &chats {
            self.note_secrets_dropped(chat_key(account, *handle));
        }
        // The keys (flush, then the chats' records), then the plaintexts waiting behind holes
        // and in the inbox: compacted to the bottom level, no older version survives.
        self.erase_dropped_secrets()?;
        let range = [(lo, hi)];
        for family in [Family::Outbox, Family::Waiting, Family::ChatIndex] {
            self.db.erase(family, Some(&range))?;
        }
        self.db.erase(Family::Inbox, None)?;
        Ok(chats.len())
    }
}
