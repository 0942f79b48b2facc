//! The `secretchat tl` commands, run as a user would run them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

fn run(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_secretchat"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap().trim().to_owned(),
    )
}

fn error_kind(stdout: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(stdout).unwrap();
    assert!(v["detail"].is_string(), "{stdout}");
    v["error"].as_str().unwrap().to_owned()
}

#[test]
fn decode_prints_schema_names_and_layer() {
    // decryptedMessageLayer{random_bytes: 15×aa, layer 144, in 0, out 1,
    //   message: decryptedMessageService#73164160{random_id 1, action: notifyLayer 73}}
    let hex = format!(
        "8917e31b0f{}900000000000000001000000604116730100000000000000838804f349000000",
        "aa".repeat(15)
    );
    let (code, out) = run(&["tl", "decode", &hex]);
    assert_eq!(code, 0, "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["_"], "decryptedMessageLayer");
    assert_eq!(v["random_bytes"], "aa".repeat(15));
    assert_eq!(v["layer"], 144);
    assert_eq!(v["message"]["_"], "decryptedMessageService");
    assert_eq!(v["message"]["_layer"], 23);
    assert_eq!(v["message"]["random_id"], "1");
    assert_eq!(
        v["message"]["action"]["_"],
        "decryptedMessageActionNotifyLayer"
    );
    // encode is the inverse
    let (code, back) = run(&["tl", "encode", &out]);
    assert_eq!((code, back), (0, hex));
}

#[test]
fn encode_flags_and_types() {
    let json = r#"{"_":"decryptedMessage","_layer":73,"silent":true,"random_id":"-2","ttl":0,"message":"hi","reply_to_random_id":"7"}"#;
    let (code, out) = run(&["tl", "encode", json]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        out,
        "7446cc9128000000feffffffffffffff00000000026869000700000000000000"
    );
    // TDLib's suffixed name is accepted too
    let json8 = r#"{"_":"decryptedMessage8","random_id":"1","random_bytes":"","message":"","media":{"_":"decryptedMessageMediaEmpty"}}"#;
    let (code, out) = run(&["tl", "encode", json8]);
    assert_eq!(
        (code, out.as_str()),
        (0, "1f4f811f010000000000000000000000000000004a5c9f08")
    );
}

#[test]
fn bad_input_exits_2_with_one_json_line() {
    for (args, kind) in [
        (vec!["tl", "decode", "zz"], "bad_hex"),
        (vec!["tl", "decode", "838804"], "unexpected_eof"),
        (vec!["tl", "decode", "deadbeef"], "unknown_constructor"),
        (vec!["tl", "decode", "838804f39000000000"], "trailing_bytes"),
        (
            vec!["tl", "decode", "15c4b51cffffffff"],
            "unknown_constructor",
        ),
        (vec!["tl", "encode", "{"], "invalid_json"),
        (
            vec!["tl", "encode", r#"{"_":"decryptedMessage"}"#],
            "ambiguous_layer",
        ),
        (
            vec!["tl", "encode", r#"{"_":"nope"}"#],
            "unknown_constructor",
        ),
        (
            vec![
                "tl",
                "encode",
                r#"{"_":"decryptedMessageActionNotifyLayer"}"#,
            ],
            "missing_field",
        ),
        (
            vec![
                "tl",
                "encode",
                r#"{"_":"decryptedMessageActionNotifyLayer","layer":"x"}"#,
            ],
            "wrong_type",
        ),
        (
            vec![
                "tl",
                "encode",
                r#"{"_":"decryptedMessageActionNotifyLayer","layer":1,"x":2}"#,
            ],
            "unknown_field",
        ),
        (vec!["tl", "frobnicate"], "usage"),
    ] {
        let (code, out) = run(&args);
        assert_eq!(code, 2, "{args:?}: {out}");
        assert_eq!(out.lines().count(), 1, "{out}");
        assert_eq!(error_kind(&out), kind, "{args:?}");
    }
}
