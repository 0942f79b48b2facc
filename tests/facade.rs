//! The public API end to end against the simulated server: the chat model and its
//! announcements, typed messages, send confirmations, lookups, typed errors and removing an
//! account.
#![cfg(feature = "sim")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use secretchat::{
    AccountId, ChatId, ChatState, Engine, EngineConfig, Error, InputFile, InputMessage, Update,
};

mod common;
use common::{ALICE, BOB, next, open_chat, pair};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chat_is_announced_and_carries_typed_messages() {
    let dir = tempfile::tempdir().unwrap();
    let (engine, mut events, _sim) = pair(dir.path(), EngineConfig::default()).await;
    let (alice_chat, bob_chat, seen) = open_chat(&engine, &mut events).await;

    // Every change of the chat was announced, ending ready, with the peer and direction.
    let last_update = |account| {
        seen.iter()
            .rev()
            .find_map(|(a, u)| match u {
                Update::ChatUpdated(c) if *a == account => Some(c.clone()),
                _ => None,
            })
            .expect("a ChatUpdated")
    };
    let (a, b) = (last_update(ALICE), last_update(BOB));
    assert_eq!(
        (a.id, a.user_id, a.is_outbound, &a.state),
        (alice_chat, 2, true, &ChatState::Ready)
    );
    assert_eq!(
        (b.id, b.user_id, b.is_outbound, &b.state),
        (bob_chat, 1, false, &ChatState::Ready)
    );
    assert_eq!(a.server_chat_id, b.server_chat_id);
    assert_eq!(a.key_hash.len(), 36);
    assert_eq!(a.key_hash, b.key_hash);
    let keys: Vec<_> = seen
        .iter()
        .filter_map(|(_, u)| match u {
            Update::ChatReady { key_hash } => Some(key_hash.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(keys, [a.key_hash.clone(), a.key_hash.clone()]);

    // The chat is found by the server's id, on each account.
    assert_eq!(
        engine.chat_by_server_id(ALICE, a.server_chat_id).unwrap(),
        Some(alice_chat)
    );
    assert_eq!(
        engine.chat_by_server_id(BOB, a.server_chat_id).unwrap(),
        Some(bob_chat)
    );
    assert_eq!(
        engine.chat_by_server_id(BOB, a.server_chat_id + 1).unwrap(),
        None
    );

    // A message with every field the builder sets arrives as one normalized type.
    let sent = InputMessage::text("hello")
        .ttl(30)
        .silent(true)
        .reply_to(77)
        .with_random_id(4242);
    assert_eq!(
        engine.send_message(ALICE, alice_chat, sent).await.unwrap(),
        4242
    );
    let (mut got, mut confirmed) = (None, None);
    while got.is_none() || confirmed.is_none() {
        let e = next(&mut events).await;
        match e.update {
            Update::NewMessage(m) => {
                assert_eq!((e.account, e.chat), (BOB, bob_chat));
                got = Some(m);
            }
            Update::MessageSent { random_id, date } => {
                assert_eq!((e.account, random_id), (ALICE, 4242));
                assert!(date > 0);
                confirmed = Some(date);
            }
            _ => {}
        }
        if let Some(seq) = e.seq {
            engine.ack(seq).await.unwrap();
        }
    }
    let m = got.unwrap();
    assert_eq!(
        (
            m.random_id,
            m.text.as_str(),
            m.ttl,
            m.silent,
            m.reply_to_random_id,
            m.layer
        ),
        (4242, "hello", 30, true, Some(77), 73)
    );
    assert!(m.media.is_none() && m.file.is_none());
    // The server's date of the envelope: the one Alice's send was confirmed with.
    assert_eq!(Some(m.date), confirmed);

    // Bad input is refused with a typed error and changes nothing.
    let zero = InputMessage::text("x").with_random_id(0);
    assert!(matches!(
        engine.send_message(ALICE, alice_chat, zero).await,
        Err(Error::InvalidInput(_))
    ));
    assert!(matches!(
        engine.chat(ALICE, ChatId(9_999)).await,
        Err(Error::NoSuchChat(ChatId(9_999)))
    ));
    assert!(matches!(
        engine.chat(AccountId(7), alice_chat).await,
        Err(Error::NoSuchAccount(_))
    ));
    engine.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_an_account_deletes_its_chats() {
    let dir = tempfile::tempdir().unwrap();
    let (engine, mut events, _sim) = pair(dir.path(), EngineConfig::default()).await;
    let (alice_chat, bob_chat, _) = open_chat(&engine, &mut events).await;
    let server_id = engine.chat(ALICE, alice_chat).await.unwrap().server_chat_id;

    assert_eq!(engine.remove_account(ALICE).await.unwrap(), 1);
    assert!(matches!(
        engine.chat(ALICE, alice_chat).await,
        Err(Error::NoSuchAccount(_))
    ));
    assert_eq!(engine.chat_by_server_id(ALICE, server_id).unwrap(), None);
    // Bob's side is untouched.
    assert_eq!(
        engine.chat(BOB, bob_chat).await.unwrap().state,
        ChatState::Ready
    );
    engine.shutdown().await.unwrap();

    // After a restart the account is still gone, and can be added again as new.
    let (engine, _events) = Engine::open(dir.path(), EngineConfig::default()).unwrap();
    assert_eq!(engine.chat_by_server_id(ALICE, server_id).unwrap(), None);
    assert_eq!(
        engine.chat_by_server_id(BOB, server_id).unwrap(),
        Some(bob_chat)
    );
    engine.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_go_from_a_reader_and_into_a_writer() {
    let dir = tempfile::tempdir().unwrap();
    let (engine, mut events, _sim) = pair(dir.path(), EngineConfig::default()).await;
    let (alice_chat, bob_chat, _) = open_chat(&engine, &mut events).await;
    let body: Vec<u8> = (0..700_000u32).map(|i| (i % 251) as u8).collect();

    // A reader shorter or longer than its declared length is refused, and nothing is sent.
    let f = || InputFile::document("data.bin", "application/octet-stream");
    let short = engine
        .send_file_from(ALICE, alice_chat, &body[..10], 11, f())
        .await;
    assert!(matches!(short, Err(Error::Io(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof));
    let long = engine
        .send_file_from(ALICE, alice_chat, &body[..12], 11, f())
        .await;
    assert!(matches!(long, Err(Error::Io(e)) if e.kind() == std::io::ErrorKind::InvalidData));

    let id = engine
        .send_file_from(
            ALICE,
            alice_chat,
            &body[..],
            body.len() as u64,
            f().caption("two parts"),
        )
        .await
        .unwrap();
    let message = loop {
        let e = next(&mut events).await;
        if let Some(seq) = e.seq {
            engine.ack(seq).await.unwrap();
        }
        if let Update::NewMessage(m) = e.update {
            break m;
        }
    };
    assert_eq!(
        (message.random_id, message.text.as_str()),
        (id, "two parts")
    );
    let file = message.file.expect("a file");
    let mut out = Vec::new();
    let n = engine
        .download_to(BOB, bob_chat, &file, &mut out)
        .await
        .unwrap();
    assert_eq!(n, body.len() as u64);
    assert!(out == body, "the bytes arrive intact");
    // Nothing is left in the spool.
    let spool = dir.path().join("spool");
    assert_eq!(std::fs::read_dir(&spool).unwrap().count(), 0);
    engine.shutdown().await.unwrap();
}
