//! Property test: two chat cores under random interleavings of sends, deliveries, drops,
//! duplicates, garbage, tampering, timers, re-key commands and DH completions. After every step:
//! no panic, sequence counters never go back, a closed chat stays closed, and what each side
//! delivered is exactly a prefix of what the other sent (in order, no duplicates).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod harness;

use harness::model::{Op, run};

use proptest::prelude::*;
use rand::SeedableRng;
use rand::rngs::StdRng;
use secretchat_engine::crypto::{AuthKey, Side};
use secretchat_engine::protocol::chat::ChatCore;

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..2usize).prop_map(Op::Send),
        6 => any::<usize>().prop_map(Op::Deliver),
        1 => any::<usize>().prop_map(Op::Duplicate),
        1 => any::<usize>().prop_map(Op::Drop),
        1 => (0..2usize, proptest::collection::vec(any::<u8>(), 0..96)).prop_map(|(w, b)| Op::Garbage(w, b)),
        1 => (any::<usize>(), any::<usize>()).prop_map(|(i, p)| Op::Tamper(i, p)),
        2 => (0..5_000u64).prop_map(Op::Advance),
        1 => (0..2usize).prop_map(Op::Rekey),
        2 => Just(Op::RunJobs),
    ]
}

/// A valid state record to mutate.
fn record() -> Vec<u8> {
    let core = ChatCore::provisioned(
        harness::test_config(),
        Side::Participant,
        3,
        4,
        AuthKey::new([7; 256]),
        harness::dh(),
        144,
        5,
    )
    .0;
    core.snapshot().to_vec()
}

fn restore(bytes: &[u8]) -> bool {
    let mut rng = StdRng::seed_from_u64(1);
    ChatCore::restore(
        harness::test_config(),
        bytes,
        vec![],
        vec![],
        |_, _| Some(harness::dh()),
        0,
        &mut rng,
    )
    .is_ok()
}

#[test]
fn a_record_round_trips_and_newer_formats_are_refused() {
    let rec = record();
    assert!(restore(&rec));
    let mut newer = rec.clone();
    let format = secretchat_engine::protocol::chat::snapshot::FORMAT;
    newer[4] = (format + 1) as u8; // the format field follows the constructor id
    let mut rng = StdRng::seed_from_u64(1);
    let err = ChatCore::restore(
        harness::test_config(),
        &newer,
        vec![],
        vec![],
        |_, _| Some(harness::dh()),
        0,
        &mut rng,
    )
    .unwrap_err();
    assert_eq!(
        err,
        secretchat_engine::protocol::chat::snapshot::RestoreError::NewerFormat(format + 1)
    );
    for cut in [0, 4, 100, rec.len() - 1] {
        assert!(!restore(&rec[..cut]), "truncated at {cut}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]
    #[test]
    fn corrupt_records_are_errors_not_panics(flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8)) {
        let mut rec = record();
        let n = rec.len();
        for (i, b) in flips {
            rec[i % n] ^= b | 1;
        }
        let _ = restore(&rec);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]
    #[test]
    fn random_interleavings_keep_the_invariants(ops in proptest::collection::vec(op(), 1..80)) {
        run(ops);
    }
}
