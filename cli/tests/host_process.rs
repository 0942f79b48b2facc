//! `secretchat host` and `secretchat bench-host` as processes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_secretchat");

/// `close` ends the process after the `closed` line, even when the client keeps its end of
/// stdin open (a relay that holds the pipe until the child exits).
#[test]
fn close_ends_the_process_with_stdin_still_open() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(BIN)
        .args(["host", "--data-dir"])
        .arg(dir.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    writeln!(stdin, r#"{{"@type":"close"}}"#).unwrap();
    stdin.flush().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let last = lines.next().unwrap().unwrap();
    assert_eq!(last, r#"{"@type":"closed"}"#);
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("the host did not exit after `closed` while its stdin was open");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success());
    drop(stdin);
}

/// The host benchmark runs both measurements and reports them (figures are not checked here:
/// speed is measured in benchmarks, not asserted in tests).
#[test]
fn bench_host_reports_both_runs() {
    let out = Command::new(BIN)
        .args(["bench-host", "--chats", "1", "--messages", "20"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    for key in ["in_process_msgs_per_sec", "relayed_msgs_per_sec", "ratio"] {
        assert!(v[key].as_f64().is_some_and(|x| x > 0.0), "{key} in {v}");
    }
    assert_eq!(v["chats"], 2);
}

/// The pacing flags reach the engine (they were parsed and then ignored).
#[test]
fn the_pacing_flags_configure_the_engine() {
    use clap::Parser;
    use secretchat_cli::cli::host::{HostArgs, engine_config};

    #[derive(Parser)]
    struct Args {
        #[command(flatten)]
        host: HostArgs,
    }
    let args = Args::parse_from([
        "host",
        "--data-dir",
        "/tmp/x",
        "--ack-interval-ms",
        "1000",
        "--difference-interval-ms",
        "1500",
        "--idle-difference-interval-ms",
        "60000",
    ]);
    let config = engine_config(&args.host).unwrap();
    assert_eq!(
        config.intervals(),
        (
            Duration::from_millis(1000),
            Duration::from_millis(1500),
            Duration::from_secs(60)
        )
    );
}
