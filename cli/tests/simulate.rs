//! `secretchat simulate`: a clean run verifies every message and chat; scale mode provisions
//! and rotates; the CLI writes its JSON and HTML and exits by the verdict.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use secretchat::Durability;
use secretchat::sim::SimFaults;
use secretchat_cli::simulate::{self, SimulateOptions};

fn faults() -> SimFaults {
    SimFaults {
        drop: 0.05,
        duplicate: 0.05,
        reorder: 0.05,
        reorder_ms: 20,
        latency_ms: 1,
        error: 0.02,
        flood: 0.0,
        lost_reply: 0.02,
    }
}

/// The fault soak in small (docs/reliability.md has the long one): 10% drop, duplicate and
/// reorder, transient errors, lost replies and FLOOD_WAIT, many chats, re-keys on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_soak_at_ten_percent_faults_and_flood_waits_verifies_clean() {
    let opts = SimulateOptions {
        accounts: 8,
        chats: 8,
        messages: 110,
        file_share: 0.0,
        faults: SimFaults {
            drop: 0.1,
            duplicate: 0.1,
            reorder: 0.1,
            reorder_ms: 30,
            latency_ms: 1,
            error: 0.02,
            flood: 0.005,
            lost_reply: 0.02,
        },
        seed: 9,
        durability: Durability::Buffered,
        stall: Duration::from_secs(90),
        ..SimulateOptions::default()
    };
    let r = simulate::run(&opts, &mut |_| {}).await.unwrap();
    assert!(r.ok(), "{}", r.summary());
    assert_eq!(r.messages_delivered, r.messages_sent);
    assert_eq!(r.consistency.consistent, 64);
    assert!(r.figures.rekeys >= 64, "{}", r.summary());
    let st = r.figures.server;
    assert!(
        st.dropped > 0 && st.duplicated > 0 && st.injected_errors > 0,
        "{st:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_faulty_run_with_files_and_rekeys_verifies_clean() {
    let opts = SimulateOptions {
        accounts: 3,
        chats: 1,
        messages: 260,
        file_share: 0.03,
        file_size: 5000,
        faults: faults(),
        seed: 5,
        durability: Durability::Buffered,
        stall: Duration::from_secs(60),
        ..SimulateOptions::default()
    };
    let mut ticks = 0;
    let r = simulate::run(&opts, &mut |_| ticks += 1).await.unwrap();
    assert!(r.ok(), "{}", r.summary());
    // 3 chats × 260, plus the message after the restart.
    assert_eq!(r.messages_sent, 3 * 260 + 1);
    assert_eq!(r.messages_delivered, r.messages_sent);
    assert_eq!(r.lost + r.duplicated + r.misordered + r.corrupted, 0);
    assert!(
        r.files > 0 && r.files_verified == r.files,
        "{}",
        r.summary()
    );
    assert_eq!(r.consistency.consistent, 3);
    // Re-keys are due after 100 messages: every chat re-keyed (both ends count it).
    assert!(r.figures.rekeys >= 3, "{}", r.summary());
    // The faults happened and were recovered from.
    assert!(r.figures.server.dropped > 0 && r.figures.server.injected_errors > 0);
    assert!(r.latency_ms[0] > 0.0 && r.latency_ms[0] <= r.latency_ms[3]);
    // A message is stored before it can be delivered: each accept latency is below its
    // end-to-end latency, so the percentiles are too.
    for q in 0..4 {
        assert!(
            r.accept_ms[q] <= r.latency_ms[q],
            "{:?} {:?}",
            r.accept_ms,
            r.latency_ms
        );
    }
    // Four exponentiations per handshake and per completed re-key, at least.
    assert!(
        r.figures.dh_exponentiations >= 4 * (3 + r.figures.rekeys),
        "{}",
        r.summary()
    );
    assert_eq!(r.figures.active_peak, 3, "every chat ran");
    // Both ends of the three chats live in the one engine: 2 to 6 were in memory at once.
    assert!(
        (2..=6).contains(&r.figures.loaded_peak),
        "{}",
        r.figures.loaded_peak
    );
    assert!(r.figures.restart_s > 0.0);
    // The engine measured each phase (files were sent, chats re-keyed; no chat slept, so none
    // was loaded — the scale test checks loads), and the phases it measured fit in the
    // process's CPU time.
    let split = r.cpu_split_us();
    let total = r.figures.cpu_s * 1e6 / r.messages_delivered as f64;
    for (name, us) in &split[..4] {
        assert!(*us > 0.0, "no CPU time measured for {name}: {split:?}");
    }
    let measured: f64 = split[..5].iter().map(|(_, us)| us).sum();
    assert!(measured <= total * 1.05, "{split:?} over {total} µs");
    assert!(ticks > 0, "progress was reported");
    let j = r.to_json();
    for k in [
        "messages_sent",
        "messages_delivered",
        "lost",
        "duplicated",
        "misordered",
        "corrupted",
        "msgs_per_sec",
        "rekeys",
        "resends",
        "holes",
        "files",
        "peak_rss_bytes",
        "db_bytes",
        "wall_s",
    ] {
        assert!(j.get(k).is_some(), "JSON lacks {k}");
    }
    for k in ["p50", "p90", "p99", "max"] {
        assert!(j["latency_ms"][k].as_f64().is_some());
        assert!(j["accept_ms"][k].as_f64().is_some());
    }
    for k in ["steps", "DH", "store", "files", "loads", "rest"] {
        assert!(
            j["cpu_split_us_per_msg"][k].as_f64().is_some(),
            "no {k} in the CPU split"
        );
    }
    for k in ["dh_exponentiations", "active_peak", "loaded_peak"] {
        assert!(j.get(k).is_some(), "JSON lacks {k}");
    }
    assert!(j.get("floor_ratio").is_none(), "no floor unless asked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_mode_provisions_every_chat_and_rotates_the_active_ones() {
    let opts = SimulateOptions {
        accounts: 2,
        chats: 400,
        messages: 4,
        file_share: 0.0,
        faults: faults(),
        seed: 9,
        durability: Durability::Buffered,
        active: Some(50),
        floor: true,
        ..SimulateOptions::default()
    };
    let r = simulate::run(&opts, &mut |_| {}).await.unwrap();
    assert!(r.ok(), "{}", r.summary());
    assert_eq!(r.messages_sent, 800 * 4 + 1);
    assert_eq!(r.figures.chats_ready, 800);
    assert!(r.consistency.consistent > 0);
    // Every chat was provisioned asleep: each was loaded from the store.
    let (name, loads) = r.cpu_split_us()[4];
    assert!(name == "loads" && loads > 0.0, "{:?}", r.cpu_split_us());
    let f = r.floor.as_ref().unwrap();
    assert_eq!(f.messages, r.messages_delivered);
    assert!(r.floor_ratio().unwrap() > 0.0);
    let j = r.to_json();
    assert!(j["floor_msgs_per_sec"].as_f64().unwrap() > 0.0);
    assert!(j["floor_ratio"].as_f64().unwrap() > 0.0);
}

#[test]
fn bad_options_are_refused_with_their_name() {
    let mut o = SimulateOptions {
        accounts: 1,
        ..SimulateOptions::default()
    };
    assert!(o.validate().unwrap_err().to_string().contains("--accounts"));
    o.accounts = 2;
    o.faults.drop = 1.0;
    assert!(o.validate().unwrap_err().to_string().contains("--drop"));
    o.faults.drop = 0.0;
    o.file_share = 2.0;
    assert!(
        o.validate()
            .unwrap_err()
            .to_string()
            .contains("--file-share")
    );
}

#[test]
fn the_cli_writes_json_and_html_and_exits_by_the_verdict() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("r.json");
    let html = dir.path().join("r.html");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_secretchat"))
        .args([
            "simulate",
            "--accounts",
            "2",
            "--chats",
            "1",
            "--messages",
            "20",
            "--durability",
            "buffered",
            "--json",
        ])
        .arg(&json)
        .arg("--report")
        .arg(&html)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.starts_with("OK:"), "{stdout}");
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(v["ok"], true);
    assert_eq!(v["messages_delivered"], v["messages_sent"]);
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(
        page.contains("<svg") && page.contains("Throughput"),
        "charts in the page"
    );
    // Bad input: status 2 and a typed error.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_secretchat"))
        .args(["simulate", "--accounts", "1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["error"], "bad_option");
}
