//! Crash and retry windows of the running engine on the simulated server: a chat request
//! whose index entry was stored without its record, and an acceptEncryption whose answer was
//! lost and whose repeat the server refuses.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod engine_common;

use std::time::{Duration, Instant};

use engine_common::node::{Node, open_chat, two_users};
use secretchat_engine::protocol::chat::{AppEvent, Outgoing};
use secretchat_engine::runtime::EventKind;
use secretchat_schema::Identifiable;
use secretchat_schema::api::functions::messages as m;

async fn exchange(a: &mut Node, b: &mut Node, ha: u64, hb: u64) {
    a.engine()
        .send(a.account, ha, Outgoing::text(11, "to b"))
        .await
        .unwrap();
    b.engine()
        .send(b.account, hb, Outgoing::text(12, "to a"))
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while a.seen.texts(a.account, ha) != ["to a"] || b.seen.texts(b.account, hb) != ["to b"] {
        assert!(Instant::now() < deadline, "messages did not arrive");
        a.pump(Duration::from_millis(20)).await;
        b.pump(Duration::from_millis(20)).await;
    }
}

fn closed(n: &Node, handle: u64) -> bool {
    n.seen
        .events
        .iter()
        .any(|e| e.chat == handle && matches!(e.kind, EventKind::App(AppEvent::ChatClosed(_))))
}

/// An earlier build indexed a requested chat before writing its first record; a crash between
/// the two left an index entry without a record, and every later update for that chat id —
/// the server's repeated request included — was taken for a known chat and dropped. The index
/// entry and the record are now written in one batch, and an entry without a record counts as
/// unknown: the request is taken.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_indexed_without_its_record_is_taken_again() {
    let (_dir, sim, mut a, mut b) = two_users(1).await;
    // What the crash left: the index entry of the chat the server will create next (the
    // simulator numbers chats from 1001), no record.
    let store = b.engine().store().clone();
    let orphan = store.new_handle().unwrap();
    store.index_chat(b.account, 1001, orphan).unwrap();
    drop(store);
    b.restart(&sim).await;
    let (ha, hb) = open_chat(&mut a, &mut b, 2).await;
    let status = b.engine().status(b.account, hb).await.unwrap();
    assert_eq!(
        status.chat_id, 1001,
        "the test reproduces the indexed chat id"
    );
    assert_ne!(hb, orphan);
    exchange(&mut a, &mut b, ha, hb).await;
}

/// The server ran B's acceptEncryption but its answer was lost; the engine repeats the call and
/// the server refuses the repeat with ENCRYPTION_ALREADY_ACCEPTED. B holds the key: that is
/// success, not a closed chat.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_accept_refused_by_the_server_is_success() {
    let (_dir, sim, mut a, mut b) = two_users(2).await;
    sim.lose_replies(m::AcceptEncryption::CONSTRUCTOR_ID, 1);
    let (ha, hb) = open_chat(&mut a, &mut b, 2).await;
    assert_eq!(
        sim.stats().injected_errors,
        1,
        "the accept's answer was lost"
    );
    exchange(&mut a, &mut b, ha, hb).await;
    assert!(!closed(&a, ha) && !closed(&b, hb));
    let (sa, sb) = (
        a.engine().status(a.account, ha).await.unwrap(),
        b.engine().status(b.account, hb).await.unwrap(),
    );
    assert_eq!(sa.phase, "ready");
    assert_eq!(sb.phase, "ready");
    // Both sides show the same key image, as two phones would.
    assert_eq!(sa.visualization.len(), 36);
    assert_eq!(sa.visualization, sb.visualization);
}

/// `shutdown` stores every accepted step and releases the database before it returns (the
/// store opens at once, without waiting for anything); clones of the handle then get
/// `Stopped`; what was sent before it arrives after the restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_releases_the_database_and_loses_nothing() {
    use secretchat_engine::protocol::chat::Command;
    use secretchat_engine::runtime::EngineError;
    use secretchat_engine::store::{Store, StoreOptions};
    let (_root, sim, mut a, mut b) = two_users(33).await;
    let (ha, hb) = open_chat(&mut a, &mut b, 2).await;
    let clone = a.engine().clone();
    for i in 0..5 {
        let m = Outgoing::text(700 + i, format!("before shutdown {i}"));
        a.engine()
            .submit(a.account, ha, Command::Send(Box::new(m)))
            .await
            .unwrap();
    }
    tokio::time::timeout(Duration::from_secs(30), a.engine.take().unwrap().shutdown())
        .await
        .expect("shutdown returns")
        .unwrap();
    let after = tokio::time::timeout(
        Duration::from_secs(30),
        clone.command(a.account, ha, Command::Rekey),
    )
    .await
    .expect("a command after shutdown is answered");
    assert!(matches!(after, Err(EngineError::Stopped)), "{after:?}");
    drop(clone);
    // Released: a store opens on it directly.
    drop(Store::open(&a.dir, StoreOptions::default()).unwrap());
    a.start(&sim).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while b.seen.texts(b.account, hb).len() < 5 {
        b.pump(Duration::from_millis(50)).await;
        a.pump(Duration::from_millis(10)).await;
        assert!(Instant::now() < deadline, "texts sent before shutdown");
    }
}
