# Sourced by the scripts: build output outside the work tree, reused across checkouts.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/secretchat-target}"
