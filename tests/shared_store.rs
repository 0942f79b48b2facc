//! The engine on PostgreSQL (docs/store.md): a chat end to end, an account taken over by
//! another node stops here by itself, and it cannot be added back while the other node owns it.
//!
//! Needs `SECRETCHAT_PG_URL` (`.ci/pg.sh` sets it); fails without it.
#![cfg(all(feature = "sim", feature = "postgres"))]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use secretchat::{Engine, EngineConfig, Error, InputMessage, PgOptions, StoreError, Update};
use secretchat_engine::store::postgres::Postgres;

mod common;
use common::{ALICE, BOB, add_pair, alice_sends, end_leases, next, open_chat, pg_url};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_account_taken_over_by_another_node_stops_here() {
    let dir = tempfile::tempdir().unwrap();
    let mut db = PgOptions::new(pg_url());
    db.node = "node-a".into();
    db.prefix = format!("eng{}_", std::process::id());
    db.lease_ttl = Duration::from_millis(900);
    let config = EngineConfig::builder().at_rest_key([3; 32]).build();
    let (engine, mut events) = Engine::open_postgres(dir.path(), db.clone(), config).unwrap();
    let sim = add_pair(&engine).await;
    // A chat and a message, stored in PostgreSQL.
    let (alice_chat, _, _) = open_chat(&engine, &mut events).await;
    alice_sends(&engine, &mut events, alice_chat, "over postgres").await;

    // Another node cannot take Alice while this one's lease runs.
    let mut other = db.clone();
    other.node = "node-b".into();
    let b = Postgres::connect(other).unwrap();
    let owned = b.leases().acquire(ALICE.0).await.unwrap_err();
    assert!(matches!(owned, StoreError::Owned { .. }), "{owned}");

    // The leases end (as when this node stalls past them); node B takes Alice.
    end_leases(&db.prefix).await;
    b.leases().acquire(ALICE.0).await.unwrap();

    // This engine stops Alice by itself (its renewal is refused): her calls fail as for an
    // account it does not run.
    let stopped = async {
        loop {
            match engine.request_chat(ALICE, 2, 0).await {
                Err(Error::NoSuchAccount(_)) => break,
                _ => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), stopped)
        .await
        .expect("the engine stops an account another node took over");
    // ...and says so on the event stream.
    let lost = async {
        loop {
            let e = next(&mut events).await;
            if matches!(e.update, Update::AccountLost) {
                break e.account;
            }
        }
    };
    let lost = tokio::time::timeout(Duration::from_secs(10), lost).await;
    assert_eq!(lost.expect("an AccountLost event"), ALICE);
    // Adding her back is refused while node B owns her...
    let device = sim.device(1, 0);
    let refused = engine
        .add_account(ALICE, Arc::new(device.clone()))
        .await
        .unwrap_err();
    assert!(
        matches!(refused, Error::Store(StoreError::Owned { .. })),
        "{refused}"
    );
    // ...and a take-over waits while node B's lease runs, and comes once it hands her back.
    let taking = {
        let (engine, api) = (engine.clone(), Arc::new(device.clone()));
        tokio::spawn(async move {
            engine
                .take_over(ALICE, api, Duration::from_millis(20))
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !taking.is_finished(),
        "taken over while another node's lease ran"
    );
    b.leases().release(ALICE.0).await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), taking)
        .await
        .expect("taken over once released")
        .unwrap()
        .unwrap();
    engine.shutdown().await.unwrap();
    drop(b);
    secretchat::drop_postgres_tables(&db).unwrap();
}

/// Node A holds Alice and Bob; Bob has events A's application has not acknowledged when A
/// hands him over. Node B takes him: B's application gets those events, each once and in
/// order, ahead of his new ones, and never an event of Alice's (still A's); A's application
/// gets none of Bob's from then on. (Before the inbox was filed by account, B read nothing of
/// Bob's earlier events and both nodes paged every account's.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_taken_over_account_brings_its_unacknowledged_events_to_the_new_node() {
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut db = PgOptions::new(pg_url());
    db.node = "node-a".into();
    db.prefix = format!("adopt{}_", std::process::id());
    let config = || EngineConfig::builder().at_rest_key([4; 32]).build();
    let (a, mut a_events) = Engine::open_postgres(dir_a.path(), db.clone(), config()).unwrap();
    let sim = add_pair(&a).await;
    let (alice_chat, bob_chat, _) = open_chat(&a, &mut a_events).await;

    // Three messages to Bob and one to Alice, read on A and not acknowledged.
    let texts = ["one", "two", "three"];
    for t in texts {
        a.send_message(ALICE, alice_chat, InputMessage::text(t))
            .await
            .unwrap();
    }
    a.send_message(BOB, bob_chat, InputMessage::text("to alice"))
        .await
        .unwrap();
    let mut unacked = Vec::new();
    while unacked.len() < 4 {
        let e = next(&mut a_events).await;
        if let Update::NewMessage(m) = &e.update {
            unacked.push((e.account, m.text.clone(), e.seq.unwrap()));
        }
    }
    a.release_account(BOB).await.unwrap();

    // Node B takes Bob over (his transport now delivers to B).
    let mut db_b = db.clone();
    db_b.node = "node-b".into();
    let (b, mut b_events) = Engine::open_postgres(dir_b.path(), db_b, config()).unwrap();
    // B's application has read everything there was for it (nothing) before Bob comes.
    assert!(b_events.try_next().is_none());
    let device = sim.device(2, 0);
    let feed = b.add_account(BOB, Arc::new(device.clone())).await.unwrap();
    sim.connect(&device, feed);
    let mut got = Vec::new();
    while got.len() < texts.len() {
        let e = next(&mut b_events).await;
        assert_eq!(
            e.account, BOB,
            "node B got an event of an account it does not hold"
        );
        if let Update::NewMessage(m) = &e.update {
            got.push((e.account, m.text.clone(), e.seq.unwrap()));
        }
    }
    let expected: Vec<_> = unacked.iter().filter(|u| u.0 == BOB).cloned().collect();
    assert_eq!(
        got, expected,
        "Bob's unacknowledged events, once each, in order"
    );

    // A new message to Bob reaches B's application after them, and not A's.
    a.send_message(ALICE, alice_chat, InputMessage::text("four"))
        .await
        .unwrap();
    loop {
        let e = next(&mut b_events).await;
        assert_eq!(e.account, BOB);
        if let Some(seq) = e.seq {
            b.ack(seq).await.unwrap();
        }
        if let Update::NewMessage(m) = &e.update {
            assert_eq!(m.text, "four", "an earlier event came twice");
            break;
        }
    }
    let quiet = tokio::time::timeout(Duration::from_millis(500), async {
        loop {
            let e = next(&mut a_events).await;
            let stored_for_bob = e.account == BOB && e.seq.is_some();
            assert!(!stored_for_bob, "node A still delivers Bob's events");
        }
    });
    let _ = quiet.await;
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
    secretchat::drop_postgres_tables(&db).unwrap();
}

/// A standby node runs Alice whenever nobody else does: it takes her over once node A's lease
/// runs out, and again after losing her to a third node that then gives her up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_takes_over_an_expired_lease_and_again_after_losing_it() {
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut db = PgOptions::new(pg_url());
    db.node = "node-a".into();
    db.prefix = format!("standby{}_", std::process::id());
    db.lease_ttl = Duration::from_millis(900);
    let config = || EngineConfig::builder().at_rest_key([6; 32]).build();
    let (a, _a_events) = Engine::open_postgres(dir_a.path(), db.clone(), config()).unwrap();
    let sim = add_pair(&a).await;
    let mut db_b = db.clone();
    db_b.node = "node-b".into();
    let (b, _b_events) = Engine::open_postgres(dir_b.path(), db_b, config()).unwrap();
    let api: Arc<dyn secretchat::ServerApi> = Arc::new(sim.device(1, 0));
    let poll = Duration::from_millis(20);
    let mut taken = b.standby(vec![(ALICE, api)], poll);
    let quiet = tokio::time::timeout(Duration::from_millis(300), taken.recv()).await;
    assert!(quiet.is_err(), "taken while node A's lease ran");

    // Node A stops without handing Alice over: her lease runs out, the standby takes her.
    a.shutdown().await.unwrap();
    let (account, _feed) = tokio::time::timeout(Duration::from_secs(10), taken.recv())
        .await
        .expect("taken over once the lease ran out")
        .unwrap();
    assert_eq!(account, ALICE);

    // A third node takes her (B's lease ended as a stalled node's would); B waits again, and
    // takes her back once the third node gives her up.
    let mut other = db.clone();
    other.node = "node-c".into();
    let c = Postgres::connect(other).unwrap();
    end_leases(&db.prefix).await;
    c.leases().acquire(ALICE.0).await.unwrap();
    let quiet = tokio::time::timeout(Duration::from_millis(500), taken.recv()).await;
    assert!(quiet.is_err(), "taken while node C's lease ran");
    c.leases().release(ALICE.0).await.unwrap();
    let (account, _feed) = tokio::time::timeout(Duration::from_secs(10), taken.recv())
        .await
        .expect("taken again once node C gave her up")
        .unwrap();
    assert_eq!(account, ALICE);
    b.shutdown().await.unwrap();
    drop(c);
    secretchat::drop_postgres_tables(&db).unwrap();
}

/// On PostgreSQL a sleeping chat's records are read on the loader's threads while what comes
/// for it waits (docs/store.md): chats that fell asleep answer a status request, and messages
/// sent while both sides sleep wake them and arrive once each, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sleeping_chats_wake_from_postgres_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let mut db = PgOptions::new(pg_url());
    db.prefix = format!("wake{}_", std::process::id());
    let config = EngineConfig::builder()
        .at_rest_key([5; 32])
        .idle_after(Duration::from_millis(100))
        .build();
    let (engine, mut events) = Engine::open_postgres(dir.path(), db.clone(), config).unwrap();
    add_pair(&engine).await;
    let (alice_chat, bob_chat, _) = open_chat(&engine, &mut events).await;
    let asleep = |engine: Engine| async move {
        for _ in 0..200 {
            let a = engine.loaded_chats(ALICE).await.unwrap();
            let b = engine.loaded_chats(BOB).await.unwrap();
            if a + b == 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the chats never fell asleep");
    };
    let mut got = Vec::new();
    for round in 0..4 {
        asleep(engine.clone()).await;
        // Woken by a status request.
        let c = engine.chat(BOB, bob_chat).await.unwrap();
        assert_eq!(c.id, bob_chat);
        asleep(engine.clone()).await;
        // Woken by messages: the first wakes Alice's chat, Bob's wakes with the first to
        // reach him while the others queue behind its read.
        let sends: Vec<_> = (0..6)
            .map(|i| {
                engine.queue_message(
                    ALICE,
                    alice_chat,
                    InputMessage::text(format!("{round}.{i}")),
                )
            })
            .collect();
        for s in sends {
            s.await.unwrap();
        }
        while got.len() < (round + 1) * 6 {
            let e = next(&mut events).await;
            if let Some(seq) = e.seq {
                engine.ack(seq).await.unwrap();
            }
            if let Update::NewMessage(m) = e.update {
                assert_eq!(e.account, BOB);
                got.push(m.text);
            }
        }
    }
    let want: Vec<String> = (0..4)
        .flat_map(|r| (0..6).map(move |i| format!("{r}.{i}")))
        .collect();
    assert_eq!(got, want, "once each, in order");
    engine.shutdown().await.unwrap();
    secretchat::drop_postgres_tables(&db).unwrap();
}
