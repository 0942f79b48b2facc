//! A node cut off from the database while it keeps running (docs/store.md): its connections go
//! through a proxy that stops carrying bytes — nothing answers, nothing closes, as in a network
//! partition. The node must stop its accounts by itself once its leases run out, and another
//! node must be able to take them over; after the partition heals, nothing the cut-off node
//! still had in flight lands.
//!
//! Needs `SECRETCHAT_PG_URL` (`.ci/pg.sh` sets it); fails without it.
#![cfg(all(feature = "sim", feature = "postgres"))]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use secretchat::{Engine, EngineConfig, Error, InputMessage, PgOptions, StoreError};
use secretchat_engine::store::postgres::Postgres;

mod common;
use common::proxy::{Proxy, target, via};
use common::{ALICE, BOB, add_pair, alice_sends, open_chat, pg_url};

/// A node (Alice and Bob, with a chat between them) on the database through a proxy, with a
/// lease of 1 s; Alice has sent one message.
struct CutNode {
    proxy: Proxy,
    dir: tempfile::TempDir,
    db: PgOptions,
    engine: Engine,
    sim: std::sync::Arc<secretchat::sim::SimServer>,
    alice_chat: secretchat::ChatId,
}

async fn cut_node(name: &str, prefix: &str) -> CutNode {
    let proxy = Proxy::start(target(&pg_url())).await;
    let dir = tempfile::tempdir().unwrap();
    let mut db = PgOptions::new(via(&pg_url(), proxy.port));
    db.node = name.into();
    db.prefix = format!("{prefix}{}_", std::process::id());
    db.lease_ttl = Duration::from_millis(1000);
    let config = EngineConfig::builder().at_rest_key([5; 32]).build();
    let (engine, mut events) = Engine::open_postgres(dir.path(), db.clone(), config).unwrap();
    let sim = add_pair(&engine).await;
    let (alice_chat, _, _) = open_chat(&engine, &mut events).await;
    alice_sends(&engine, &mut events, alice_chat, "before the cut").await;
    CutNode {
        proxy,
        dir,
        db,
        engine,
        sim,
        alice_chat,
    }
}

/// Alice's send of "during the cut", in the background (it must never be stored).
fn send_during_the_cut(
    engine: &Engine,
    chat: secretchat::ChatId,
) -> tokio::task::JoinHandle<Result<i64, Error>> {
    let engine = engine.clone();
    tokio::spawn(async move {
        engine
            .send_message(ALICE, chat, InputMessage::text("during the cut"))
            .await
    })
}

/// The options of another node, which reaches the database directly.
fn other_node(db: &PgOptions) -> PgOptions {
    let mut other = db.clone();
    other.url = pg_url();
    other.node = "other-node".into();
    other
}

/// Node `b` acquires Alice and Bob, waiting out the leases of the node that held them.
async fn take_both(b: &Postgres, ttl: Duration) {
    for account in [ALICE, BOB] {
        let deadline = Instant::now() + ttl * 10;
        loop {
            match b.leases().acquire(account.0).await {
                Ok(_) => break,
                Err(StoreError::Owned { .. }) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => panic!("take-over of {account:?}: {e}"),
            }
        }
    }
}

/// The send a cut-off node had in flight ends, once the partition heals, without being stored.
async fn never_stored(pending: tokio::task::JoinHandle<Result<i64, Error>>) {
    let sent = tokio::time::timeout(Duration::from_secs(60), pending)
        .await
        .expect("the send in flight ends once the partition heals")
        .unwrap();
    assert!(
        sent.is_err(),
        "a send of a cut-off node was stored: {sent:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_cut_off_from_the_database_stops_its_accounts_and_another_takes_them() {
    let ttl = Duration::from_millis(1000);
    let CutNode {
        proxy,
        dir: _dir,
        db,
        engine,
        sim: _sim,
        alice_chat,
    } = cut_node("cut-node", "cut").await;

    // The partition: the node keeps running, the database no longer answers it.
    proxy.set_cut(true);
    let cut_at = Instant::now();
    // A send meanwhile is stored nowhere (it never completes, or fails).
    let pending = send_during_the_cut(&engine, alice_chat);
    // It stops both accounts by itself once their leases run out on its own clock.
    for account in [ALICE, BOB] {
        let stopped = async {
            loop {
                // A call to a running account may wait on the database: probe with a bound.
                let probe = engine.request_chat(account, 2, 0);
                match tokio::time::timeout(Duration::from_millis(100), probe).await {
                    Ok(Err(Error::NoSuchAccount(_))) => break,
                    _ => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
        };
        tokio::time::timeout(ttl * 5, stopped)
            .await
            .expect("a cut-off node stops its accounts by itself");
    }
    let stopped_after = cut_at.elapsed();
    assert!(
        stopped_after >= ttl / 2,
        "stopped before its lease ran out: {stopped_after:?}"
    );

    // Another node, which reaches the database, takes them over.
    let other = other_node(&db);
    let b = Postgres::connect(other).unwrap();
    take_both(&b, ttl).await;
    let taken_after = cut_at.elapsed();
    assert!(taken_after < ttl * 4, "take-over took {taken_after:?}");

    // The partition heals: the cut-off node's send in flight did not land, and it cannot
    // take its accounts back while the other node holds them.
    proxy.set_cut(false);
    never_stored(pending).await;
    let device_api = std::sync::Arc::new(_sim.device(1, 0));
    let refused = engine.add_account(ALICE, device_api).await.unwrap_err();
    assert!(
        matches!(refused, Error::Store(StoreError::Owned { .. })),
        "{refused}"
    );
    engine.shutdown().await.unwrap();
    drop(b);
    secretchat::drop_postgres_tables(&db).unwrap();
}

/// A node cut off in the middle of a write transaction — its `SELECT … FOR SHARE` of the
/// ownership rows executed, its COMMIT never sent — leaves the transaction open on the server,
/// holding those rows, and nothing closes its connection. The database ends it itself (every
/// session is opened with `idle_in_transaction_session_timeout` at half a lease), so another
/// node takes the account over once the lease runs out. With that setting removed, this test
/// never got past the take-over: it waited on the lock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_cut_off_inside_a_transaction_does_not_hold_back_the_take_over() {
    let ttl = Duration::from_millis(1000);
    let CutNode {
        proxy,
        dir: _dir,
        db,
        engine,
        sim: _sim,
        alice_chat,
    } = cut_node("cut-in-tx", "cuttx").await;

    // The next write transaction is cut off right after its epochs' read executed.
    proxy.cut_after(b"FOR SHARE");
    let pending = send_during_the_cut(&engine, alice_chat);
    let mut cut = proxy.cut.subscribe();
    tokio::time::timeout(Duration::from_secs(10), cut.wait_for(|c| *c))
        .await
        .expect("a write transaction read the epochs")
        .unwrap();
    let cut_at = Instant::now();

    let mut other = other_node(&db);
    // Long enough for the lease and the database's own timeout; short of what the old code
    // waited on the lock (no bound but this one).
    other.request_timeout = ttl * 8;
    let b = Postgres::connect(other).unwrap();
    // (Whichever account's write was cut: both are taken.)
    take_both(&b, ttl).await;
    let taken_after = cut_at.elapsed();
    assert!(taken_after < ttl * 4, "take-over took {taken_after:?}");

    // Healed: the send in the cut-off transaction never landed.
    proxy.set_cut(false);
    never_stored(pending).await;
    engine.shutdown().await.unwrap();
    drop(b);
    secretchat::drop_postgres_tables(&db).unwrap();
}

/// `add_account` on a shared database makes its round trips (the lease, the inbox block) off
/// the caller's thread: with the database unreachable, a single-threaded runtime that called
/// it goes on running its other tasks, and the account is added once the database answers.
#[tokio::test(flavor = "current_thread")]
async fn adding_an_account_never_holds_the_callers_thread() {
    // The proxy on a runtime of its own: this thread is the one a blocking call would hold.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async move {
            tx.send(Proxy::start(target(&pg_url())).await).unwrap();
            std::future::pending::<()>().await;
        });
    });
    let proxy = rx.recv().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut db = PgOptions::new(via(&pg_url(), proxy.port));
    db.prefix = format!("add{}_", std::process::id());
    let config = EngineConfig::builder().at_rest_key([6; 32]).build();
    let (engine, _events) = Engine::open_postgres(dir.path(), db.clone(), config).unwrap();
    let sim = secretchat::sim::SimServer::new(secretchat::sim::SimFaults::NONE, 1);
    proxy.set_cut(true);
    let adding = {
        let (engine, api) = (engine.clone(), std::sync::Arc::new(sim.device(1, 0)));
        tokio::spawn(async move { engine.add_account(ALICE, api).await })
    };
    // Another task of this thread runs while the account waits for the database.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !adding.is_finished(),
        "add_account finished with the database unreachable"
    );
    proxy.set_cut(false);
    tokio::time::timeout(Duration::from_secs(30), adding)
        .await
        .expect("added once the database answers")
        .unwrap()
        .unwrap();
    engine.shutdown().await.unwrap();
    db.url = pg_url();
    secretchat::drop_postgres_tables(&db).unwrap();
}

/// With the database unreachable, `add_account` gives up once the request timeout has passed
/// (a typed error, not a wait without end), and adds the account once the database answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adding_an_account_gives_up_after_the_request_timeout() {
    let proxy = Proxy::start(target(&pg_url())).await;
    let dir = tempfile::tempdir().unwrap();
    let mut db = PgOptions::new(via(&pg_url(), proxy.port));
    db.prefix = format!("give{}_", std::process::id());
    db.request_timeout = Duration::from_millis(500);
    let config = EngineConfig::builder().at_rest_key([8; 32]).build();
    let (engine, _events) = Engine::open_postgres(dir.path(), db.clone(), config).unwrap();
    let sim = secretchat::sim::SimServer::new(secretchat::sim::SimFaults::NONE, 1);
    let api = std::sync::Arc::new(sim.device(1, 0));
    proxy.set_cut(true);
    let adding = engine.add_account(ALICE, api.clone());
    let refused = tokio::time::timeout(Duration::from_secs(10), adding)
        .await
        .expect("add_account gives up within its bound");
    assert!(
        matches!(refused, Err(Error::Store(StoreError::Remote(_)))),
        "{refused:?}"
    );
    proxy.set_cut(false);
    engine.add_account(ALICE, api).await.unwrap();
    engine.shutdown().await.unwrap();
    db.url = pg_url();
    secretchat::drop_postgres_tables(&db).unwrap();
}

/// Chat handles (and inbox numbers) come from the database's counters in blocks, the next
/// block reserved ahead once half of one is used: with the database cut off after that, a
/// whole block's worth more is handed out without waiting for it, every number distinct.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counter_blocks_are_reserved_ahead() {
    use secretchat_engine::store::{Store, StoreOptions};
    let proxy = Proxy::start(target(&pg_url())).await;
    let mut db = PgOptions::new(via(&pg_url(), proxy.port));
    db.prefix = format!("ahead{}_", std::process::id());
    let options = StoreOptions {
        at_rest_key: Some([9; 32]),
        ..StoreOptions::default()
    };
    let store = Store::with_backend(Postgres::connect(db.clone()).unwrap(), options).unwrap();
    let take = |store: std::sync::Arc<Store>, n: usize| {
        tokio::task::spawn_blocking(move || {
            (0..n)
                .map(|_| store.new_handle().unwrap())
                .collect::<Vec<_>>()
        })
    };
    // Past half of the first block (64 handles): the next is reserved ahead.
    let mut handles = take(store.clone(), 40).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    proxy.set_cut(true);
    let more = tokio::time::timeout(Duration::from_secs(5), take(store.clone(), 64))
        .await
        .expect("handles of the block reserved ahead are handed out without the database")
        .unwrap();
    handles.extend(more);
    let distinct: std::collections::HashSet<_> = handles.iter().collect();
    assert_eq!(distinct.len(), handles.len(), "a handle handed out twice");
    proxy.set_cut(false);
    drop(store);
    db.url = pg_url();
    secretchat::drop_postgres_tables(&db).unwrap();
}
