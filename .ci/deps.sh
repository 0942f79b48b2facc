#!/usr/bin/env bash
# Installs what the build needs on a fresh Debian machine: libclang (bindgen for librocksdb-sys),
# a C++ compiler, libssl-dev/pkg-config (bench baselines)
# and iproute2 (network namespaces for the crash test's cuts). Does nothing when they are already there.
set -euo pipefail
need=()
# libclang itself (libclang.so / libclang-N.so), not libclang-cpp, which some images carry alone.
ls /usr/lib/llvm-*/lib/libclang.so* /usr/lib/llvm-*/lib/libclang-[0-9]*.so* /usr/lib/*/libclang.so* /usr/lib/*/libclang-[0-9]*.so* >/dev/null 2>&1 || need+=(libclang-dev)
command -v c++ >/dev/null 2>&1 || need+=(g++)
# libssl-dev + pkg-config: the OpenSSL baselines of the benches (dev-dependency `openssl`).
[ -e /usr/include/openssl/ssl.h ] || need+=(libssl-dev)
command -v pkg-config >/dev/null 2>&1 || need+=(pkg-config)
# iproute2: the crash test's network cuts put each node in a network namespace (`ip netns`).
command -v ip >/dev/null 2>&1 || need+=(iproute2)
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}"
fi
