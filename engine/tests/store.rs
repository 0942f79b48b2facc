//! The RocksDB store: schema version, at-rest sealing, batches, inbox, pending-work scan.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

mod engine_common;

use engine_common::appears;

use secretchat_engine::protocol::chat::{AppEvent, CloseReason, OutboxEntry, Persist};
use secretchat_engine::store::{ChatWrite, Durability, Store, StoreError, StoreOptions};

fn entry(raw: u32) -> OutboxEntry {
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

fn write(
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
        })
        .unwrap()
        .1
}

#[test]
fn a_newer_schema_is_refused_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = Store::open(dir.path(), StoreOptions::default()).unwrap();
        s.put_meta(b"schema_version", &99u32.to_be_bytes()).unwrap();
    }
    let err = Store::open(dir.path(), StoreOptions::default()).unwrap_err();
    assert!(matches!(err, StoreError::NewerSchema { found: 99 }));
    assert!(err.to_string().contains("newer"), "{err}");
}

#[test]
fn chat_records_outbox_waiting_and_inbox_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path(), StoreOptions::default()).unwrap();
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
    // Acknowledge 0, 1 and 2, replace nothing else.
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
    assert_eq!(s.chats_with_pending_work().unwrap(), [(1, 7)]);
    let inbox = s.inbox().unwrap();
    assert_eq!(inbox.len(), 2);
    assert_eq!(inbox[1].3, AppEvent::Rekeyed(9));
    s.ack_inbox(&[inbox[0].0]).unwrap();
    assert_eq!(s.inbox().unwrap().len(), 1);
    // Closing drops outbox and waiting.
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
    // Inbox sequence numbers continue after a reopen.
    drop(s);
    let s = Store::open(dir.path(), StoreOptions::default()).unwrap();
    let more = write(
        &s,
        8,
        b"x",
        &Persist::default(),
        &[AppEvent::PeerLayer(100)],
    );
    assert!(more[0] > seqs[1]);
    // ... even when every entry was acknowledged before the reopen (found by the crash test:
    // the numbering restarted after the last unacknowledged entry, so a number came back).
    let mut highest = more[0];
    for e in s.inbox().unwrap() {
        s.ack_inbox(&[e.0]).unwrap();
        highest = highest.max(e.0);
    }
    assert!(s.inbox().unwrap().is_empty());
    drop(s);
    let s = Store::open(dir.path(), StoreOptions::default()).unwrap();
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
}

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

#[tokio::test]
async fn group_commit_makes_writes_durable_within_the_interval() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(
        dir.path(),
        StoreOptions {
            durability: Durability::GroupCommit {
                interval: Duration::from_millis(5),
            },
            at_rest_key: None,
            ..StoreOptions::default()
        },
    )
    .unwrap();
    let (ticket, _) = s
        .write_chat(&ChatWrite {
            account: 1,
            handle: 1,
            chat_id: 0,
            state: b"s",
            persist: &[],
            events: &[],
            qts: None,
        })
        .unwrap();
    tokio::time::timeout(Duration::from_secs(5), s.synced(ticket))
        .await
        .expect("fsynced by the group-commit thread");
}

/// A chat actor stores several steps in one write (the inputs that queued while the last step
/// was being stored): their changes apply in step order, so an entry put by one step and
/// acknowledged by a later one is gone, and the last state record wins.
#[test]
fn several_steps_in_one_write_apply_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path(), StoreOptions::default()).unwrap();
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
    let (_, seqs) = s
        .write_chat(&ChatWrite {
            account: 1,
            handle: 3,
            chat_id: 503,
            state: b"after three steps",
            persist: &steps,
            events: &[AppEvent::PeerLayer(144), AppEvent::Rekeyed(1)],
            qts: None,
        })
        .unwrap();
    assert_eq!(seqs.len(), 2);
    assert!(seqs[0] < seqs[1], "inbox order is step order");
    let c = s.load_chat(1, 3).unwrap().unwrap();
    assert_eq!(c.state, b"after three steps");
    assert_eq!(c.outbox.iter().map(|(r, _)| *r).collect::<Vec<_>>(), [2]);
    assert_eq!(s.handle_of(1, 503).unwrap(), Some(3));
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
fn a_sealed_record_does_not_open_in_another_place() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = Store::open(dir.path(), sealed_opts(1)).unwrap();
        write(&s, 3, b"state of chat three", &Persist::default(), &[]);
        write(&s, 4, b"state of chat four", &Persist::default(), &[]);
    }
    {
        // Chat 3's sealed state record copied over chat 4's.
        let db = raw_db(dir.path());
        let chats = db.cf_handle("chats").unwrap();
        let key = |h: u64| [1u64.to_be_bytes(), h.to_be_bytes()].concat();
        let three = db.get_cf(chats, key(3)).unwrap().unwrap();
        db.put_cf(chats, key(4), three).unwrap();
    }
    let s = Store::open(dir.path(), sealed_opts(1)).unwrap();
    assert_eq!(
        s.load_chat(1, 3).unwrap().unwrap().state,
        b"state of chat three"
    );
    assert!(
        matches!(s.load_chat(1, 4), Err(StoreError::Corrupt("chats"))),
        "a record moved to another chat opened"
    );
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
