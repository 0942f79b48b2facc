//! The chat actor's pipeline: inputs that queue during a step are stored together, submitted
//! commands keep their order, a sleeping chat is woken for its timers, and chats beyond the
//! memory limit wait for admission.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod engine_common;

use std::time::{Duration, Instant};

use engine_common::config;
use engine_common::node::{node, open_chat};
use secretchat_engine::protocol::chat::{Command, Outgoing};
use secretchat_engine::sim::{SimFaults, SimServer};
use secretchat_engine::store::Durability;

/// 64 texts submitted at once (without waiting for each to be stored) are stored in a few
/// writes — the ones that queued while the first was waiting for its group fsync go together —
/// and arrive in the order they were submitted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submitted_messages_are_stored_together_and_arrive_in_order() {
    const N: usize = 64;
    let root = tempfile::tempdir().unwrap();
    let sim = SimServer::new(SimFaults::NONE, 21);
    let mut a = node(&sim, root.path(), 1, 0).await;
    let mut cfg = config();
    cfg.store.durability = Durability::GroupCommit {
        interval: Duration::from_millis(5),
    };
    a.start_with(&sim, cfg).await;
    let mut b = node(&sim, root.path(), 2, 0).await;
    let (ha, hb) = open_chat(&mut a, &mut b, 2).await;
    let before = a.engine().metrics().batches;
    let stored: Vec<_> = (0..N)
        .map(|i| {
            let m = Outgoing::text(1000 + i as i64, format!("m{i}"));
            a.engine().submit(a.account, ha, Command::Send(Box::new(m)))
        })
        .collect();
    for s in stored {
        s.await.unwrap();
    }
    let writes = a.engine().metrics().batches - before;
    assert!(
        writes < N as u64 / 2,
        "{N} submitted texts took {writes} writes"
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while b.seen.texts(b.account, hb).len() < N {
        b.pump(Duration::from_millis(50)).await;
        a.pump(Duration::from_millis(10)).await;
        assert!(Instant::now() < deadline, "not all texts arrived");
    }
    let want: Vec<String> = (0..N).map(|i| format!("m{i}")).collect();
    assert_eq!(b.seen.texts(b.account, hb), want);
}

/// A chat whose last message the (quiet) peer never acknowledges may leave memory; the
/// account keeps its next timer and loads it again when the timer is due, so the tail
/// retransmit still happens (before, such a chat either stayed in memory until its retransmit
/// backoff reached the cap, or — once it could sleep — never re-sent).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sleeping_chat_is_woken_for_its_tail_retransmit() {
    let root = tempfile::tempdir().unwrap();
    let sim = SimServer::new(SimFaults::NONE, 22);
    let mut a = node(&sim, root.path(), 1, 0).await;
    // The chat is made under these timers too: a retransmit armed during the handshake under
    // the default test timers (500 ms) could fire after the restart and resend "one" early.
    let mut cfg = config();
    cfg.idle_after = Duration::from_millis(100);
    cfg.chat.retransmit_ms = 2_000;
    cfg.chat.max_backoff_ms = 2_000;
    a.start_with(&sim, cfg).await;
    let mut b = node(&sim, root.path(), 2, 0).await;
    let (ha, hb) = open_chat(&mut a, &mut b, 2).await;
    a.engine().send_text(a.account, ha, "one").await.unwrap();
    let sent_at = Instant::now();
    let deadline = sent_at + Duration::from_secs(20);
    while b.seen.texts(b.account, hb).is_empty() {
        b.pump(Duration::from_millis(20)).await;
        a.pump(Duration::from_millis(10)).await;
        assert!(Instant::now() < deadline);
    }
    // Asleep well before the retransmit is due, with "one" still unacknowledged.
    loop {
        a.pump(Duration::from_millis(50)).await;
        if a.engine().active_chats(a.account).await.unwrap() == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "the quiet chat never slept");
    }
    assert!(
        sent_at.elapsed() < Duration::from_millis(1_900),
        "slept too late to tell"
    );
    assert_eq!(a.engine().metrics().resent, 0);
    // Woken by its timer: the tail goes out again.
    while a.engine().metrics().resent == 0 {
        a.pump(Duration::from_millis(50)).await;
        b.pump(Duration::from_millis(10)).await;
        assert!(
            Instant::now() < deadline,
            "the sleeping chat's retransmit never ran"
        );
    }
    // The peer drops the copy.
    b.pump(Duration::from_millis(300)).await;
    assert_eq!(b.seen.texts(b.account, hb), ["one"]);
}

/// With room for two chats in memory, texts submitted to eight sleeping chats at once wait for
/// admission as events (the quietest loaded chats are asked to sleep to make room): every text
/// arrives, in order, never more than two chats were loaded, and a command for a chat that does
/// not exist still answers `NoSuchChat` after waiting its turn.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chats_beyond_the_memory_limit_wait_for_admission() {
    const CHATS: usize = 8;
    const TEXTS: usize = 5;
    const LIMIT: usize = 2;
    let root = tempfile::tempdir().unwrap();
    let sim = SimServer::new(SimFaults::NONE, 23);
    let mut a = node(&sim, root.path(), 1, 0).await;
    let mut b = node(&sim, root.path(), 2, 0).await;
    let mut pairs = Vec::new();
    for _ in 0..CHATS {
        pairs.push(open_chat(&mut a, &mut b, 2).await);
    }
    // Reopened: every chat asleep in the store, none in memory.
    let mut cfg = config();
    cfg.max_loaded_chats = LIMIT;
    a.start_with(&sim, cfg).await;
    let mut stored = Vec::new();
    for i in 0..TEXTS {
        for (c, &(ha, _)) in pairs.iter().enumerate() {
            let m = Outgoing::text((c * 100 + i) as i64 + 1, format!("c{c} m{i}"));
            stored.push(a.engine().submit(a.account, ha, Command::Send(Box::new(m))));
        }
    }
    let missing = a.engine().submit(
        a.account,
        9_999,
        Command::Send(Box::new(Outgoing::text(7, "nobody"))),
    );
    for s in stored {
        s.await.unwrap();
    }
    assert!(matches!(
        missing.await,
        Err(secretchat_engine::runtime::EngineError::NoSuchChat(9_999))
    ));
    let deadline = Instant::now() + Duration::from_secs(30);
    for (c, &(_, hb)) in pairs.iter().enumerate() {
        let want: Vec<String> = (0..TEXTS).map(|i| format!("c{c} m{i}")).collect();
        while b.seen.texts(b.account, hb).len() < TEXTS {
            b.pump(Duration::from_millis(50)).await;
            a.pump(Duration::from_millis(10)).await;
            assert!(Instant::now() < deadline, "chat {c}: not all texts arrived");
        }
        assert_eq!(b.seen.texts(b.account, hb), want, "chat {c}");
    }
    let peak = a.engine().metrics().chats_loaded_peak;
    assert!(peak <= LIMIT as u64, "{peak} chats were in memory at once");
}

/// A chat from A (room for `room` unacknowledged messages) to B on a fault-free server.
async fn limited_pair(
    seed: u64,
    room: usize,
) -> (
    tempfile::TempDir,
    std::sync::Arc<SimServer>,
    engine_common::node::Node,
    engine_common::node::Node,
    u64,
    u64,
) {
    let (root, sim, mut a, mut b) = engine_common::node::two_users(seed).await;
    let mut cfg = config();
    cfg.chat.max_unacknowledged = room;
    a.start_with(&sim, cfg).await;
    let (ha, hb) = open_chat(&mut a, &mut b, 2).await;
    (root, sim, a, b, ha, hb)
}

/// Backpressure: with room for 8 unacknowledged messages, a peer that only listens (and so
/// acknowledges nothing) gets only the submitted texts that fit; the other submissions stay
/// unanswered until the peer's replies acknowledge what came before, and all 20 arrive, in
/// order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sends_wait_while_the_peer_acknowledges_nothing() {
    const N: usize = 20;
    let (_root, _sim, mut a, mut b, ha, hb) = limited_pair(23, 8).await;
    // A's own NotifyLayer may still be unacknowledged (B has sent nothing since).
    let already = a
        .engine()
        .status(a.account, ha)
        .await
        .unwrap()
        .unacknowledged;
    let room = 8 - already;
    let stored: Vec<_> = (0..N)
        .map(|i| {
            let m = Outgoing::text(2000 + i as i64, format!("m{i}"));
            tokio::spawn(a.engine().submit(a.account, ha, Command::Send(Box::new(m))))
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    while b.seen.texts(b.account, hb).len() < room {
        assert!(Instant::now() < deadline, "the first {room} did not arrive");
        a.pump(Duration::from_millis(20)).await;
        b.pump(Duration::from_millis(20)).await;
    }
    // A settles: still 8 unacknowledged, the rest held (their submissions unanswered).
    a.pump(Duration::from_millis(300)).await;
    b.pump(Duration::from_millis(300)).await;
    assert_eq!(b.seen.texts(b.account, hb).len(), room);
    let st = a.engine().status(a.account, ha).await.unwrap();
    assert_eq!(st.unacknowledged, 8);
    let answered = stored.iter().filter(|s| s.is_finished()).count();
    assert_eq!(answered, room, "only the sends that fit were stored");
    // B replies to each batch: its message acknowledges A's, the next held ones go out.
    let want: Vec<String> = (0..N).map(|i| format!("m{i}")).collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut replied = 0;
    while b.seen.texts(b.account, hb) != want {
        assert!(
            Instant::now() < deadline,
            "got {:?}",
            b.seen.texts(b.account, hb)
        );
        let got = b.seen.texts(b.account, hb).len();
        if got > replied {
            replied = got;
            let m = Outgoing::text(3000 + got as i64, format!("ack {got}"));
            b.engine().send(b.account, hb, m).await.unwrap();
        }
        a.pump(Duration::from_millis(20)).await;
        b.pump(Duration::from_millis(20)).await;
    }
    for s in stored {
        s.await.unwrap().unwrap();
    }
}

/// While sends are held, the commands that manage the chat get through: a delete drops the
/// held message it names, and a close completes (it does not wait behind the sends); every held
/// submission is then answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delete_and_a_close_get_through_held_sends() {
    let (_root, _sim, mut a, mut b, ha, hb) = limited_pair(24, 2).await;
    let stored: Vec<_> = (0..5)
        .map(|i| {
            let m = Outgoing::text(4000 + i, format!("h{i}"));
            tokio::spawn(a.engine().submit(a.account, ha, Command::Send(Box::new(m))))
        })
        .collect();
    a.pump(Duration::from_millis(300)).await;
    b.pump(Duration::from_millis(300)).await;
    assert!(
        stored.iter().any(|s| !s.is_finished()),
        "some sends are held"
    );
    let wait = Duration::from_secs(10);
    let delete = a.engine().submit(
        a.account,
        ha,
        Command::Service(secretchat_engine::protocol::chat::ServiceAction::Delete(
            vec![4004],
        )),
    );
    tokio::time::timeout(wait, delete)
        .await
        .expect("the delete is not held")
        .unwrap();
    let close = a.engine().submit(
        a.account,
        ha,
        Command::Close {
            delete_history: false,
        },
    );
    tokio::time::timeout(wait, close)
        .await
        .expect("the close is not held")
        .unwrap();
    for s in stored {
        tokio::time::timeout(wait, s)
            .await
            .expect("every held send is answered")
            .unwrap()
            .unwrap();
    }
    b.pump(Duration::from_millis(300)).await;
    assert!(!b.seen.texts(b.account, hb).contains(&"h4".to_owned()));
}
