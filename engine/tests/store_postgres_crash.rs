//! The PostgreSQL server crashes (`pg_ctl -m immediate`) while a store writes in groups: the
//! committer retries until the server is back, every write it reported durable is there, and
//! none is lost. A test binary of its own: it restarts the server the other tests use.
//!
//! Needs `SECRETCHAT_PG_URL` and `SECRETCHAT_PG_CRASH_RESTART` (`.ci/pg.sh` sets both).
#![cfg(feature = "postgres")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use secretchat_engine::protocol::chat::{AppEvent, Persist};
use secretchat_engine::store::postgres::{PgOptions, Postgres};
use secretchat_engine::store::{ChatWrite, Durability, Store, StoreOptions, Ticket};

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set: run through .ci/pg.sh"))
}

fn open(o: &PgOptions) -> std::sync::Arc<Store> {
    let pg = Postgres::connect(o.clone()).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(pg.leases().acquire(1)).unwrap();
    let options = StoreOptions {
        durability: Durability::GroupCommit {
            interval: Duration::from_millis(5),
        },
        at_rest_key: Some([6; 32]),
        ..StoreOptions::default()
    };
    Store::with_backend(pg, options).unwrap()
}

#[test]
fn a_database_crash_under_load_loses_no_durable_write() {
    let mut o = PgOptions::new(env("SECRETCHAT_PG_URL"));
    o.node = "crash".into();
    o.prefix = format!("crash{}_", std::process::id());
    // Longer than a restart takes on a loaded machine: the leases outlive the outage.
    o.lease_ttl = Duration::from_secs(60);
    let store = open(&o);
    const WRITES: u64 = 600;
    let writer = {
        let store = store.clone();
        std::thread::spawn(move || {
            let mut tickets = Vec::new();
            for h in 1..=WRITES {
                let (t, _) = store
                    .write_chat(&ChatWrite {
                        account: 1,
                        handle: h,
                        chat_id: h as i32,
                        state: format!("state {h}").as_bytes(),
                        persist: &[Persist::default()],
                        events: &[AppEvent::PeerLayer(144)],
                        qts: Some(h as i32),
                        forget: &[],
                    })
                    .unwrap();
                tickets.push(t);
                std::thread::sleep(Duration::from_millis(3));
            }
            tickets
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    let crashed = Instant::now();
    let status = std::process::Command::new(env("SECRETCHAT_PG_CRASH_RESTART"))
        .arg("0.5")
        .status()
        .unwrap();
    assert!(status.success());
    let outage = crashed.elapsed();
    let tickets: Vec<Ticket> = writer.join().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    for t in &tickets {
        rt.block_on(async {
            tokio::time::timeout(Duration::from_secs(60), store.synced(*t))
                .await
                .expect("durable once the server is back")
                .expect("every write commits after the crash");
        });
    }
    drop(store);
    // Read back by a store opened afresh: everything is there.
    let again = open(&o);
    for h in 1..=WRITES {
        let c = again
            .load_chat(1, h)
            .unwrap()
            .expect("a durable write was lost");
        assert_eq!(c.state, format!("state {h}").as_bytes());
    }
    assert_eq!(again.qts(1).unwrap(), Some(WRITES as i32));
    assert_eq!(again.inbox().unwrap().len(), WRITES as usize);
    drop(again);
    secretchat_engine::store::postgres::drop_tables(&o).unwrap();
    eprintln!("{WRITES} writes across a {outage:?} outage, none lost");
}
