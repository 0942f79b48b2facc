//! The encrypted-file path (read, encrypt on the FileCryptor pool, upload part by part to the
//! simulated server, store progress, send the message) against the raw AES-256-IGE stream over
//! the same bytes, measured in the same run. Goal: ≥ 0.8x (the pipeline is not the bottleneck).

#![allow(missing_docs, clippy::expect_used, clippy::unwrap_used)] // criterion_group! generates undocumented items

use std::sync::Arc;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use secretchat::crypto::ige;
use secretchat::sim::{SimFaults, SimServer};
use secretchat::{AccountId, Durability, Engine, EngineConfig, InputFile, Update};

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
    let config = EngineConfig::builder()
        .durability(Durability::Buffered)
        .build();
    let (engine, mut events) = Engine::open(dir.path().join("db"), config).expect("engine");
    let chat = rt.block_on(async {
        for u in [1u64, 2] {
            let d = sim.device(u as i64, 0);
            let feed = engine
                .add_account(AccountId(u), Arc::new(d.clone()))
                .await
                .expect("account");
            sim.connect(&d, feed);
        }
        let chat = engine
            .request_chat(AccountId(1), 2, 0)
            .await
            .expect("request");
        let mut ready = 0;
        while ready < 2 {
            let e = tokio::time::timeout(Duration::from_secs(30), events.next())
                .await
                .expect("event")
                .expect("open");
            if let Some(s) = e.seq {
                engine.ack(s).await.expect("ack");
            }
            match e.update {
                Update::ChatRequested { .. } => {
                    engine.accept_chat(e.account, e.chat).await.expect("accept")
                }
                Update::ChatReady { .. } => ready += 1,
                _ => {}
            }
        }
        chat
    });
    // Keep draining events in the background.
    rt.spawn(async move { while events.next().await.is_some() {} });
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
                AccountId(1),
                chat,
                InputFile::document(&path, "application/octet-stream"),
            ))
            .expect("send")
        })
    });
    g.finish();
}

criterion_group!(benches, files);
criterion_main!(benches);
