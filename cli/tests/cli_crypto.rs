//! `secretchat crypto|dh|file` against vectors from an independent Python implementation
//! (engine/tests/vectors/gen.py: hashlib + pycryptodome AES, written from the spec).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

#[path = "../../engine/tests/harness/mod.rs"]
mod harness;

use serde_json::Value;

/// The package directory, read when the test runs (a test binary built in another checkout
/// sharing the target directory must not read that checkout's files).
fn manifest_dir() -> std::path::PathBuf {
    std::env::var("CARGO_MANIFEST_DIR")
        .expect("run by cargo")
        .into()
}

fn vectors() -> Value {
    let text = std::fs::read_to_string(manifest_dir().join("../engine/tests/vectors/vectors.json"))
        .unwrap();
    serde_json::from_str(&text).unwrap()
}

fn prime() -> String {
    std::fs::read_to_string(manifest_dir().join("../engine/tests/vectors/dh_prime.hex"))
        .unwrap()
        .trim()
        .to_owned()
}

fn run(args: &[&str]) -> (i32, Value) {
    let out = Command::new(env!("CARGO_BIN_EXE_secretchat"))
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    (
        out.status.code().unwrap_or(-1),
        serde_json::from_str(stdout.trim()).unwrap_or(Value::String(stdout)),
    )
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap()
}

#[test]
fn message_encrypt_matches_reference() {
    let v = vectors();
    for (case, from, mtproto) in [
        ("v2_originator", "originator", "2"),
        ("v2_participant", "participant", "2"),
        ("v1", "originator", "1"),
    ] {
        let c = &v[case];
        let (code, out) = run(&[
            "crypto",
            "encrypt",
            "--key",
            s(&v["key_hex"]),
            "--from",
            from,
            "--mtproto",
            mtproto,
            "--payload",
            s(&v["payload_hex"]),
            "--padding",
            s(&c["padding_hex"]),
        ]);
        assert_eq!(code, 0, "{out}");
        assert_eq!(out["wire_hex"], c["wire_hex"], "{case}");
        assert_eq!(s(&out["msg_key_hex"]), &s(&c["wire_hex"])[16..48]);
        let (code, dec) = run(&[
            "crypto",
            "decrypt",
            "--key",
            s(&v["key_hex"]),
            "--from",
            from,
            "--mtproto",
            mtproto,
            "--wire",
            s(&c["wire_hex"]),
        ]);
        assert_eq!(code, 0, "{dec}");
        assert_eq!(dec["payload_hex"], v["payload_hex"]);
        assert_eq!(dec["padding_len"], s(&c["padding_hex"]).len() / 2);
        assert_eq!(dec["mtproto"], mtproto.parse::<i64>().unwrap());
        assert_eq!(dec["decoded"]["_"], "decryptedMessageActionNotifyLayer");
        assert_eq!(dec["key_fingerprint"], out["key_fingerprint"]);
    }
}

#[test]
fn decrypt_rejections_have_kinds() {
    let v = vectors();
    let key = s(&v["key_hex"]);
    let wire = s(&v["v2_originator"]["wire_hex"]).to_owned();
    let mut flipped = hex::decode(&wire).unwrap();
    flipped[30] ^= 1;
    let mut other_fp = hex::decode(&wire).unwrap();
    other_fp[0] ^= 1;
    for (w, from, kind) in [
        (hex::encode(&flipped), "originator", "msg_key_mismatch"),
        (wire.clone(), "participant", "msg_key_mismatch"),
        (hex::encode(&other_fp), "originator", "fingerprint_mismatch"),
        (
            wire[..wire.len() - 2].to_owned(),
            "originator",
            "bad_wire_length",
        ),
    ] {
        let (code, out) = run(&[
            "crypto", "decrypt", "--key", key, "--from", from, "--wire", &w,
        ]);
        assert_eq!((code, s(&out["error"])), (2, kind), "{out}");
    }
    let (code, out) = run(&[
        "crypto",
        "encrypt",
        "--key",
        "00",
        "--from",
        "originator",
        "--payload",
        "00000000",
    ]);
    assert_eq!((code, s(&out["error"])), (2, "bad_key_length"));
    let (code, out) = run(&[
        "crypto",
        "encrypt",
        "--key",
        key,
        "--from",
        "originator",
        "--payload",
        "00000000",
        "--padding",
        "00",
    ]);
    assert_eq!((code, s(&out["error"])), (2, "invalid_padding"));
}

fn dh_key(p: &str, a: &str, peer: &str) -> (i32, Value) {
    run(&["dh", "key", "--p", p, "--g", "3", "--a", a, "--peer", peer])
}

#[test]
fn dh_key_matches_reference_both_ways() {
    let v = vectors();
    let d = &v["dh"];
    let p = prime();
    let (code, out) = dh_key(&p, s(&d["a_hex"]), s(&d["g_b_hex"]));
    assert_eq!(code, 0, "{out}");
    assert_eq!(out["g_a_hex"], d["g_a_hex"]);
    assert_eq!(out["key_hex"], d["key_hex"]);
    assert_eq!(out["key_fingerprint"], d["key_fingerprint"]);
    let (_, other) = dh_key(&p, s(&d["b_hex"]), s(&d["g_a_hex"]));
    assert_eq!(other["key_hex"], d["key_hex"]);
    let (code, out) = dh_key(&p, "05", "02");
    assert_eq!((code, s(&out["error"])), (2, "public_range"));
}

#[test]
fn dh_check_accepts_telegram_prime_and_rejects_others() {
    let p = prime();
    assert_eq!(
        run(&["dh", "check", "--p", &p, "--g", "3"]),
        (0, serde_json::json!({"valid": true}))
    );
    let (code, out) = run(&["dh", "check", "--p", &p, "--g", "9"]);
    assert_eq!((code, s(&out["error"])), (2, "generator_range"));
    let mut bad = hex::decode(&p).unwrap();
    bad[200] ^= 0x10;
    let (code, out) = run(&["dh", "check", "--p", &hex::encode(&bad), "--g", "4"]);
    assert_eq!((code, s(&out["error"])), (2, "not_safe_prime"));
    let (code, out) = run(&["dh", "check", "--p", &p[2..], "--g", "3"]);
    assert_eq!((code, s(&out["error"])), (2, "prime_size"));
}

#[test]
fn visualize_and_file_fingerprint() {
    let v = vectors();
    let (code, out) = run(&[
        "dh",
        "visualize",
        "--key",
        s(&v["key_hex"]),
        "--layer46-key",
        s(&v["dh"]["key_hex"]),
    ]);
    assert_eq!(code, 0, "{out}");
    let want = &v["visualization"]["layer46_is_dh_key"];
    assert_eq!(out["visualization_hex"], want["hex"]);
    assert_eq!(out["pixels"], want["pixels"]);
    assert_eq!(out["hex_lines"], want["hex_lines"]);
    // Without --layer46-key the layer-46 key is the initial key (every chat created at layer
    // 46 or later); --svg writes the image.
    let svg = std::env::temp_dir().join(format!("secretchat-vis-{}.svg", std::process::id()));
    let (code, out) = run(&[
        "dh",
        "visualize",
        "--key",
        s(&v["key_hex"]),
        "--svg",
        svg.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{out}");
    let want = &v["visualization"]["initial_is_layer46"];
    assert_eq!(out["visualization_hex"], want["hex"]);
    assert_eq!(out["pixels"], want["pixels"]);
    assert_eq!(out["hex_lines"], want["hex_lines"]);
    let image = std::fs::read_to_string(&svg).unwrap();
    let _ = std::fs::remove_file(&svg);
    assert_eq!(image.matches("<rect").count(), 144);
    let colours = ["#FFFFFF", "#D5E6F3", "#2D5775", "#2F99C9"];
    let fills: Vec<&str> = image
        .match_indices("fill=\"")
        .map(|(i, _)| &image[i + 6..i + 13])
        .collect();
    let cells: Vec<Value> = want["pixels"].as_array().unwrap().clone();
    for (fill, cell) in fills.iter().zip(&cells) {
        assert_eq!(*fill, colours[cell.as_u64().unwrap() as usize]);
    }
    let f = &v["file"];
    let (code, out) = run(&[
        "file",
        "fingerprint",
        "--key",
        s(&f["key_hex"]),
        "--iv",
        s(&f["iv_hex"]),
    ]);
    assert_eq!((code, &out["fingerprint"]), (0, &f["fingerprint"]));
}

#[test]
fn file_round_trip_across_parts() {
    let dir = std::env::temp_dir().join(format!("secretchat-file-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (plain, enc, dec) = (dir.join("plain"), dir.join("enc"), dir.join("dec"));
    let data: Vec<u8> = (0..(512 * 1024 * 2 + 1001))
        .map(|i| (i * 31 % 251) as u8)
        .collect();
    std::fs::write(&plain, &data).unwrap();
    let (k, iv) = ("33".repeat(32), "44".repeat(32));
    let p = |x: &std::path::Path| x.to_str().unwrap().to_owned();
    let (code, out) = run(&[
        "file",
        "encrypt",
        "--key",
        &k,
        "--iv",
        &iv,
        "--input",
        &p(&plain),
        "--output",
        &p(&enc),
    ]);
    assert_eq!(code, 0, "{out}");
    let ciphertext = std::fs::read(&enc).unwrap();
    assert_eq!(ciphertext.len(), data.len().div_ceil(16) * 16);
    // one continuous chain: equals one-shot IGE over the zero-padded file
    let mut whole = data.clone();
    whole.resize(ciphertext.len(), 0);
    secretchat::crypto::ige::encrypt(&[0x33; 32], &[0x44; 32], &mut whole).unwrap();
    assert_eq!(whole, ciphertext);
    let size = data.len().to_string();
    let (code, _) = run(&[
        "file",
        "decrypt",
        "--key",
        &k,
        "--iv",
        &iv,
        "--input",
        &p(&enc),
        "--output",
        &p(&dec),
        "--size",
        &size,
    ]);
    assert_eq!(code, 0);
    assert_eq!(std::fs::read(&dec).unwrap(), data);
    // A ciphertext that is not block-aligned: error kind, exit 2, no partial output left.
    let (bad, bad_out) = (dir.join("bad"), dir.join("bad_out"));
    std::fs::write(&bad, &ciphertext[..ciphertext.len() - 1]).unwrap();
    let (code, out) = run(&[
        "file",
        "decrypt",
        "--key",
        &k,
        "--iv",
        &iv,
        "--input",
        &p(&bad),
        "--output",
        &p(&bad_out),
    ]);
    assert_eq!((code, s(&out["error"])), (2, "unaligned_length"));
    assert!(!bad_out.exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Both ends of a chat and the CLI given the chat's key show the same 36 bytes, cells and
/// lines: what two users compare on their screens.
#[test]
fn the_cli_and_both_ends_of_a_chat_show_the_same_visualization() {
    let mut w = harness::World::new(9, harness::Faults::NONE);
    w.open();
    let (a, b) = (w.a.core().status(w.now), w.b.core().status(w.now));
    assert_eq!(a.visualization.len(), 36);
    assert_eq!(a.visualization, b.visualization);
    let key = w.strict.key(a.key_fingerprint.unwrap()).unwrap();
    let (code, out) = run(&["dh", "visualize", "--key", &hex::encode(key.bytes())]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(s(&out["visualization_hex"]), hex::encode(&a.visualization));
    let cells: Vec<u64> = out["pixels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    let want: Vec<u64> = secretchat_engine::crypto::visualize::pixels(&b.visualization)
        .into_iter()
        .map(u64::from)
        .collect();
    assert_eq!(cells, want);
}
