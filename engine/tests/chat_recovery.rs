//! Restart and retry windows of the protocol core, each reproduced in the two-party harness:
//! the Noop owed after switching to a new key early, a repeated acceptEncryption the server
//! refuses, and the old key going as soon as the CommitKey is processed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod harness;

use harness::{Faults, Who, World, server_date};
use secretchat_engine::crypto::Side;
use secretchat_engine::protocol::chat::{Call, Command, Event};

fn fingerprint(w: &World, who: Who) -> i64 {
    let p = match who {
        Who::A => &w.a,
        Who::B => &w.b,
    };
    p.core().status(w.now).key_fingerprint.unwrap()
}

fn wire_fingerprint(wire: &[u8]) -> i64 {
    i64::from_le_bytes(wire[..8].try_into().unwrap())
}

/// B accepted A's re-key and switched on a message under the new key before A's CommitKey
/// arrived; it owes A a Noop when the CommitKey comes (pfs.md). A restart in that window must
/// not forget it.
#[test]
fn the_noop_owed_after_an_early_switch_survives_a_restart() {
    let mut w = World::new(201, Faults::NONE);
    w.open();
    w.send_text(Who::A, "warm");
    w.run_until(|w| w.b.texts() == ["warm"]);
    w.run_until(World::settled);
    let old = fingerprint(&w, Who::A);
    w.feed(Who::A, Event::Command(Command::Rekey));
    // A switches when it sends CommitKey (under the old key): from then on every A → B
    // message under the old key is lost — the CommitKey and its resends.
    w.run_until(|w| fingerprint(w, Who::A) != old);
    w.tamper = Some(Box::new(move |to, wire| {
        (to == Who::A || wire_fingerprint(&wire) != old).then_some(wire)
    }));
    w.send_text(Who::A, "under the new key");
    // B switches early on it (a hole where the CommitKey was).
    w.run_until(|w| fingerprint(w, Who::B) != old);
    assert_eq!(w.b.core().status(w.now).holes.len(), 1);
    w.restart(Who::B);
    let mark = w.strict.log.len();
    w.tamper = None;
    w.run_until(|w| w.b.texts() == ["warm", "under the new key"]);
    w.run_until(World::settled);
    assert_eq!(
        w.strict.count_since(mark, Side::Participant, "noop"),
        1,
        "B answers the CommitKey with the Noop it owed: {:?}",
        &w.strict.log[mark..]
    );
    assert_eq!(fingerprint(&w, Who::A), fingerprint(&w, Who::B));
    assert!(!w.a.core().status(w.now).rekeying);
}

/// A message that arrives past a hole waits in the queue (and in the store) until the hole is
/// filled; it is delivered with the date of its own envelope, not the date of the message that
/// filled the hole — also when the receiver restarts in between.
#[test]
fn a_message_held_behind_a_hole_keeps_its_own_date_across_a_restart() {
    let mut w = World::new(203, Faults::NONE);
    w.open();
    w.run_until(World::settled);
    let mut first = true;
    w.tamper = Some(Box::new(move |to, wire| {
        let lose = to == Who::B && std::mem::take(&mut first);
        (!lose).then_some(wire)
    }));
    w.send_text(Who::A, "lost first");
    w.send_text(Who::A, "held");
    w.run_until(|w| !w.b.core().status(w.now).holes.is_empty());
    let held_at = server_date(w.now);
    // Every copy towards B is lost for a while; B restarts meanwhile.
    w.tamper = Some(Box::new(|to, wire| (to == Who::A).then_some(wire)));
    w.restart(Who::B);
    w.run_to(w.now + 5_000);
    w.tamper = None;
    w.run_until(|w| w.b.texts() == ["lost first", "held"]);
    let dated = w.b.dated();
    assert_eq!(dated[1], ("held".to_owned(), held_at), "{dated:?}");
    assert!(
        dated[0].1 >= held_at + 5,
        "the lost one came later: {dated:?}"
    );
}

/// B's acceptEncryption went through but its answer was lost; B restarts and asks again; the
/// server refuses the repeat (ENCRYPTION_ALREADY_ACCEPTED). B holds the key: it is ready.
#[test]
fn a_repeated_accept_after_a_restart_is_success() {
    let mut w = World::new(202, Faults::NONE);
    w.lose_accept_answer = true;
    let actions = w.request_only();
    w.feed_actions(Who::A, actions);
    w.run_until(|w| {
        w.b.calls
            .iter()
            .any(|c| matches!(c, Call::AcceptEncryption(_)))
    });
    assert!(!w.b.core().is_ready());
    w.restart(Who::B);
    w.run_until(|w| w.a.core().is_ready() && w.b.core().is_ready());
    assert_eq!(
        w.b.calls
            .iter()
            .filter(|c| matches!(c, Call::AcceptEncryption(_)))
            .count(),
        2
    );
    assert!(w.b.closed_reason().is_none());
    w.send_text(Who::A, "hello");
    w.send_text(Who::B, "hi");
    w.run_until(|w| w.a.texts() == ["hi"] && w.b.texts() == ["hello"]);
}

/// The accepting side drops the old key when it processes the CommitKey: every message the
/// initiator sent under it came before (pfs.md: "no gaps in received messages up to the
/// switch"), so nothing waits for the initiator's next message.
#[test]
fn the_acceptor_drops_the_old_key_on_commit() {
    let mut w = World::new(203, Faults::NONE);
    w.open();
    let old = fingerprint(&w, Who::A);
    w.feed(Who::A, Event::Command(Command::Rekey));
    w.run_until(|w| fingerprint(w, Who::B) != old);
    let b = w.b.core().status(w.now);
    assert_eq!(b.retained_keys, 0, "{b:?}");
    assert!(!b.rekeying);
    // A keeps its old key until B's Noop (under the new key) arrives.
    assert_eq!(w.a.core().status(w.now).retained_keys, 1);
    w.run_until(World::settled);
    assert_eq!(w.a.core().status(w.now).retained_keys, 0);
}

/// A deleted unacknowledged message is replaced by a self-delete under the key that sealed it
/// (seq_no.md). When that key is already gone the stored bytes stay: A sent a message after
/// its AcceptKey (still under the old key), the message was lost, and A dropped the old key on
/// B's CommitKey. A replacement under the new key would sit before A's switch, where a
/// receiver takes it as the switch; instead B gets the original from the resend (B keeps the
/// old key for that hole), then the delete.
#[test]
fn deleting_a_message_whose_key_is_gone_keeps_its_bytes() {
    use secretchat_engine::protocol::chat::{AppEvent, Outgoing, ServiceAction};
    let mut w = World::new(204, Faults::NONE);
    w.open();
    w.run_until(World::settled);
    let old = fingerprint(&w, Who::A);
    w.feed(Who::B, Event::Command(Command::Rekey));
    w.run_until(|w| w.strict.count_since(0, Side::Originator, "accept_key") == 1);
    w.feed(
        Who::A,
        Event::Command(Command::Send(Box::new(Outgoing::text(4242, "doomed")))),
    );
    let doomed = w.a.sent.last().unwrap().clone();
    assert_eq!(i64::from_le_bytes(doomed[..8].try_into().unwrap()), old);
    // Every copy of it is lost until A has switched and deleted it.
    let lost = doomed.clone();
    w.tamper = Some(Box::new(move |_, wire| (wire != lost).then_some(wire)));
    w.run_until(|w| fingerprint(w, Who::A) != old);
    let a = w.a.core().status(w.now);
    assert_eq!(a.retained_keys, 0, "A dropped the old key on the CommitKey");
    assert!(a.unacknowledged >= 1);
    w.feed(
        Who::A,
        Event::Command(Command::Service(ServiceAction::Delete(vec![4242]))),
    );
    w.tamper = None;
    w.run_until(|w| {
        w.b.events
            .iter()
            .any(|e| matches!(e, AppEvent::MessagesDeleted { random_ids } if random_ids == &[4242]))
    });
    w.run_until(World::settled);
    assert_eq!(w.b.texts(), ["doomed"]);
    // B received the original bytes (a resend), not a replacement.
    assert!(w.a.sent.iter().filter(|s| **s == doomed).count() >= 2);
}
