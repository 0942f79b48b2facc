//! `--at-rest-key-file` on `simulate` and `crash-test`: the data directory they keep is
//! sealed (it opens only with the key, and none of the workload's texts appears in any of the
//! database's files); a bad key file is refused before anything runs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;

use secretchat::{Engine, EngineConfig, Error, StoreError};
use secretchat_cli::simulate::workload::{Item, Workload};

const KEY_HEX: &str = "8f1e2d3c4b5a69788796a5b4c3d2e1f000112233445566778899aabbccddeeff";

fn key() -> [u8; 32] {
    hex::decode(KEY_HEX).unwrap().try_into().unwrap()
}

fn key_file(dir: &Path) -> std::path::PathBuf {
    let p = dir.join("at-rest.key");
    std::fs::write(&p, format!("{KEY_HEX}\n")).unwrap();
    p
}

/// Every file under `dir`, concatenated.
fn disk(dir: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    for f in std::fs::read_dir(dir).unwrap() {
        let p = f.unwrap().path();
        if p.is_file() {
            out.extend(std::fs::read(&p).unwrap());
        }
    }
    out
}

/// How many of the texts of `work`'s first `n` messages of each direction of `pairs` chats
/// appear in the files of `db`, and how many there are. One pass over the bytes: every run of
/// `pair:dir:idx:` followed by letters is looked up among the texts.
fn texts_on_disk(db: &Path, work: &Workload, pairs: usize, n: u32) -> (usize, usize) {
    let mut texts = std::collections::HashSet::new();
    for pair in 0..pairs {
        for dir in 0..2 {
            for idx in 0..n {
                if let Item::Text(t) = work.item(pair, dir, idx) {
                    texts.insert(t.into_bytes());
                }
            }
        }
    }
    let bytes = disk(db);
    let mut found = std::collections::HashSet::new();
    for start in 0..bytes.len() {
        if start > 0 && bytes[start - 1].is_ascii_digit() {
            continue;
        }
        // Three colon-terminated numbers, then lowercase letters.
        let mut at = start;
        let mut ok = true;
        for _ in 0..3 {
            let digits = bytes[at..]
                .iter()
                .take_while(|b| b.is_ascii_digit())
                .count();
            if digits == 0 || bytes.get(at + digits) != Some(&b':') {
                ok = false;
                break;
            }
            at += digits + 1;
        }
        if !ok {
            continue;
        }
        let letters = bytes[at..]
            .iter()
            .take_while(|b| b.is_ascii_lowercase())
            .count();
        let candidate = &bytes[start..at + letters];
        if texts.contains(candidate) {
            found.insert(candidate.to_vec());
        }
    }
    (found.len(), texts.len())
}

/// The database at `db` opens with the key only, and holds none of the texts of `work`'s
/// first `n` messages of each direction of `pairs` chats.
fn sealed(db: &Path, work: &Workload, pairs: usize, n: u32) {
    assert!(matches!(
        Engine::open(db, EngineConfig::default()),
        Err(Error::Store(StoreError::WrongAtRestKey))
    ));
    let sealed = EngineConfig::builder().at_rest_key(key()).build();
    drop(Engine::open(db, sealed).unwrap());
    let (found, texts) = texts_on_disk(db, work, pairs, n);
    assert!(texts > 0);
    assert_eq!(found, 0, "texts on disk despite the at-rest key");
}

/// `crash-test --kills 3 --seed 5 --chats 2` into `data`, with the key file if given. On a
/// failure the temporary directory `keep` is kept (its `engine.log` is what to read) and
/// its path printed.
fn crash_test(data: &Path, key_file: Option<&Path>, keep: &mut Option<tempfile::TempDir>) {
    let json = data.with_extension("json");
    let out = Command::new(env!("CARGO_BIN_EXE_secretchat"))
        .args(["crash-test", "--kills", "3", "--seed", "5", "--chats", "2"])
        .arg("--json")
        .arg(&json)
        .arg("--data-dir")
        .arg(data)
        .args(
            key_file
                .iter()
                .flat_map(|k| [Path::new("--at-rest-key-file"), k]),
        )
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        let kept = keep.take().map(tempfile::TempDir::keep);
        panic!(
            "{stdout}\n{}\ndata kept in {kept:?}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(v["lost"], 0, "{v}");
    assert_eq!(v["chats_working"], v["chats"], "{v}");
}

#[test]
fn simulate_seals_its_data_directory() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let out = Command::new(env!("CARGO_BIN_EXE_secretchat"))
        .args([
            "simulate",
            "--accounts",
            "2",
            "--chats",
            "1",
            "--messages",
            "40",
            "--durability",
            "buffered",
            "--data-dir",
        ])
        .arg(&data)
        .arg("--at-rest-key-file")
        .arg(key_file(dir.path()))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let work = Workload {
        seed: 1,
        file_share: 0.01,
        file_size: 64 * 1024,
    };
    sealed(&data.join("engine"), &work, 1, 40);
}

/// The engine processes are killed, so their write-ahead logs hold what they wrote: the
/// control run without a key shows the texts there.
#[test]
fn crash_test_seals_its_data_directory() {
    let mut keep = Some(tempfile::tempdir().unwrap());
    let dir = keep.as_ref().unwrap().path().to_owned();
    let work = Workload {
        seed: 5,
        file_share: 0.03,
        file_size: 600 * 1024,
    };
    let data = dir.join("sealed");
    crash_test(&data, Some(&key_file(&dir)), &mut keep);
    sealed(&data.join("engine"), &work, 2, 2_000);
    let plain = dir.join("plain");
    crash_test(&plain, None, &mut keep);
    let (found, _) = texts_on_disk(&plain.join("engine"), &work, 2, 2_000);
    assert!(found > 0, "control: without a key the scan finds texts");
}

#[test]
fn a_bad_key_file_is_refused_before_anything_runs() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.key");
    std::fs::write(&bad, "not a key").unwrap();
    for cmd in [&["simulate"][..], &["crash-test", "--kills", "1"][..]] {
        let out = Command::new(env!("CARGO_BIN_EXE_secretchat"))
            .args(cmd)
            .arg("--at-rest-key-file")
            .arg(&bad)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{cmd:?}");
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["error"], "bad_option", "{cmd:?}");
    }
}
