//! Key hygiene: a full run (handshake, 300 messages each way — so three re-keys — and a file
//! each way, on a faulty simulated server) logged at `trace` level, then the whole log is
//! searched for every secret the run had: each chat key of every epoch, the DH exponents and
//! re-key secrets while they were stored, and each file's AES key and IV. A secret is found if
//! any 12-byte window of it appears raw, as lowercase or uppercase hex, or as a `Debug` byte
//! list (`[12, 34, …]`). A control logs one key on purpose and must be found.
//!
//! The secrets are read from the engine's own store during the run (the chat records hold
//! the key, its predecessors and the exponents) and from the received file messages.
//!
//! The same run with an at-rest key, its database directory read while the engine runs (what
//! a copy taken then holds): no secret and no message text appears in any file. The control
//! is the run without a key, where the scan finds both.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use secretchat_engine::protocol::chat::{AppEvent, Command, Outgoing};
use secretchat_engine::runtime::files::FileToSend;
use secretchat_engine::runtime::{Engine, EventKind};
use secretchat_engine::sim::{SimFaults, SimServer};
use secretchat_schema::e2e::enums as e2e;
use secretchat_schema::{Reader, read_bytes};

#[path = "../engine/tests/engine_common/mod.rs"]
mod engine_common;

use engine_common::user;

#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<u8>>>);

impl Write for Log {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The secrets in a `secretchat.chatState` record: the fields up to `previous`
/// (engine/src/protocol/chat/records.rs gives the layout), read independently here.
fn secrets_of_record(rec: &[u8]) -> Vec<Vec<u8>> {
    let mut r = Reader::new(rec);
    let mut out = Vec::new();
    let int = |r: &mut Reader<'_>| r.take(4).map(|_| ()).unwrap();
    r.read_u32().unwrap(); // constructor
    for _ in 0..3 {
        int(&mut r); // format, side, chat_id
    }
    r.take(8).unwrap(); // access_hash
    int(&mut r); // phase
    out.push(read_bytes(&mut r).unwrap().to_vec()); // phase_secret
    read_bytes(&mut r).unwrap(); // phase_peer
    r.take(8).unwrap(); // phase_fingerprint
    read_bytes(&mut r).unwrap(); // phase_user
    int(&mut r); // phase_random_id
    read_bytes(&mut r).unwrap(); // closed_kind
    read_bytes(&mut r).unwrap(); // dh_p
    int(&mut r); // dh_g
    out.push(read_bytes(&mut r).unwrap().to_vec()); // key
    r.read_u32().unwrap(); // vector
    let n = r.read_u32().unwrap();
    for _ in 0..n {
        out.push(read_bytes(&mut r).unwrap().to_vec()); // previous keys
    }
    out.retain(|s| s.len() >= 32);
    out
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Where `secret` shows in `log`, if anywhere (raw, hex, HEX or a Debug byte list).
fn leak(log: &[u8], secret: &[u8]) -> Option<String> {
    for w in secret.chunks_exact(12) {
        let hex = hex::encode(w);
        let list = w
            .iter()
            .map(|b| b.to_string())
            .collect::<Vec<_>>()
            .join(", ");
        for (form, bytes) in [
            ("raw", w.to_vec()),
            ("hex", hex.clone().into_bytes()),
            ("HEX", hex.to_uppercase().into_bytes()),
            ("Debug list", list.into_bytes()),
        ] {
            if contains(log, &bytes) {
                return Some(format!("{form} {}", hex::encode(w)));
            }
        }
    }
    None
}

#[test]
fn a_full_trace_level_run_logs_no_key_material() {
    let log = Log::default();
    let writer = log.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    tracing::subscriber::set_global_default(subscriber).unwrap();

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let secrets = rt.block_on(run(None)).secrets;
    assert!(
        secrets.len() >= 8,
        "too few secrets gathered: {}",
        secrets.len()
    );
    let text = log.0.lock().unwrap().clone();
    assert!(
        contains(&text, b"chat event") && contains(&text, b"DhDone"),
        "the run was not logged at trace level"
    );
    for s in &secrets {
        if let Some(how) = leak(&text, s) {
            panic!(
                "key material in the log ({how}); log is {} bytes",
                text.len()
            );
        }
    }
    // Control: the scan finds a key that is logged.
    tracing::trace!(oops = %hex::encode(&secrets[0]), "a careless line");
    let text = log.0.lock().unwrap().clone();
    assert!(
        leak(&text, &secrets[0]).is_some(),
        "the scan misses a logged key"
    );
}

/// Whether any 12-byte window of `secret` appears raw in `disk`.
fn on_disk(disk: &[u8], secret: &[u8]) -> bool {
    secret.chunks_exact(12).any(|w| contains(disk, w))
}

#[test]
fn with_an_at_rest_key_no_secret_or_text_is_on_disk() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let sealed = rt.block_on(run(Some([0x3c; 32])));
    assert!(sealed.secrets.len() >= 8 && sealed.texts.len() >= 600);
    for s in &sealed.secrets {
        assert!(
            !on_disk(&sealed.disk, s),
            "a secret on disk despite the at-rest key"
        );
    }
    for t in &sealed.texts {
        assert!(!contains(&sealed.disk, t.as_bytes()), "text {t:?} on disk");
    }
    // Control: without the key the same scan finds them.
    let plain = rt.block_on(run(None));
    assert!(plain.secrets.iter().any(|s| on_disk(&plain.disk, s)));
    assert!(
        plain
            .texts
            .iter()
            .any(|t| contains(&plain.disk, t.as_bytes()))
    );
}

/// What a run leaves.
struct Run {
    /// Every secret it saw.
    secrets: Vec<Vec<u8>>,
    /// Every text it sent.
    texts: Vec<String>,
    /// Every file of the database directory, read while the engine still ran.
    disk: Vec<u8>,
}

/// The run, with the store sealed under `at_rest_key` if given.
async fn run(at_rest_key: Option<[u8; 32]>) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    let mut config = engine_common::config();
    config.store.at_rest_key = at_rest_key;
    let faults = SimFaults {
        drop: 0.05,
        duplicate: 0.05,
        reorder: 0.05,
        reorder_ms: 20,
        error: 0.02,
        ..SimFaults::NONE
    };
    let sim = SimServer::new(faults, 11);
    let (engine, mut events) = Engine::open(&db, config).unwrap();
    for a in [1u64, 2] {
        let dev = sim.device(a as i64, 0);
        let feed = engine.add_account(a, Arc::new(dev.clone())).await.unwrap();
        sim.connect(&dev, feed);
    }
    let h1 = engine.request_chat(1, user(2)).await.unwrap();
    let mut h2 = None;
    let mut ready = 0;
    while ready < 2 {
        let e = tokio::time::timeout(Duration::from_secs(60), events.recv())
            .await
            .unwrap()
            .unwrap();
        match &e.kind {
            EventKind::App(AppEvent::ChatRequested { .. }) => {
                h2 = Some(e.chat);
                engine.accept(2, e.chat).await.unwrap();
            }
            EventKind::App(AppEvent::ChatReady { .. }) => ready += 1,
            _ => {}
        }
        if let Some(s) = e.seq {
            engine.ack(s).unwrap();
        }
    }
    let h2 = h2.unwrap();
    let mut secrets: Vec<Vec<u8>> = Vec::new();
    let mut gather = |engine: &Engine| {
        for (a, h) in [(1, h1), (2, h2)] {
            if let Some(c) = engine.store().load_chat(a, h).unwrap() {
                for s in secrets_of_record(&c.state) {
                    if !secrets.contains(&s) {
                        secrets.push(s);
                    }
                }
            }
        }
    };
    let files = dir.path().join("out.bin");
    std::fs::write(&files, vec![0x5au8; 700 * 1024]).unwrap();
    let mut file_keys = Vec::new();
    let mut received = 0;
    let mut texts = Vec::new();
    let per_round = 30;
    for round in 0..10 {
        for i in 0..per_round {
            let id = (round * per_round + i + 1) as i64;
            for (a, h, base) in [(1, h1, 0), (2, h2, 1_000_000)] {
                let text = format!("hygiene run text {}", base + id);
                texts.push(text.clone());
                let m = Outgoing::text(base + id, text);
                engine
                    .command(a, h, Command::Send(Box::new(m)))
                    .await
                    .unwrap();
            }
        }
        if round == 4 {
            for (a, h, id) in [(1, h1, 9_000_001), (2, h2, 9_000_002)] {
                let mut f = FileToSend::document(&files, "application/octet-stream");
                f.random_id = id;
                engine.send_file(a, h, f).await.unwrap();
            }
        }
        let want = 2 * per_round * (round + 1) + if round >= 4 { 2 } else { 0 };
        while received < want {
            let e = tokio::time::timeout(Duration::from_secs(60), events.recv())
                .await
                .expect("messages arrive")
                .unwrap();
            if let EventKind::App(AppEvent::Message { message, .. }) = &e.kind {
                received += 1;
                if let e2e::DecryptedMessage::DecryptedMessage73(m) = &**message {
                    match &m.media {
                        Some(e2e::DecryptedMessageMedia::Document143(d)) => {
                            file_keys.push(d.key.clone());
                            file_keys.push(d.iv.clone());
                        }
                        Some(e2e::DecryptedMessageMedia::Document46(d)) => {
                            file_keys.push(d.key.clone());
                            file_keys.push(d.iv.clone());
                        }
                        _ => {}
                    }
                }
            }
            if let Some(s) = e.seq {
                engine.ack(s).unwrap();
            }
        }
        gather(&engine);
    }
    let status = engine.status(1, h1).await.unwrap();
    assert!(status.rekeys >= 2, "re-keys ran: {}", status.rekeys);
    assert_eq!(file_keys.len(), 4, "both files arrived");
    secrets.extend(file_keys);
    let mut disk = Vec::new();
    for f in std::fs::read_dir(&db).unwrap() {
        disk.extend(std::fs::read(f.unwrap().path()).unwrap_or_default());
    }
    Run {
        secrets,
        texts,
        disk,
    }
}
