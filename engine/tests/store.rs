//! The RocksDB store: the conformance suite (`store_suite/`), and what only files on disk
//! show: plaintext nowhere in them, records moved between places, keys erased.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

mod engine_common;
mod store_suite;

use engine_common::appears;

use secretchat_engine::protocol::chat::{AppEvent, Persist};
use secretchat_engine::store::rocks::Rocks;
use secretchat_engine::store::{Backend, ChatWrite, Durability, Store, StoreError, StoreOptions};
use store_suite::{TestDb, entry, write};

/// A RocksDB database in a temporary directory.
struct RocksDb(tempfile::TempDir);

impl RocksDb {
    fn new() -> Self {
        RocksDb(tempfile::tempdir().unwrap())
    }
}

impl TestDb for RocksDb {
    fn open(&self, options: StoreOptions) -> Result<Arc<Store>, StoreError> {
        Store::open(self.0.path(), options)
    }

    fn raw(&self) -> Arc<dyn Backend> {
        Rocks::open(self.0.path(), Durability::Sync).unwrap()
    }
}

conformance!(RocksDb::new());

#[test]
fn at_rest_sealing_hides_state_and_refuses_the_wrong_key() {
    let dir = tempfile::tempdir().unwrap();
    let opts = |k: u8| StoreOptions {
        durability: Durability::Sync,
        at_rest_key: Some([k; 32]),
        ..StoreOptions::default()
    };
    {
        let s = Store::open(dir.path(), opts(1)).unwrap();
        write(
            &s,
            3,
            b"super secret key material",
            &Persist::default(),
            &[AppEvent::PeerLayer(73)],
        );
        assert_eq!(
            s.load_chat(1, 3).unwrap().unwrap().state,
            b"super secret key material"
        );
    }
    // The plaintext appears nowhere in the database files.
    assert!(
        !appears(dir.path(), b"super secret"),
        "plaintext state on disk"
    );
    assert!(matches!(
        Store::open(dir.path(), opts(2)),
        Err(StoreError::WrongAtRestKey)
    ));
    assert!(matches!(
        Store::open(dir.path(), StoreOptions::default()),
        Err(StoreError::WrongAtRestKey)
    ));
}

fn sealed_opts(k: u8) -> StoreOptions {
    StoreOptions {
        durability: Durability::Sync,
        at_rest_key: Some([k; 32]),
        ..StoreOptions::default()
    }
}

/// The database's column families, opened without the store (an attacker's view).
fn raw_db(dir: &std::path::Path) -> rocksdb::DB {
    let cfs = ["meta", "chats", "chat_index", "outbox", "waiting", "inbox"];
    rocksdb::DB::open_cf(&rocksdb::Options::default(), dir, cfs).unwrap()
}

#[test]
fn metadata_is_sealed_and_authenticated() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = Store::open(dir.path(), sealed_opts(1)).unwrap();
        // What a file transfer's progress record holds: the file key and the caption.
        s.put_meta_lazy(b"upload/1/7", b"file key and caption bytes")
            .unwrap();
        s.set_dh_config(1, 3, 7, b"the prime bytes").unwrap();
        s.flush().unwrap();
    }
    assert!(!appears(dir.path(), b"file key and caption"));
    assert!(!appears(dir.path(), b"the prime bytes"));
    {
        let db = raw_db(dir.path());
        let meta = db.cf_handle("meta").unwrap();
        let mut v = db.get_cf(meta, b"upload/1/7").unwrap().unwrap();
        let last = v.len() - 1;
        v[last] ^= 1;
        db.put_cf(meta, b"upload/1/7", v).unwrap();
    }
    let s = Store::open(dir.path(), sealed_opts(1)).unwrap();
    assert!(matches!(
        s.get_meta(b"upload/1/7"),
        Err(StoreError::Corrupt("meta"))
    ));
    assert_eq!(s.dh_config(1).unwrap().unwrap().2, b"the prime bytes");
}

/// The largest message the protocol accepts (1 MiB of payload) can be stored sealed, waiting
/// behind a hole and as an inbox event; so can a state record holding early messages.
#[test]
fn the_largest_accepted_message_can_be_stored_sealed() {
    use secretchat_engine::crypto::message::MAX_PAYLOAD;
    use secretchat_engine::protocol::chat::WaitingEntry;
    use secretchat_engine::protocol::layer::text_message;
    use secretchat_schema::e2e::types::DecryptedMessageLayer;

    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path(), sealed_opts(1)).unwrap();
    let text = "x".repeat(MAX_PAYLOAD - 64);
    let message = text_message(144, 9, 0, text.clone(), vec![]);
    let waiting = WaitingEntry {
        layer: DecryptedMessageLayer {
            random_bytes: vec![0; 15],
            layer: 144,
            in_seq_no: 0,
            out_seq_no: 5,
            message: message.clone(),
        },
        file: None,
        date: 1_700_000_123,
        resend_done: false,
    };
    let state = vec![7u8; 2 * MAX_PAYLOAD];
    let p = Persist {
        waiting_put: vec![(2, waiting)],
        ..Persist::default()
    };
    let event = AppEvent::Message {
        message: Box::new(message),
        file: None,
        date: 1_700_000_123,
    };
    write(&s, 3, &state, &p, &[event]);
    let chat = s.load_chat(1, 3).unwrap().unwrap();
    assert_eq!(chat.state.len(), state.len());
    assert_eq!(chat.waiting.len(), 1);
    assert_eq!(chat.waiting[0].1.date, 1_700_000_123);
    assert_eq!(s.inbox().unwrap().len(), 1);
}

/// A synced store whose background erasure waits an hour: only a test's explicit pass runs.
fn erasure_store(dir: &std::path::Path) -> std::sync::Arc<Store> {
    Store::open(
        dir,
        StoreOptions {
            durability: Durability::Sync,
            erase_keys_within: Duration::from_secs(3600),
            ..StoreOptions::default()
        },
    )
    .unwrap()
}

/// Erasure: after a step that destroyed a key, every earlier version of the chat's record
/// leaves the write-ahead log and the table files. The control: before the pass the old key is
/// on disk (in both, here).
#[test]
fn a_destroyed_key_is_gone_from_every_file_after_erasure() {
    use rand::{RngCore, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(21);
    let mut old_key = [0u8; 256];
    let mut new_key = [0u8; 256];
    rng.fill_bytes(&mut old_key);
    rng.fill_bytes(&mut new_key);
    let dir = tempfile::tempdir().unwrap();
    let s = erasure_store(dir.path());
    let state = |key: &[u8], n: u8| [&b"state"[..], key, &[n]].concat();
    write(&s, 3, &state(&old_key, 1), &Persist::default(), &[]);
    s.flush().unwrap();
    write(&s, 3, &state(&old_key, 2), &Persist::default(), &[]);
    write(&s, 4, b"another chat", &Persist::default(), &[]);
    let rekeyed = Persist {
        secrets_dropped: true,
        ..Persist::default()
    };
    write(&s, 3, &state(&new_key, 3), &rekeyed, &[]);
    assert!(
        appears(dir.path(), &old_key),
        "control: the old key is on disk"
    );
    assert_eq!(s.secrets_to_erase(), 1);
    assert_eq!(s.erase_dropped_secrets().unwrap(), 1);
    assert_eq!(s.secrets_to_erase(), 0);
    assert!(
        !appears(dir.path(), &old_key),
        "the old key is still on disk"
    );
    assert!(appears(dir.path(), &new_key));
    assert_eq!(
        s.load_chat(1, 3).unwrap().unwrap().state,
        state(&new_key, 3)
    );
    assert_eq!(s.load_chat(1, 4).unwrap().unwrap().state, b"another chat");
    // A closed chat's keys go the same way.
    write(&s, 4, &state(&new_key, 4), &Persist::default(), &[]);
    let closed = Persist {
        closed: true,
        ..Persist::default()
    };
    write(&s, 4, b"closed", &closed, &[]);
    assert_eq!(s.erase_dropped_secrets().unwrap(), 1);
    assert!(!appears(dir.path(), &state(&new_key, 4)));
}

/// A step that closes the chat drops its outbox and waiting queue, including what that same
/// step put (a closed chat left with outbox entries would be loaded for re-sending forever).
#[test]
fn closing_drops_what_the_closing_step_put() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path(), StoreOptions::default()).unwrap();
    let p = Persist {
        outbox_put: vec![(0, entry(0))],
        ..Persist::default()
    };
    write(&s, 3, b"ready", &p, &[]);
    let closing = Persist {
        outbox_put: vec![(1, entry(1))],
        closed: true,
        ..Persist::default()
    };
    write(&s, 3, b"closed", &closing, &[]);
    let chat = s.load_chat(1, 3).unwrap().unwrap();
    assert!(chat.outbox.is_empty(), "{:?}", chat.outbox);
    assert!(s.chats_with_pending_work().unwrap().is_empty());
}

/// Removing an account deletes its chats, outbox, waiting messages and inbox events, and
/// its chat state (with the key) leaves every file; another account's stays. The control:
/// before the removal the key is on disk.
#[test]
fn a_removed_account_leaves_nothing_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let s = erasure_store(dir.path());
    use rand::{RngCore, SeedableRng};
    // Random, so compression cannot hide it from the scan.
    let mut rng = rand::rngs::StdRng::seed_from_u64(22);
    let (mut key_of_1, mut key_of_2) = (vec![0u8; 256], vec![0u8; 256]);
    rng.fill_bytes(&mut key_of_1);
    rng.fill_bytes(&mut key_of_2);
    let persist = Persist {
        outbox_put: vec![(1, entry(1))],
        ..Persist::default()
    };
    let event = AppEvent::PeerLayer(144);
    write(&s, 3, &key_of_1, &persist, std::slice::from_ref(&event));
    s.write_chat(&ChatWrite {
        account: 2,
        handle: 3,
        chat_id: 900,
        state: &key_of_2,
        persist: std::slice::from_ref(&persist),
        events: std::slice::from_ref(&event),
        qts: None,
        forget: &[],
    })
    .unwrap();
    s.flush().unwrap();
    assert!(
        appears(dir.path(), &key_of_1),
        "control: the key is on disk"
    );
    assert_eq!(s.inbox().unwrap().len(), 2);

    assert_eq!(s.remove_account(1).unwrap(), 1);
    assert!(s.load_chat(1, 3).unwrap().is_none());
    assert_eq!(s.load_chat(2, 3).unwrap().unwrap().state, key_of_2);
    let inbox = s.inbox().unwrap();
    assert_eq!(inbox.len(), 1);
    assert_eq!(inbox[0].1, 2, "only account 2's event is left");
    assert!(
        !appears(dir.path(), &key_of_1),
        "account 1's key is still on disk"
    );
    assert!(appears(dir.path(), &key_of_2));
}
