//! Fuzz target: see `fuzz/checks/tl_decode.rs` (shared with the CI regression test).
#![no_main]

#[path = "../checks/tl_decode.rs"]
mod check;

libfuzzer_sys::fuzz_target!(|data: &[u8]| check::check(data));
