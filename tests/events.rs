//! The bounded event queue: a receiver that does not keep up loses no stored event and sees
//! none twice; what it has not acknowledged comes back after a restart, read page by page.
#![cfg(feature = "sim")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::pin::Pin;
use std::time::Duration;

use futures_core::Stream;

use secretchat::{Engine, EngineConfig, Event, EventStream, InputMessage, Update};

mod common;
use common::{ALICE, BOB, open_chat, pair};

const CAPACITY: usize = 4;
const MESSAGES: usize = 60;

fn config() -> EngineConfig {
    EngineConfig::builder().event_capacity(CAPACITY).build()
}

/// The text of a message Bob received.
fn bob_text(e: &Event) -> Option<String> {
    match &e.update {
        Update::NewMessage(m) if e.account == BOB => Some(m.text.clone()),
        _ => None,
    }
}

/// Every event readable now (waiting up to 2 s of quiet), as (seq, Bob's message text).
async fn drain(events: &mut EventStream) -> Vec<(Option<u64>, Option<String>)> {
    let mut out = Vec::new();
    while let Ok(Some(e)) = tokio::time::timeout(Duration::from_secs(2), events.next()).await {
        out.push((e.seq, bob_text(&e)));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_that_falls_behind_loses_nothing_and_sees_nothing_twice() {
    let dir = tempfile::tempdir().unwrap();
    let (engine, mut events, _sim) = pair(dir.path(), config()).await;
    let (alice_chat, bob_chat, _) = open_chat(&engine, &mut events).await;

    // The application stops reading while 60 messages arrive: 15 times the queue.
    for i in 0..MESSAGES {
        engine
            .send_message(ALICE, alice_chat, InputMessage::text(format!("m{i}")))
            .await
            .unwrap();
    }
    let mut received = 0;
    for _ in 0..400 {
        received = engine.diagnostics(BOB, bob_chat).await.unwrap().seq.1;
        if received as usize >= MESSAGES {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(received as usize >= MESSAGES, "bob received {received}");

    let seen = drain(&mut events).await;
    let texts: Vec<String> = seen.iter().filter_map(|(_, t)| t.clone()).collect();
    let want: Vec<String> = (0..MESSAGES).map(|i| format!("m{i}")).collect();
    assert_eq!(texts, want, "every message once, in order");
    let mut seqs: Vec<u64> = seen.iter().filter_map(|(s, _)| *s).collect();
    let n = seqs.len();
    seqs.sort_unstable();
    seqs.dedup();
    assert_eq!(seqs.len(), n, "no stored event twice");
    // Alice's send confirmations (not stored) did not fit, and were counted.
    assert!(events.dropped() > 0);

    // Acknowledge the first half of Bob's messages only, then restart.
    let message_seqs: Vec<u64> = seen
        .iter()
        .filter_map(|(s, t)| t.as_ref().and(*s))
        .collect();
    let (acked, kept) = message_seqs.split_at(MESSAGES / 2);
    engine.ack_all(acked.to_vec()).await.unwrap();
    engine.shutdown().await.unwrap();

    // Read through the `Stream` implementation this time.
    let (engine, mut events) = Engine::open(dir.path(), config()).unwrap();
    let mut again = Vec::new();
    loop {
        let polled = std::future::poll_fn(|cx| Pin::new(&mut events).poll_next(cx));
        let Ok(Some(e)) = tokio::time::timeout(Duration::from_secs(2), polled).await else {
            break;
        };
        again.push((e.seq, bob_text(&e)));
    }
    let texts: Vec<String> = again.iter().filter_map(|(_, t)| t.clone()).collect();
    assert_eq!(
        texts,
        want[MESSAGES / 2..],
        "the unacknowledged half, once each, in order"
    );
    let seqs: Vec<u64> = again
        .iter()
        .filter_map(|(s, t)| t.as_ref().and(*s))
        .collect();
    assert_eq!(seqs, kept, "under the same sequence numbers");
    engine.shutdown().await.unwrap();
}
