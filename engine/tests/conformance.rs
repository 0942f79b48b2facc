//! What a strict TDLib peer receives from us, scenario by scenario: every wire message either
//! side sends goes through the harness's strict receiver (`harness/strict.rs`, TDLib's
//! receiver rules), which panics at the first message TDLib would refuse. Each test names its
//! scenario and checks that the traffic it meant to produce (resends, re-key messages, files,
//! restarts) really went through the receiver.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod harness;

use harness::{Faults, Who, World};
use secretchat_engine::crypto::Side;
use secretchat_engine::protocol::chat::{AppEvent, Command, Event, Outgoing};
use secretchat_schema::api::{enums as api, types as api_types};
use secretchat_schema::e2e::{enums as e2e, types as e2e_t};

fn count(w: &World, sender: Side, kind: &str) -> usize {
    w.strict.count_since(0, sender, kind)
}

#[test]
fn handshake_and_first_messages() {
    let mut w = World::new(101, Faults::NONE);
    // Both sides queue messages before the key is agreed.
    let actions = w.request_only();
    w.feed_actions(Who::A, actions);
    w.send_text(Who::A, "queued before the key");
    w.run_until(|w| w.b.core.as_ref().is_some_and(|c| c.is_ready()));
    w.run_until(|w| w.a.core.as_ref().is_some_and(|c| c.is_ready()));
    w.send_text(Who::B, "first from B");
    w.run_until(|w| w.b.texts().len() == 1 && w.a.texts().len() == 1);
    w.run_until(World::settled);
    // Each side's first message is its NotifyLayer; every message was 2.0.
    let first = |side| *w.strict.log.iter().find(|s| s.sender == side).unwrap();
    assert_eq!(first(Side::Originator).kind, "notify_layer");
    assert_eq!(first(Side::Participant).kind, "notify_layer");
    // B's NotifyLayer reached A before A's key was computed (the server's update to A comes
    // after B's answer): A processed it before announcing its own layer, so A's NotifyLayer
    // already acknowledges it.
    assert_eq!(first(Side::Originator).raw_in, 1, "{:?}", w.strict.log);
    assert!(w.strict.checked >= 4, "{}", w.strict.checked);
}

#[test]
fn a_peer_speaking_layer_46() {
    // A behaves as a layer-46 client: it still encrypts with 2.0, and B's constructors follow
    // A's layer under B's own envelope layer.
    let mut w = World::new(102, Faults::NONE);
    w.config.layer = 46;
    w.open();
    w.send_text(Who::A, "from 46");
    w.send_text(Who::B, "to 46");
    w.run_until(|w| w.a.texts() == ["to 46"] && w.b.texts() == ["from 46"]);
    assert_eq!(w.a.core().status(w.now).negotiated_layer, 46);
    assert!(w.strict.checked >= 4);
}

/// `n` texts each way through the harsh channel, `gap` ms apart, with `between(w, i)` after
/// each pair; then everything delivered and the chat settled.
fn harsh_traffic(w: &mut World, n: usize, gap: u64, mut between: impl FnMut(&mut World, usize)) {
    w.open();
    w.faults = Faults::HARSH;
    for i in 0..n {
        w.send_text(Who::A, &format!("a{i}"));
        w.send_text(Who::B, &format!("b{i}"));
        let t = w.now + gap;
        w.run_to(t);
        between(w, i);
    }
    w.run_until(|w| w.a.texts().len() == n && w.b.texts().len() == n);
    w.faults = Faults::NONE;
    w.run_until(World::settled);
}

#[test]
fn resends_after_holes() {
    let mut w = World::new(103, Faults::NONE);
    harsh_traffic(&mut w, 400, 5, |_, _| {});
    for side in [Side::Originator, Side::Participant] {
        assert!(count(&w, side, "resend") > 0, "{side:?} asked for no hole");
    }
    assert!(w.strict.resends > 0, "no message was sent twice");
}

#[test]
fn rekeys() {
    let mut w = World::new(104, Faults::NONE);
    w.open();
    // Both sides start one (concurrent requests), then the automatic ones every ~100 messages.
    w.feed(Who::A, Event::Command(Command::Rekey));
    w.feed(Who::B, Event::Command(Command::Rekey));
    for i in 0..300 {
        w.send_text(Who::A, &format!("a{i}"));
        let t = w.now + 3;
        w.run_to(t);
    }
    w.run_until(|w| w.b.texts().len() == 300);
    w.run_until(World::settled);
    let all = |kind| count(&w, Side::Originator, kind) + count(&w, Side::Participant, kind);
    assert!(all("request_key") >= 3, "{:?}", w.strict.log);
    assert!(all("accept_key") >= 2 && all("commit_key") >= 2);
    assert!(w.a.core().status(w.now).rekeys >= 2);
}

#[test]
fn files() {
    let mut w = World::new(105, Faults::NONE);
    w.open();
    let media = e2e::DecryptedMessageMedia::Document143(e2e_t::DecryptedMessageMediaDocument143 {
        thumb: Vec::new(),
        thumb_w: 0,
        thumb_h: 0,
        mime_type: "application/octet-stream".into(),
        size: 1 << 20,
        key: vec![1; 32],
        iv: vec![2; 32],
        attributes: Vec::new(),
        caption: "a file".into(),
    });
    let file = api::InputEncryptedFile::Uploaded(api_types::InputEncryptedFileUploaded {
        id: 9,
        parts: 2,
        md5_checksum: String::new(),
        key_fingerprint: 7,
    });
    let mut m = Outgoing::text(77, "a file");
    m.media = Some((media, file));
    w.feed(Who::A, Event::Command(Command::Send(Box::new(m))));
    w.run_until(|w| w.b.texts() == ["a file"]);
    assert!(w.b.events.iter().any(|e| matches!(
        e,
        AppEvent::Message { message, .. }
            if matches!(message.as_ref(), e2e::DecryptedMessage::DecryptedMessage73(m) if m.media.is_some())
    )));
    assert!(count(&w, Side::Originator, "message") >= 1);
}

#[test]
fn restarts() {
    let mut w = World::new(106, Faults::NONE);
    harsh_traffic(&mut w, 300, 7, |w, i| {
        if i % 37 == 0 {
            w.restart(Who::A);
        }
        if i % 53 == 0 {
            w.restart(Who::B);
        }
    });
    assert!(w.a.restarts >= 8 && w.b.restarts >= 5);
    assert!(w.strict.resends > 0);
}
