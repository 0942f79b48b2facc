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
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

mod common;
use common::{ALICE, BOB, add_pair, alice_sends, open_chat, pg_url};

/// A TCP proxy to `target` that can be cut: while cut it carries no byte either way (what it
/// read is held until it heals) and connects nowhere, but closes nothing.
struct Proxy {
    port: u16,
    cut: watch::Sender<bool>,
    /// Armed by `cut_after`: the bytes after which the proxy cuts itself.
    trigger: Trigger,
}

/// A pattern in what a client sends: once it has passed, the client's next write passes too
/// (a statement's execution follows its parse), and then the proxy is cut.
/// (The pattern, and the connection it passed on.)
type Trigger = std::sync::Arc<std::sync::Mutex<Option<(&'static [u8], Option<usize>)>>>;

impl Proxy {
    async fn start(target: String) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (cut, _) = watch::channel(false);
        let cuts = cut.clone();
        let trigger = Trigger::default();
        let triggers = trigger.clone();
        tokio::spawn(async move {
            let mut connections = 0;
            while let Ok((inbound, _)) = listener.accept().await {
                let (target, mut cut) = (target.clone(), cuts.subscribe());
                connections += 1;
                let armed = (cuts.clone(), triggers.clone(), connections);
                tokio::spawn(async move {
                    if cut.wait_for(|c| !c).await.is_err() {
                        return;
                    }
                    let Ok(outbound) = TcpStream::connect(&target).await else {
                        return;
                    };
                    let (ir, iw) = inbound.into_split();
                    let (or, ow) = outbound.into_split();
                    tokio::spawn(pump(ir, ow, cut.clone(), Some(armed)));
                    tokio::spawn(pump(or, iw, cut, None));
                });
            }
        });
        Proxy { port, cut, trigger }
    }

    /// Cuts the proxy right after a client sent `pattern` and then one more write.
    fn cut_after(&self, pattern: &'static [u8]) {
        *self.trigger.lock().unwrap() = Some((pattern, None));
    }

    fn set_cut(&self, cut: bool) {
        self.cut.send_replace(cut);
    }
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut cut: watch::Receiver<bool>,
    armed: Option<(watch::Sender<bool>, Trigger, usize)>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        if cut.wait_for(|c| !c).await.is_err() {
            return;
        }
        let n = tokio::select! {
            n = from.read(&mut buf) => match n {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            },
            _ = cut.changed() => continue,
        };
        if cut.wait_for(|c| !c).await.is_err() || to.write_all(&buf[..n]).await.is_err() {
            return;
        }
        if let Some((cuts, trigger, me)) = &armed {
            let mut t = trigger.lock().unwrap();
            match *t {
                Some((_, Some(on))) if on == *me => {
                    *t = None;
                    cuts.send_replace(true);
                }
                Some((p, None)) if buf[..n].windows(p.len()).any(|w| w == p) => {
                    *t = Some((p, Some(*me)));
                }
                _ => {}
            }
        }
    }
}

/// `postgres://user@host:port/db` with `host:port` replaced.
fn via(url: &str, port: u16) -> String {
    let (head, rest) = url.split_once('@').unwrap();
    let path = rest.split_once('/').map_or("", |(_, p)| p);
    format!("{head}@127.0.0.1:{port}/{path}")
}

fn target(url: &str) -> String {
    let rest = url.split_once('@').unwrap().1;
    rest.split_once('/').map_or(rest, |(h, _)| h).to_owned()
}

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
    let pending = {
        let engine = engine.clone();
        tokio::spawn(async move {
            engine
                .send_message(ALICE, alice_chat, InputMessage::text("during the cut"))
                .await
        })
    };
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
    let mut other = db.clone();
    other.url = pg_url();
    other.node = "other-node".into();
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
    let pending = {
        let engine = engine.clone();
        tokio::spawn(async move {
            engine
                .send_message(ALICE, alice_chat, InputMessage::text("during the cut"))
                .await
        })
    };
    let mut cut = proxy.cut.subscribe();
    tokio::time::timeout(Duration::from_secs(10), cut.wait_for(|c| *c))
        .await
        .expect("a write transaction read the epochs")
        .unwrap();
    let cut_at = Instant::now();

    let mut other = db.clone();
    other.url = pg_url();
    other.node = "other-node".into();
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

/// With the database cut off, an account on it goes on answering: an update for a chat
/// asleep there is looked up in the index and loaded off the account's thread (and delivered
/// once the database answers again), and the account's qts position, due at its next tick,
/// is submitted without waiting for the commit — whatever the store's durability mode.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_account_cut_off_from_the_database_keeps_answering() {
    let proxy = Proxy::start(target(&pg_url())).await;
    let sim = secretchat::sim::SimServer::new(secretchat::sim::SimFaults::NONE, 1);
    // Alice on an embedded store of her own; Bob on the database, through the proxy.
    let (alice_dir, bob_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let config = || {
        EngineConfig::builder()
            .at_rest_key([7; 32])
            .idle_after(Duration::from_millis(100))
            .ack_interval(Duration::from_millis(1000))
            .build()
    };
    let (alice, mut alice_events) = Engine::open(alice_dir.path(), config()).unwrap();
    let mut db = PgOptions::new(via(&pg_url(), proxy.port));
    db.prefix = format!("look{}_", std::process::id());
    db.lease_ttl = Duration::from_secs(60);
    let (bob, mut bob_events) =
        Engine::open_postgres(bob_dir.path(), db.clone(), config()).unwrap();
    for (engine, account, user) in [(&alice, ALICE, 1), (&bob, BOB, 2)] {
        let device = sim.device(user, 0);
        let feed = engine
            .add_account(account, std::sync::Arc::new(device.clone()))
            .await
            .unwrap();
        sim.connect(&device, feed);
    }
    // Two chats from Alice to Bob.
    let chats = [
        alice.request_chat(ALICE, 2, 0).await.unwrap(),
        alice.request_chat(ALICE, 2, 0).await.unwrap(),
    ];
    let mut ready = 0;
    while ready < 4 {
        let (engine, e) = tokio::select! {
            e = common::next(&mut alice_events) => (&alice, e),
            e = common::next(&mut bob_events) => (&bob, e),
        };
        if let secretchat::Update::ChatRequested { .. } = e.update {
            bob.accept_chat(BOB, e.chat).await.unwrap();
        }
        if matches!(e.update, secretchat::Update::ChatReady { .. }) {
            ready += 1;
        }
        if let Some(seq) = e.seq {
            engine.ack(seq).await.unwrap();
        }
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while bob.loaded_chats(BOB).await.unwrap() > 0 {
        assert!(Instant::now() < deadline, "Bob's chats never fell asleep");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Bob gets a message on the second chat: its qts is acknowledged at his next tick.
    alice
        .send_message(ALICE, chats[1], InputMessage::text("before the cut"))
        .await
        .unwrap();
    gets(&bob, &mut bob_events, "before the cut").await;

    proxy.set_cut(true);
    // A message for the first chat, asleep on Bob's side: its index entry and records are
    // on the unreachable database.
    alice
        .send_message(ALICE, chats[0], InputMessage::text("while cut off"))
        .await
        .unwrap();
    // Over more than an ack interval, the account answers each probe.
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let probe = tokio::time::timeout(Duration::from_secs(2), bob.loaded_chats(BOB)).await;
        assert!(
            matches!(probe, Ok(Ok(_))),
            "the account waited for the database: {probe:?}"
        );
    }
    proxy.set_cut(false);
    gets(&bob, &mut bob_events, "while cut off").await;
    alice.shutdown().await.unwrap();
    bob.shutdown().await.unwrap();
    db.url = pg_url();
    secretchat::drop_postgres_tables(&db).unwrap();
}

/// Handles `engine`'s events (acknowledging them) until a message comes; it must be `want`.
async fn gets(engine: &Engine, events: &mut secretchat::EventStream, want: &str) {
    loop {
        let e = common::next(events).await;
        if let Some(seq) = e.seq {
            engine.ack(seq).await.unwrap();
        }
        if let secretchat::Update::NewMessage(m) = e.update {
            assert_eq!(m.text, want);
            return;
        }
    }
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
