//! The encrypted-file path (read, encrypt on the FileCryptor pool, upload part by part to the
//! simulated server, store progress, send the message) against the raw AES-256-IGE stream over
//! the same bytes, measured in the same run. Goal: ≥ 0.8x (the pipeline is not the bottleneck).

#![allow(missing_docs, clippy::expect_used, clippy::unwrap_used)] // criterion_group! generates undocumented items

use std::sync::Arc;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use secretchat::engine::crypto::ige;
use secretchat::engine::runtime::files::FileToSend;
use secretchat::schema::api::{enums as api, types as api_types};
use secretchat::{
    AppEvent, Durability, Engine, EngineConfig, EventKind, SimFaults, SimServer, StoreOptions,
};

const SIZE: usize = 16 * 1024 * 1024;

fn files(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let sim = SimServer::new(SimFaults::NONE, 1);
    // The server side only counts bytes: the bench measures our pipeline, not the simulator's
    // memory.
    sim.keep_file_data(false);
    let config = EngineConfig {
        store: StoreOptions {
            durability: Durability::Buffered,
            at_rest_key: None,
            ..StoreOptions::default()
        },
        ..EngineConfig::default()
    };
    let (engine, mut events) = Engine::open(&dir.path().join("db"), config).expect("engine");
    let chat = rt.block_on(async {
        for u in [1i64, 2] {
            let d = sim.device(u, 0);
            let feed = engine
                .add_account(u as u64, Arc::new(d.clone()))
                .await
                .expect("account");
            sim.connect(&d, feed);
        }
        let bob = api::InputUser::InputUser(api_types::InputUser {
            user_id: 2,
            access_hash: 0,
        });
        let chat = engine.request_chat(1, bob).await.expect("request");
        let mut ready = 0;
        while ready < 2 {
            let e = tokio::time::timeout(Duration::from_secs(30), events.recv())
                .await
                .expect("event")
                .expect("open");
            if let Some(s) = e.seq {
                engine.ack(s).expect("ack");
            }
            match e.kind {
                EventKind::App(AppEvent::ChatRequested { .. }) => {
                    engine.accept(2, e.chat).await.expect("accept")
                }
                EventKind::App(AppEvent::ChatReady { .. }) => ready += 1,
                _ => {}
            }
        }
        chat
    });
    // Keep draining events in the background.
    rt.spawn(async move { while events.recv().await.is_some() {} });
    let path = dir.path().join("payload");
    std::fs::write(&path, vec![0x5au8; SIZE]).expect("write");
    let mut g = c.benchmark_group("files");
    g.sample_size(10);
    g.throughput(Throughput::Bytes(SIZE as u64));
    let key = [7u8; 32];
    let iv = [9u8; 32];
    let mut buf = vec![0x5au8; SIZE];
    g.bench_function(BenchmarkId::new("raw_ige_encrypt", SIZE), |b| {
        b.iter(|| ige::encrypt(&key, &iv, &mut buf).expect("ige"))
    });
    g.bench_function(BenchmarkId::new("send_file", SIZE), |b| {
        b.iter(|| {
            rt.block_on(engine.send_file(
                1,
                chat,
                FileToSend::document(&path, "application/octet-stream"),
            ))
            .expect("send")
        })
    });
    g.finish();
}

criterion_group!(benches, files);
criterion_main!(benches);
