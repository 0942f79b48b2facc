#!/usr/bin/env bash
# The main job: installs build dependencies, then runs `secretchat simulate` — accounts and chats
# on the simulated server with the real engine, RocksDB and crypto, every message verified.
# Extra arguments go to simulate (see `secretchat simulate --help`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash .ci/deps.sh
. .ci/env.sh
cargo run --release --bin secretchat -- simulate "$@"
