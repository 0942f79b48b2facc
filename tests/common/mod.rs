//! What the public-API tests share: two accounts on one engine and one simulated server.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod proxy;

use std::sync::Arc;
use std::time::Duration;

use secretchat::sim::{SimFaults, SimServer};
use secretchat::{AccountId, ChatId, Engine, EngineConfig, Event, EventStream, Update};

pub const ALICE: AccountId = AccountId(1);
pub const BOB: AccountId = AccountId(2);

pub async fn next(events: &mut EventStream) -> Event {
    tokio::time::timeout(Duration::from_secs(20), events.next())
        .await
        .expect("an event within 20 s")
        .expect("the engine runs")
}

/// Two accounts on one engine and one simulated server.
pub async fn pair(
    dir: &std::path::Path,
    config: EngineConfig,
) -> (Engine, EventStream, Arc<SimServer>) {
    let (engine, events) = Engine::open(dir, config).unwrap();
    let sim = add_pair(&engine).await;
    (engine, events, sim)
}

/// Alice and Bob added to `engine`, on a new simulated server.
pub async fn add_pair(engine: &Engine) -> Arc<SimServer> {
    let sim = SimServer::new(SimFaults::NONE, 1);
    for (account, user) in [(ALICE, 1), (BOB, 2)] {
        let device = sim.device(user, 0);
        let feed = engine
            .add_account(account, Arc::new(device.clone()))
            .await
            .unwrap();
        sim.connect(&device, feed);
    }
    sim
}

/// Requests a chat from Alice to Bob and handles events until both sides are ready;
/// returns (Alice's chat, Bob's chat, the updates seen, by account).
pub async fn open_chat(
    engine: &Engine,
    events: &mut EventStream,
) -> (ChatId, ChatId, Vec<(AccountId, Update)>) {
    let alice_chat = engine.request_chat(ALICE, 2, 0).await.unwrap();
    let mut bob_chat = None;
    let mut seen = Vec::new();
    let mut ready = 0;
    while ready < 2 {
        let e = next(events).await;
        if let Update::ChatRequested { user_id, .. } = &e.update {
            assert_eq!((e.account, *user_id), (BOB, 1));
            bob_chat = Some(e.chat);
            engine.accept_chat(BOB, e.chat).await.unwrap();
        }
        if matches!(e.update, Update::ChatReady { .. }) {
            ready += 1;
        }
        if let Some(seq) = e.seq {
            engine.ack(seq).await.unwrap();
        }
        seen.push((e.account, e.update));
    }
    (alice_chat, bob_chat.unwrap(), seen)
}

/// Alice sends `text` on her chat; events are handled (and acknowledged) until Bob gets it.
pub async fn alice_sends(engine: &Engine, events: &mut EventStream, chat: ChatId, text: &str) {
    engine
        .send_message(ALICE, chat, secretchat::InputMessage::text(text))
        .await
        .unwrap();
    loop {
        let e = next(events).await;
        if let Some(seq) = e.seq {
            engine.ack(seq).await.unwrap();
        }
        if let Update::NewMessage(m) = e.update {
            assert_eq!((e.account, m.text.as_str()), (BOB, text));
            return;
        }
    }
}

/// The test database's URL (`.ci/pg.sh` sets `SECRETCHAT_PG_URL`); fails without it: no
/// test passes by skipping.
pub fn pg_url() -> String {
    std::env::var("SECRETCHAT_PG_URL")
        .expect("SECRETCHAT_PG_URL is not set: run the tests through .ci/pg.sh")
}

/// Ends every lease of the store with table prefix `prefix` at once, as when the nodes
/// holding them stall past them.
pub async fn end_leases(prefix: &str) {
    let (client, conn) = tokio_postgres::connect(&pg_url(), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    client
        .execute(
            &format!("UPDATE {prefix}accounts SET lease_until = now() - interval '1 second'"),
            &[],
        )
        .await
        .unwrap();
}
