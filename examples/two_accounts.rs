//! Two accounts on the simulated server open a secret chat, exchange messages and a file, and
//! print the key visualization both sides see. Run with `cargo run --example two_accounts --features sim`.

use std::sync::Arc;
use std::time::Duration;

use secretchat::engine::crypto::visualize;
use secretchat::engine::runtime::files::{FileRef, FileToSend};
use secretchat::schema::api::{enums as api, types as api_types};
use secretchat::schema::e2e::enums as e2e;
use secretchat::{AppEvent, Engine, EngineConfig, EventKind, SimFaults, SimServer};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let sim = SimServer::new(SimFaults::NONE, 1);
    let (engine, mut events) = Engine::open(dir.path(), EngineConfig::default())?;
    for user in [1i64, 2] {
        let device = sim.device(user, 0);
        let feed = engine
            .add_account(user as u64, Arc::new(device.clone()))
            .await?;
        sim.connect(&device, feed);
    }
    let bob = api::InputUser::InputUser(api_types::InputUser {
        user_id: 2,
        access_hash: 0,
    });
    let alice_chat = engine.request_chat(1, bob).await?;
    println!("alice asked bob for a secret chat (handle {alice_chat})");
    let mut bob_chat = None;
    let mut received = 0;
    let mut file_done = false;
    while received < 2 || !file_done {
        let Ok(Some(e)) = tokio::time::timeout(Duration::from_secs(20), events.recv()).await else {
            eprintln!("alice: {:?}", engine.status(1, alice_chat).await);
            if let Some(c) = bob_chat {
                eprintln!("bob: {:?}", engine.status(2, c).await);
            }
            return Err("timed out".into());
        };
        if let Some(seq) = e.seq {
            engine.ack(seq)?;
        }
        let app = match e.kind {
            EventKind::App(app) => app,
            EventKind::Error(err) => {
                println!("account {}: {err}", e.account);
                continue;
            }
            _ => continue,
        };
        match app {
            AppEvent::ChatRequested { admin_id, .. } => {
                println!("bob: user {admin_id} wants a secret chat; accepting");
                bob_chat = Some(e.chat);
                engine.accept(e.account, e.chat).await?;
            }
            AppEvent::ChatReady { visualization } => {
                // The users compare this (and the image, visualize::svg) with the peer's
                // screen: the official apps print the same lines under the same image.
                println!(
                    "account {}: chat ready, key visualization\n{}",
                    e.account,
                    visualize::hex_lines(&visualization).join("\n")
                );
                if e.account == 1 {
                    engine
                        .send_text(1, alice_chat, "hi bob, this is end-to-end encrypted")
                        .await?;
                } else if let Some(c) = bob_chat {
                    engine.send_text(2, c, "hi alice!").await?;
                }
            }
            AppEvent::Message { message, file } => {
                if let Some(f) = FileRef::from_message(&message, file.as_ref()) {
                    let out = dir.path().join("received.txt");
                    engine.download(e.account, e.chat, &f, &out).await?;
                    println!(
                        "account {} downloaded a {}-byte file: {:?}",
                        e.account,
                        f.size,
                        std::fs::read_to_string(&out)?
                    );
                    file_done = true;
                    continue;
                }
                // Layer-46 form when sent before the sender learned the peer's layer.
                let text = match *message {
                    e2e::DecryptedMessage::DecryptedMessage73(m) => m.message,
                    e2e::DecryptedMessage::DecryptedMessage46(m) => m.message,
                    _ => continue,
                };
                println!("account {} received: {text}", e.account);
                received += 1;
                if received == 2 {
                    let path = dir.path().join("note.txt");
                    std::fs::write(&path, "an encrypted file, 1 part")?;
                    let mut f = FileToSend::document(&path, "text/plain");
                    f.caption = "a file".into();
                    engine.send_file(1, alice_chat, f).await?;
                    println!("alice sent a file");
                }
            }
            other => println!("account {}: {other:?}", e.account),
        }
    }
    let status = engine.status(1, alice_chat).await?;
    println!(
        "alice's chat: {} at layer {}, seq {:?}",
        status.phase, status.negotiated_layer, status.seq
    );
    Ok(())
}
