#!/usr/bin/env bash
# The main job: installs build dependencies, then runs the end-to-end demonstration.
set -euo pipefail
cd "$(dirname "$0")/.."
bash .ci/deps.sh
. .ci/env.sh
cargo run --release --bin secretchat -- demo "$@"
