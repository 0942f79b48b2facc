//! The engine path on the simulated server (no faults, buffered store): one chat ping-pong
//! (a message each way, each waiting for the other's delivery) and many chats fan-out (one
//! message on each of 64 chats, waiting for all deliveries); with the raw MTProto 2.0
//! encrypt + decrypt of the same messages measured in the same run as the baseline.

#![allow(missing_docs, clippy::expect_used, clippy::unwrap_used)] // criterion_group! generates undocumented items

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use secretchat::crypto::message::{self, Version};
use secretchat::crypto::{AuthKey, Side};
use secretchat::sim::{SimFaults, SimServer};
use secretchat::{
    AccountId, ChatId, Durability, Engine, EngineConfig, Event, EventStream, InputMessage, Update,
};

const FAN_OUT: usize = 64;

/// Waits for the next event matching `f` (acknowledging everything on the way).
async fn until(engine: &Engine, events: &mut EventStream, mut f: impl FnMut(&Event) -> bool) {
    loop {
        let e = tokio::time::timeout(Duration::from_secs(30), events.next())
            .await
            .expect("event in time")
            .expect("engine running");
        if let Some(s) = e.seq {
            engine.ack(s).await.expect("ack");
        }
        if let Update::ChatRequested { .. } = e.update {
            engine.accept_chat(e.account, e.chat).await.expect("accept");
        }
        if f(&e) {
            return;
        }
    }
}

fn engine_path(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let sim = SimServer::new(SimFaults::NONE, 1);
    let config = EngineConfig::builder()
        .durability(Durability::Buffered)
        .build();
    let (engine, mut events) = Engine::open(dir.path().join("db"), config).expect("engine");
    // Account 1 opens one chat with each of accounts 2..=65 (chat to account 2 is the
    // ping-pong chat).
    let chats: Vec<(ChatId, ChatId)> = rt.block_on(async {
        for u in 1..=FAN_OUT as u64 + 1 {
            let d = sim.device(u as i64, 0);
            let feed = engine
                .add_account(AccountId(u), Arc::new(d.clone()))
                .await
                .expect("account");
            sim.connect(&d, feed);
        }
        let mut mine = Vec::new();
        for peer in 2..=FAN_OUT as u64 + 1 {
            mine.push(
                engine
                    .request_chat(AccountId(1), peer as i64, 0)
                    .await
                    .expect("request"),
            );
        }
        // Both sides of every chat ready; remember the peer's handle by peer account.
        let mut ready: HashMap<u64, ChatId> = HashMap::new();
        let mut own = 0;
        until(&engine, &mut events, |e| {
            if let Update::ChatReady { .. } = e.update {
                if e.account == AccountId(1) {
                    own += 1;
                } else {
                    ready.insert(e.account.0, e.chat);
                }
            }
            own == FAN_OUT && ready.len() == FAN_OUT
        })
        .await;
        // Let the layer notifications settle.
        tokio::time::sleep(Duration::from_millis(300)).await;
        while let Some(e) = events.try_next() {
            if let Some(s) = e.seq {
                engine.ack(s).await.expect("ack");
            }
        }
        (2..=FAN_OUT as u64 + 1)
            .zip(mine)
            .map(|(peer, h)| (h, ready[&peer]))
            .collect()
    });
    let mut g = c.benchmark_group("engine");
    g.sample_size(20);
    g.measurement_time(Duration::from_secs(8));
    // Baseline: the message crypto alone, two messages (one each way).
    let key = AuthKey::new([0x42; 256]);
    let payload = vec![0x11u8; 176];
    let mut rng = rand::rngs::OsRng;
    g.throughput(Throughput::Elements(2));
    g.bench_function("raw_crypto_2_messages", |b| {
        b.iter(|| {
            for side in [Side::Originator, Side::Participant] {
                let pad = message::random_padding(payload.len(), Version::V2, &mut rng);
                let wire = message::encrypt_v2(&key, side, &payload, &pad).expect("encrypt");
                message::decrypt_v2(&key, side, &wire).expect("decrypt");
            }
        })
    });
    let (a, b) = chats[0];
    let mut n = 0u64;
    g.bench_function("ping_pong_one_chat", |bench| {
        bench.iter(|| {
            rt.block_on(async {
                n += 1;
                engine
                    .send_message(AccountId(1), a, InputMessage::text(format!("ping {n}")))
                    .await
                    .expect("send");
                until(&engine, &mut events, |e| {
                    e.account == AccountId(2)
                        && e.chat == b
                        && matches!(e.update, Update::NewMessage(_))
                })
                .await;
                engine
                    .send_message(AccountId(2), b, InputMessage::text(format!("pong {n}")))
                    .await
                    .expect("send");
                until(&engine, &mut events, |e| {
                    e.account == AccountId(1)
                        && e.chat == a
                        && matches!(e.update, Update::NewMessage(_))
                })
                .await;
            })
        })
    });
    g.throughput(Throughput::Elements(FAN_OUT as u64));
    g.bench_function("fan_out_64_chats", |bench| {
        bench.iter(|| {
            rt.block_on(async {
                let sends = chats.iter().map(|&(h, _)| {
                    let e = engine.clone();
                    async move {
                        e.send_message(AccountId(1), h, InputMessage::text("fan-out"))
                            .await
                    }
                });
                for r in futures_join(sends).await {
                    r.expect("send");
                }
                let mut got = 0;
                until(&engine, &mut events, |e| {
                    if e.account != AccountId(1) && matches!(e.update, Update::NewMessage(_)) {
                        got += 1;
                    }
                    got == FAN_OUT
                })
                .await;
            })
        })
    });
    g.finish();
}

/// Runs the futures concurrently (each a send that resolves once stored).
async fn futures_join<F>(fs: impl Iterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = fs.map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        out.push(h.await.expect("task"));
    }
    out
}

criterion_group!(benches, engine_path);
criterion_main!(benches);
