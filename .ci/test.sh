#!/usr/bin/env bash
# The test command: installs build dependencies, then formatting, lints, doc links and every test.
set -euo pipefail
cd "$(dirname "$0")/.."
bash .ci/deps.sh
. .ci/env.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps
cargo test --workspace
