//! The store conformance suite: what every backend must do, run against RocksDB
//! (`tests/store.rs`) and PostgreSQL (`tests/store_postgres.rs`).
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use secretchat_engine::protocol::chat::{AppEvent, CloseReason, OutboxEntry, Persist};
use secretchat_engine::store::{
    Backend, Batch, ChatWrite, Durability, Family, Store, StoreError, StoreOptions, WriteMode,
};

/// A database a test owns: empty when the test starts.
pub trait TestDb {
    /// Opens the store on it (again, once the last store opened was dropped).
    fn open(&self, options: StoreOptions) -> Result<Arc<Store>, StoreError>;
    /// The database itself, without the store: an attacker's (or an operator's) view. Only
    /// while no store is open.
    fn raw(&self) -> Arc<dyn Backend>;
    /// The options a test starts from (a shared database needs an at-rest key).
    fn plain(&self) -> StoreOptions {
        StoreOptions::default()
    }
}

/// The suite's tests for a backend: `conformance!(expression making a fresh TestDb)`.
#[macro_export]
macro_rules! conformance {
    ($db:expr) => {
        #[test]
        fn suite_key_value_semantics() {
            store_suite::key_value_semantics(&$db);
        }

        #[test]
        fn suite_chat_records_round_trip() {
            store_suite::chat_records_round_trip(&$db);
        }

        #[test]
        fn suite_several_steps_in_one_write_apply_in_order() {
            store_suite::several_steps_in_one_write_apply_in_order(&$db);
        }

        #[test]
        fn suite_a_newer_schema_is_refused() {
            store_suite::a_newer_schema_is_refused(&$db);
        }

        #[test]
        fn suite_sealing_hides_and_binds_records() {
            store_suite::sealing_hides_and_binds_records(&$db);
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn suite_group_commit_makes_writes_durable() {
            store_suite::group_commit_makes_writes_durable(&$db).await;
        }

        #[test]
        fn suite_removing_an_account_spares_the_others() {
            store_suite::removing_an_account_spares_the_others(&$db);
        }
    };
}

pub fn entry(raw: u32) -> OutboxEntry {
    OutboxEntry {
        random_id: i64::from(raw),
        wire: vec![raw as u8; 40],
        in_seq_no: 0,
        out_seq_no: 2 * raw as i32 + 1,
        service: false,
        file: None,
        silent: false,
    }
}

pub fn write(
    store: &Store,
    handle: u64,
    state: &[u8],
    persist: &Persist,
    events: &[AppEvent],
) -> Vec<u64> {
    store
        .write_chat(&ChatWrite {
            account: 1,
            handle,
            chat_id: 500 + handle as i32,
            state,
            persist: std::slice::from_ref(persist),
            events,
            qts: None,
            forget: &[],
        })
        .unwrap()
        .1
}

pub fn sealed(k: u8) -> StoreOptions {
    StoreOptions {
        durability: Durability::Sync,
        at_rest_key: Some([k; 32]),
        ..StoreOptions::default()
    }
}

/// Keys order as byte strings; ranges are `[from, to)` and stop at `limit`; a batch applies in
/// order and all together; families are apart.
pub fn key_value_semantics(db: &dyn TestDb) {
    let b = db.raw();
    // The per-chat families' keys start with the account, as the store writes them.
    let k = |account: u64, rest: &[u8]| [account.to_be_bytes().as_slice(), rest].concat();
    let keys = [
        k(1, b""),
        k(1, b"\x00"),
        k(1, b"\x00\x00"),
        k(1, b"\x01"),
        k(1, b"\x7f\xff"),
        k(2, b"\xff"),
        k(1 << 63, b""),
        k(u64::MAX, b"\x01"),
    ];
    let mut batch = Batch::default();
    // Backwards, so the order read is the backend's, not the insertion's.
    for key in keys.iter().rev() {
        batch.put(Family::Outbox, key.clone(), [b"v".as_slice(), key].concat());
    }
    b.write(batch, WriteMode::Sync).unwrap();
    let all = b.range(Family::Outbox, b"", None, usize::MAX).unwrap();
    let got: Vec<Vec<u8>> = all.iter().map(|(k, _)| k.clone()).collect();
    assert_eq!(got, keys, "byte-string order");
    assert_eq!(all[3].1, [b"v".as_slice(), &keys[3]].concat());
    let mid = b
        .range(Family::Outbox, &keys[2], Some(&keys[4]), usize::MAX)
        .unwrap();
    let got: Vec<Vec<u8>> = mid.iter().map(|(k, _)| k.clone()).collect();
    assert_eq!(got, [keys[2].clone(), keys[3].clone()], "[from, to)");
    assert_eq!(b.range(Family::Outbox, &keys[3], None, 2).unwrap().len(), 2);
    let after: Vec<Vec<u8>> = b
        .range(Family::Outbox, &k(1, b"\x80"), None, usize::MAX)
        .unwrap()
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(after, keys[5..], "from a key that is not stored");
    assert_eq!(b.last_key(Family::Outbox).unwrap(), Some(keys[7].clone()));
    assert_eq!(b.last_key(Family::Waiting).unwrap(), None);
    assert_eq!(
        b.get(Family::Waiting, &keys[3]).unwrap(),
        None,
        "families apart"
    );

    // In one batch: put then delete is gone, delete then put stays, later puts win, a range
    // delete spares its end.
    let mut batch = Batch::for_account(1);
    batch.put(Family::Chats, k(1, b"a"), b"1".to_vec());
    batch.delete(Family::Chats, k(1, b"a"));
    batch.delete(Family::Chats, k(1, b"b"));
    batch.put(Family::Chats, k(1, b"b"), b"2".to_vec());
    batch.put(Family::Chats, k(1, b"c"), b"old".to_vec());
    batch.put(Family::Chats, k(1, b"c"), b"new".to_vec());
    batch.delete_range(Family::Outbox, keys[1].clone(), keys[4].clone());
    b.write(batch, WriteMode::Flushed).unwrap();
    assert_eq!(b.get(Family::Chats, &k(1, b"a")).unwrap(), None);
    assert_eq!(
        b.get(Family::Chats, &k(1, b"b")).unwrap().as_deref(),
        Some(&b"2"[..])
    );
    assert_eq!(
        b.get(Family::Chats, &k(1, b"c")).unwrap().as_deref(),
        Some(&b"new"[..])
    );
    let left: Vec<Vec<u8>> = b
        .range(Family::Outbox, b"", None, usize::MAX)
        .unwrap()
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    let mut expected = vec![keys[0].clone()];
    expected.extend_from_slice(&keys[4..]);
    assert_eq!(left, expected);
    // A range delete after a put in the same batch removes it; a put after it stays.
    let mut batch = Batch::default();
    batch.put(Family::Waiting, k(1, b"k1"), b"x".to_vec());
    batch.delete_range(Family::Waiting, k(1, b"k"), k(1, b"l"));
    batch.put(Family::Waiting, k(1, b"k2"), b"y".to_vec());
    b.write(batch, WriteMode::Sync).unwrap();
    let left = b.range(Family::Waiting, b"", None, usize::MAX).unwrap();
    assert_eq!(left, [(k(1, b"k2"), b"y".to_vec())]);
    // Values of a protocol message's size (an inbox event is written for its account).
    let big = vec![7u8; 1 << 20];
    let mut batch = Batch::for_account(1);
    batch.put(Family::Inbox, 5u64.to_be_bytes(), big.clone());
    b.write(batch, WriteMode::Sync).unwrap();
    assert_eq!(
        b.get(Family::Inbox, &5u64.to_be_bytes()).unwrap(),
        Some(big)
    );
}

/// A chat's state, outbox, index and inbox round-trip; inbox numbers are never reused, even
/// after every entry was acknowledged and the store reopened.
pub fn chat_records_round_trip(db: &dyn TestDb) {
    let s = db.open(db.plain()).unwrap();
    let p = Persist {
        outbox_put: (0..5).map(|r| (r, entry(r))).collect(),
        ..Persist::default()
    };
    let seqs = write(
        &s,
        7,
        b"state-1",
        &p,
        &[AppEvent::PeerLayer(144), AppEvent::Rekeyed(9)],
    );
    assert_eq!(seqs.len(), 2);
    let p = Persist {
        outbox_done: vec![0, 1, 2],
        ..Persist::default()
    };
    write(&s, 7, b"state-2", &p, &[]);
    let c = s.load_chat(1, 7).unwrap().unwrap();
    assert_eq!(c.state, b"state-2");
    assert_eq!(c.outbox.iter().map(|(r, _)| *r).collect::<Vec<_>>(), [3, 4]);
    assert_eq!(c.outbox[0].1, entry(3));
    assert_eq!(s.handle_of(1, 507).unwrap(), Some(7));
    assert!(s.has_chat(1, 7).unwrap());
    assert!(!s.has_chat(1, 8).unwrap());
    assert_eq!(s.chats_with_pending_work().unwrap(), [(1, 7)]);
    assert_eq!(s.pending_work_of(1).unwrap(), [7]);
    assert!(s.pending_work_of(2).unwrap().is_empty());
    let inbox = s.inbox().unwrap();
    assert_eq!(inbox.len(), 2);
    assert_eq!(inbox[1].3, AppEvent::Rekeyed(9));
    s.ack_inbox(&[inbox[0].0]).unwrap();
    assert_eq!(s.inbox().unwrap().len(), 1);
    let p = Persist {
        closed: true,
        ..Persist::default()
    };
    write(
        &s,
        7,
        b"closed",
        &p,
        &[AppEvent::ChatClosed(CloseReason::Local)],
    );
    assert!(s.load_chat(1, 7).unwrap().unwrap().outbox.is_empty());
    assert!(s.chats_with_pending_work().unwrap().is_empty());
    assert!(s.pending_work_of(1).unwrap().is_empty());
    drop(s);
    let s = db.open(db.plain()).unwrap();
    let more = write(
        &s,
        8,
        b"x",
        &Persist::default(),
        &[AppEvent::PeerLayer(100)],
    );
    assert!(more[0] > seqs[1]);
    let mut highest = more[0];
    for e in s.inbox().unwrap() {
        s.ack_inbox(&[e.0]).unwrap();
        highest = highest.max(e.0);
    }
    assert!(s.inbox().unwrap().is_empty());
    drop(s);
    let s = db.open(db.plain()).unwrap();
    let after = write(
        &s,
        8,
        b"y",
        &Persist::default(),
        &[AppEvent::PeerLayer(101)],
    );
    assert!(
        after[0] > highest,
        "{} reused (highest was {highest})",
        after[0]
    );
    let h = s.new_handle().unwrap();
    assert!(s.new_handle().unwrap() > h);
    s.set_qts(1, 41).unwrap();
    assert_eq!(s.qts(1).unwrap(), Some(41));
    assert_eq!(s.qts(2).unwrap(), None);
}

/// Several steps in one write apply in step order, and the metadata records the write forgets
/// are gone with it.
pub fn several_steps_in_one_write_apply_in_order(db: &dyn TestDb) {
    let s = db.open(db.plain()).unwrap();
    let steps = [
        Persist {
            outbox_put: vec![(0, entry(0)), (1, entry(1))],
            ..Persist::default()
        },
        Persist {
            outbox_done: vec![0],
            outbox_put: vec![(2, entry(2))],
            ..Persist::default()
        },
        Persist {
            outbox_done: vec![1],
            ..Persist::default()
        },
    ];
    // Two upload records of account 1: the step's write removes one (its message is stored).
    let upload = |id: u64| {
        [
            b"upload/".as_slice(),
            &1u64.to_be_bytes(),
            &id.to_be_bytes(),
        ]
        .concat()
    };
    s.put_meta(&upload(7), b"sent with this step").unwrap();
    s.put_meta(&upload(8), b"still uploading").unwrap();
    let (_, seqs) = s
        .write_chat(&ChatWrite {
            account: 1,
            handle: 3,
            chat_id: 503,
            state: b"after three steps",
            persist: &steps,
            events: &[AppEvent::PeerLayer(144), AppEvent::Rekeyed(1)],
            qts: None,
            forget: &[upload(7)],
        })
        .unwrap();
    assert!(seqs[0] < seqs[1], "inbox order is step order");
    assert_eq!(s.get_meta(&upload(7)).unwrap(), None);
    assert_eq!(
        s.get_meta(&upload(8)).unwrap().as_deref(),
        Some(&b"still uploading"[..])
    );
    let c = s.load_chat(1, 3).unwrap().unwrap();
    assert_eq!(c.state, b"after three steps");
    assert_eq!(c.outbox.iter().map(|(r, _)| *r).collect::<Vec<_>>(), [2]);
}

/// A newer schema is refused with a clear error.
pub fn a_newer_schema_is_refused(db: &dyn TestDb) {
    drop(db.open(db.plain()).unwrap());
    // The schema version is the one value never sealed.
    let raw = db.raw();
    let mut b = Batch::default();
    b.put(
        Family::Meta,
        b"schema_version".to_vec(),
        99u32.to_be_bytes(),
    );
    raw.write(b, WriteMode::Sync).unwrap();
    drop(raw);
    let err = db.open(db.plain()).unwrap_err();
    assert!(
        matches!(err, StoreError::NewerSchema { found: 99 }),
        "{err}"
    );
}

/// Sealed records: the database holds no plaintext, the wrong key (or none) is refused, and a
/// record copied to another chat's place does not open.
pub fn sealing_hides_and_binds_records(db: &dyn TestDb) {
    {
        let s = db.open(sealed(1)).unwrap();
        write(
            &s,
            3,
            b"super secret key material",
            &Persist::default(),
            &[AppEvent::PeerLayer(73)],
        );
        write(&s, 4, b"state of chat four", &Persist::default(), &[]);
        s.put_meta_lazy(b"upload/1/7", b"file key and caption bytes")
            .unwrap();
        assert_eq!(
            s.load_chat(1, 3).unwrap().unwrap().state,
            b"super secret key material"
        );
    }
    let raw = db.raw();
    for f in Family::ALL {
        for (_, v) in raw.range(f, b"", None, usize::MAX).unwrap() {
            for secret in [&b"super secret"[..], b"file key and caption", b"chat four"] {
                assert!(
                    !v.windows(secret.len()).any(|w| w == secret),
                    "plaintext in {f:?}"
                );
            }
        }
    }
    // Chat 3's sealed state copied over chat 4's.
    let key = |h: u64| [1u64.to_be_bytes(), h.to_be_bytes()].concat();
    let three = raw.get(Family::Chats, &key(3)).unwrap().unwrap();
    let mut b = Batch::default();
    b.put(Family::Chats, key(4), three);
    raw.write(b, WriteMode::Sync).unwrap();
    drop(raw);
    assert!(matches!(
        db.open(sealed(2)),
        Err(StoreError::WrongAtRestKey)
    ));
    let keyless = StoreOptions {
        at_rest_key: None,
        ..db.plain()
    };
    assert!(matches!(
        db.open(keyless),
        Err(StoreError::WrongAtRestKey | StoreError::AtRestKeyRequired)
    ));
    let s = db.open(sealed(1)).unwrap();
    assert_eq!(
        s.load_chat(1, 3).unwrap().unwrap().state,
        b"super secret key material"
    );
    assert!(
        matches!(s.load_chat(1, 4), Err(StoreError::Corrupt("chats"))),
        "a record moved to another chat opened"
    );
}

/// Group commit: a write returns before it is durable, is read back at once, and its ticket
/// resolves within the interval.
pub async fn group_commit_makes_writes_durable(db: &dyn TestDb) {
    let s = db
        .open(StoreOptions {
            durability: Durability::GroupCommit {
                interval: Duration::from_millis(5),
            },
            ..db.plain()
        })
        .unwrap();
    let mut tickets = Vec::new();
    for handle in 1..=50 {
        let (ticket, _) = s
            .write_chat(&ChatWrite {
                account: 1,
                handle,
                chat_id: 0,
                state: &handle.to_be_bytes(),
                persist: &[],
                events: &[AppEvent::PeerLayer(144)],
                qts: Some(handle as i32),
                forget: &[],
            })
            .unwrap();
        assert_eq!(
            s.load_chat(1, handle).unwrap().unwrap().state,
            handle.to_be_bytes(),
            "read back before it is durable"
        );
        tickets.push(ticket);
    }
    for t in tickets {
        tokio::time::timeout(Duration::from_secs(5), s.synced(t))
            .await
            .expect("durable within the interval")
            .unwrap();
    }
    assert_eq!(s.qts(1).unwrap(), Some(50));
    assert_eq!(s.inbox().unwrap().len(), 50);
}

/// Removing an account removes its records and nothing of another's.
pub fn removing_an_account_spares_the_others(db: &dyn TestDb) {
    let s = db.open(db.plain()).unwrap();
    for account in [1, 2] {
        s.write_chat(&ChatWrite {
            account,
            handle: 5,
            chat_id: 77,
            state: b"state",
            persist: &[Persist {
                outbox_put: vec![(0, entry(0))],
                ..Persist::default()
            }],
            events: &[AppEvent::PeerLayer(144)],
            qts: Some(9),
            forget: &[],
        })
        .unwrap();
    }
    assert_eq!(s.remove_account(1).unwrap(), 1);
    assert!(s.load_chat(1, 5).unwrap().is_none());
    assert_eq!(s.handle_of(1, 77).unwrap(), None);
    assert_eq!(s.qts(1).unwrap(), None);
    assert!(s.load_chat(2, 5).unwrap().is_some());
    assert_eq!(s.handle_of(2, 77).unwrap(), Some(5));
    assert_eq!(s.qts(2).unwrap(), Some(9));
    assert_eq!(s.chats_with_pending_work().unwrap(), [(2, 5)]);
    let inbox = s.inbox().unwrap();
    assert_eq!(inbox.len(), 1);
    assert_eq!(inbox[0].1, 2);
}
