//! A bridge's whole flow, through the `secretchat` library's public API only, against the
//! simulated Telegram server: two accounts open a secret chat, compare the key image,
//! exchange texts and a file, re-key, and close; every event is handled before it is
//! acknowledged, and messages are deduplicated by their id (after a crash, events not yet
//! acknowledged are delivered again).
//!
//! `cargo run -p secretchat-example-bridge` — exits non-zero if any step did not happen.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use secretchat::crypto::visualize;
use secretchat::sim::{SimFaults, SimServer};
use secretchat::{
    AccountId, ChatId, ChatState, Engine, EngineConfig, Event, EventStream, InputFile,
    InputMessage, Update,
};

const ALICE: AccountId = AccountId(1);
const BOB: AccountId = AccountId(2);

type Outcome = Result<(), Box<dyn std::error::Error>>;

/// What the run saw; `main` checks it at the end.
#[derive(Default)]
struct Seen {
    /// Bob's id for the chat Alice requested.
    bob_chat: Option<ChatId>,
    /// The key images each side was shown, by account.
    key_images: Vec<(AccountId, Vec<u8>)>,
    /// Texts received, as (account, text).
    texts: Vec<(AccountId, String)>,
    /// (account, random_id) of every message handled: a redelivered one is skipped.
    handled: HashSet<(AccountId, i64)>,
    /// Bytes of the file Bob downloaded.
    file: Option<Vec<u8>>,
    /// Our messages the server confirmed, by account.
    sent: Vec<(AccountId, i64)>,
    /// Accounts whose chat finished a re-key.
    rekeyed: HashSet<AccountId>,
    /// Accounts whose chat closed.
    closed: HashSet<AccountId>,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Outcome {
    let dir = tempfile::tempdir()?;
    let config = EngineConfig::builder().event_capacity(256).build();
    let (engine, mut events) = Engine::open(dir.path().join("db"), config)?;

    // Each account's transport: here the simulator's device; in a bridge, the MTProto
    // client's `invoke` and its update stream.
    let sim = SimServer::new(SimFaults::NONE, 1);
    for (account, user_id) in [(ALICE, 1), (BOB, 2)] {
        let device = sim.device(user_id, 0);
        let feed = engine
            .add_account(account, Arc::new(device.clone()))
            .await?;
        sim.connect(&device, feed);
    }

    let alice_chat = engine.request_chat(ALICE, 2, 0).await?;
    println!("alice asked user 2 for a secret chat: {alice_chat}");

    let mut seen = Seen::default();
    while seen.closed.len() < 2 {
        let e = next(&mut events).await?;
        let seq = e.seq;
        handle(&engine, alice_chat, &mut seen, e, dir.path()).await?;
        // Acknowledged only once handled: a crash before this line delivers it again.
        if let Some(seq) = seq {
            engine.ack(seq).await?;
        }
    }

    // What a user of the library is promised, checked.
    let [(_, a), (_, b)] = &seen.key_images[..] else {
        return Err(format!("{} key images, not 2", seen.key_images.len()).into());
    };
    if a != b {
        return Err("the two sides were shown different key images".into());
    }
    seen.texts.sort();
    let want = [(ALICE, "hi alice!".to_owned()), (BOB, "hi bob".to_owned())];
    if seen.texts != want {
        return Err(format!("texts {:?}", seen.texts).into());
    }
    if seen.file.as_deref() != Some(FILE_BODY.as_bytes()) {
        return Err("bob did not receive the file intact".into());
    }
    if seen.sent.len() < 3 {
        return Err(format!("{} send confirmations, not 3", seen.sent.len()).into());
    }
    let chat = engine.chat(ALICE, alice_chat).await?;
    println!(
        "alice's chat at the end: {:?}, layer {}",
        chat.state, chat.layer
    );
    if !matches!(chat.state, ChatState::Closed(_)) {
        return Err("alice's chat is not closed".into());
    }
    engine.shutdown().await?;
    println!("done");
    Ok(())
}

const FILE_BODY: &str = "an encrypted file, one part";

/// The next event, or an error after 20 s of silence.
async fn next(events: &mut EventStream) -> Result<Event, Box<dyn std::error::Error>> {
    match tokio::time::timeout(Duration::from_secs(20), events.next()).await {
        Ok(Some(e)) => Ok(e),
        Ok(None) => Err("the engine stopped".into()),
        Err(_) => Err("no event for 20 s".into()),
    }
}

async fn handle(
    engine: &Engine,
    alice_chat: ChatId,
    seen: &mut Seen,
    e: Event,
    dir: &std::path::Path,
) -> Outcome {
    let who = if e.account == ALICE { "alice" } else { "bob" };
    match e.update {
        Update::ChatRequested { user_id, .. } => {
            println!("{who}: user {user_id} asks for a secret chat; accepting");
            seen.bob_chat = Some(e.chat);
            engine.accept_chat(e.account, e.chat).await?;
        }
        Update::ChatUpdated(chat) => {
            println!("{who}: chat {} is {:?}", chat.id, chat.state);
        }
        Update::ChatReady { key_hash } => {
            // The users compare this (or the image, `visualize::svg`) with the peer's
            // screen: the official apps draw the same image from the same bytes.
            println!(
                "{who}: key image\n  {}",
                visualize::hex_lines(&key_hash).join("\n  ")
            );
            seen.key_images.push((e.account, key_hash));
            let text = if e.account == ALICE {
                "hi bob"
            } else {
                "hi alice!"
            };
            engine
                .send_message(e.account, e.chat, InputMessage::text(text))
                .await?;
        }
        Update::NewMessage(m) => {
            if !seen.handled.insert((e.account, m.random_id)) {
                return Ok(()); // delivered again after a restart: handled already
            }
            if let Some(file) = &m.file {
                let out = dir.join("received");
                engine.download(e.account, e.chat, file, &out).await?;
                println!("{who}: downloaded {:?} ({} bytes)", m.text, file.size);
                seen.file = Some(std::fs::read(&out)?);
                // The file arrived: re-key the chat (it happens by itself every 100
                // messages), then close it.
                engine.rekey(e.account, e.chat).await?;
                return Ok(());
            }
            println!("{who} received: {} (layer {})", m.text, m.layer);
            seen.texts.push((e.account, m.text.clone()));
            if e.account == ALICE {
                let path = dir.join("note.txt");
                std::fs::write(&path, FILE_BODY)?;
                let file = InputFile::document(&path, "text/plain")
                    .caption("a note")
                    .reply_to(m.random_id);
                engine.send_file(ALICE, e.chat, file).await?;
            }
        }
        Update::MessageSent { random_id, date } => {
            println!("{who}: message {random_id} sent at {date}");
            seen.sent.push((e.account, random_id));
        }
        Update::Rekeyed { key_fingerprint } => {
            println!("{who}: re-keyed, key {key_fingerprint:x}");
            seen.rekeyed.insert(e.account);
            if seen.rekeyed.len() == 2 {
                engine.close_chat(ALICE, alice_chat, false).await?;
            }
        }
        Update::ChatClosed(reason) => {
            println!("{who}: chat closed ({reason})");
            seen.closed.insert(e.account);
        }
        other => println!("{who}: {other:?}"),
    }
    Ok(())
}
