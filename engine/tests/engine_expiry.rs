//! Server-side loss past the 7-day qts expiry: messages queued for a peer that stayed offline
//! longer than the server keeps them are gone from the server, so `getDifference` cannot bring
//! them back. The peer sees the hole when the next message arrives and asks with
//! `decryptedMessageActionResend`; the sender still holds them (unacknowledged) and sends them
//! again: everything arrives once, in order.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod engine_common;

use std::time::{Duration, Instant};

use engine_common::node::node;
use secretchat_engine::protocol::chat::{Command, Outgoing};
use secretchat_engine::sim::{QUEUE_TTL, SimFaults, SimServer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_expired_on_the_server_are_filled_by_resend() {
    let root = tempfile::tempdir().unwrap();
    let sim = SimServer::new(SimFaults::NONE, 5);
    let mut a = node(&sim, root.path(), 1, 0).await;
    let mut b = node(&sim, root.path(), 2, 0).await;
    let (ha, hb) = engine_common::node::open_chat(&mut a, &mut b, 2).await;
    let send = |a: &engine_common::node::Node, from: usize, to: usize| {
        let engine = a.engine().clone();
        let account = a.account;
        async move {
            for n in from..to {
                let m = Outgoing::text(n as i64 + 1, format!("m{n}"));
                engine
                    .command(account, ha, Command::Send(Box::new(m)))
                    .await
                    .unwrap();
            }
        }
    };
    // 0..3 arrive normally.
    send(&a, 0, 3).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while b.seen.texts(b.account, hb).len() < 3 {
        b.pump(Duration::from_millis(50)).await;
        a.pump(Duration::from_millis(10)).await;
        assert!(Instant::now() < deadline, "the first messages arrive");
    }
    // B goes offline; 3..6 are queued for it and expire there.
    b.engine = None;
    b.rx = None;
    send(&a, 3, 6).await;
    a.pump(Duration::from_millis(300)).await;
    assert!(sim.queued(2, 0) >= 3, "queued for the offline peer");
    sim.advance_clock(QUEUE_TTL + Duration::from_secs(3600));
    // 6..8 are sent after the expiry; B comes back.
    send(&a, 6, 8).await;
    b.start(&sim).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while b.seen.texts(b.account, hb).len() < 8 {
        b.pump(Duration::from_millis(50)).await;
        a.pump(Duration::from_millis(20)).await;
        assert!(
            Instant::now() < deadline,
            "the expired messages never came: B has {:?}; sim {:?}",
            b.seen.texts(b.account, hb),
            sim.stats()
        );
    }
    let want: Vec<String> = (0..8).map(|n| format!("m{n}")).collect();
    assert_eq!(b.seen.texts(b.account, hb), want);
    assert!(sim.stats().expired >= 3, "{:?}", sim.stats());
    let m = b.engine().metrics();
    assert!(m.holes_opened >= 1 && m.resend_requests >= 1, "{m:?}");
    assert!(
        a.engine().metrics().resent >= 3,
        "{:?}",
        a.engine().metrics()
    );
}
