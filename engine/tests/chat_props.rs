//! Property test: two chat cores under random interleavings of sends, deliveries, drops,
//! duplicates, garbage, tampering, timers, re-key commands and DH completions. After every step:
//! no panic, sequence counters never go back, a closed chat stays closed, and what each side
//! delivered is exactly a prefix of what the other sent (in order, no duplicates).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod harness;

use proptest::prelude::*;
use rand::SeedableRng;
use rand::rngs::StdRng;
use secretchat_engine::crypto::{AuthKey, Side};
use secretchat_engine::protocol::chat::{
    Action, AppEvent, ChatCore, Command, Event, Outgoing, Timer,
};
use secretchat_engine::protocol::dh_job::DhJob;
use secretchat_schema::e2e::enums as e2e;

#[derive(Debug, Clone)]
enum Op {
    Send(usize),
    Deliver(usize),
    Duplicate(usize),
    Drop(usize),
    Garbage(usize, Vec<u8>),
    Tamper(usize, usize),
    Advance(u64),
    Rekey(usize),
    RunJobs,
}

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

struct Side2 {
    core: ChatCore,
    rng: StdRng,
    timers: Vec<(u64, Timer)>,
    jobs: Vec<DhJob>,
    delivered: Vec<String>,
    sent_texts: Vec<String>,
    last_seq: (u32, u32, u32),
    closed: bool,
}

fn text_of(m: &e2e::DecryptedMessage) -> Option<String> {
    match m {
        e2e::DecryptedMessage::DecryptedMessage73(m) => Some(m.message.clone()),
        e2e::DecryptedMessage::DecryptedMessage46(m) => Some(m.message.clone()),
        _ => None,
    }
}

fn run(ops: Vec<Op>) {
    let key = AuthKey::new([0x33; 256]);
    let mk = |side, seed| Side2 {
        core: ChatCore::provisioned(
            harness::test_config(),
            side,
            1,
            2,
            key.clone(),
            harness::dh(),
            144,
            0,
        )
        .0,
        rng: StdRng::seed_from_u64(seed),
        timers: Vec::new(),
        jobs: Vec::new(),
        delivered: Vec::new(),
        sent_texts: Vec::new(),
        last_seq: (0, 0, 0),
        closed: false,
    };
    let mut sides = [mk(Side::Originator, 1), mk(Side::Participant, 2)];
    // In flight: (to, wire).
    let mut net: Vec<(usize, Vec<u8>)> = Vec::new();
    let mut now = 0u64;
    let mut counter = 0;
    for op in ops {
        let mut feeds: Vec<(usize, Event)> = Vec::new();
        match op {
            Op::Send(w) => {
                counter += 1;
                let t = format!("{w}:{counter}");
                sides[w].sent_texts.push(t.clone());
                feeds.push((
                    w,
                    Event::Command(Command::Send(Box::new(Outgoing::text(counter, t)))),
                ));
            }
            Op::Deliver(i) | Op::Duplicate(i) | Op::Drop(i) | Op::Tamper(i, _)
                if !net.is_empty() =>
            {
                let i = i % net.len();
                let (to, mut wire) = match op {
                    Op::Duplicate(_) => net[i].clone(),
                    _ => net.remove(i),
                };
                if let Op::Tamper(_, p) = op {
                    if !wire.is_empty() {
                        let p = p % wire.len();
                        wire[p] ^= 0x40;
                    }
                }
                if !matches!(op, Op::Drop(_)) {
                    feeds.push((to, Event::Incoming { wire, file: None }));
                }
            }
            Op::Garbage(w, bytes) => feeds.push((
                w,
                Event::Incoming {
                    wire: bytes,
                    file: None,
                },
            )),
            Op::Advance(ms) => {
                now += ms;
                for (w, s) in sides.iter_mut().enumerate() {
                    let due: Vec<Timer> = s
                        .timers
                        .iter()
                        .filter(|(at, _)| *at <= now)
                        .map(|(_, t)| *t)
                        .collect();
                    s.timers.retain(|(at, _)| *at > now);
                    feeds.extend(due.into_iter().map(|t| (w, Event::Timer(t))));
                }
            }
            Op::Rekey(w) => feeds.push((w, Event::Command(Command::Rekey))),
            Op::RunJobs => {
                for (w, s) in sides.iter_mut().enumerate() {
                    for j in s.jobs.drain(..) {
                        feeds.push((w, Event::DhDone(Box::new(j.run()))));
                    }
                }
            }
            _ => {}
        }
        for (w, ev) in feeds {
            let s = &mut sides[w];
            let actions = s.core.handle(ev, now, &mut s.rng);
            for a in actions {
                match a {
                    Action::Call(c) => {
                        if let Some(d) = c.data() {
                            net.push((1 - w, d.to_vec()));
                        }
                    }
                    Action::Compute(j) => s.jobs.push(*j),
                    Action::ArmTimer { timer, at } => s.timers.push((at, timer)),
                    Action::Deliver(AppEvent::Message { message, .. }) => {
                        s.delivered.extend(text_of(&message));
                    }
                    _ => {}
                }
            }
            let st = s.core.status(now);
            if s.closed {
                assert!(s.core.is_closed(), "a closed chat reopened");
            }
            s.closed = s.core.is_closed();
            if !s.closed {
                let (a, b, c) = st.seq;
                assert!(
                    a >= s.last_seq.0 && b >= s.last_seq.1 && c >= s.last_seq.2,
                    "seq went back"
                );
                s.last_seq = st.seq;
            }
        }
        for w in 0..2 {
            let (d, sent) = (&sides[w].delivered, &sides[1 - w].sent_texts);
            assert!(
                d.len() <= sent.len() && d[..] == sent[..d.len()],
                "delivered {d:?} is not a prefix of sent {sent:?}"
            );
        }
    }
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
    newer[4] = 2; // the format field follows the constructor id
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
        secretchat_engine::protocol::chat::snapshot::RestoreError::NewerFormat(2)
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
