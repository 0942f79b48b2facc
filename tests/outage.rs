//! An account whose database stops answering while the node keeps its lease (docs/store.md):
//! it goes on answering, holds what arrives for chats it cannot read — up to a bound — and
//! once the database answers again delivers every message once, in order.
//!
//! Needs `SECRETCHAT_PG_URL` (`.ci/pg.sh` sets it); fails without it.
#![cfg(all(feature = "sim", feature = "postgres"))]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use secretchat::{ChatId, Engine, EngineConfig, Error, EventStream, InputMessage, PgOptions};

mod common;
use common::proxy::{Proxy, target, via};
use common::{ALICE, BOB, pg_url};

/// Alice on an embedded store of her own; Bob on the database, through a proxy, with a lease
/// long enough to outlast every cut here; chats from Alice to Bob, asleep on Bob's side.
struct Split {
    proxy: Proxy,
    _dirs: (tempfile::TempDir, tempfile::TempDir),
    _sim: std::sync::Arc<secretchat::sim::SimServer>,
    db: PgOptions,
    alice: Engine,
    bob: Engine,
    bob_events: EventStream,
    /// Alice's handles of the chats, and Bob's, in the same order.
    chats: Vec<(ChatId, ChatId)>,
}

async fn split(prefix: &str, n: usize, config: impl Fn() -> EngineConfig) -> Split {
    let proxy = Proxy::start(target(&pg_url())).await;
    let sim = secretchat::sim::SimServer::new(secretchat::sim::SimFaults::NONE, 1);
    let dirs = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (alice, mut alice_events) = Engine::open(dirs.0.path(), config()).unwrap();
    let mut db = PgOptions::new(via(&pg_url(), proxy.port));
    db.prefix = format!("{prefix}{}_", std::process::id());
    db.lease_ttl = Duration::from_secs(60);
    let (bob, mut bob_events) = Engine::open_postgres(dirs.1.path(), db.clone(), config()).unwrap();
    for (engine, account, user) in [(&alice, ALICE, 1), (&bob, BOB, 2)] {
        let device = sim.device(user, 0);
        let feed = engine
            .add_account(account, std::sync::Arc::new(device.clone()))
            .await
            .unwrap();
        sim.connect(&device, feed);
    }
    let mut chats = Vec::new();
    for _ in 0..n {
        let mine = alice.request_chat(ALICE, 2, 0).await.unwrap();
        let mut theirs = None;
        let mut ready = 0;
        while ready < 2 {
            let (engine, e) = tokio::select! {
                e = common::next(&mut alice_events) => (&alice, e),
                e = common::next(&mut bob_events) => (&bob, e),
            };
            if let secretchat::Update::ChatRequested { .. } = e.update {
                bob.accept_chat(BOB, e.chat).await.unwrap();
                theirs = Some(e.chat);
            }
            if matches!(e.update, secretchat::Update::ChatReady { .. }) {
                ready += 1;
            }
            if let Some(seq) = e.seq {
                engine.ack(seq).await.unwrap();
            }
        }
        chats.push((mine, theirs.unwrap()));
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while bob.loaded_chats(BOB).await.unwrap() > 0 {
        assert!(Instant::now() < deadline, "Bob's chats never fell asleep");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Split {
        proxy,
        _dirs: dirs,
        _sim: sim,
        db,
        alice,
        bob,
        bob_events,
        chats,
    }
}

impl Split {
    async fn end(self) {
        self.alice.shutdown().await.unwrap();
        self.bob.shutdown().await.unwrap();
        let mut db = self.db;
        db.url = pg_url();
        secretchat::drop_postgres_tables(&db).unwrap();
    }
}

fn config(max_waiting: usize) -> EngineConfig {
    EngineConfig::builder()
        .at_rest_key([7; 32])
        .idle_after(Duration::from_millis(100))
        .ack_interval(Duration::from_millis(1000))
        .difference_interval(Duration::from_millis(500))
        .max_waiting_for_reads(max_waiting)
        .build()
}

/// Handles `engine`'s events (acknowledging them) until `n` messages came; their texts.
async fn messages(engine: &Engine, events: &mut EventStream, n: usize) -> Vec<String> {
    let mut got = Vec::new();
    while got.len() < n {
        let e = tokio::time::timeout(Duration::from_secs(30), events.next())
            .await
            .unwrap_or_else(|_| panic!("{} of {n} messages within 30 s: {got:?}", got.len()))
            .expect("the engine runs");
        if let Some(seq) = e.seq {
            engine.ack(seq).await.unwrap();
        }
        if let secretchat::Update::NewMessage(m) = e.update {
            got.push(m.text);
        }
    }
    got
}

/// With the database cut off, an account on it goes on answering: an update for a chat
/// asleep there is looked up in the index and loaded off the account's thread (and delivered
/// once the database answers again), and the account's qts position, due at its next tick,
/// is submitted without waiting for the commit — whatever the store's durability mode.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_account_cut_off_from_the_database_keeps_answering() {
    let mut s = split("look", 2, || config(4096)).await;
    // Bob gets a message on the second chat: its qts is acknowledged at his next tick.
    let text = |t: &str| InputMessage::text(t);
    s.alice
        .send_message(ALICE, s.chats[1].0, text("before the cut"))
        .await
        .unwrap();
    assert_eq!(
        messages(&s.bob, &mut s.bob_events, 1).await,
        ["before the cut"]
    );

    s.proxy.set_cut(true);
    // A message for the first chat, asleep on Bob's side: its index entry and records are
    // on the unreachable database.
    s.alice
        .send_message(ALICE, s.chats[0].0, text("while cut off"))
        .await
        .unwrap();
    // Over more than an ack interval, the account answers each probe.
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let probe = tokio::time::timeout(Duration::from_secs(2), s.bob.loaded_chats(BOB)).await;
        assert!(
            matches!(probe, Ok(Ok(_))),
            "the account waited for the database: {probe:?}"
        );
    }
    s.proxy.set_cut(false);
    assert_eq!(
        messages(&s.bob, &mut s.bob_events, 1).await,
        ["while cut off"]
    );
    s.end().await;
}

/// With the database cut off, what waits for a sleeping chat's records is bounded: past
/// `max_waiting_for_reads`, updates are left for the difference (their qts is not
/// acknowledged) and a command fails with `Busy`, nothing of it stored. Once the database
/// answers again, every message arrives once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_waits_for_an_unreachable_database_is_bounded() {
    let mut s = split("held", 1, || config(4)).await;
    let (mine, theirs) = s.chats[0];
    s.proxy.set_cut(true);
    let sent: Vec<String> = (0..12).map(|i| format!("m{i}")).collect();
    for t in &sent {
        s.alice
            .send_message(ALICE, mine, InputMessage::text(t))
            .await
            .unwrap();
    }
    // The server has pushed all twelve to Bob: four wait for the chat's index entry.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let refused = tokio::time::timeout(
        Duration::from_secs(5),
        s.bob
            .send_message(BOB, theirs, InputMessage::text("from Bob")),
    )
    .await
    .expect("the command is answered while the database is unreachable");
    assert!(
        matches!(refused, Err(Error::Busy)),
        "a command past the bound: {refused:?}"
    );
    // Longer than the interval at which the difference is fetched again.
    tokio::time::sleep(Duration::from_secs(2)).await;
    s.proxy.set_cut(false);
    let got = messages(&s.bob, &mut s.bob_events, sent.len()).await;
    assert_eq!(got, sent, "once each, in order");
    // Nothing more: no copy of a message given up and fetched again.
    let more = tokio::time::timeout(Duration::from_secs(2), s.bob_events.next()).await;
    assert!(
        !matches!(&more, Ok(Some(e)) if matches!(e.update, secretchat::Update::NewMessage(_))),
        "a message came twice: {more:?}"
    );
    s.end().await;
}
