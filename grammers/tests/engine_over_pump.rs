//! The adapter's update path with the real engine: the simulated server's updates travel as
//! grammers would deliver them — inside `updateShort`, `updates` and `updatesCombined`
//! containers, mixed with other updates — through [`pump`] into the engine. A chat is opened
//! and used both ways; every message arrives once, in order, and every other update reaches
//! the application with its container's seq.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use grammers_session::updates::UpdatesLike;
use grammers_tl_types as tl;
use grammers_tl_types::Deserializable;
use secretchat::sim::{SimFaults, SimServer};
use secretchat::tl::Serialize;
use secretchat::{AccountId, Engine, EngineConfig, InputMessage, Update, UpdateFeed};
use secretchat_grammers::pump;
use tokio::sync::mpsc;

const MESSAGES: usize = 40;

fn filler(pts: i32) -> tl::enums::Update {
    tl::enums::Update::DeleteMessages(tl::types::UpdateDeleteMessages {
        messages: vec![pts],
        pts,
        pts_count: 1,
    })
}

/// Wraps the server's updates for one account in grammers' containers, in turn, with other
/// updates around them; returns the channel grammers' pool would fill and how many other
/// updates were sent.
fn as_grammers(
    mut from_server: mpsc::UnboundedReceiver<secretchat::tl::api::enums::Update>,
    sent_others: Arc<std::sync::atomic::AtomicI32>,
) -> mpsc::Receiver<UpdatesLike> {
    let (tx, rx) = mpsc::channel(100);
    tokio::spawn(async move {
        let mut n = 0i32;
        while let Some(u) = from_server.recv().await {
            let theirs = tl::enums::Update::from_bytes(&u.to_bytes().unwrap()).unwrap();
            n += 1;
            let container = match n % 3 {
                0 => tl::enums::Updates::UpdateShort(tl::types::UpdateShort {
                    update: theirs,
                    date: n,
                }),
                1 => {
                    let pts = sent_others.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
                    tl::enums::Updates::Updates(tl::types::Updates {
                        updates: vec![filler(pts), theirs],
                        users: vec![],
                        chats: vec![],
                        date: n,
                        seq: n,
                    })
                }
                _ => {
                    let pts = sent_others.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
                    tl::enums::Updates::Combined(tl::types::UpdatesCombined {
                        updates: vec![theirs, filler(pts)],
                        users: vec![],
                        chats: vec![],
                        date: n,
                        seq_start: n,
                        seq: n,
                    })
                }
            };
            if tx.send(UpdatesLike::Updates(container)).await.is_err() {
                break;
            }
        }
    });
    rx
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chat_runs_on_updates_delivered_in_grammers_containers() {
    let dir = tempfile::tempdir().unwrap();
    let faults = SimFaults {
        drop: 0.05,
        ..SimFaults::NONE
    };
    let sim = SimServer::new(faults, 7);
    let (engine, mut events) = Engine::open(dir.path(), EngineConfig::default()).unwrap();
    let mut apps = Vec::new();
    let mut others_sent = Vec::new();
    for user in [1i64, 2] {
        let device = sim.device(user, 0);
        let feed = engine
            .add_account(AccountId(user as u64), Arc::new(device.clone()))
            .await
            .unwrap();
        let (sim_feed, from_server) = UpdateFeed::channel();
        sim.connect(&device, sim_feed);
        let sent = Arc::new(std::sync::atomic::AtomicI32::new(0));
        let grammers = as_grammers(from_server, sent.clone());
        let (app_tx, app_rx) = mpsc::channel(1024);
        tokio::spawn(pump(grammers, feed, Some(app_tx)));
        apps.push(app_rx);
        others_sent.push(sent);
    }

    let alice_chat = engine.request_chat(AccountId(1), 2, 0).await.unwrap();
    let mut bob_chat = None;
    let (mut at_alice, mut at_bob) = (Vec::new(), Vec::new());
    let mut ready = 0;
    while at_alice.len() < MESSAGES || at_bob.len() < MESSAGES {
        let e = tokio::time::timeout(Duration::from_secs(30), events.next())
            .await
            .expect("an event within 30 s")
            .unwrap();
        match &e.update {
            Update::ChatRequested { .. } => {
                bob_chat = Some(e.chat);
                engine.accept_chat(e.account, e.chat).await.unwrap();
            }
            Update::ChatReady { .. } => {
                ready += 1;
                if ready == 2 {
                    for i in 0..MESSAGES {
                        engine
                            .send_message(
                                AccountId(1),
                                alice_chat,
                                InputMessage::text(format!("a{i}")),
                            )
                            .await
                            .unwrap();
                        engine
                            .send_message(
                                AccountId(2),
                                bob_chat.unwrap(),
                                InputMessage::text(format!("b{i}")),
                            )
                            .await
                            .unwrap();
                    }
                }
            }
            Update::NewMessage(m) if e.account == AccountId(1) => at_alice.push(m.text.clone()),
            Update::NewMessage(m) => at_bob.push(m.text.clone()),
            _ => {}
        }
        if let Some(seq) = e.seq {
            engine.ack(seq).await.unwrap();
        }
    }
    assert_eq!(
        at_bob,
        (0..MESSAGES).map(|i| format!("a{i}")).collect::<Vec<_>>()
    );
    assert_eq!(
        at_alice,
        (0..MESSAGES).map(|i| format!("b{i}")).collect::<Vec<_>>()
    );

    // The application got every other update, in order, and nothing of the engine's.
    for (app, sent) in apps.iter_mut().zip(&others_sent) {
        let mut pts = Vec::new();
        // The pump may still be passing the last containers on: wait until all arrived.
        for _ in 0..100 {
            while let Ok(u) = app.try_recv() {
                let UpdatesLike::Updates(c) = u else { continue };
                let list = match c {
                    tl::enums::Updates::Updates(u) => u.updates,
                    tl::enums::Updates::Combined(u) => u.updates,
                    other => panic!("only the engine's updates came in this container: {other:?}"),
                };
                for u in list {
                    let tl::enums::Update::DeleteMessages(d) = u else {
                        panic!("a secret-chat update reached the application: {u:?}");
                    };
                    pts.push(d.pts);
                }
            }
            if pts.len() == sent.load(std::sync::atomic::Ordering::SeqCst) as usize {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let n = sent.load(std::sync::atomic::Ordering::SeqCst);
        assert!(n > 0);
        assert_eq!(pts, (1..=n).collect::<Vec<_>>());
    }
    engine.shutdown().await.unwrap();
}
