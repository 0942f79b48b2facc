//! The adapter on grammers' real sender pool, over TCP, against an MTProto 2.0 endpoint in
//! front of the simulated server (tests/endpoint). Two accounts, each with its own engine and
//! its own grammers connection: a chat requested and accepted, messages both ways, a file
//! (downloaded from DC 2, which needs the authorization copied there), a re-key, both
//! connections dropped in the middle (grammers reconnects on the next call) and one engine
//! restarted with a new connection. Every message arrives exactly once, in order.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod endpoint;

use std::net::SocketAddrV6;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use endpoint::{AccountKeys, Endpoint, FILE_DC, HOME_DC};
use grammers_mtsender::{SenderPool, SenderPoolFatHandle};
use grammers_session::SessionData;
use grammers_session::storages::MemorySession;
use grammers_session::types::DcOption;
use grammers_tl_types as tl;
use grammers_tl_types::{Deserializable, Identifiable, Serializable};
use secretchat::sim::{SimFaults, SimServer};
use secretchat::{
    AccountId, ChatId, Engine, EngineConfig, Event, InputFile, InputMessage, Message, Update,
};
use secretchat_grammers::{GrammersApi, pump};
use tokio::sync::mpsc;

const PHASE: usize = 8;

/// One account's client: its grammers pool and its engine (a process, in a real bridge).
struct Client {
    engine: Engine,
    pool: SenderPoolFatHandle,
    generation: u32,
}

fn session(ep: &Endpoint, keys: &AccountKeys) -> MemorySession {
    let std::net::SocketAddr::V4(v4) = ep.addr else {
        panic!("127.0.0.1")
    };
    let option = |id, key| DcOption {
        id,
        ipv4: v4,
        ipv6: SocketAddrV6::new(v4.ip().to_ipv6_mapped(), v4.port(), 0, 0),
        auth_key: Some(key),
    };
    let mut data = SessionData {
        home_dc: HOME_DC,
        ..SessionData::default()
    };
    data.dc_options.insert(HOME_DC, option(HOME_DC, keys.home));
    data.dc_options
        .insert(FILE_DC, option(FILE_DC, keys.file_dc));
    MemorySession::from(data)
}

async fn start_client(
    ep: &Endpoint,
    keys: &AccountKeys,
    dir: &Path,
    account: AccountId,
    index: usize,
    generation: u32,
    events_to: mpsc::UnboundedSender<(usize, u32, Event)>,
) -> Client {
    let SenderPool {
        runner,
        handle,
        updates,
    } = SenderPool::new(Arc::new(session(ep, keys)), 1);
    tokio::spawn(runner.run());
    // The pace set for Telegram: an idle poll only once a minute.
    let config = secretchat_grammers::for_telegram(EngineConfig::builder()).build();
    let (engine, mut events) = Engine::open(dir, config).unwrap();
    let api = GrammersApi::new(handle.thin.clone(), HOME_DC);
    let feed = engine.add_account(account, Arc::new(api)).await.unwrap();
    tokio::spawn(pump(updates, feed, None));
    tokio::spawn(async move {
        while let Some(e) = events.next().await {
            if events_to.send((index, generation, e)).is_err() {
                break;
            }
        }
    });
    Client {
        engine,
        pool: handle,
        generation,
    }
}

/// What each side saw.
#[derive(Default)]
struct Seen {
    chat: Option<ChatId>,
    key_hash: Option<Vec<u8>>,
    texts: Vec<String>,
    files: Vec<Message>,
    rekeys: u32,
}

struct World {
    ep: Endpoint,
    keys: Vec<AccountKeys>,
    dirs: Vec<PathBuf>,
    clients: Vec<Client>,
    seen: [Seen; 2],
    tx: mpsc::UnboundedSender<(usize, u32, Event)>,
    rx: mpsc::UnboundedReceiver<(usize, u32, Event)>,
}

const ACCOUNTS: [AccountId; 2] = [AccountId(1), AccountId(2)];

impl World {
    /// Handles events (accepting requests, recording messages, acknowledging each once
    /// handled) until `done` holds.
    async fn until(&mut self, what: &str, within: u64, done: impl Fn(&[Seen; 2]) -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(within);
        while !done(&self.seen) {
            let (i, generation, e) = tokio::time::timeout_at(deadline, self.rx.recv())
                .await
                .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
                .expect("events");
            // An event of an engine that was restarted since: it comes again from the new
            // one (it was not acknowledged).
            if generation != self.clients[i].generation {
                continue;
            }
            let engine = &self.clients[i].engine;
            let seen = &mut self.seen[i];
            match e.update {
                Update::ChatRequested { .. } => {
                    seen.chat = Some(e.chat);
                    engine.accept_chat(e.account, e.chat).await.unwrap();
                }
                Update::ChatReady { key_hash } => {
                    seen.chat = Some(e.chat);
                    seen.key_hash = Some(key_hash);
                }
                Update::NewMessage(m) if m.file.is_some() => seen.files.push(*m),
                Update::NewMessage(m) => seen.texts.push(m.text.clone()),
                Update::Rekeyed { .. } => seen.rekeys += 1,
                _ => {}
            }
            if let Some(seq) = e.seq {
                engine.ack(seq).await.unwrap();
            }
        }
    }

    async fn send_texts(&self, range: std::ops::Range<usize>) {
        for n in range {
            for (i, prefix) in ["a", "b"].iter().enumerate() {
                let chat = self.seen[i].chat.unwrap();
                self.clients[i]
                    .engine
                    .send_message(
                        ACCOUNTS[i],
                        chat,
                        InputMessage::text(format!("{prefix}{n}")),
                    )
                    .await
                    .unwrap();
            }
        }
    }

    async fn restart(&mut self, i: usize) {
        let old = self.clients.remove(i);
        old.pool.quit();
        old.engine.shutdown().await.unwrap();
        let client = start_client(
            &self.ep,
            &self.keys[i],
            &self.dirs[i],
            ACCOUNTS[i],
            i,
            old.generation + 1,
            self.tx.clone(),
        )
        .await;
        self.clients.insert(i, client);
    }
}

fn texts(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_chat_over_grammers_real_sender() {
    let tmp = tempfile::tempdir().unwrap();
    let sim = SimServer::new(SimFaults::NONE, 11);
    let ep = Endpoint::start().await;
    let (tx, rx) = mpsc::unbounded_channel();
    let mut keys = Vec::new();
    let mut dirs = Vec::new();
    let mut clients = Vec::new();
    for (i, account) in ACCOUNTS.iter().enumerate() {
        keys.push(ep.add_account(&sim, sim.device(account.0 as i64, 0)));
        dirs.push(tmp.path().join(format!("engine-{i}")));
        clients.push(start_client(&ep, &keys[i], &dirs[i], *account, i, 0, tx.clone()).await);
    }
    let mut w = World {
        ep: ep.clone(),
        keys,
        dirs,
        clients,
        seen: Default::default(),
        tx,
        rx,
    };

    // Request, accept: both sides show the same key image.
    let chat = w.clients[0]
        .engine
        .request_chat(ACCOUNTS[0], 2, 0)
        .await
        .unwrap();
    w.seen[0].chat = Some(chat);
    w.until("both sides ready", 60, |s| {
        s[0].key_hash.is_some() && s[1].key_hash.is_some()
    })
    .await;
    assert_eq!(w.seen[0].key_hash, w.seen[1].key_hash);

    // Messages both ways.
    w.send_texts(0..PHASE).await;
    w.until("the first messages", 60, |s| {
        s[0].texts.len() >= PHASE && s[1].texts.len() >= PHASE
    })
    .await;

    // Both connections drop; the next messages go out over new ones.
    assert!(ep.drop_connection(0) && ep.drop_connection(1));
    w.send_texts(PHASE..2 * PHASE).await;
    w.until("the messages after the drop", 60, |s| {
        s[0].texts.len() >= 2 * PHASE && s[1].texts.len() >= 2 * PHASE
    })
    .await;

    // Bob's network goes down and only Alice writes: her push is lost, and nothing later
    // shows Bob a gap. grammers reports the closed connection, the pump asks the engine to
    // catch up, and its next gap check (1 s) asks for the difference — retried while the
    // network is down — instead of waiting for its idle poll a minute later.
    // (After Bob's first poll, which comes at his engine's first tick: the next is a minute
    // away.)
    let get_difference = tl::functions::updates::GetDifference::CONSTRUCTOR_ID;
    let polled = || {
        ep.stats()
            .methods
            .get(&(1, get_difference))
            .copied()
            .unwrap_or(0)
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while polled() == 0 {
        assert!(tokio::time::Instant::now() < deadline, "Bob's first poll");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let polls_before = polled();
    ep.hold(1, true);
    assert!(ep.drop_connection(1));
    let lost_before = ep.stats().lost_pushes;
    let alone = w.seen[0].chat.unwrap();
    w.clients[0]
        .engine
        .send_message(ACCOUNTS[0], alone, InputMessage::text("alone"))
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while ep.stats().lost_pushes == lost_before {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the push was not lost"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    ep.hold(1, false);
    w.until("the message pushed while Bob was away", 20, |s| {
        s[1].texts.len() > 2 * PHASE
    })
    .await;
    assert_eq!(w.seen[1].texts.pop().as_deref(), Some("alone"));
    assert!(polled() > polls_before, "it came by the difference");

    // A file from Alice: uploaded on DC 1, downloaded by Bob from DC 2.
    let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let src = tmp.path().join("photo.bin");
    std::fs::write(&src, &data).unwrap();
    w.clients[0]
        .engine
        .send_file(
            ACCOUNTS[0],
            chat,
            InputFile::document(&src, "application/octet-stream").caption("a file"),
        )
        .await
        .unwrap();
    w.until("the file", 60, |s| !s[1].files.is_empty()).await;
    let got = w.seen[1].files[0].clone();
    let dest = tmp.path().join("downloaded.bin");
    w.clients[1]
        .engine
        .download(
            ACCOUNTS[1],
            w.seen[1].chat.unwrap(),
            got.file.as_ref().unwrap(),
            &dest,
        )
        .await
        .unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), data);
    assert_eq!(got.text, "a file");

    // A re-key, then Bob's engine restarts (new process: new pool, new connection).
    w.clients[0].engine.rekey(ACCOUNTS[0], chat).await.unwrap();
    w.until("the re-key", 60, |s| s[0].rekeys >= 1 && s[1].rekeys >= 1)
        .await;
    // Alice's connection closes after a send ran but before its reply went out: grammers
    // reports the call dropped, the engine sends again, the server's random_id check keeps
    // one copy. Then Bob's engine restarts.
    ep.lose_next_reply(0, tl::functions::messages::SendEncrypted::CONSTRUCTOR_ID);
    w.send_texts(2 * PHASE..3 * PHASE).await;
    w.restart(1).await;
    w.send_texts(3 * PHASE..4 * PHASE).await;
    w.until("every message", 60, |s| {
        s[0].texts.len() >= 4 * PHASE && s[1].texts.len() >= 4 * PHASE
    })
    .await;

    // Exactly once, in order.
    assert_eq!(w.seen[1].texts, texts("a", 4 * PHASE));
    assert_eq!(w.seen[0].texts, texts("b", 4 * PHASE));
    assert_eq!(w.seen[1].files.len(), 1);

    // What went over the wire.
    let stats = ep.stats();
    assert!(stats.connections[&(0, HOME_DC)] >= 3, "{stats:?}");
    assert!(stats.connections[&(1, HOME_DC)] >= 3, "{stats:?}");
    assert_eq!(
        stats.imports,
        vec![(1, FILE_DC)],
        "one copy of Bob's authorization"
    );
    assert!(stats.calls[&FILE_DC] > 0, "the parts came from DC 2");
    assert!(stats.layers.contains(&tl::LAYER), "{stats:?}");
    assert!(stats.init_connections >= 5, "{stats:?}");
    assert!(stats.acks_in > 0 && stats.updates_out > 0, "{stats:?}");
    assert_eq!((stats.dropped, stats.lost_replies), (3, 1));
    assert!(
        sim.stats().deduplicated >= 1,
        "the lost send was sent again"
    );

    for c in w.clients {
        c.pool.quit();
        c.engine.shutdown().await.unwrap();
    }
}

/// Pings and the authorization rule, on a connection of their own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pings_are_answered_and_dc2_wants_the_authorization() {
    let sim = SimServer::new(SimFaults::NONE, 3);
    let ep = Endpoint::start().await;
    let keys = ep.add_account(&sim, sim.device(5, 0));
    let SenderPool { runner, handle, .. } = SenderPool::new(Arc::new(session(&ep, &keys)), 1);
    tokio::spawn(runner.run());
    for ping_id in [7i64, 8] {
        let request = if ping_id == 7 {
            tl::functions::Ping { ping_id }.to_bytes()
        } else {
            tl::functions::PingDelayDisconnect {
                ping_id,
                disconnect_delay: 75,
            }
            .to_bytes()
        };
        let answer = handle.raw_invoke_in_dc(HOME_DC, request).await.unwrap();
        let tl::enums::Pong::Pong(pong) = tl::enums::Pong::from_bytes(&answer).unwrap();
        assert_eq!(pong.ping_id, ping_id);
    }
    assert_eq!(ep.stats().pings, 2);

    // DC 2 before the authorization was copied: refused, as Telegram does.
    let get_state = tl::functions::updates::GetDifference {
        pts: 1,
        pts_limit: None,
        pts_total_limit: None,
        date: 1,
        qts: 0,
        qts_limit: None,
    };
    let err = handle
        .raw_invoke_in_dc(FILE_DC, get_state.to_bytes())
        .await
        .unwrap_err();
    let e = secretchat_grammers::transport::rpc_error(&err);
    assert_eq!((e.code, e.message.as_str()), (401, "AUTH_KEY_UNREGISTERED"));
    // The adapter copies it first.
    let api = GrammersApi::new(handle.thin.clone(), HOME_DC);
    let answer = secretchat::ServerApi::invoke_in_dc(&api, FILE_DC, get_state.to_bytes())
        .await
        .unwrap();
    assert!(tl::enums::updates::Difference::from_bytes(&answer).is_ok());
    let stats = ep.stats();
    assert_eq!(stats.imports, vec![(0, FILE_DC)]);
    assert_eq!(stats.unauthorized, 1);
    handle.quit();
}
