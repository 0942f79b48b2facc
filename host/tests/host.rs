//! `secretchat host` end to end, in process: every request and event over the JSON lines,
//! bad input of every kind, a restart with unacknowledged events, and invokes answered out
//! of order or failed as a real connection fails them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use secretchat::EngineConfig;
use secretchat::tl::Identifiable;
use secretchat::tl::api::functions::messages::SendEncrypted;
use secretchat_host::HostOptions;
use serde_json::{Value, json};

mod common;
use common::{ALICE, Action, BOB, HostProc, forward_all, open_chat, sim, start, start_with};

fn send(chat: &str, account: u64, text: &str) -> Value {
    json!({"@type": "sendMessage", "account": account.to_string(), "secret_chat_id": chat, "text": text})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_and_event_over_the_lines() {
    let dir = tempfile::tempdir().unwrap();
    let sim = sim();
    let mut h = start(
        dir.path(),
        &sim,
        forward_all(),
        false,
        HostOptions::default(),
    )
    .await;
    let (alice, bob, key) = open_chat(&mut h).await;

    // The chat as both sides see it.
    let c = h
        .request(json!({"@type": "getSecretChat", "account": "1", "secret_chat_id": alice}))
        .await;
    assert_eq!(
        (
            &c["state"],
            &c["is_outbound"],
            &c["user_id"],
            &c["key_hash"]
        ),
        (&json!("ready"), &json!(true), &json!("2"), &json!(key))
    );
    let server_id = c["server_chat_id"].clone();
    let by_server = h
        .request(json!({"@type": "getSecretChatByServerId", "account": "2", "server_chat_id": server_id}))
        .await;
    assert_eq!(by_server["id"], bob.as_str());

    // A text with every field, answered once stored; the peer gets it normalized.
    let mut m = send(&alice, ALICE, "hello *world*");
    m["random_id"] = json!("-42");
    m["reply_to_random_id"] = json!("7");
    m["ttl"] = json!(15);
    m["silent"] = json!(true);
    m["entities"] = json!([{"_": "messageEntityBold", "offset": 6, "length": 7}]);
    let stored = h.request(m).await;
    assert_eq!(
        stored,
        json!({"@type": "messageStored", "random_id": "-42", "@extra": stored["@extra"]})
    );
    let got = h.event("updateNewMessage", BOB).await;
    assert!(got["seq"].is_string(), "stored events carry a seq: {got}");
    let msg = &got["message"];
    // The server's date of the envelope (the simulated clock starts at 1_700_000_000).
    assert!(
        msg["date"].as_i64().is_some_and(|d| d >= 1_700_000_000),
        "{msg}"
    );
    assert_eq!(
        (
            &msg["random_id"],
            &msg["text"],
            &msg["reply_to_random_id"],
            &msg["ttl"],
            &msg["silent"]
        ),
        (
            &json!("-42"),
            &json!("hello *world*"),
            &json!("7"),
            &json!(15),
            &json!(true)
        )
    );
    assert_eq!(msg["entities"][0]["_"], "messageEntityBold");
    let sent = h.event("updateMessageSent", ALICE).await;
    assert_eq!(
        (&sent["random_id"], &sent["seq"]),
        (&json!("-42"), &Value::Null)
    );
    let ack = h.request(json!({"@type": "ack", "seq": got["seq"]})).await;
    assert_eq!(ack["@type"], "ok");

    // A file, downloaded with the reference the event carried.
    let body: Vec<u8> = (0..600_000u32).map(|i| (i % 253) as u8).collect();
    let path = dir.path().join("out.bin");
    std::fs::write(&path, &body).unwrap();
    let stored = h
        .request(
            json!({"@type": "sendFile", "account": "1", "secret_chat_id": alice,
            "path": path.to_str().unwrap(), "mime_type": "application/pdf", "caption": "doc"}),
        )
        .await;
    assert_eq!(stored["@type"], "messageStored", "{stored}");
    let got = h.event("updateNewMessage", BOB).await;
    let file = got["message"]["file"].clone();
    assert_eq!(got["message"]["media"]["@type"], "document");
    assert_eq!(got["message"]["media"]["mime_type"], "application/pdf");
    let dest = dir.path().join("in.bin");
    let done = h
        .request(json!({"@type": "downloadFile", "account": "2", "file": file, "path": dest.to_str().unwrap()}))
        .await;
    assert_eq!(done["@type"], "fileDownloaded", "{done}");
    assert_eq!(std::fs::read(&dest).unwrap(), body);
    let progress = h.event("updateFileProgress", BOB).await;
    assert_eq!(progress["upload"], false);

    // Service actions and their events on the other side.
    let ok = h
        .request(json!({"@type": "setTtl", "account": "2", "secret_chat_id": bob, "ttl": 60}))
        .await;
    assert_eq!(ok["@type"], "ok");
    let action = h.event("updatePeerAction", ALICE).await;
    assert_eq!(action["action"], json!({"@type": "setTtl", "ttl": 60}));
    let ok = h
        .request(json!({"@type": "markRead", "account": "2", "secret_chat_id": bob, "random_ids": ["-42"]}))
        .await;
    assert_eq!(ok["@type"], "ok");
    let read = h
        .until(|l| l["@type"] == "updatePeerAction" && l["action"]["@type"] == "read")
        .await;
    assert_eq!(read["action"]["random_ids"], json!(["-42"]));
    let ok = h
        .request(json!({"@type": "deleteMessages", "account": "1", "secret_chat_id": alice, "random_ids": ["-42"]}))
        .await;
    assert_eq!(ok["@type"], "ok");
    let deleted = h.event("updateMessagesDeleted", BOB).await;
    assert_eq!(deleted["random_ids"], json!(["-42"]));

    // A re-key on both sides, then the close.
    let ok = h
        .request(json!({"@type": "rekey", "account": "1", "secret_chat_id": alice}))
        .await;
    assert_eq!(ok["@type"], "ok");
    h.event("updateRekeyed", ALICE).await;
    h.event("updateRekeyed", BOB).await;
    let ok = h
        .request(json!({"@type": "closeSecretChat", "account": "1", "secret_chat_id": alice}))
        .await;
    assert_eq!(ok["@type"], "ok");
    let closed = h.event("updateSecretChatClosed", BOB).await;
    assert!(closed["seq"].is_string());
    let c = h
        .request(json!({"@type": "getSecretChat", "account": "2", "secret_chat_id": bob}))
        .await;
    assert_eq!(c["state"], "closed");
    assert!(c["close_reason"].is_string());

    // The account goes with its data.
    let removed = h
        .request(json!({"@type": "removeAccount", "account": "1"}))
        .await;
    assert_eq!(removed["secret_chats"], 1);
    h.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_of_every_kind_is_an_error_line_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let sim = sim();
    let mut h = start(
        dir.path(),
        &sim,
        forward_all(),
        false,
        HostOptions::default(),
    )
    .await;
    let (alice, _, _) = open_chat(&mut h).await;

    h.raw("this is not json").await;
    let e = h.until(|l| l["@type"] == "error").await;
    assert_eq!(e["code"], 400);
    assert!(e["message"].as_str().unwrap().starts_with("not JSON"));
    h.raw("[1, 2]").await;
    let e = h.until(|l| l["@type"] == "error").await;
    assert_eq!(e["message"], "not a JSON object");
    h.raw(&format!(
        "\"{}\"",
        "x".repeat(secretchat_host::wire::MAX_LINE + 1)
    ))
    .await;
    let e = h.until(|l| l["@type"] == "error").await;
    assert!(e["message"].as_str().unwrap().contains("longer than"));

    let cases = [
        (json!({"account": "1"}), 400, "missing field `@type`"),
        (json!({"@type": "fly"}), 400, "unknown @type `fly`"),
        (
            json!({"@type": "sendMessage", "account": "1"}),
            400,
            "missing field `secret_chat_id`",
        ),
        (
            json!({"@type": "sendMessage", "account": "x", "secret_chat_id": alice, "text": "t"}),
            400,
            "`account` is not an unsigned 64-bit integer",
        ),
        (
            json!({"@type": "sendMessage", "account": "1", "secret_chat_id": alice, "text": 5}),
            400,
            "`text` is not a string",
        ),
        (
            json!({"@type": "sendMessage", "account": "1", "secret_chat_id": alice, "text": "t", "random_id": "0"}),
            400,
            "invalid input: random_id 0",
        ),
        (
            json!({"@type": "sendMessage", "account": "1", "secret_chat_id": alice, "text": "t", "entities": [{"_": "nope"}]}),
            400,
            "",
        ),
        (
            json!({"@type": "setTtl", "account": "1", "secret_chat_id": alice, "ttl": "99999999999"}),
            400,
            "`ttl` is out of the 32-bit range",
        ),
        (
            json!({"@type": "ack", "seqs": []}),
            400,
            "`seqs` is not a non-empty array",
        ),
        (
            json!({"@type": "ack", "seqs": ["1", "x"]}),
            400,
            "`seqs` holds a non-integer",
        ),
        (
            json!({"@type": "ack", "seq": "1", "seqs": ["2"]}),
            400,
            "`seq` and `seqs` together",
        ),
        (
            json!({"@type": "pushUpdate", "account": "1", "tl": "zz"}),
            400,
            "",
        ),
        (
            json!({"@type": "pushUpdate", "account": "1", "tl": "9abdbc12"}),
            400,
            "",
        ),
        (
            json!({"@type": "pushUpdate", "account": "9", "tl": "00000000"}),
            404,
            "no account 9",
        ),
        (
            json!({"@type": "invokeResult", "id": "-1", "tl": "00"}),
            400,
            "",
        ),
        (
            json!({"@type": "getSecretChat", "account": "1", "secret_chat_id": "999"}),
            404,
            "no chat 999",
        ),
        (
            json!({"@type": "getSecretChat", "account": "5", "secret_chat_id": alice}),
            404,
            "no account 5",
        ),
        (
            json!({"@type": "getSecretChatByServerId", "account": "1", "server_chat_id": 77777}),
            404,
            "no secret chat with server id 77777",
        ),
        (
            json!({"@type": "downloadFile", "account": "1", "file": {"secret_chat_id": alice}, "path": "/tmp/x"}),
            400,
            "missing field `id`",
        ),
    ];
    for (req, code, message) in cases {
        let r = h.request(req.clone()).await;
        assert_eq!(
            (r["@type"].as_str(), r["code"].as_i64()),
            (Some("error"), Some(code)),
            "{req} → {r}"
        );
        assert!(
            r["message"].as_str().unwrap().starts_with(message),
            "{req} → {r}"
        );
    }
    // Updates of other kinds are not the engine's: ignored, without an error line.
    h.raw(r#"{"@type":"pushUpdate","account":"1","tl":"ffffffff00"}"#)
        .await;

    // The chat is untouched and works.
    let stored = h.request(send(&alice, ALICE, "still here")).await;
    assert_eq!(stored["@type"], "messageStored");
    let got = h.event("updateNewMessage", BOB).await;
    assert_eq!(got["message"]["text"], "still here");
    let errors: Vec<Value> = h
        .drain(Duration::from_millis(200))
        .await
        .into_iter()
        .filter(|l| l["@type"] == "error")
        .collect();
    assert!(errors.is_empty(), "{errors:?}");
    h.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unacknowledged_events_come_again_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let sim = sim();
    let mut h = start(
        dir.path(),
        &sim,
        forward_all(),
        false,
        HostOptions::default(),
    )
    .await;
    let (alice, _, _) = open_chat(&mut h).await;
    for i in 0..6 {
        h.request(send(&alice, ALICE, &format!("m{i}"))).await;
    }
    let mut seqs = Vec::new();
    while seqs.len() < 6 {
        let e = h.event("updateNewMessage", BOB).await;
        seqs.push((
            e["seq"].as_str().unwrap().to_owned(),
            e["message"]["text"].clone(),
        ));
    }
    // Only the first three are acknowledged: one answered (it has `@extra`), two in one
    // `seqs` line, not answered.
    let ok = h.request(json!({"@type": "ack", "seq": seqs[0].0})).await;
    assert_eq!(ok["@type"], "ok");
    h.raw(&json!({"@type": "ack", "seqs": [seqs[1].0, seqs[2].0]}).to_string())
        .await;
    let after = h.drain(Duration::from_millis(300)).await;
    assert!(
        after.iter().all(|l| l["@type"] != "ok"),
        "an ack without @extra is not answered: {after:?}"
    );
    h.close().await;

    let mut h = start(
        dir.path(),
        &sim,
        forward_all(),
        false,
        HostOptions::default(),
    )
    .await;
    let again: Vec<(String, Value)> = h
        .drain(Duration::from_millis(800))
        .await
        .into_iter()
        .filter(|l| l["@type"] == "updateNewMessage")
        .map(|l| {
            (
                l["seq"].as_str().unwrap().to_owned(),
                l["message"]["text"].clone(),
            )
        })
        .collect();
    assert_eq!(
        again,
        seqs[3..],
        "the unacknowledged three, once each, same seqs"
    );
    h.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invokes_answered_out_of_order_or_failed_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let sim = sim();
    // Sends: the 2nd gets FLOOD_WAIT_1, the 4th an internal error, the 6th no answer at all
    // (the host's timeout); every invoke is answered newest first.
    let sends = Arc::new(Mutex::new(0u32));
    let counter = sends.clone();
    let policy: common::Policy = Arc::new(Mutex::new(move |_account, method| {
        if method != SendEncrypted::CONSTRUCTOR_ID {
            return Action::Forward;
        }
        let mut n = counter.lock().unwrap();
        *n += 1;
        match *n {
            2 => Action::Fail(420, "FLOOD_WAIT_1"),
            4 => Action::Fail(500, "INTERNAL"),
            6 => Action::Ignore,
            _ => Action::Forward,
        }
    }));
    let mut options = HostOptions::default();
    options.invoke_timeout = Duration::from_millis(500);
    let mut h = start(dir.path(), &sim, policy, true, options).await;
    let (alice, bob, _) = open_chat(&mut h).await;
    for i in 0..12 {
        h.request(send(&alice, ALICE, &format!("a{i}"))).await;
        h.request(send(&bob, BOB, &format!("b{i}"))).await;
    }
    let mut at_bob = Vec::new();
    let mut at_alice = Vec::new();
    while at_bob.len() < 12 || at_alice.len() < 12 {
        let e = h.until(|l| l["@type"] == "updateNewMessage").await;
        let text = e["message"]["text"].as_str().unwrap().to_owned();
        if e["account"] == "2" {
            at_bob.push(text)
        } else {
            at_alice.push(text)
        }
        h.request(json!({"@type": "ack", "seq": e["seq"]})).await;
    }
    assert_eq!(at_bob, (0..12).map(|i| format!("a{i}")).collect::<Vec<_>>());
    assert_eq!(
        at_alice,
        (0..12).map(|i| format!("b{i}")).collect::<Vec<_>>()
    );
    assert!(
        *sends.lock().unwrap() >= 24 + 3,
        "the failed sends were retried"
    );
    // Nothing more arrives (no duplicate).
    let late: Vec<Value> = h
        .drain(Duration::from_millis(700))
        .await
        .into_iter()
        .filter(|l| l["@type"] == "updateNewMessage")
        .collect();
    assert!(late.is_empty(), "{late:?}");
    h.close().await;
}

/// `catchUp` (the host's connection came back): the account asks for the difference at its
/// next gap check, long before its idle poll.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catch_up_asks_for_the_difference_before_the_idle_poll() {
    let dir = tempfile::tempdir().unwrap();
    let sim = sim();
    let config = EngineConfig::builder()
        .difference_interval(Duration::from_millis(100))
        .idle_difference_interval(Duration::from_secs(3600))
        .build();
    let mut h = start_with(
        dir.path(),
        &sim,
        forward_all(),
        false,
        HostOptions::default(),
        config,
    )
    .await;
    let get_difference = secretchat::tl::api::functions::updates::GetDifference::CONSTRUCTOR_ID;
    let polls = |h: &HostProc| {
        let seen = h.invokes.lock().unwrap();
        seen.iter().filter(|&&id| id == get_difference).count()
    };
    // Each account's first poll comes at its first check; the next is an hour away.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while polls(&h) < 2 {
        assert!(tokio::time::Instant::now() < deadline, "the first polls");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(polls(&h), 2, "idle: no poll for an hour");

    h.raw(r#"{"@type":"catchUp","account":"1"}"#).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while polls(&h) < 3 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the catch-up's poll"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let r = h.request(json!({"@type": "catchUp", "account": "9"})).await;
    assert_eq!(
        (r["@type"].as_str(), r["code"].as_i64()),
        (Some("error"), Some(404)),
        "{r}"
    );
    h.close().await;
}
