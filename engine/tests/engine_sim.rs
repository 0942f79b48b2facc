//! The running engine (actors, RocksDB, transport) on the simulated server.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod engine_common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use engine_common::node::{Node, Seen, event_chat, node, open_chat, pump, ready};
use engine_common::{config, user};
use secretchat_engine::protocol::chat::{AppEvent, Command, Outgoing};
use secretchat_engine::runtime::{Engine, EventKind};
use secretchat_engine::sim::{SimFaults, SimServer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_accounts_open_a_chat_and_talk_through_faults() {
    let dir = tempfile::tempdir().unwrap();
    let sim = SimServer::new(
        SimFaults {
            drop: 0.1,
            duplicate: 0.1,
            reorder: 0.1,
            reorder_ms: 50,
            latency_ms: 2,
            error: 0.05,
            flood: 0.0,
            lost_reply: 0.05,
        },
        7,
    );
    let (engine, mut rx) = Engine::open(dir.path(), config()).unwrap();
    let (alice, bob) = (sim.device(1, 0), sim.device(2, 0));
    let fa = engine
        .add_account(1, Arc::new(alice.clone()))
        .await
        .unwrap();
    let fb = engine.add_account(2, Arc::new(bob.clone())).await.unwrap();
    sim.connect(&alice, fa);
    sim.connect(&bob, fb);
    let chat_a = engine.request_chat(1, user(2)).await.unwrap();
    let mut seen = Seen::default();
    pump(&engine, &mut rx, &mut seen, Duration::from_secs(30), |s| {
        s.find(|e| {
            e.account == 2 && matches!(e.kind, EventKind::App(AppEvent::ChatRequested { .. }))
        })
        .is_some()
    })
    .await
    .unwrap();
    let chat_b = seen
        .find(|e| {
            e.account == 2 && matches!(e.kind, EventKind::App(AppEvent::ChatRequested { .. }))
        })
        .unwrap()
        .chat;
    engine.command(2, chat_b, Command::Accept).await.unwrap();
    pump(&engine, &mut rx, &mut seen, Duration::from_secs(30), |s| {
        ready(s, 1).is_some() && ready(s, 2).is_some()
    })
    .await
    .unwrap();
    assert_eq!(ready(&seen, 1), Some(chat_a));
    const N: usize = 100;
    for i in 0..N {
        let m = Outgoing::text(i as i64 + 1, format!("a{i}"));
        engine
            .command(1, chat_a, Command::Send(Box::new(m)))
            .await
            .unwrap();
        let m = Outgoing::text(i as i64 + 100_000, format!("b{i}"));
        engine
            .command(2, chat_b, Command::Send(Box::new(m)))
            .await
            .unwrap();
    }
    pump(&engine, &mut rx, &mut seen, Duration::from_secs(120), |s| {
        s.texts(2, chat_b).len() >= N && s.texts(1, chat_a).len() >= N
    })
    .await
    .unwrap();
    let want = |p: &str| (0..N).map(|i| format!("{p}{i}")).collect::<Vec<_>>();
    assert_eq!(seen.texts(2, chat_b), want("a"));
    assert_eq!(seen.texts(1, chat_a), want("b"));
    // Both sides finish the re-key that 300 messages started, and agree on the key.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (sa, sb) = (
            engine.status(1, chat_a).await.unwrap(),
            engine.status(2, chat_b).await.unwrap(),
        );
        if sa.rekeys >= 1
            && sb.rekeys >= 1
            && !sa.rekeying
            && !sb.rekeying
            && sa.key_fingerprint == sb.key_fingerprint
        {
            break;
        }
        assert!(Instant::now() < deadline, "{sa:?}\n{sb:?}");
        pump(&engine, &mut rx, &mut seen, Duration::from_secs(1), |_| {
            false
        })
        .await
        .ok();
    }
    let stats = sim.stats();
    assert!(stats.dropped > 0 && stats.injected_errors > 0, "{stats:?}");
}

/// Restarts both engines again and again in the middle of lossy traffic: every message arrives
/// exactly once, in order (the application acknowledges each event as it records it), and the
/// chat still works afterwards. Restarts right after qts acknowledgements would lose messages if
/// an acknowledgement ever passed an unstored message: the server deletes acknowledged events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engine_restarts_mid_traffic_lose_and_duplicate_nothing() {
    let root = tempfile::tempdir().unwrap();
    let sim = SimServer::new(
        SimFaults {
            drop: 0.1,
            duplicate: 0.1,
            reorder: 0.1,
            reorder_ms: 30,
            latency_ms: 2,
            error: 0.02,
            flood: 0.0,
            lost_reply: 0.02,
        },
        11,
    );
    let mut a = node(&sim, root.path(), 1, 0).await;
    let mut b = node(&sim, root.path(), 2, 0).await;
    let (ha, hb) = open_chat(&mut a, &mut b, 2).await;
    const ROUNDS: usize = 8;
    const PER: usize = 25;
    for round in 0..ROUNDS {
        for i in 0..PER {
            let n = round * PER + i;
            a.engine()
                .command(
                    a.account,
                    ha,
                    Command::Send(Box::new(Outgoing::text(n as i64 + 1, format!("a{n}")))),
                )
                .await
                .unwrap();
            b.engine()
                .command(
                    b.account,
                    hb,
                    Command::Send(Box::new(Outgoing::text(n as i64 + 9_000, format!("b{n}")))),
                )
                .await
                .unwrap();
        }
        a.pump(Duration::from_millis(40)).await;
        b.pump(Duration::from_millis(40)).await;
        if round % 2 == 0 {
            a.restart(&sim).await;
        } else {
            b.restart(&sim).await;
        }
    }
    let total = ROUNDS * PER;
    let deadline = Instant::now() + Duration::from_secs(120);
    while a.seen.texts(a.account, ha).len() < total || b.seen.texts(b.account, hb).len() < total {
        a.pump(Duration::from_millis(100)).await;
        b.pump(Duration::from_millis(100)).await;
        if Instant::now() > deadline {
            let sa = a.engine().status(a.account, ha).await;
            let sb = b.engine().status(b.account, hb).await;
            let errs = |n: &Node| {
                n.seen
                    .events
                    .iter()
                    .filter(|e| !matches!(e.kind, EventKind::App(AppEvent::Message { .. })))
                    .cloned()
                    .collect::<Vec<_>>()
            };
            panic!(
                "a got {} b got {}\nA {sa:?}\nB {sb:?}\nA events {:?}\nB events {:?}\nsim {:?}",
                a.seen.texts(a.account, ha).len(),
                b.seen.texts(b.account, hb).len(),
                errs(&a),
                errs(&b),
                sim.stats()
            );
        }
    }
    let want = |p: &str| (0..total).map(|i| format!("{p}{i}")).collect::<Vec<_>>();
    assert_eq!(b.seen.texts(b.account, hb), want("a"));
    assert_eq!(a.seen.texts(a.account, ha), want("b"));
    // Still working after all that.
    a.engine()
        .command(
            a.account,
            ha,
            Command::Send(Box::new(Outgoing::text(-1, "final"))),
        )
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while b.seen.texts(b.account, hb).len() < total + 1 {
        b.pump(Duration::from_millis(100)).await;
        a.pump(Duration::from_millis(10)).await;
        assert!(Instant::now() < deadline);
    }
    assert_eq!(
        b.seen.texts(b.account, hb).last().map(String::as_str),
        Some("final")
    );
}

/// Two devices of one user get the request; both accept; exactly one wins, the other's chat is
/// closed cleanly (never ready), and the winner talks to the originator.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_devices_receive_a_request_and_only_one_accepts() {
    let root = tempfile::tempdir().unwrap();
    let sim = SimServer::new(SimFaults::NONE, 3);
    let mut a = node(&sim, root.path(), 1, 0).await;
    let mut d0 = node(&sim, root.path(), 2, 0).await;
    let mut d1 = node(&sim, root.path(), 2, 1).await;
    let ha = a.engine().request_chat(a.account, user(2)).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let (h0, h1) = loop {
        d0.pump(Duration::from_millis(30)).await;
        d1.pump(Duration::from_millis(30)).await;
        let r = |n: &Node| event_chat(&n.seen, |e| matches!(e, AppEvent::ChatRequested { .. }));
        if let (Some(x), Some(y)) = (r(&d0), r(&d1)) {
            break (x, y);
        }
        assert!(Instant::now() < deadline);
    };
    d0.engine()
        .command(d0.account, h0, Command::Accept)
        .await
        .unwrap();
    d1.engine()
        .command(d1.account, h1, Command::Accept)
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        a.pump(Duration::from_millis(30)).await;
        d0.pump(Duration::from_millis(30)).await;
        d1.pump(Duration::from_millis(30)).await;
        let ready =
            |n: &Node| event_chat(&n.seen, |e| matches!(e, AppEvent::ChatReady { .. })).is_some();
        let closed =
            |n: &Node| event_chat(&n.seen, |e| matches!(e, AppEvent::ChatClosed(_))).is_some();
        if ready(&a) && ((ready(&d0) && closed(&d1)) || (ready(&d1) && closed(&d0))) {
            assert!(!(ready(&d0) && ready(&d1)), "both devices became ready");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "a {:?}\nd0 {:?}\nd1 {:?}",
            a.seen.events,
            d0.seen.events,
            d1.seen.events
        );
    }
    let (winner, hw) =
        if event_chat(&d0.seen, |e| matches!(e, AppEvent::ChatReady { .. })).is_some() {
            (&mut d0, h0)
        } else {
            (&mut d1, h1)
        };
    a.engine()
        .command(
            a.account,
            ha,
            Command::Send(Box::new(Outgoing::text(5, "to the winner"))),
        )
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while winner.seen.texts(winner.account, hw).is_empty() {
        winner.pump(Duration::from_millis(50)).await;
        assert!(Instant::now() < deadline);
    }
    assert_eq!(winner.seen.texts(winner.account, hw), ["to the winner"]);
}

/// Many accounts and chats at once, faults on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_accounts_and_chats_at_once() {
    let root = tempfile::tempdir().unwrap();
    let sim = SimServer::new(
        SimFaults {
            drop: 0.05,
            duplicate: 0.05,
            reorder: 0.05,
            reorder_ms: 20,
            latency_ms: 1,
            error: 0.02,
            flood: 0.0,
            lost_reply: 0.01,
        },
        5,
    );
    // One engine hosting 6 accounts; 3 pairs, 2 chats per pair.
    let dir = root.path().join("shared");
    let (engine, mut rx) = Engine::open(&dir, config()).unwrap();
    for u in 1..=6i64 {
        let d = sim.device(u, 0);
        let feed = engine
            .add_account(u as u64, Arc::new(d.clone()))
            .await
            .unwrap();
        sim.connect(&d, feed);
    }
    let mut seen = Seen::default();
    let mut origin = Vec::new();
    for (x, y) in [(1u64, 2i64), (3, 4), (5, 6)] {
        for _ in 0..2 {
            origin.push((x, engine.request_chat(x, user(y)).await.unwrap(), y as u64));
        }
    }
    // Accept every request.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut accepted = std::collections::HashSet::new();
    while accepted.len() < origin.len() {
        let _ = pump(
            &engine,
            &mut rx,
            &mut seen,
            Duration::from_millis(100),
            |_| false,
        )
        .await;
        for e in &seen.events {
            if matches!(e.kind, EventKind::App(AppEvent::ChatRequested { .. }))
                && accepted.insert((e.account, e.chat))
            {
                engine
                    .command(e.account, e.chat, Command::Accept)
                    .await
                    .unwrap();
            }
        }
        assert!(Instant::now() < deadline);
    }
    pump(&engine, &mut rx, &mut seen, Duration::from_secs(30), |s| {
        s.events
            .iter()
            .filter(|e| matches!(e.kind, EventKind::App(AppEvent::ChatReady { .. })))
            .count()
            == 2 * origin.len()
    })
    .await
    .unwrap();
    const N: usize = 40;
    for (i, (acc, h, _)) in origin.iter().enumerate() {
        for n in 0..N {
            let m = Outgoing::text((i * 1000 + n) as i64, format!("{i}:{n}"));
            engine
                .command(*acc, *h, Command::Send(Box::new(m)))
                .await
                .unwrap();
        }
    }
    // Every chat's receiving side gets its N messages in order.
    let receivers: Vec<(u64, u64, usize)> = accepted.iter().map(|&(acc, h)| (acc, h, 0)).collect();
    let done = pump(&engine, &mut rx, &mut seen, Duration::from_secs(120), |s| {
        receivers
            .iter()
            .all(|&(acc, h, _)| s.texts(acc, h).len() >= N)
    })
    .await;
    if done.is_err() {
        let mut report = String::new();
        for &(acc, h, _) in &receivers {
            let st = engine.status(acc, h).await;
            report += &format!("\n{acc}/{h}: {} texts, {st:?}", seen.texts(acc, h).len());
        }
        for (acc, h, _) in &origin {
            let st = engine.status(*acc, *h).await;
            report += &format!("\norigin {acc}/{h}: {st:?}");
        }
        panic!("{report}\n{:?}", sim.stats());
    }
    for &(acc, h, _) in &receivers {
        let texts = seen.texts(acc, h);
        let prefix = texts[0].split(':').next().unwrap().to_owned();
        let want: Vec<String> = (0..N).map(|n| format!("{prefix}:{n}")).collect();
        assert_eq!(texts, want, "account {acc} chat {h}");
    }
}

/// Idle chats leave memory and come back from the store when addressed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_chats_leave_memory_and_come_back() {
    let root = tempfile::tempdir().unwrap();
    let sim = SimServer::new(SimFaults::NONE, 9);
    let mut a = node(&sim, root.path(), 1, 0).await;
    let mut b = node(&sim, root.path(), 2, 0).await;
    let (ha, hb) = open_chat(&mut a, &mut b, 2).await;
    a.engine().send_text(a.account, ha, "one").await.unwrap();
    b.engine().send_text(b.account, hb, "two").await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while a.seen.texts(a.account, ha).is_empty() || b.seen.texts(b.account, hb).is_empty() {
        a.pump(Duration::from_millis(50)).await;
        b.pump(Duration::from_millis(50)).await;
        assert!(Instant::now() < deadline);
    }
    // Restart with a short idle limit: both chats go to sleep once nothing is in flight.
    for n in [&mut a, &mut b] {
        let mut cfg = config();
        cfg.idle_after = Duration::from_millis(200);
        n.start_with(&sim, cfg).await;
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        a.pump(Duration::from_millis(100)).await;
        b.pump(Duration::from_millis(100)).await;
        let active = a.engine().active_chats(a.account).await.unwrap()
            + b.engine().active_chats(b.account).await.unwrap();
        if active == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "{active} chats still active");
    }
    a.engine().send_text(a.account, ha, "three").await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while b.seen.texts(b.account, hb).len() < 2 {
        b.pump(Duration::from_millis(50)).await;
        a.pump(Duration::from_millis(10)).await;
        assert!(Instant::now() < deadline);
    }
    assert_eq!(b.seen.texts(b.account, hb), ["one", "three"]);
}
