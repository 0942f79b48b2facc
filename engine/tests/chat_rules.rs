//! Every abort rule, typed close reasons, untouched state on rejection, layers 46 ↔ 144, the
//! MTProto 1.0 → 2.0 rule, unhealthy holes and deleting unacknowledged messages — one chat core
//! against a hand-driven peer that holds the same key ("mallory").
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod harness;

use harness::{closed, sent};

use rand::SeedableRng;
use rand::rngs::StdRng;
use secretchat_engine::crypto::dh::DhError;
use secretchat_engine::crypto::message::{self, Version};
use secretchat_engine::crypto::{AuthKey, Side};
use secretchat_engine::protocol::chat::{
    Action, AppEvent, Call, ChatCore, CloseReason, Command, Event, Outgoing, ServiceAction, Timer,
};
use secretchat_engine::protocol::layer::{
    LayerState, Mtproto1Refused, OUR_LAYER, Payload, text_message,
};
use secretchat_engine::protocol::rekey::RekeyError;
use secretchat_engine::protocol::seq_no::{Received, SeqError, SeqNo};
use secretchat_engine::protocol::session::{Session, SessionError};
use secretchat_schema::Serialize;
use secretchat_schema::api::{enums as api, types as api_types};
use secretchat_schema::e2e::{enums as e2e, types as e2e_t};

const T0: u64 = 1_700_000_000_000;

struct Pair {
    core: ChatCore,
    mallory: Session,
    rng: StdRng,
    now: u64,
    /// TDLib's receiver rules on everything the core sends.
    strict: harness::strict::StrictReceiver,
}

fn key() -> AuthKey {
    AuthKey::new([0x5a; 256])
}

fn pair(peer_layer: i32) -> Pair {
    let core = ChatCore::provisioned(
        harness::test_config(),
        Side::Originator,
        7,
        77,
        key(),
        harness::dh(),
        peer_layer,
        T0,
    )
    .0;
    let layer = LayerState::from_parts(
        peer_layer.max(46),
        (peer_layer >= 73).then_some(0),
        OUR_LAYER,
    );
    let mallory = Session::from_parts(
        key(),
        Vec::new(),
        Side::Participant,
        SeqNo::new(Side::Participant),
        layer,
    );
    Pair {
        core,
        mallory,
        rng: StdRng::seed_from_u64(9),
        now: T0,
        strict: harness::strict::StrictReceiver::one_way(&key()),
    }
}

impl Pair {
    fn feed(&mut self, e: Event) -> Vec<Action> {
        if let Event::DhDone(o) = &e {
            if let Some(Ok(k)) = &o.shared {
                self.strict.learn(k);
            }
        }
        let actions = self.core.handle(e, self.now, &mut self.rng);
        for wire in sent(&actions) {
            self.strict.observe(Side::Originator, &wire);
        }
        actions
    }

    fn core_sends(&mut self, text: &str) -> Vec<u8> {
        let a = self.feed(Event::Command(Command::Send(Box::new(Outgoing::text(
            1, text,
        )))));
        sent(&a).pop().unwrap()
    }

    /// Mallory receives a message of the core's, in order.
    fn mallory_reads(&mut self, wire: &[u8]) -> Payload {
        let o = self.mallory.open(wire, None).unwrap();
        if let Some(Received::InOrder { peer_in }) = o.received {
            self.mallory.accept(peer_in).unwrap();
        }
        o.payload
    }

    /// Mallory sends `m` with chosen wire sequence numbers.
    fn mallory_sends_at(
        &mut self,
        m: e2e::DecryptedMessage,
        in_seq: i32,
        out_seq: i32,
    ) -> Vec<Action> {
        let wire = self
            .mallory
            .seal_at(m, in_seq, out_seq, None, &mut self.rng)
            .unwrap()
            .wire;
        self.feed(Event::Incoming {
            wire,
            file: None,
            date: 0,
        })
    }

    fn mallory_sends(&mut self, m: e2e::DecryptedMessage) -> Vec<Action> {
        let wire = self.mallory.seal(m, &mut self.rng).unwrap().wire;
        self.feed(Event::Incoming {
            wire,
            file: None,
            date: 0,
        })
    }
}

/// The DH job among `actions`.
fn take_job(actions: Vec<Action>) -> Box<secretchat_engine::protocol::dh_job::DhJob> {
    actions
        .into_iter()
        .find_map(|a| match a {
            Action::Compute(j) => Some(j),
            _ => None,
        })
        .expect("a DH job")
}

fn text(s: &str) -> e2e::DecryptedMessage {
    text_message(144, 3, 0, s.into(), vec![])
}

fn service(action: e2e::DecryptedMessageAction) -> e2e::DecryptedMessage {
    e2e::DecryptedMessage::Service23(e2e_t::DecryptedMessageService23 {
        random_id: 5,
        action,
    })
}

fn resend(start: i32, end: i32) -> e2e::DecryptedMessage {
    service(e2e::DecryptedMessageAction::Resend(
        e2e_t::DecryptedMessageActionResend {
            start_seq_no: start,
            end_seq_no: end,
        },
    ))
}

/// After an abort: closed with `reason`, discardEncryption called, nothing left behind, and
/// later input is ignored.
fn assert_aborted(p: &mut Pair, actions: &[Action], reason: CloseReason) {
    assert_eq!(closed(actions), Some(reason));
    assert!(
        actions
            .iter()
            .any(|a| matches!(a, Action::Call(c) if matches!(**c, Call::DiscardEncryption(_))))
    );
    assert!(matches!(&actions[0], Action::Persist(p) if p.closed));
    let st = p.core.status(p.now);
    assert_eq!(st.phase, "closed");
    assert_eq!(st.key_fingerprint, None, "keys dropped");
    assert_eq!((st.unacknowledged, st.holes.len()), (0, 0));
    assert!(
        p.mallory_sends(text("late")).is_empty(),
        "a closed chat stays closed"
    );
    assert!(
        p.feed(Event::Command(Command::Send(Box::new(Outgoing::text(
            1, "x"
        )))))
        .is_empty()
    );
}

#[test]
fn wrong_parity_aborts() {
    let mut p = pair(144);
    // A participant's out_seq_no must be even (in_seq_no odd): 1 is a mirrored originator
    // message.
    let a = p.mallory_sends_at(text("m"), 1, 1);
    assert_aborted(&mut p, &a, CloseReason::Seq(SeqError::Parity { value: 1 }));
}

#[test]
fn in_seq_no_going_back_aborts() {
    let mut p = pair(144);
    p.core_sends("one");
    p.core_sends("two");
    // Participant: in_seq_no = 2·raw + 1. First acknowledges both, the next only one.
    let a = p.mallory_sends_at(text("ack 2"), 5, 0);
    assert!(closed(&a).is_none());
    let a = p.mallory_sends_at(text("ack 1"), 3, 2);
    assert_aborted(
        &mut p,
        &a,
        CloseReason::Seq(SeqError::InSeqDecreased {
            previous: 2,
            got: 1,
        }),
    );
}

#[test]
fn in_seq_no_beyond_what_we_sent_aborts() {
    let mut p = pair(144);
    let a = p.mallory_sends_at(text("acks a message never sent"), 3, 0);
    assert_aborted(
        &mut p,
        &a,
        CloseReason::Seq(SeqError::InSeqFromFuture { got: 1, sent: 0 }),
    );
}

#[test]
fn resend_for_messages_never_sent_aborts() {
    let mut p = pair(144);
    p.core_sends("only one");
    // Originator out_seq_no = 2·raw + 1: ask for raw 0..=3 while only raw 0 exists.
    let a = p.mallory_sends(resend(1, 7));
    assert_aborted(
        &mut p,
        &a,
        CloseReason::Seq(SeqError::BadResend { start: 1, end: 7 }),
    );
}

#[test]
fn resend_for_acknowledged_messages_aborts() {
    let mut p = pair(144);
    let w0 = p.core_sends("zero");
    let w1 = p.core_sends("one");
    p.mallory_reads(&w0);
    p.mallory_reads(&w1);
    // Mallory's message acknowledges both (the core forgets them), then asks for raw 0 again.
    assert!(closed(&p.mallory_sends(text("got both"))).is_none());
    assert_eq!(p.core.status(p.now).unacknowledged, 0);
    let a = p.mallory_sends(resend(1, 1));
    assert_aborted(
        &mut p,
        &a,
        CloseReason::ResendUnsatisfiable { lo: 0, hi: 0 },
    );
}

#[test]
fn resend_is_answered_once_even_when_it_arrives_out_of_order() {
    let mut p = pair(144);
    let w0 = p.core_sends("zero");
    // Mallory's raw 0 is "lost"; its raw 1 is a Resend for our raw 0.
    let _lost = p.mallory.seal(text("lost"), &mut p.rng).unwrap();
    let a = p.mallory_sends(resend(1, 1));
    let resent = sent(&a);
    assert!(resent.contains(&w0), "answered at once, byte-identical");
    // When the hole fills, the queued Resend is not interpreted again.
    let a = p.feed(Event::Incoming {
        wire: _lost.wire,
        file: None,
        date: 0,
    });
    assert!(!sent(&a).contains(&w0));
    assert_eq!(p.core.status(p.now).seq.1, 2);
}

#[test]
fn tampered_message_is_rejected_and_changes_nothing() {
    let mut p = pair(144);
    let before = p.core.status(p.now);
    let mut wire = p.mallory.seal(text("x"), &mut p.rng).unwrap().wire;
    wire[40] ^= 1;
    let a = p.feed(Event::Incoming {
        wire,
        file: None,
        date: 0,
    });
    assert!(matches!(a.as_slice(), [Action::Rejected(_)]), "{a:?}");
    assert_eq!(p.core.status(p.now), before);
    for junk in [vec![], vec![0u8; 7], vec![0u8; 40], vec![0xff; 4096]] {
        let a = p.feed(Event::Incoming {
            wire: junk,
            file: None,
            date: 0,
        });
        assert!(matches!(a.as_slice(), [Action::Rejected(_)]));
    }
    assert_eq!(p.core.status(p.now), before);
}

#[test]
fn bad_g_b_in_a_rekey_aborts() {
    let mut p = pair(144);
    let a = p.feed(Event::Command(Command::Rekey));
    let job = take_job(a);
    let a = p.feed(Event::DhDone(Box::new(job.run())));
    let req = sent(&a).pop().unwrap();
    let Payload::Layered(l) = p.mallory_reads(&req) else {
        panic!()
    };
    let e2e::DecryptedMessage::Service23(s) = l.message else {
        panic!()
    };
    let e2e::DecryptedMessageAction::RequestKey(r) = s.action else {
        panic!()
    };
    let a = p.mallory_sends(service(e2e::DecryptedMessageAction::AcceptKey(
        e2e_t::DecryptedMessageActionAcceptKey {
            exchange_id: r.exchange_id,
            g_b: vec![0xff; 256],
            key_fingerprint: 0,
        },
    )));
    assert_aborted(
        &mut p,
        &a,
        CloseReason::Rekey(RekeyError::Dh(DhError::PublicRange)),
    );
}

#[test]
fn bad_g_a_in_a_rekey_request_aborts() {
    let mut p = pair(144);
    let a = p.mallory_sends(service(e2e::DecryptedMessageAction::RequestKey(
        e2e_t::DecryptedMessageActionRequestKey {
            exchange_id: 1,
            g_a: vec![1],
        },
    )));
    assert_aborted(
        &mut p,
        &a,
        CloseReason::Rekey(RekeyError::Dh(DhError::PublicRange)),
    );
}

/// Drives an originator's handshake up to `encryptedChat` and returns the actions for it.
fn handshake_with(g_b: Vec<u8>, fingerprint: impl FnOnce(&[u8]) -> i64) -> (ChatCore, Vec<Action>) {
    let mut rng = StdRng::seed_from_u64(1);
    let user = api::InputUser::InputUser(api_types::InputUser {
        user_id: 2,
        access_hash: 3,
    });
    let (mut core, a) = ChatCore::request(harness::test_config(), user, 5);
    assert!(a.iter().any(|a| matches!(a, Action::NeedDhConfig)));
    let a = core.handle(
        Event::DhConfig {
            params: harness::dh(),
            random: vec![7; 256],
        },
        T0,
        &mut rng,
    );
    let job = take_job(a);
    let a = core.handle(Event::DhDone(Box::new(job.run())), T0, &mut rng);
    let g_a = a
        .iter()
        .find_map(|a| match a {
            Action::Call(c) => match &**c {
                Call::RequestEncryption(r) => Some(r.g_a.clone()),
                _ => None,
            },
            _ => None,
        })
        .unwrap();
    let fp = fingerprint(&g_a);
    let chat = api::EncryptedChat::EncryptedChat(api_types::EncryptedChat {
        id: 9,
        access_hash: 1,
        date: 1,
        admin_id: 1,
        participant_id: 2,
        g_a_or_b: g_b,
        key_fingerprint: fp,
    });
    let mut a = core.handle(Event::ChatUpdate(chat), T0, &mut rng);
    if a.iter().any(|a| matches!(a, Action::Compute(_))) {
        let job = take_job(a);
        a = core.handle(Event::DhDone(Box::new(job.run())), T0, &mut rng);
    }
    (core, a)
}

#[test]
fn handshake_fingerprint_mismatch_discards() {
    let dh = harness::dh();
    let b = [0x33u8; 256];
    let g_b = dh.public(&b).to_vec();
    // The right fingerprint would be that of g_a^b; announce another.
    let (core, a) = handshake_with(g_b.clone(), |g_a| {
        dh.shared_key(g_a, &b).unwrap().fingerprint() ^ 1
    });
    assert_eq!(closed(&a), Some(CloseReason::FingerprintMismatch));
    assert!(
        a.iter()
            .any(|a| matches!(a, Action::Call(c) if matches!(**c, Call::DiscardEncryption(_))))
    );
    assert!(core.is_closed());
    // With the right fingerprint the same exchange succeeds.
    let (core, a) = handshake_with(g_b, |g_a| dh.shared_key(g_a, &b).unwrap().fingerprint());
    assert!(core.is_ready(), "{a:?}");
}

#[test]
fn handshake_bad_g_b_discards() {
    let (core, a) = handshake_with(vec![1], |_| 0);
    assert_eq!(closed(&a), Some(CloseReason::Dh(DhError::PublicRange)));
    assert!(core.is_closed());
}

/// A chat user 5 asks user 6 to join (server chat 8): the core waits for the decision.
fn requested_by_5() -> (ChatCore, Vec<Action>) {
    let req = api_types::EncryptedChatRequested {
        folder_id: None,
        id: 8,
        access_hash: 1,
        date: 1,
        admin_id: 5,
        participant_id: 6,
        g_a: vec![2; 256],
    };
    ChatCore::requested(harness::test_config(), &req)
}

#[test]
fn discarded_by_server_and_declined() {
    let mut p = pair(144);
    let a = p.feed(Event::ChatUpdate(api::EncryptedChat::Discarded(
        api_types::EncryptedChatDiscarded {
            history_deleted: false,
            id: 7,
        },
    )));
    assert_eq!(closed(&a), Some(CloseReason::Discarded));
    assert!(!a.iter().any(|a| matches!(a, Action::Call(_))));
    let (mut core, a) = requested_by_5();
    assert!(matches!(
        &a[1],
        Action::Deliver(AppEvent::ChatRequested { admin_id: 5, .. })
    ));
    let a = core.handle(Event::Command(Command::Decline), T0, &mut p.rng);
    assert_eq!(closed(&a), Some(CloseReason::Declined));
}

#[test]
fn mtproto1_message_after_the_switch_to_2_is_rejected() {
    let mut p = pair(46);
    // A layer-46 peer: our first message still goes out with MTProto 2.0 (as TDLib sends).
    let w = p.core_sends("hi");
    assert!(message::decrypt_v2(&key(), Side::Originator, &w).is_ok());
    assert!(message::decrypt_v1(&key(), &w).is_err());
    // Mallory, an old client, sends its first message with 1.0: accepted.
    let _ = p.feed(Event::Incoming {
        wire: old_client_message(1, 0, "v1 at 0"),
        file: None,
        date: 0,
    });
    assert_eq!(p.core.status(p.now).seq.1, 1);
    // Its message at position 1 is lost; at position 2 it has switched to 2.0.
    let mut new = Session::from_parts(
        key(),
        Vec::new(),
        Side::Participant,
        SeqNo::from_parts(Side::Participant, 2, 1, 0),
        LayerState::from_parts(144, Some(0), OUR_LAYER),
    );
    let m2 = new.seal(text("v2 at 2"), &mut p.rng).unwrap();
    assert_eq!(m2.version, Version::V2);
    let _ = p.feed(Event::Incoming {
        wire: m2.wire,
        file: None,
        date: 0,
    });
    let before = p.core.status(p.now);
    assert_eq!(before.holes, [(1, 1)]);
    // 1.0 at or after the switch is refused by the rule, and changes nothing.
    for (position, out_seq_no) in [(2, 4), (3, 6)] {
        let a = p.feed(Event::Incoming {
            wire: old_client_message(3, out_seq_no, "v1 after the switch"),
            file: None,
            date: 0,
        });
        let refused = SessionError::Mtproto1(Mtproto1Refused::AfterSwitch {
            position,
            switch: 2,
        });
        assert!(
            matches!(a.as_slice(), [Action::Rejected(e)] if *e == refused),
            "{a:?}"
        );
        assert_eq!(p.core.status(p.now), before);
    }
    // 1.0 in the hole before the switch fills it.
    let a = p.feed(Event::Incoming {
        wire: old_client_message(3, 2, "v1 at 1"),
        file: None,
        date: 0,
    });
    assert_eq!(delivered_any(&a), ["v1 at 1", "v2 at 2"]);
    // Everything before the switch is in: 1.0 is not even tried any more.
    let a = p.feed(Event::Incoming {
        wire: old_client_message(3, 6, "v1 after the switch"),
        file: None,
        date: 0,
    });
    assert!(
        matches!(a.as_slice(), [Action::Rejected(SessionError::Crypto(_))]),
        "{a:?}"
    );
}

/// The texts of the messages delivered among `a`, whatever their layer's constructor.
fn delivered_any(a: &[Action]) -> Vec<String> {
    a.iter()
        .filter_map(|a| match a {
            Action::Deliver(AppEvent::Message { message, .. }) => match message.as_ref() {
                e2e::DecryptedMessage::DecryptedMessage73(m) => Some(m.message.clone()),
                e2e::DecryptedMessage::DecryptedMessage46(m) => Some(m.message.clone()),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

/// What a layer-46 client (MTProto 1.0 only) sends: envelope layer 46, `decryptedMessage46`.
fn old_client_message(in_seq: i32, out_seq: i32, text: &str) -> Vec<u8> {
    let env = e2e_t::DecryptedMessageLayer {
        random_bytes: vec![1; 15],
        layer: 46,
        in_seq_no: in_seq,
        out_seq_no: out_seq,
        message: text_message(46, 9, 0, text.into(), vec![]),
    };
    harness::seal::seal_v1(&key(), &env)
}

#[test]
fn layer_46_and_144_peers_talk() {
    let mut p = pair(46);
    let a = p.feed(Event::Incoming {
        wire: old_client_message(1, 0, "from 46"),
        file: None,
        date: 0,
    });
    let got = a.iter().find_map(|a| match a {
        Action::Deliver(AppEvent::Message { message, .. }) => Some(message.clone()),
        _ => None,
    });
    assert!(
        matches!(got.as_deref(), Some(e2e::DecryptedMessage::DecryptedMessage46(m)) if m.message == "from 46")
    );
    // Our reply uses what layer 46 has: decryptedMessage46, no layer-101 entities; the
    // encryption is MTProto 2.0 all the same, under our own layer's envelope.
    let mut out = Outgoing::text(4, "to 46");
    out.entities = vec![
        e2e::MessageEntity::Bold(e2e_t::MessageEntityBold {
            offset: 0,
            length: 2,
        }),
        e2e::MessageEntity::Underline(e2e_t::MessageEntityUnderline {
            offset: 0,
            length: 2,
        }),
    ];
    let a = p.feed(Event::Command(Command::Send(Box::new(out))));
    let w = sent(&a).pop().unwrap();
    let d = message::decrypt_v2(&key(), Side::Originator, &w).unwrap();
    let Payload::Layered(l) = Payload::decode(&d.payload).unwrap() else {
        panic!()
    };
    assert_eq!(l.layer, OUR_LAYER);
    let e2e::DecryptedMessage::DecryptedMessage46(m) = l.message else {
        panic!("{:?}", l.message)
    };
    assert_eq!(m.message, "to 46");
    assert_eq!(m.entities.map(|e| e.len()), Some(1));
    assert_eq!(p.core.status(p.now).negotiated_layer, 46);
}

#[test]
fn a_hole_that_stays_open_is_retried_then_reported() {
    let mut p = pair(144);
    let _lost = p.mallory.seal(text("lost"), &mut p.rng).unwrap();
    let a = p.mallory_sends(text("after the hole"));
    assert_eq!(sent(&a).len(), 1, "one Resend");
    let mut resends = 1;
    let mut unhealthy = None;
    for _ in 0..40 {
        p.now += 60_000;
        let a = p.feed(Event::Timer(Timer::ResendRetry));
        resends += sent(&a).len();
        if let Some(h) = a.iter().find_map(|a| match a {
            Action::Deliver(AppEvent::ChatUnhealthy { holes, .. }) => Some(holes.clone()),
            _ => None,
        }) {
            unhealthy.get_or_insert((resends, h));
        }
    }
    let (at, holes) = unhealthy.expect("reported");
    assert_eq!(holes, vec![(0, 0)]);
    assert_eq!(at, 1 + harness::test_config().unhealthy_after as usize);
    assert!(resends > at, "keeps asking after reporting");
    // An early timer event sends nothing and only asks to be armed again.
    let early = p.feed(Event::Timer(Timer::ResendRetry));
    assert!(
        matches!(
            early.as_slice(),
            [Action::ArmTimer {
                timer: Timer::ResendRetry,
                ..
            }]
        ),
        "{early:?}"
    );
}

#[test]
fn deleting_an_unacknowledged_message_replaces_it_with_a_self_delete() {
    let mut p = pair(144);
    let a = p.feed(Event::Command(Command::Send(Box::new(Outgoing::text(
        4242, "secret",
    )))));
    let original = sent(&a).pop().unwrap();
    let _ = p.feed(Event::Command(Command::Service(ServiceAction::Delete(
        vec![4242],
    ))));
    // The peer never got it and asks again: what comes back is a DeleteMessages for itself,
    // under the same sequence numbers.
    let a = p.mallory_sends(resend(1, 1));
    let resent = sent(&a);
    assert_eq!(resent.len(), 1);
    assert_ne!(resent[0], original);
    let Payload::Layered(l) = p.mallory_reads(&resent[0]) else {
        panic!()
    };
    assert_eq!((l.in_seq_no, l.out_seq_no), (0, 1));
    let e2e::DecryptedMessage::Service23(s) = l.message else {
        panic!()
    };
    assert_eq!(s.random_id, 4242);
    assert!(
        matches!(s.action, e2e::DecryptedMessageAction::DeleteMessages(d) if d.random_ids == [4242])
    );
}

#[test]
fn a_week_old_key_is_replaced_even_across_a_restart() {
    const WEEK: u64 = 7 * 24 * 3600 * 1000;
    let (core, actions) = ChatCore::provisioned(
        harness::test_config(),
        Side::Originator,
        7,
        77,
        key(),
        harness::dh(),
        144,
        T0,
    );
    assert!(actions.iter().any(
        |a| matches!(a, Action::ArmTimer { timer: Timer::KeyAge, at } if *at == T0 + WEEK + 1)
    ));
    let mut p = pair(144);
    p.core = core;
    // A key that encrypted nothing is not replaced, however old.
    p.now = T0 + WEEK + 1;
    let a = p.feed(Event::Timer(Timer::KeyAge));
    assert!(!a.iter().any(|a| matches!(a, Action::Compute(_))));
    // One message sent, then a restart from the stored record: the age is state, not memory.
    let mut p = pair(144);
    p.now = T0 + 1_000;
    p.core_sends("one");
    let record = p.core.snapshot();
    let mut rng = StdRng::seed_from_u64(3);
    let (mut core, resumed) = ChatCore::restore(
        harness::test_config(),
        &record,
        vec![],
        vec![],
        |_, _| Some(harness::dh()),
        p.now,
        &mut rng,
    )
    .unwrap();
    assert!(resumed.iter().any(|a| matches!(
        a,
        Action::ArmTimer {
            timer: Timer::KeyAge,
            ..
        }
    )));
    let early = core.handle(Event::Timer(Timer::KeyAge), T0 + WEEK - 1, &mut rng);
    assert!(
        matches!(
            early.as_slice(),
            [Action::ArmTimer {
                timer: Timer::KeyAge,
                ..
            }]
        ),
        "not due yet: only re-armed, {early:?}"
    );
    let due = core.handle(Event::Timer(Timer::KeyAge), T0 + WEEK + 1, &mut rng);
    assert!(
        due.iter().any(|a| matches!(a, Action::Compute(_))),
        "{due:?}"
    );
    assert!(core.status(T0 + WEEK + 1).rekeying);
}

#[test]
fn a_peer_on_a_newer_layer_is_reported() {
    let mut p = pair(144);
    let env = e2e_t::DecryptedMessageLayer {
        random_bytes: vec![1; 15],
        layer: 201,
        in_seq_no: 1,
        out_seq_no: 0,
        message: text("from the future"),
    };
    let payload = env.to_bytes().unwrap();
    let pad =
        secretchat_engine::crypto::message::random_padding(payload.len(), Version::V2, &mut p.rng);
    let wire = message::encrypt_v2(&key(), Side::Participant, &payload, &pad).unwrap();
    let a = p.feed(Event::Incoming {
        wire,
        file: None,
        date: 0,
    });
    assert!(
        a.iter()
            .any(|a| matches!(a, Action::Deliver(AppEvent::PeerNewerThanUs(201))))
    );
    // Still understood and delivered; we keep speaking our own layer.
    assert!(
        a.iter()
            .any(|a| matches!(a, Action::Deliver(AppEvent::Message { .. })))
    );
    assert_eq!(p.core.status(p.now).negotiated_layer, 144);
}

#[test]
fn documents_use_the_layer_46_constructor_below_layer_143() {
    use secretchat_engine::protocol::chat::Outgoing;
    let doc = e2e::DecryptedMessageMedia::Document143(e2e_t::DecryptedMessageMediaDocument143 {
        thumb: vec![1, 2],
        thumb_w: 2,
        thumb_h: 1,
        mime_type: "application/pdf".into(),
        size: 1234,
        key: vec![7; 32],
        iv: vec![8; 32],
        attributes: vec![],
        caption: "doc".into(),
    });
    let file = secretchat_schema::api::enums::InputEncryptedFile::Empty(
        secretchat_schema::api::types::InputEncryptedFileEmpty {},
    );
    for (layer, want143) in [(73, false), (143, true), (144, true)] {
        let mut p = pair(layer);
        let mut out = Outgoing::text(1, "doc");
        out.media = Some((doc.clone(), file.clone()));
        let a = p.feed(Event::Command(Command::Send(Box::new(out))));
        let Payload::Layered(l) = p.mallory_reads(&sent(&a).pop().unwrap()) else {
            panic!()
        };
        let e2e::DecryptedMessage::DecryptedMessage73(m) = l.message else {
            panic!()
        };
        match m.media.unwrap() {
            e2e::DecryptedMessageMedia::Document143(d) => assert!(want143 && d.size == 1234),
            e2e::DecryptedMessageMedia::Document46(d) => {
                assert!(!want143 && d.size == 1234 && d.key == vec![7; 32]);
            }
            other => panic!("{other:?}"),
        }
    }
}

/// Mallory starts a re-key, the core accepts it; returns the new key (mallory has not
/// switched yet, and its CommitKey is never sent).
fn core_accepts_a_rekey(p: &mut Pair) -> AuthKey {
    use secretchat_engine::protocol::rekey::Rekey;
    let dh = harness::dh();
    let mut m_rekey = Rekey::default();
    let job = m_rekey
        .start(&dh, 1, 77, &[5; 256])
        .unwrap()
        .compute
        .unwrap();
    let step = m_rekey.on_dh_done(job.run()).unwrap();
    let a = p.mallory_sends(service(step.send.unwrap()));
    // The core computes g_b and answers AcceptKey.
    let a = p.feed(Event::DhDone(Box::new(take_job(a).run())));
    let Payload::Layered(l) = p.mallory_reads(&sent(&a).pop().unwrap()) else {
        panic!()
    };
    let e2e::DecryptedMessage::Service23(s) = l.message else {
        panic!()
    };
    let e2e::DecryptedMessageAction::AcceptKey(acc) = s.action else {
        panic!()
    };
    let job = m_rekey
        .on_accept(&dh, 2, acc.exchange_id, &acc.g_b, acc.key_fingerprint)
        .unwrap()
        .compute
        .unwrap();
    m_rekey.on_dh_done(job.run()).unwrap().install.unwrap()
}

/// The texts delivered among `a`.
fn delivered(a: &[Action]) -> Vec<String> {
    a.iter()
        .filter_map(|a| match a {
            Action::Deliver(AppEvent::Message { message, .. }) => match message.as_ref() {
                e2e::DecryptedMessage::DecryptedMessage73(m) => Some(m.message.clone()),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

/// Regression (found by the engine tests under load): the acceptor switches to the new key when a
/// message under it arrives before the CommitKey; if that message is past a hole, the old key
/// must survive until the hole is filled, or the missing messages can never be read.
#[test]
fn a_key_switch_revealing_a_hole_keeps_the_old_key_for_it() {
    let mut p = pair(144);
    let new_key = core_accepts_a_rekey(&mut p);
    // Mallory: one message under the old key (lost for now), then the switch and one under
    // the new key (its CommitKey is lost).
    let old_msg = p
        .mallory
        .seal(text("under the old key"), &mut p.rng)
        .unwrap();
    p.mallory.install(new_key);
    let new_msg = p
        .mallory
        .seal(text("under the new key"), &mut p.rng)
        .unwrap();
    let a = p.feed(Event::Incoming {
        wire: new_msg.wire,
        file: None,
        date: 0,
    });
    assert!(
        a.iter()
            .any(|a| matches!(a, Action::Deliver(AppEvent::Rekeyed(_))))
    );
    assert_eq!(p.core.status(p.now).holes.len(), 1);
    assert_eq!(p.core.status(p.now).retained_keys, 1, "the hole needs it");
    let a = p.feed(Event::Incoming {
        wire: old_msg.wire,
        file: None,
        date: 0,
    });
    assert_eq!(delivered(&a), ["under the old key", "under the new key"]);
    assert!(p.core.status(p.now).holes.is_empty());
    assert_eq!(
        p.core.status(p.now).retained_keys,
        0,
        "no hole needs it now"
    );
}

/// A retained old key opens only messages from before the peer's switch: one under it at or
/// after the first position seen under the new key is refused (state untouched), while the
/// hole before the switch still fills with it.
#[test]
fn an_old_key_is_accepted_only_before_the_switch() {
    let mut p = pair(144);
    let new_key = core_accepts_a_rekey(&mut p);
    let old_key_peer = Session::from_parts(
        key(),
        Vec::new(),
        Side::Participant,
        *p.mallory.seq(),
        LayerState::from_parts(144, Some(0), OUR_LAYER),
    );
    let in_hole = p
        .mallory
        .seal(text("old, in the hole"), &mut p.rng)
        .unwrap();
    p.mallory.install(new_key);
    let switched = p.mallory.seal(text("new"), &mut p.rng).unwrap();
    let _ = p.feed(Event::Incoming {
        wire: switched.wire,
        file: None,
        date: 0,
    });
    let before = p.core.status(p.now);
    assert_eq!((before.holes.len(), before.retained_keys), (1, 1));
    // Someone holding the old key writes at the switch and after it.
    let switch = (switched.out_seq_no / 2) as u32;
    for (out_seq_no, position) in [
        (switched.out_seq_no, switch),
        (switched.out_seq_no + 2, switch + 1),
    ] {
        let forged = old_key_peer
            .seal_at(
                text("old, after the switch"),
                switched.in_seq_no,
                out_seq_no,
                None,
                &mut p.rng,
            )
            .unwrap();
        let a = p.feed(Event::Incoming {
            wire: forged.wire,
            file: None,
            date: 0,
        });
        let refused = SessionError::OldKeyAfterSwitch { position, switch };
        assert!(
            matches!(a.as_slice(), [Action::Rejected(e)] if *e == refused),
            "{a:?}"
        );
        assert_eq!(p.core.status(p.now), before);
    }
    let a = p.feed(Event::Incoming {
        wire: in_hole.wire,
        file: None,
        date: 0,
    });
    assert_eq!(delivered(&a), ["old, in the hole", "new"]);
}

/// Messages that arrive before the key is agreed are held in the state record: at most
/// `MAX_EARLY` of them and `MAX_EARLY_BYTES` together, and nothing longer than the longest
/// message the protocol allows is held at all.
#[test]
fn messages_before_the_key_are_held_within_a_byte_bound() {
    use secretchat_engine::protocol::chat::MAX_EARLY_BYTES;
    let (mut core, _) = requested_by_5();
    let mut rng = StdRng::seed_from_u64(9);
    let mut feed = |core: &mut ChatCore, len: usize| {
        core.handle(
            Event::Incoming {
                wire: vec![0; len],
                file: None,
                date: 0,
            },
            T0,
            &mut rng,
        )
    };
    let a = feed(&mut core, message::MAX_WIRE + 16);
    assert!(
        matches!(
            a.as_slice(),
            [Action::Rejected(SessionError::Crypto(
                secretchat_engine::crypto::CryptoError::BadWireLength { .. }
            ))]
        ),
        "{a:?}"
    );
    let longest = message::MAX_WIRE - (message::MAX_WIRE - 24) % 16;
    for _ in 0..MAX_EARLY_BYTES / longest {
        let a = feed(&mut core, longest);
        assert!(matches!(a.as_slice(), [Action::Persist(_)]), "{a:?}");
    }
    let a = feed(&mut core, longest);
    assert!(
        matches!(a.as_slice(), [Action::Rejected(SessionError::EarlyFull)]),
        "{a:?}"
    );
    // What is held restores (the record stays within the bound it is checked against).
    let record = core.snapshot();
    assert!(record.len() < MAX_EARLY_BYTES + 64 * 1024);
    ChatCore::restore(
        harness::test_config(),
        &record,
        vec![],
        vec![],
        |_, _| Some(harness::dh()),
        T0,
        &mut rng,
    )
    .unwrap();
}

/// A state record older than the chat's outbox (a copy restored over a newer one) would make
/// the chat reuse sequence numbers: restoring refuses it.
#[test]
fn a_state_record_older_than_its_outbox_is_refused() {
    use secretchat_engine::protocol::chat::snapshot::RestoreError;
    let mut p = pair(144);
    p.core_sends("one");
    let old = p.core.snapshot();
    p.core_sends("two");
    let new = p.core.snapshot();
    let outbox: Vec<_> = (0..2)
        .map(|raw| (raw, p.core.outbox_entry(raw).unwrap().clone()))
        .collect();
    let mut rng = StdRng::seed_from_u64(3);
    let restore = |record: &[u8], rng: &mut StdRng| {
        ChatCore::restore(
            harness::test_config(),
            record,
            outbox.clone(),
            vec![],
            |_, _| Some(harness::dh()),
            p.now,
            rng,
        )
    };
    assert!(restore(&new, &mut rng).is_ok());
    assert!(matches!(
        restore(&old, &mut rng),
        Err(RestoreError::RolledBack { outbox: 1, sent: 1 })
    ));
}

/// A step that destroys a secret says so in its Persist (the store then erases the earlier
/// copies of the record); an ordinary step does not.
#[test]
fn steps_that_destroy_a_secret_say_so() {
    let dropped = |a: &[Action]| {
        a.iter().find_map(|a| match a {
            Action::Persist(p) => Some(p.secrets_dropped),
            _ => None,
        })
    };
    let mut p = pair(144);
    let a = p.feed(Event::Command(Command::Send(Box::new(Outgoing::text(
        1, "hi",
    )))));
    assert_eq!(dropped(&a), Some(false));
    // A re-key started holds a new exponent: nothing destroyed yet.
    let a = p.feed(Event::Command(Command::Rekey));
    assert_ne!(dropped(&a), Some(true));
    let a = p.feed(Event::Command(Command::Close {
        delete_history: false,
    }));
    assert_eq!(dropped(&a), Some(true), "{a:?}");
}
