//! The PostgreSQL backend: the conformance suite (`store_suite/`), and fenced ownership.
//!
//! Needs a server: `SECRETCHAT_PG_URL` (`.ci/pg.sh` starts one and sets it). Without it every
//! test here fails, saying so: none passes by skipping.
#![cfg(feature = "postgres")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod store_suite;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use secretchat_engine::protocol::chat::{AppEvent, Persist};
use secretchat_engine::store::postgres::{PgOptions, Postgres};
use secretchat_engine::store::{
    Backend, Batch, ChatWrite, Durability, Family, Store, StoreError, StoreOptions, WriteMode,
};
use store_suite::TestDb;

fn url() -> String {
    std::env::var("SECRETCHAT_PG_URL")
        .expect("SECRETCHAT_PG_URL is not set: run the tests through .ci/pg.sh")
}

/// Tables of their own for each test, in the one database.
fn options(node: &str) -> PgOptions {
    static N: AtomicU32 = AtomicU32::new(0);
    let mut o = PgOptions::new(url());
    o.node = node.into();
    o.prefix = format!(
        "t{}_{}_",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    );
    o
}

/// A node on the test's tables, owning accounts 1 and 2.
fn node(o: &PgOptions) -> Arc<Postgres> {
    let pg = Postgres::connect(o.clone()).unwrap();
    block(async {
        for a in [1, 2] {
            pg.leases().acquire(a).await.unwrap();
        }
    });
    pg
}

/// Runs `f` to completion on a runtime of its own, on a thread of its own (the caller may be
/// inside a runtime).
fn block<T: Send>(f: impl std::future::Future<Output = T> + Send) -> T {
    std::thread::scope(|s| {
        s.spawn(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(f)
        })
        .join()
        .unwrap()
    })
}

struct PgDb(PgOptions);

impl TestDb for PgDb {
    fn open(&self, options: StoreOptions) -> Result<Arc<Store>, StoreError> {
        Store::with_backend(node(&self.0), options)
    }

    fn raw(&self) -> Arc<dyn Backend> {
        let pg = node(&self.0);
        // Every write is fenced by the accounts its keys belong to: the suite's raw writes
        // use these too.
        block(async {
            for a in [1 << 63, u64::MAX] {
                pg.leases().acquire(a).await.unwrap();
            }
        });
        pg
    }

    fn plain(&self) -> StoreOptions {
        StoreOptions {
            at_rest_key: Some([9; 32]),
            ..StoreOptions::default()
        }
    }
}

fn db() -> PgDb {
    PgDb(options("test-node"))
}

conformance!(db());

#[test]
fn a_shared_database_needs_an_at_rest_key() {
    let o = options("a");
    let err = Store::with_backend(node(&o), StoreOptions::default()).unwrap_err();
    assert!(matches!(err, StoreError::AtRestKeyRequired), "{err}");
}

/// A write for an account this node never acquired is refused, and nothing of it lands.
#[test]
fn a_write_for_an_account_not_owned_is_refused() {
    let o = options("a");
    let pg = node(&o);
    let mut b = Batch::for_account(3);
    b.put(
        Family::Chats,
        [3u64.to_be_bytes(), 1u64.to_be_bytes()].concat(),
        b"x".to_vec(),
    );
    let err = pg.write(b, WriteMode::Sync).unwrap_err();
    assert!(matches!(err, StoreError::Fenced { account: 3 }), "{err}");
    assert!(pg.range(Family::Chats, b"", None, 10).unwrap().is_empty());
}

fn chat_write(s: &Store, account: u64, handle: u64, state: &[u8]) -> Result<u64, StoreError> {
    s.write_chat(&ChatWrite {
        account,
        handle,
        chat_id: 0,
        state,
        persist: &[Persist::default()],
        events: &[AppEvent::PeerLayer(144)],
        qts: None,
        forget: &[],
    })
    .map(|(t, _)| t.0)
}

/// Node B takes account 1 over while A has writes in flight: A's writes that had not
/// committed are refused with `Fenced` (each one's ticket says so), B reads everything A
/// committed, and nothing A writes afterwards lands. A learns it lost the account.
#[test]
fn a_take_over_fences_the_old_owner() {
    let o = options("a");
    let sealed = StoreOptions {
        durability: Durability::GroupCommit {
            interval: Duration::from_millis(5),
        },
        at_rest_key: Some([4; 32]),
        ..StoreOptions::default()
    };
    let mut short = o.clone();
    short.lease_ttl = Duration::from_millis(600);
    let a_pg = node(&short);
    let lost = a_pg.leases().lost();
    let a = Store::with_backend(a_pg.clone(), sealed.clone()).unwrap();
    // Committed before the take-over.
    let mut committed = Vec::new();
    for h in 21..=40 {
        let t = chat_write(&a, 1, h, format!("a{h}").as_bytes()).unwrap();
        committed.push((h, t));
    }
    block(async {
        for (_, t) in &committed {
            a.synced(secretchat_engine::store::Ticket(*t))
                .await
                .unwrap();
        }
    });
    // B cannot take it while A's lease runs...
    let mut b_opts = o.clone();
    b_opts.node = "b".into();
    let b_pg = Postgres::connect(b_opts).unwrap();
    let _ = &b_pg;
    let err = block(b_pg.leases().acquire(1)).unwrap_err();
    assert!(matches!(err, StoreError::Owned { account: 1, .. }), "{err}");
    // ...A keeps writing in groups while B waits for the lease to run out: A stops renewing
    // (its renewals are refused once B holds the account).
    let writer = {
        let a = a.clone();
        std::thread::spawn(move || {
            let mut tickets = Vec::new();
            for h in 100..2000 {
                // A new chat each time, and chat 7 over and over (the record B writes once
                // it owns the account: nothing of A's may replace it).
                let seven = chat_write(&a, 1, 7, format!("a-late-{h}").as_bytes());
                match seven.and_then(|_| chat_write(&a, 1, h, b"late")) {
                    Ok(t) => tickets.push((h, t)),
                    Err(StoreError::Fenced { account: 1 }) => break,
                    Err(e) => panic!("{e}"),
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            tickets
        })
    };
    // Take over by force of the database's clock: end A's lease as an expired one would be.
    block(async {
        let (client, conn) = tokio_postgres::connect(&url(), tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        std::thread::sleep(Duration::from_millis(50));
        client
            .execute(
                &format!(
                    "UPDATE {}accounts SET lease_until = now() - interval '1 second'",
                    o.prefix
                ),
                &[],
            )
            .await
            .unwrap();
    });
    let lease = block(b_pg.leases().acquire(1)).unwrap();
    assert!(lease.epoch >= 2);
    // B writes chat 7 at once, while A is still writing it.
    block(async { b_pg.leases().acquire(2).await.unwrap() });
    let b = Store::with_backend(b_pg.clone(), sealed.clone()).unwrap();
    chat_write(&b, 1, 7, b"b owns it").unwrap();
    let late = writer.join().unwrap();
    assert!(
        !late.is_empty(),
        "A wrote nothing late: the test proves nothing"
    );
    // Every late write's ticket has an outcome: committed before B's epoch, or fenced.
    let mut landed = Vec::new();
    let mut fenced = 0;
    block(async {
        for (h, t) in &late {
            match a.synced(secretchat_engine::store::Ticket(*t)).await {
                Ok(()) => landed.push(*h),
                Err(StoreError::Fenced { account: 1 }) => fenced += 1,
                Err(e) => panic!("{e}"),
            }
        }
    });
    assert!(
        chat_write(&a, 1, 5000, b"after").is_err(),
        "A writes after losing the account"
    );
    // B sees what A committed, and nothing else of A's.
    drop(a);
    assert_eq!(
        b.load_chat(1, 7).unwrap().unwrap().state,
        b"b owns it",
        "a write of A's committed after B took the account over"
    );
    for (h, _) in &committed {
        assert_eq!(
            b.load_chat(1, *h).unwrap().unwrap().state,
            format!("a{h}").as_bytes()
        );
    }
    for h in &landed {
        assert!(
            b.load_chat(1, *h).unwrap().is_some(),
            "a committed write of A is missing"
        );
    }
    let after: Vec<u64> = (100..2000)
        .filter(|h| b.load_chat(1, *h).unwrap().is_some())
        .collect();
    assert_eq!(after, landed, "exactly A's committed writes are there");
    assert!(b.load_chat(1, 5000).unwrap().is_none());
    // A was told (its renewal was refused once its lease had run out).
    let mut lost = lost;
    block(async {
        tokio::time::timeout(Duration::from_secs(5), lost.wait_for(|l| l.contains(&1)))
            .await
            .expect("A learns it lost the account")
            .unwrap();
    });
    eprintln!("late writes: {} committed, {fenced} fenced", landed.len());
}

/// Several transactions are in flight at once, but one account's writes commit in the order
/// they were made: after many rewrites of the same records by three accounts at once, each
/// record holds its last value.
#[test]
fn an_accounts_writes_commit_in_order_across_concurrent_transactions() {
    let o = options("a");
    let pg = Postgres::connect(o.clone()).unwrap();
    block(async {
        for a in 1..=3 {
            pg.leases().acquire(a).await.unwrap();
        }
    });
    let group = StoreOptions {
        durability: Durability::GroupCommit {
            interval: Duration::from_millis(5),
        },
        at_rest_key: Some([5; 32]),
        ..StoreOptions::default()
    };
    let s = Store::with_backend(pg, group).unwrap();
    let writers: Vec<_> = (1..=3u64)
        .map(|account| {
            let s = s.clone();
            std::thread::spawn(move || {
                let mut last = 0;
                // Group commit: nothing here waits, so many of an account's writes queue at
                // once.
                for i in 1..=300u32 {
                    let (t, _) = s
                        .write_chat(&ChatWrite {
                            account,
                            handle: 1 + u64::from(i % 3),
                            chat_id: 0,
                            state: &i.to_be_bytes(),
                            persist: &[],
                            events: &[],
                            qts: Some(i as i32),
                            forget: &[],
                        })
                        .unwrap();
                    last = t.0;
                }
                last
            })
        })
        .collect();
    let last: Vec<u64> = writers.into_iter().map(|w| w.join().unwrap()).collect();
    block(async {
        for t in last {
            s.synced(secretchat_engine::store::Ticket(t)).await.unwrap();
        }
    });
    for account in 1..=3 {
        assert_eq!(s.qts(account).unwrap(), Some(300));
        for (handle, i) in [(1, 300u32), (2, 298), (3, 299)] {
            assert_eq!(
                s.load_chat(account, handle).unwrap().unwrap().state,
                i.to_be_bytes()
            );
        }
    }
}

/// Two nodes on one database, each running its own account, hand out handles and inbox
/// numbers at the same time: no number is handed out twice, and a store opened afterwards
/// continues above all of them.
#[test]
fn two_nodes_never_hand_out_the_same_number() {
    let o = options("a");
    let sealed = StoreOptions {
        at_rest_key: Some([8; 32]),
        ..StoreOptions::default()
    };
    let nodes: Vec<_> = [(1u64, "a"), (2, "b")]
        .into_iter()
        .map(|(account, name)| {
            let mut n = o.clone();
            n.node = name.into();
            let pg = Postgres::connect(n).unwrap();
            block(pg.leases().acquire(account)).unwrap();
            (account, Store::with_backend(pg, sealed.clone()).unwrap())
        })
        .collect();
    let runs: Vec<_> = nodes
        .into_iter()
        .map(|(account, s)| {
            std::thread::spawn(move || {
                let (mut handles, mut seqs) = (Vec::new(), Vec::new());
                for _ in 0..150 {
                    let h = s.new_handle().unwrap();
                    let (ticket, got) = s
                        .write_chat(&ChatWrite {
                            account,
                            handle: h,
                            chat_id: 0,
                            state: b"s",
                            persist: &[],
                            events: &[AppEvent::PeerLayer(144)],
                            qts: None,
                            forget: &[],
                        })
                        .unwrap();
                    block(s.synced(ticket)).unwrap();
                    handles.push(h);
                    seqs.extend(got);
                }
                (handles, seqs)
            })
        })
        .collect();
    let (mut handles, mut seqs) = (Vec::new(), Vec::new());
    for r in runs {
        let (h, s) = r.join().unwrap();
        handles.extend(h);
        seqs.extend(s);
    }
    let unique = |v: &[u64]| v.iter().collect::<std::collections::BTreeSet<_>>().len();
    assert_eq!(unique(&handles), 300, "a handle was handed out twice");
    assert_eq!(unique(&seqs), 300, "an inbox number was handed out twice");
    let mut n = o.clone();
    n.node = "c".into();
    let pg = Postgres::connect(n).unwrap();
    block(pg.leases().acquire(3)).unwrap();
    let rows = pg.range(Family::Inbox, b"", None, usize::MAX).unwrap();
    assert_eq!(rows.len(), 300, "every event is in the inbox");
    let s = Store::with_backend(pg, sealed).unwrap();
    let h = s.new_handle().unwrap();
    assert!(handles.iter().all(|x| *x < h));
}

/// One stored event for `account`'s chat 1; its inbox number.
fn event(s: &Store, account: u64, layer: i32) -> u64 {
    let (_, seqs) = s
        .write_chat(&ChatWrite {
            account,
            handle: 1,
            chat_id: 0,
            state: b"s",
            persist: &[],
            events: &[AppEvent::PeerLayer(layer)],
            qts: None,
            forget: &[],
        })
        .unwrap();
    seqs[0]
}

/// The inbox is filed by account: a node reads only the events of the accounts it holds, an
/// account it takes over brings the events stored for it before (all below the bound
/// `adopt_inbox` returns, while the node's own new ones are above it), and an event is
/// acknowledged by its number alone — by the node that holds its account only.
#[test]
fn a_node_reads_only_its_accounts_events() {
    let o = options("a");
    let sealed = StoreOptions {
        at_rest_key: Some([9; 32]),
        ..StoreOptions::default()
    };
    let a_pg = node(&o);
    let a = Store::with_backend(a_pg.clone(), sealed.clone()).unwrap();
    let (one, two) = (event(&a, 1, 101), event(&a, 2, 102));
    let accounts =
        |s: &Store| -> Vec<(u64, u64)> { s.inbox().unwrap().iter().map(|e| (e.0, e.1)).collect() };
    assert_eq!(accounts(&a), [(one, 1), (two, 2)]);

    let mut b_options = o.clone();
    b_options.node = "b".into();
    let b_pg = Postgres::connect(b_options).unwrap();
    let b = Store::with_backend(b_pg.clone(), sealed).unwrap();
    assert!(
        b.inbox().unwrap().is_empty(),
        "B read events of A's accounts"
    );

    // A hands account 2 over; B takes it.
    block(a_pg.leases().release(2)).unwrap();
    block(b_pg.leases().acquire(2)).unwrap();
    let below = b.adopt_inbox(2).unwrap();
    assert!(two < below);
    let earlier = b.inbox_page_of(2, 0, below, 10).unwrap();
    assert_eq!(earlier.len(), 1);
    assert_eq!((earlier[0].0, earlier[0].1), (two, 2));
    assert!(matches!(earlier[0].3, AppEvent::PeerLayer(102)));
    assert_eq!(accounts(&a), [(one, 1)], "A still reads account 2's events");
    // A's acknowledgement of an event of the account it gave up is refused (B delivers it).
    let late = a.ack_inbox(&[two]).unwrap_err();
    assert!(matches!(late, StoreError::Fenced { account: 2 }), "{late}");
    assert_eq!(b.inbox_page_of(2, 0, below, 10).unwrap().len(), 1);

    // B's own events for it are numbered above the bound, and read by B only.
    let three = event(&b, 2, 103);
    assert!(three >= below);
    assert!(b.inbox_page_of(2, 0, below, 10).unwrap().len() == 1);
    assert_eq!(accounts(&b), [(two, 2), (three, 2)]);
    assert_eq!(accounts(&a), [(one, 1)]);

    // Acknowledged by number, on the node that delivered each.
    let t = b.ack_inbox(&[two, three]).unwrap();
    block(b_pg.synced(t)).unwrap();
    assert!(b.inbox().unwrap().is_empty());
    a.ack_inbox(&[one]).unwrap();
    assert!(a.inbox().unwrap().is_empty());
}
