//! The protocol core fed arbitrary event sequences: the fuzz input is decoded into steps
//! ([`model::Op::decode`]) for two provisioned chat cores; after every step the model checks
//! that nothing panicked, seq numbers never went back, a closed chat stayed closed and each
//! side delivered exactly a prefix of what the other sent. The same model runs as a proptest in
//! CI (`engine/tests/chat_props.rs`).
#![no_main]

#[path = "../../engine/tests/harness/mod.rs"]
#[allow(clippy::all)]
mod harness;

use harness::model::{Op, run};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    run(Op::decode(data, 200));
});
