#!/usr/bin/env bash
# The test command: installs build dependencies, then formatting, lints, doc links and every test.
set -euo pipefail
cd "$(dirname "$0")/.."
bash .ci/deps.sh
. .ci/env.sh
cargo fmt --all -- --check
# The library a bridge depends on pulls in none of the command-line tool's crates.
if cargo tree -p secretchat -e normal --prefix none | grep -E '^(clap|indicatif|plotters|mimalloc|tempfile|tracing-subscriber) '; then
  echo "the secretchat library depends on a CLI crate (above)" >&2
  exit 1
fi
cargo clippy --workspace --all-targets -- -D warnings
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps
# Every test, with a throw-away PostgreSQL server for the store's shared backend
# (engine/tests/store_postgres.rs fails without one: none passes by skipping).
bash .ci/pg.sh cargo test --workspace
# The Python client of `secretchat host`, against two host processes and `secretchat sim-server`
# (standard library only; the binary is the one `cargo test` built).
SECRETCHAT_BIN="$CARGO_TARGET_DIR/debug/secretchat" python3 -m unittest discover -s clients/python -v
# The bridge example runs the whole flow through the public API (it fails if a step is missing).
cargo run -q -p secretchat-example-bridge > /dev/null
# Every crate packages for crates.io. The three without RocksDB are also built from their
# packages; the others are packaged and their manifests and dependency versions checked (their
# code is what the build above compiled; verifying would build RocksDB's C++ once more).
cargo package --allow-dirty -p secretchat-codegen -p secretchat-macros -p secretchat-schema
cargo package --allow-dirty --no-verify --workspace --exclude secretchat-example-bridge
# The stated minimum Rust version builds the whole workspace. `check` never links, so RocksDB's
# C++ library is not needed: an empty library directory stands in for it.
msrv=$(grep -m1 '^rust-version' Cargo.toml | cut -d'"' -f2)
rustup toolchain install "$msrv" --profile minimal >/dev/null
ROCKSDB_LIB_DIR=$(mktemp -d) CARGO_TARGET_DIR="$CARGO_TARGET_DIR/msrv" \
  cargo +"$msrv" check --workspace --all-targets
