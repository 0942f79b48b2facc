//! The README's main job runs and verifies itself.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[test]
fn demo_round_trips_a_message() {
    let mut log = Vec::new();
    let summary = secretchat_cli::cli::demo::run(&mut log).unwrap();
    let log = String::from_utf8(log).unwrap();
    assert_eq!(summary["ok"], true, "{log}");
    assert!(log.contains("Hello from secretchat"), "{log}");
    assert!(log.contains("msg_key mismatch"), "{log}");
}
