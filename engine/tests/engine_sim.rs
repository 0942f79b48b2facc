//! The running engine (actors, RocksDB, transport) on the simulated server.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use secretchat_engine::protocol::chat::{AppEvent, ChatConfig, Command, Outgoing};
use secretchat_engine::runtime::{Engine, EngineConfig, EngineEvent, EventKind, Events};
use secretchat_engine::sim::{SimFaults, SimServer};
use secretchat_engine::store::{Durability, StoreOptions};
use secretchat_schema::api::{enums as api, types as api_types};
use secretchat_schema::e2e::enums as e2e;

fn config() -> EngineConfig {
    EngineConfig {
        chat: ChatConfig {
            resend_retry_ms: 300,
            unhealthy_after: 10,
            retransmit_ms: 500,
            max_backoff_ms: 2_000,
        },
        store: StoreOptions {
            durability: Durability::Buffered,
            at_rest_key: None,
        },
        dh_threads: 2,
        file_threads: 1,
        chat_threads: 2,
        ack_interval: Duration::from_millis(50),
        difference_interval: Duration::from_millis(300),
    }
}

fn user(id: i64) -> api::InputUser {
    api::InputUser::InputUser(api_types::InputUser {
        user_id: id,
        access_hash: 0,
    })
}

/// Everything the application saw, acknowledging as it goes.
#[derive(Default)]
struct Seen {
    events: Vec<EngineEvent>,
}

impl Seen {
    fn texts(&self, account: u64, chat: u64) -> Vec<String> {
        self.events
            .iter()
            .filter(|e| e.account == account && e.chat == chat)
            .filter_map(|e| match &e.kind {
                EventKind::App(AppEvent::Message { message, .. }) => match message.as_ref() {
                    e2e::DecryptedMessage::DecryptedMessage73(m) => Some(m.message.clone()),
                    e2e::DecryptedMessage::DecryptedMessage46(m) => Some(m.message.clone()),
                    _ => None,
                },
                _ => None,
            })
            .collect()
    }

    fn find(&self, f: impl Fn(&EngineEvent) -> bool) -> Option<&EngineEvent> {
        self.events.iter().find(|e| f(e))
    }
}

/// Pulls events until `done` holds (acknowledging each), or panics after `limit`.
async fn pump(
    engine: &Engine,
    rx: &mut Events,
    seen: &mut Seen,
    limit: Duration,
    done: impl Fn(&Seen) -> bool,
) -> Result<(), String> {
    let deadline = Instant::now() + limit;
    while !done(seen) {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!(
                "timed out; last events: {:?}",
                seen.events.iter().rev().take(5).collect::<Vec<_>>()
            ));
        }
        if let Ok(Some(e)) =
            tokio::time::timeout(left.min(Duration::from_millis(200)), rx.recv()).await
        {
            if let Some(seq) = e.seq {
                engine.ack(seq).unwrap();
            }
            seen.events.push(e);
        }
    }
    Ok(())
}

fn ready(seen: &Seen, account: u64) -> Option<u64> {
    seen.find(|e| {
        e.account == account && matches!(e.kind, EventKind::App(AppEvent::ChatReady { .. }))
    })
    .map(|e| e.chat)
}

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
    const N: usize = 150;
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
    pump(&engine, &mut rx, &mut seen, Duration::from_secs(60), |s| {
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
