//! Two chat cores talking through the harness's lossy channel: handshake, ordering under
//! faults, re-keying (also concurrent and across holes), byte-identical resends.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod harness;

use harness::{Faults, Who, World};
use secretchat_engine::protocol::chat::{AppEvent, Call, Command, Event};
use secretchat_engine::protocol::layer::OUR_LAYER;

fn expected(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i}")).collect()
}

#[test]
fn handshake_agrees_on_one_key_and_announces_layers() {
    let mut w = World::new(1, Faults::NONE);
    w.open();
    let (a, b) = (w.a.core(), w.b.core());
    assert!(a.is_ready() && b.is_ready());
    assert_eq!(a.visualization(), b.visualization());
    assert_eq!(a.visualization().len(), 36);
    for p in [&w.a, &w.b] {
        assert_eq!(
            p.count(|e| matches!(e, AppEvent::ChatReady { .. })),
            1,
            "{:?}",
            p.events
        );
    }
    assert_eq!(
        w.b.count(|e| matches!(e, AppEvent::ChatRequested { admin_id: 1, .. })),
        1
    );
    w.send_text(Who::A, "hello");
    w.send_text(Who::B, "hi");
    w.run_until(|w| w.a.texts().len() == 1 && w.b.texts().len() == 1);
    w.run_until(World::settled);
    assert_eq!(w.b.texts(), ["hello"]);
    assert_eq!(w.a.texts(), ["hi"]);
    let (sa, sb) = (w.a.core().status(w.now), w.b.core().status(w.now));
    assert_eq!(sa.key_fingerprint, sb.key_fingerprint);
    // Both announced layer 144 with NotifyLayer right after the key was agreed.
    assert_eq!((sa.peer_layer, sb.peer_layer), (OUR_LAYER, OUR_LAYER));
    assert!(w.a.events.contains(&AppEvent::PeerLayer(OUR_LAYER)));
    assert!(w.b.events.contains(&AppEvent::PeerLayer(OUR_LAYER)));
}

/// The headline test: 10,000 messages each way through 10% drop, 10% duplicate and 10%
/// reorder, with automatic re-keying every ~100 messages: every message arrives exactly once,
/// in order, on both sides.
#[test]
fn ten_thousand_each_way_through_drop_duplicate_reorder_with_rekeys() {
    // Several seeds: one seed once hid a stall that others showed (see docs/protocol.md).
    for seed in [7, 8, 9, 10, 11] {
        ten_thousand_each_way(seed);
    }
}

fn ten_thousand_each_way(seed: u64) {
    const N: usize = 10_000;
    let mut w = World::new(seed, Faults::NONE);
    w.open();
    w.faults = Faults::HARSH;
    for i in 0..N {
        w.send_text(Who::A, &format!("a{i}"));
        let t = w.now + 3;
        w.run_to(t);
        w.send_text(Who::B, &format!("b{i}"));
        let t = w.now + 3;
        w.run_to(t);
    }
    w.run_until(|w| w.a.texts().len() >= N && w.b.texts().len() >= N);
    w.run_until(World::settled);
    assert_eq!(w.b.texts(), expected("a", N));
    assert_eq!(w.a.texts(), expected("b", N));
    let (sa, sb) = (w.a.core().status(w.now), w.b.core().status(w.now));
    assert!(sa.closed.is_none() && sb.closed.is_none());
    assert_eq!(sa.rekeys, sb.rekeys);
    // A re-key starts once a key served 100 messages; the exchange's messages are interpreted in
    // order, so under 10% loss at ~300 messages/s a key carries a few hundred messages.
    assert!(
        sa.rekeys >= 40,
        "re-keying throughout 20,000 messages: {} rekeys",
        sa.rekeys
    );
    let resends = |p: &harness::Party| p.sent.len();
    eprintln!(
        "rekeys {}, wires sent A {} B {}, seq A {:?} B {:?}",
        sa.rekeys,
        resends(&w.a),
        resends(&w.b),
        sa.seq,
        sb.seq
    );
}

#[test]
fn concurrent_rekey_from_both_sides_ends_on_one_key() {
    let mut w = World::new(3, Faults::NONE);
    w.open();
    let before = w.a.core().status(w.now).key_fingerprint;
    w.feed(Who::A, Event::Command(Command::Rekey));
    w.feed(Who::B, Event::Command(Command::Rekey));
    w.run_until(|w| {
        w.a.count(|e| matches!(e, AppEvent::Rekeyed(_))) == 1
            && w.b.count(|e| matches!(e, AppEvent::Rekeyed(_))) == 1
    });
    w.run_until(World::settled);
    let (sa, sb) = (w.a.core().status(w.now), w.b.core().status(w.now));
    assert_eq!(sa.key_fingerprint, sb.key_fingerprint);
    assert_ne!(sa.key_fingerprint, before);
    assert_eq!((sa.rekeys, sb.rekeys), (1, 1));
    // Both sent a RequestKey; exactly one side answered with AcceptKey.
    let accepts = [&w.a, &w.b].iter().map(|p| p.sent.len()).sum::<usize>();
    assert!(accepts >= 4);
    w.send_text(Who::A, "after");
    w.run_until(|w| w.b.texts() == ["after"]);
}

#[test]
fn rekey_interleaved_with_holes_loses_nothing() {
    let mut w = World::new(11, Faults::NONE);
    w.open();
    w.faults = Faults {
        drop: 0.3,
        duplicate: 0.1,
        reorder: 0.3,
        latency_ms: 20,
        reorder_ms: 300,
    };
    for round in 0..5 {
        for i in 0..20 {
            w.send_text(Who::A, &format!("a{}", round * 20 + i));
            w.send_text(Who::B, &format!("b{}", round * 20 + i));
            if i == 5 {
                // Start a re-key in the middle of a burst, while holes are open.
                w.feed(Who::A, Event::Command(Command::Rekey));
            }
            let t = w.now + 2;
            w.run_to(t);
        }
    }
    w.run_until(|w| w.a.texts().len() >= 100 && w.b.texts().len() >= 100);
    w.run_until(World::settled);
    assert_eq!(w.b.texts(), expected("a", 100));
    assert_eq!(w.a.texts(), expected("b", 100));
    assert!(w.a.core().status(w.now).rekeys >= 1);
}

#[test]
fn resend_answers_are_byte_identical() {
    let mut w = World::new(5, Faults::NONE);
    w.open();
    w.run_until(World::settled);
    // Drop the second text A sends, once.
    let mut seen = 0;
    let mut dropped: Option<Vec<u8>> = None;
    let slot = std::rc::Rc::new(std::cell::RefCell::new(None::<Vec<u8>>));
    let keep = slot.clone();
    w.tamper = Some(Box::new(move |to, wire| {
        if to == Who::B {
            seen += 1;
            if seen == 2 {
                *keep.borrow_mut() = Some(wire);
                return None;
            }
        }
        Some(wire)
    }));
    for i in 0..3 {
        w.send_text(Who::A, &format!("m{i}"));
    }
    w.run_until(|w| w.b.texts().len() == 3);
    assert_eq!(w.b.texts(), ["m0", "m1", "m2"]);
    dropped.get_or_insert(slot.borrow().clone().unwrap());
    let original = dropped.unwrap();
    let copies = w.a.sent.iter().filter(|s| **s == original).count();
    assert_eq!(copies, 2, "the resend carries the very same bytes");
    // B asked exactly once (one Resend service message for one hole).
    let resend_calls =
        w.b.calls
            .iter()
            .filter(|c| matches!(c, Call::SendEncryptedService(_)))
            .count();
    assert!(resend_calls >= 2, "NotifyLayer and the Resend");
}

/// Crash-restart both sides (drop the core, rebuild it from its stored records) again and again
/// in the middle of lossy traffic with re-keys: nothing is lost, nothing delivered twice.
#[test]
fn restarts_mid_traffic_lose_nothing_and_deliver_nothing_twice() {
    const N: usize = 2_000;
    let mut w = World::new(21, Faults::NONE);
    w.open();
    w.faults = Faults::HARSH;
    for i in 0..N {
        w.send_text(Who::A, &format!("a{i}"));
        w.send_text(Who::B, &format!("b{i}"));
        let t = w.now + 6;
        w.run_to(t);
        if i % 97 == 50 {
            w.restart(Who::A);
        }
        if i % 131 == 7 {
            w.restart(Who::B);
        }
    }
    w.run_until(|w| w.a.texts().len() >= N && w.b.texts().len() >= N);
    w.run_until(World::settled);
    assert_eq!(w.b.texts(), expected("a", N));
    assert_eq!(w.a.texts(), expected("b", N));
    assert!(w.a.restarts >= 20 && w.b.restarts >= 15);
    assert!(w.a.core().status(w.now).rekeys >= 5);
}

/// Restart both sides after every single step of the handshake: the chat still opens, with one
/// key, and works.
#[test]
fn restarts_during_the_handshake() {
    let mut w = World::new(31, Faults::NONE);
    let actions = w.request_only();
    w.feed_actions(Who::A, actions);
    let mut steps = 0;
    while !(w.a.core.as_ref().is_some_and(|c| c.is_ready())
        && w.b.core.as_ref().is_some_and(|c| c.is_ready()))
    {
        assert!(w.step(), "{}", w.describe());
        w.restart(Who::A);
        w.restart(Who::B);
        steps += 1;
        assert!(steps < 1_000);
    }
    w.send_text(Who::A, "after");
    w.send_text(Who::B, "restarts");
    w.run_until(|w| w.a.texts().len() == 1 && w.b.texts().len() == 1);
    assert_eq!(w.a.core().visualization(), w.b.core().visualization());
    assert!(w.a.restarts > 3 && w.b.restarts > 3);
}

#[test]
fn service_actions_and_message_fields_travel() {
    use secretchat_engine::protocol::chat::{Outgoing, ServiceAction};
    use secretchat_schema::e2e::{enums as e2e, types as t};
    let mut w = World::new(41, Faults::NONE);
    w.open();
    let actions = [
        ServiceAction::SetTtl(30),
        ServiceAction::Read(vec![1, 2]),
        ServiceAction::Delete(vec![3]),
        ServiceAction::Screenshot(vec![4]),
        ServiceAction::FlushHistory,
        ServiceAction::Typing(e2e::SendMessageAction::SendMessageTypingAction(
            t::SendMessageTypingAction {},
        )),
    ];
    for a in &actions {
        w.feed(Who::A, Event::Command(Command::Service(a.clone())));
    }
    let full = Outgoing {
        random_id: 99,
        text: "bold reply".into(),
        entities: vec![e2e::MessageEntity::Bold(t::MessageEntityBold {
            offset: 0,
            length: 4,
        })],
        media: None,
        reply_to_random_id: Some(5),
        ttl: 10,
        silent: true,
        no_webpage: true,
        via_bot_name: Some("bot".into()),
        grouped_id: Some(77),
    };
    w.feed(Who::A, Event::Command(Command::Send(Box::new(full))));
    w.run_until(|w| w.b.texts().len() == 1);
    let got: Vec<e2e::DecryptedMessageAction> =
        w.b.events
            .iter()
            .filter_map(|e| match e {
                AppEvent::Service { action, .. } => Some(action.clone()),
                _ => None,
            })
            .collect();
    // Deletions arrive as their own event; the rest as service actions, in order.
    assert_eq!(got.len(), actions.len() - 1, "{got:?}");
    assert!(w.b.events.contains(&AppEvent::MessagesDeleted {
        random_ids: vec![3]
    }));
    assert!(
        matches!(got[0], e2e::DecryptedMessageAction::SetMessageTTL(ref x) if x.ttl_seconds == 30)
    );
    assert!(
        matches!(got[1], e2e::DecryptedMessageAction::ReadMessages(ref x) if x.random_ids == [1, 2])
    );
    assert!(matches!(
        got[2],
        e2e::DecryptedMessageAction::ScreenshotMessages(_)
    ));
    assert!(matches!(
        got[3],
        e2e::DecryptedMessageAction::FlushHistory(_)
    ));
    assert!(matches!(got[4], e2e::DecryptedMessageAction::Typing(_)));
    let m =
        w.b.events
            .iter()
            .find_map(|e| match e {
                AppEvent::Message { message, .. } => Some(message.clone()),
                _ => None,
            })
            .unwrap();
    let e2e::DecryptedMessage::DecryptedMessage73(m) = *m else {
        panic!()
    };
    assert_eq!(
        (
            m.random_id,
            m.reply_to_random_id,
            m.ttl,
            m.silent,
            m.no_webpage
        ),
        (99, Some(5), 10, true, true)
    );
    assert_eq!(
        (
            m.via_bot_name.as_deref(),
            m.grouped_id,
            m.entities.map(|e| e.len())
        ),
        (Some("bot"), Some(77), Some(1))
    );
}

#[test]
fn messages_sent_before_the_key_is_agreed_go_out_after() {
    let mut w = World::new(51, Faults::NONE);
    let actions = w.request_only();
    w.send_text(Who::A, "early bird");
    w.feed_actions(Who::A, actions);
    w.run_until(|w| w.b.texts().len() == 1);
    assert_eq!(w.b.texts(), ["early bird"]);
}
