//! The two-core model shared by the property test (`chat_props.rs`) and the protocol fuzz
//! target (`fuzz/fuzz_targets/protocol_core.rs`): two chat cores driven by a list of [`Op`]s
//! (sends, deliveries, drops, duplicates, garbage, tampering, timers, re-key commands, DH
//! completions). After every step: no panic, sequence counters never go back, a closed chat
//! stays closed, and what each side delivered is exactly a prefix of what the other sent (in
//! order, no duplicates). [`run`] panics on a broken invariant.

use rand::SeedableRng;
use rand::rngs::StdRng;
use secretchat_engine::crypto::{AuthKey, Side};
use secretchat_engine::protocol::chat::{
    Action, AppEvent, ChatCore, Command, Event, Outgoing, Timer,
};
use secretchat_engine::protocol::dh_job::DhJob;
use secretchat_schema::e2e::enums as e2e;

#[derive(Debug, Clone)]
/// One step of the model.
pub enum Op {
    /// Side `w` sends a text.
    Send(usize),
    /// The in-flight message `i % n` arrives.
    Deliver(usize),
    /// The in-flight message `i % n` arrives and stays in flight.
    Duplicate(usize),
    /// The in-flight message `i % n` is lost.
    Drop(usize),
    /// Side `w` receives these bytes.
    Garbage(usize, Vec<u8>),
    /// The in-flight message `i % n` arrives with byte `p % len` flipped.
    Tamper(usize, usize),
    /// The clock moves on; due timers fire.
    Advance(u64),
    /// Side `w` starts a re-key.
    Rekey(usize),
    /// Every pending DH job finishes.
    RunJobs,
}

impl Op {
    /// Decodes a list of steps from arbitrary bytes (the fuzzer's input): one tag byte per step,
    /// then its operands; a truncated step ends the list. At most `max` steps.
    pub fn decode(mut data: &[u8], max: usize) -> Vec<Op> {
        fn take<const N: usize>(d: &mut &[u8]) -> Option<[u8; N]> {
            let (head, rest) = d.split_first_chunk::<N>()?;
            *d = rest;
            Some(*head)
        }
        let mut ops = Vec::new();
        while ops.len() < max {
            let Some([tag]) = take::<1>(&mut data) else {
                break;
            };
            let op = match tag % 9 {
                0 => Op::Send(usize::from(tag >> 7)),
                1 => match take::<1>(&mut data) {
                    Some([i]) => Op::Deliver(usize::from(i)),
                    None => break,
                },
                2 => match take::<1>(&mut data) {
                    Some([i]) => Op::Duplicate(usize::from(i)),
                    None => break,
                },
                3 => match take::<1>(&mut data) {
                    Some([i]) => Op::Drop(usize::from(i)),
                    None => break,
                },
                4 => {
                    let Some([len]) = take::<1>(&mut data) else {
                        break;
                    };
                    let n = usize::from(len % 97).min(data.len());
                    let (bytes, rest) = data.split_at(n);
                    data = rest;
                    Op::Garbage(usize::from(tag >> 7), bytes.to_vec())
                }
                5 => match take::<2>(&mut data) {
                    Some([i, p]) => Op::Tamper(usize::from(i), usize::from(p)),
                    None => break,
                },
                6 => match take::<2>(&mut data) {
                    Some(ms) => Op::Advance(u64::from(u16::from_le_bytes(ms)) % 5_000),
                    None => break,
                },
                7 => Op::Rekey(usize::from(tag >> 7)),
                _ => Op::RunJobs,
            };
            ops.push(op);
        }
        ops
    }
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

/// Runs `ops` against two provisioned cores, checking the invariants after every step.
///
/// # Panics
/// When an invariant breaks (that is the finding).
pub fn run(ops: Vec<Op>) {
    let key = AuthKey::new([0x33; 256]);
    let mk = |side, seed| Side2 {
        core: ChatCore::provisioned(
            super::test_config(),
            side,
            1,
            2,
            key.clone(),
            super::dh(),
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
                    feeds.push((
                        to,
                        Event::Incoming {
                            wire,
                            file: None,
                            date: 0,
                        },
                    ));
                }
            }
            Op::Garbage(w, bytes) => feeds.push((
                w,
                Event::Incoming {
                    wire: bytes,
                    file: None,
                    date: 0,
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
