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
use common::{ALICE, BOB, add_pair, next, open_chat};

fn url() -> String {
    std::env::var("SECRETCHAT_PG_URL")
        .expect("SECRETCHAT_PG_URL is not set: run the tests through .ci/pg.sh")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_account_taken_over_by_another_node_stops_here() {
    let dir = tempfile::tempdir().unwrap();
    let mut db = PgOptions::new(url());
    db.node = "node-a".into();
    db.prefix = format!("eng{}_", std::process::id());
    db.lease_ttl = Duration::from_millis(900);
    let config = EngineConfig::builder().at_rest_key([3; 32]).build();
    let (engine, mut events) = Engine::open_postgres(dir.path(), db.clone(), config).unwrap();
    let sim = add_pair(&engine).await;
    // A chat and a message, stored in PostgreSQL.
    let (alice_chat, _, _) = open_chat(&engine, &mut events).await;
    engine
        .send_message(ALICE, alice_chat, InputMessage::text("over postgres"))
        .await
        .unwrap();
    loop {
        let e = next(&mut events).await;
        if let Some(seq) = e.seq {
            engine.ack(seq).await.unwrap();
        }
        if let Update::NewMessage(m) = e.update {
            assert_eq!((e.account, m.text.as_str()), (BOB, "over postgres"));
            break;
        }
    }

    // Another node cannot take Alice while this one's lease runs.
    let mut other = db.clone();
    other.node = "node-b".into();
    let b = Postgres::connect(other).unwrap();
    let owned = b.leases().acquire(ALICE.0).await.unwrap_err();
    assert!(matches!(owned, StoreError::Owned { .. }), "{owned}");

    // The leases end (as when this node stalls past them); node B takes Alice.
    let (client, conn) = tokio_postgres::connect(&url(), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    client
        .execute(
            &format!(
                "UPDATE {}accounts SET lease_until = now() - interval '1 second'",
                db.prefix
            ),
            &[],
        )
        .await
        .unwrap();
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
    // ...and works once it hands her back.
    b.leases().release(ALICE.0).await.unwrap();
    engine
        .add_account(ALICE, Arc::new(device.clone()))
        .await
        .unwrap();
    engine.shutdown().await.unwrap();
    drop(b);
    secretchat::drop_postgres_tables(&db).unwrap();
}
