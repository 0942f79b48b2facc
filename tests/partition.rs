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
}

impl Proxy {
    async fn start(target: String) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (cut, _) = watch::channel(false);
        let cuts = cut.clone();
        tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                let (target, mut cut) = (target.clone(), cuts.subscribe());
                tokio::spawn(async move {
                    if cut.wait_for(|c| !c).await.is_err() {
                        return;
                    }
                    let Ok(outbound) = TcpStream::connect(&target).await else {
                        return;
                    };
                    let (ir, iw) = inbound.into_split();
                    let (or, ow) = outbound.into_split();
                    tokio::spawn(pump(ir, ow, cut.clone()));
                    tokio::spawn(pump(or, iw, cut));
                });
            }
        });
        Proxy { port, cut }
    }

    fn set_cut(&self, cut: bool) {
        self.cut.send_replace(cut);
    }
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut cut: watch::Receiver<bool>,
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_cut_off_from_the_database_stops_its_accounts_and_another_takes_them() {
    let proxy = Proxy::start(target(&pg_url())).await;
    let dir = tempfile::tempdir().unwrap();
    let ttl = Duration::from_millis(1000);
    let mut db = PgOptions::new(via(&pg_url(), proxy.port));
    db.node = "cut-node".into();
    db.prefix = format!("cut{}_", std::process::id());
    db.lease_ttl = ttl;
    let config = EngineConfig::builder().at_rest_key([5; 32]).build();
    let (engine, mut events) = Engine::open_postgres(dir.path(), db.clone(), config).unwrap();
    let _sim = add_pair(&engine).await;
    let (alice_chat, _, _) = open_chat(&engine, &mut events).await;
    alice_sends(&engine, &mut events, alice_chat, "before the cut").await;

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
    let taken_after = cut_at.elapsed();
    assert!(taken_after < ttl * 4, "take-over took {taken_after:?}");

    // The partition heals: the cut-off node's send in flight did not land, and it cannot
    // take its accounts back while the other node holds them.
    proxy.set_cut(false);
    let sent = tokio::time::timeout(Duration::from_secs(60), pending)
        .await
        .expect("the send in flight ends once the partition heals")
        .unwrap();
    assert!(
        sent.is_err(),
        "a send of a cut-off node was stored: {sent:?}"
    );
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
