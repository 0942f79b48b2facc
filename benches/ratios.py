#!/usr/bin/env python3
"""Prints the crypto bench figures and their ratios to the baselines of the same run, from
criterion's estimates (target/criterion/<group>/<bench>/new/estimates.json)."""
import json, os, sys
root = os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.expanduser("~/.cache/secretchat-target")), "criterion")

def ns(group, bench):
    with open(os.path.join(root, group, bench, "new", "estimates.json")) as f:
        return json.load(f)["mean"]["point_estimate"]

def gbps(size, t):
    return size / t  # bytes per ns == GB/s

out = []
for size in [1024, 65536, 1048576]:
    base = ns("ige", f"openssl_cbc_encrypt/{size}")
    for op in ["encrypt", "decrypt"]:
        t = ns("ige", f"{op}/{size}")
        out.append(f"IGE {op} {size:>7} B: {gbps(size, t):.3f} GB/s = {base / t:.2f}x OpenSSL AES-256-CBC encrypt ({gbps(size, base):.3f} GB/s)")
b8, s8 = ns("ige_batch", "batch_of_8"), ns("ige_batch", "sequential_8")
out.append(f"IGE batch of 8 x 64 KiB: {s8 / b8:.2f}x the single-stream throughput ({gbps(8 * 65536, b8):.3f} vs {gbps(8 * 65536, s8):.3f} GB/s)")
for size in [16, 1024, 10240]:
    out.append(f"message {size:>5} B: encrypt {ns('message', f'encrypt_v2/{size}') / 1e3:.2f} us, decrypt {ns('message', f'decrypt_v2/{size}') / 1e3:.2f} us")
o = ns("dh", "openssl_consttime_gb_pow_a")
for b in ["g_pow_a", "g_pow_a_fixed_base", "gb_pow_a", "fixed_base_precompute"]:
    t = ns("dh", b)
    out.append(f"DH {b}: {t / 1e6:.2f} ms = {t / o:.2f}x OpenSSL BN_mod_exp_mont_consttime ({o / 1e6:.2f} ms)")
out.append(f"safe-prime check (32 MR rounds on (p-1)/2, Pocklington on p): {ns('prime', 'safe_prime_check') / 1e6:.0f} ms")
print("\n".join(out))
