//! Fuzz target: see `fuzz/checks/decrypt.rs` (shared with the CI regression test).
#![no_main]

#[path = "../checks/decrypt.rs"]
mod check;

libfuzzer_sys::fuzz_target!(|data: &[u8]| check::check(data));
