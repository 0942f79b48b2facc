//! The layering rule, checked on the sources: the crypto and protocol cores never use actix,
//! RocksDB, tokio, the clock or the OS RNG (time and randomness are passed in).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

const FORBIDDEN: &[&str] = &[
    "actix",
    "rocksdb",
    "tokio",
    "SystemTime",
    "Instant::now",
    "thread_rng",
    "OsRng",
    "getrandom",
];

fn scan(dir: &Path, found: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            scan(&path, found);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&path).unwrap();
            for (n, line) in text.lines().enumerate() {
                let code = line.split("//").next().unwrap_or("");
                for word in FORBIDDEN {
                    if code.contains(word) {
                        found.push(format!("{}:{}: {word}", path.display(), n + 1));
                    }
                }
            }
        }
    }
}

#[test]
fn cores_are_io_free() {
    let mut found = Vec::new();
    for layer in ["src/crypto", "src/protocol"] {
        scan(
            &Path::new(&std::env::var("CARGO_MANIFEST_DIR").expect("run by cargo")).join(layer),
            &mut found,
        );
    }
    assert!(
        found.is_empty(),
        "forbidden imports in the sans-IO core:\n{}",
        found.join("\n")
    );
}
