//! The fuzz targets' checks (`fuzz/checks/`, and the protocol model in
//! `engine/tests/harness/model.rs`) on every input the campaigns kept in `fuzz/regressions/`,
//! plus a few fixed inputs, so a regression of a fuzz finding fails CI without nightly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../fuzz/checks/tl_decode.rs"]
mod tl_decode;

#[path = "../fuzz/checks/decrypt.rs"]
mod decrypt;

// The decrypt check brings its own copy of the harness's sealer.
#[path = "../engine/tests/harness/mod.rs"]
#[allow(clippy::duplicate_mod)]
mod harness;

use std::path::Path;

fn inputs(target: &str) -> Vec<Vec<u8>> {
    let dir = Path::new(&std::env::var("CARGO_MANIFEST_DIR").expect("run by cargo"))
        .join("fuzz/regressions")
        .join(target);
    let mut out = Vec::new();
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_file() && !p.file_name().unwrap().to_string_lossy().starts_with('.') {
            out.push(std::fs::read(&p).unwrap());
        }
    }
    out
}

#[test]
fn decrypt_regressions_hold() {
    let found = inputs("decrypt");
    assert!(!found.is_empty(), "the kept finding is there");
    for i in found {
        decrypt::check(&i);
    }
    // A valid plaintext, a bad padding, a raw wire.
    let mut ok = vec![1u8, 4, 0, 0, 0, 9, 9, 9, 9];
    ok.extend([0xaa; 23]);
    decrypt::check(&ok);
    decrypt::check(&[
        1, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15,
    ]);
    decrypt::check(&[0; 64]);
}

#[test]
fn tl_decode_regressions_hold() {
    for i in inputs("tl_decode") {
        tl_decode::check(&i);
    }
    for pick in 0..=255u8 {
        tl_decode::check(&[pick, 0x83, 0x88, 0x04, 0xf3, 144, 0, 0, 0]);
        tl_decode::check(&[pick, 0x15, 0xc4, 0xb5, 0x1c, 0xff, 0xff, 0xff, 0x7f]);
    }
}

#[test]
fn protocol_core_regressions_hold() {
    for i in inputs("protocol_core") {
        harness::model::run(harness::model::Op::decode(&i, 200));
    }
    let steps: Vec<u8> = (0..=255u8).cycle().take(600).collect();
    harness::model::run(harness::model::Op::decode(&steps, 200));
}
