//! The data directory as someone with a copy of it sees it. With an at-rest key no message
//! text and no chat key appears in any file (without one the same scan finds them: the
//! control). After a re-key, the old chat key is gone from every file within
//! `StoreOptions::erase_keys_within`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod engine_common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use engine_common::node::{Node, node_with, open_chat};
use engine_common::{appears, config};
use secretchat_engine::crypto::AuthKey;
use secretchat_engine::protocol::chat::{Command, Outgoing};
use secretchat_engine::runtime::EngineConfig;
use secretchat_engine::sim::{SimFaults, SimServer};

/// The chat's current key, found in its stored state record by its fingerprint.
async fn current_key(n: &Node, chat: u64) -> [u8; 256] {
    let fp = n
        .engine()
        .status(n.account, chat)
        .await
        .unwrap()
        .key_fingerprint
        .unwrap();
    let record = n
        .engine()
        .store()
        .load_chat(n.account, chat)
        .unwrap()
        .unwrap()
        .state;
    record
        .windows(256)
        .map(|w| <[u8; 256]>::try_from(w).unwrap())
        .find(|w| AuthKey::new(*w).fingerprint() == fp)
        .expect("the key is in the state record")
}

async fn two_users(cfg: &EngineConfig) -> (tempfile::TempDir, Arc<SimServer>, Node, Node) {
    let dir = tempfile::tempdir().unwrap();
    let sim = SimServer::new(SimFaults::NONE, 21);
    let a = node_with(&sim, dir.path(), 1, 0, cfg.clone()).await;
    let b = node_with(&sim, dir.path(), 2, 0, cfg.clone()).await;
    (dir, sim, a, b)
}

async fn exchange(a: &mut Node, ha: u64, b: &mut Node, hb: u64, texts: &[String]) {
    let base = b.seen.texts(b.account, hb).len();
    for (i, t) in texts.iter().enumerate() {
        let m = Outgoing::text(9000 + (base + i) as i64, t.clone());
        a.engine()
            .command(a.account, ha, Command::Send(Box::new(m)))
            .await
            .unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while b.seen.texts(b.account, hb).len() < base + texts.len() {
        b.pump(Duration::from_millis(30)).await;
        a.pump(Duration::from_millis(10)).await;
        assert!(Instant::now() < deadline, "texts not delivered");
    }
}

/// Texts exchanged, then the two directories read as a copy taken while the engines run:
/// whether any of the texts and the chat key appear in them.
async fn what_a_copy_shows(at_rest_key: Option<[u8; 32]>) -> (bool, bool) {
    let mut cfg = config();
    cfg.store.at_rest_key = at_rest_key;
    let (_dir, _sim, mut a, mut b) = two_users(&cfg).await;
    let (ha, hb) = open_chat(&mut a, &mut b, 2).await;
    let texts: Vec<String> = (0..5)
        .map(|i| format!("a confidential text, number {i}"))
        .collect();
    exchange(&mut a, ha, &mut b, hb, &texts).await;
    let key = current_key(&a, ha).await;
    // Read while the engines run: a clean close would flush away what was acknowledged.
    let dirs = [a.dir.clone(), b.dir.clone()];
    let text_seen = texts
        .iter()
        .any(|t| dirs.iter().any(|d| appears(d, t.as_bytes())));
    let key_seen = dirs.iter().any(|d| appears(d, &key));
    (text_seen, key_seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_an_at_rest_key_no_text_or_chat_key_is_on_disk() {
    assert_eq!(
        what_a_copy_shows(None).await,
        (true, true),
        "control: without an at-rest key the scan finds both"
    );
    assert_eq!(what_a_copy_shows(Some([0x42; 32])).await, (false, false));
}

/// Without an at-rest key, so the scan can see the key (sealed copies go the same way: the
/// erasure does not depend on the sealing).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_rekey_the_old_key_leaves_the_disk() {
    let mut cfg = config();
    cfg.store.erase_keys_within = Duration::from_millis(200);
    let (_dir, _sim, mut a, mut b) = two_users(&cfg).await;
    let (ha, hb) = open_chat(&mut a, &mut b, 2).await;
    exchange(&mut a, ha, &mut b, hb, &["before".into()]).await;
    let old = current_key(&a, ha).await;
    assert_eq!(current_key(&b, hb).await, old);
    // Control: the key is on disk. Polled: an erasure pass (the handshake's exponent went)
    // may be rewriting the table file that holds it while the directory is read.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !appears(&a.dir, &old) {
        assert!(Instant::now() < deadline, "control: the key is on disk");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    a.engine()
        .command(a.account, ha, Command::Rekey)
        .await
        .unwrap();
    // Traffic both ways until both ends use the new key and neither keeps the old one.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut n = 0;
    loop {
        let sa = a.engine().status(a.account, ha).await.unwrap();
        let sb = b.engine().status(b.account, hb).await.unwrap();
        if sa.rekeys > 0 && sb.rekeys > 0 && sa.retained_keys == 0 && sb.retained_keys == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "re-key did not finish: {sa:?} {sb:?}"
        );
        n += 1;
        exchange(&mut a, ha, &mut b, hb, &[format!("a{n}")]).await;
        exchange(&mut b, hb, &mut a, ha, &[format!("b{n}")]).await;
    }
    assert_ne!(current_key(&a, ha).await, old);
    // Within the erasure interval (and the pass itself), no file holds the old key.
    // Three clean scans in a row: one scan can miss a file being rewritten.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut clean = 0;
    while clean < 3 {
        if appears(&a.dir, &old) || appears(&b.dir, &old) {
            clean = 0;
        } else {
            clean += 1;
        }
        assert!(Instant::now() < deadline, "the old key is still on disk");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The chat still works under the new key.
    exchange(&mut a, ha, &mut b, hb, &["after".into()]).await;
}
