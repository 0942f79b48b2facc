//! Converting a database written by an earlier schema version, on open.

use super::{Batch, Family, SCHEMA_KEY, Store, StoreError};

/// Records written per batch while migrating.
const BATCH: usize = 1024;

/// Column families whose values version 1 sealed (the others it stored as they are).
const SEALED_IN_V1: [Family; 3] = [Family::Chats, Family::Waiting, Family::Inbox];

impl Store {
    /// Brings a database at schema version `from` to the current one. Without an at-rest key
    /// the layout is unchanged. With one, every value is sealed in the current format, bound
    /// to its place: values version 1 sealed are opened with its cipher, the others sealed as
    /// they are. A value that already opens in the current format is left alone, so a
    /// migration cut short by a crash resumes where it stopped.
    pub(super) fn migrate(&self, from: u32) -> Result<(), StoreError> {
        if from != 1 {
            return Err(StoreError::Corrupt("unknown schema version"));
        }
        let Some(cipher) = &self.cipher else {
            return Ok(());
        };
        for family in Family::ALL {
            let cf = family.name();
            let mut batch = Batch::default();
            let mut n = 0;
            for (k, v) in self.db.range(family, &[], None, usize::MAX)? {
                if (family == Family::Meta && k == SCHEMA_KEY) || cipher.open(cf, &k, &v).is_some()
                {
                    continue;
                }
                let plain = if SEALED_IN_V1.contains(&family) {
                    cipher.open_legacy(&v).ok_or(StoreError::Corrupt(cf))?
                } else {
                    zeroize::Zeroizing::new(v.to_vec())
                };
                let sealed = cipher.seal(cf, &k, &plain);
                batch.put(family, k, sealed);
                n += 1;
                if n % BATCH == 0 {
                    self.write_now(std::mem::take(&mut batch), true)?;
                }
            }
            self.write_now(batch, true)?;
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::cipher::{RecordCipher, seal_legacy};
    use super::super::*;

    /// A version-1 database with an at-rest key: chat state sealed the old way, outbox and
    /// metadata as they were. After opening, everything reads back and every value is sealed
    /// in the current format.
    #[test]
    fn a_version_1_sealed_database_is_migrated_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let key = [5u8; 32];
        let opts = || StoreOptions {
            durability: Durability::Sync,
            at_rest_key: Some(key),
            ..StoreOptions::default()
        };
        let chat = chat_key(1, 9);
        let outbox_key = cat(&[&chat, &0u32.to_be_bytes()]);
        {
            // Write what version 1 wrote, through a store without a key (raw values).
            let s = Store::open(dir.path(), StoreOptions::default()).unwrap();
            let legacy = RecordCipher::new(&key);
            let mut b = Batch::default();
            b.put(
                Family::Chats,
                chat.clone(),
                seal_legacy(&legacy, b"old state"),
            );
            let entry = OutboxEntry {
                random_id: 1,
                wire: vec![1; 40],
                in_seq_no: 0,
                out_seq_no: 1,
                service: false,
                file: None,
                silent: false,
            };
            b.put(
                Family::Outbox,
                outbox_key.clone(),
                entry.to_bytes().unwrap(),
            );
            b.put(Family::Meta, b"next_handle".to_vec(), 10u64.to_be_bytes());
            b.put(Family::Meta, SCHEMA_KEY, 1u32.to_be_bytes());
            s.write_now(b, true).unwrap();
        }
        let s = Store::open(dir.path(), opts()).unwrap();
        let c = s.cipher.as_ref().unwrap();
        let raw = |f: Family, k: &[u8]| s.db.get(f, k).unwrap().unwrap();
        assert_eq!(
            c.open("chats", &chat, &raw(Family::Chats, &chat))
                .as_deref()
                .map(Vec::as_slice),
            Some(&b"old state"[..])
        );
        assert!(
            c.open("outbox", &outbox_key, &raw(Family::Outbox, &outbox_key))
                .is_some()
        );
        assert_eq!(s.new_handle().unwrap(), 10);
        drop(s);
        // Open again: nothing left to migrate, the key is checked.
        let s = Store::open(dir.path(), opts()).unwrap();
        assert!(s.load_chat(1, 9).unwrap().is_some());
        drop(s);
        assert!(matches!(
            Store::open(dir.path(), StoreOptions::default()),
            Err(StoreError::WrongAtRestKey)
        ));
    }
}
