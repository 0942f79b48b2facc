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
cargo test --workspace
