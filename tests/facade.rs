//! The facade API end to end: the same flow as `examples/two_accounts.rs`, checked.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use secretchat::schema::api::{enums as api, types as api_types};
use secretchat::schema::e2e::enums as e2e;
use secretchat::{AppEvent, Engine, EngineConfig, EventKind, SimFaults, SimServer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_accounts_chat_through_the_facade() {
    let dir = tempfile::tempdir().unwrap();
    let sim = SimServer::new(SimFaults::NONE, 1);
    let (engine, mut events) = Engine::open(dir.path(), EngineConfig::default()).unwrap();
    for user in [1i64, 2] {
        let device = sim.device(user, 0);
        let feed = engine
            .add_account(user as u64, Arc::new(device.clone()))
            .await
            .unwrap();
        sim.connect(&device, feed);
    }
    let bob = api::InputUser::InputUser(api_types::InputUser {
        user_id: 2,
        access_hash: 0,
    });
    let alice_chat = engine.request_chat(1, bob).await.unwrap();
    let mut visualizations = Vec::new();
    let mut texts = Vec::new();
    let mut bob_chat = None;
    while texts.len() < 2 {
        let e = tokio::time::timeout(Duration::from_secs(20), events.recv())
            .await
            .unwrap()
            .unwrap();
        engine.ack(e.seq.unwrap()).unwrap();
        let EventKind::App(app) = e.kind else {
            continue;
        };
        match app {
            AppEvent::ChatRequested { admin_id: 1, .. } => {
                bob_chat = Some(e.chat);
                engine.accept(2, e.chat).await.unwrap();
            }
            AppEvent::ChatReady { visualization } => {
                visualizations.push(visualization);
                let (acc, chat) = if e.account == 1 {
                    (1, alice_chat)
                } else {
                    (2, bob_chat.unwrap())
                };
                engine
                    .send_text(acc, chat, &format!("from {acc}"))
                    .await
                    .unwrap();
            }
            AppEvent::Message { message, .. } => texts.push((
                e.account,
                match *message {
                    e2e::DecryptedMessage::DecryptedMessage73(m) => m.message,
                    e2e::DecryptedMessage::DecryptedMessage46(m) => m.message,
                    other => format!("{other:?}"),
                },
            )),
            _ => {}
        }
    }
    assert_eq!(visualizations.len(), 2);
    assert_eq!(visualizations[0], visualizations[1]);
    texts.sort();
    assert_eq!(texts, [(1, "from 2".to_owned()), (2, "from 1".to_owned())]);
    let st = engine.status(1, alice_chat).await.unwrap();
    assert_eq!((st.phase, st.seq.0, st.seq.1), ("ready", 2, 2));
}
