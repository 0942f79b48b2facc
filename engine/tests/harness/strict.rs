//! A strict receiver with TDLib's rules (td/telegram/SecretChatActor.cpp: `decrypt`,
//! `do_inbound_message_encrypted`, `check_seq_no`, the Resend handling in
//! `do_inbound_message_decrypted_unchecked`), applied to every wire message a party sends, at
//! the moment it sends it. It is the test tree's own code: the MTProto 2.0 opener is written
//! from the spec (end-to-end.md) beside `seal.rs`, not the engine's.
//!
//! A violation panics at once, naming the rule — what TDLib would answer with an error or by
//! closing the chat:
//! - the wire names a key the receiver does not hold ("Unknown auth_key_id");
//! - MTProto 1.0 under an envelope layer ≥ 73 ("MTProto 1.0 encryption is forbidden for this
//!   layer"), and 1.0 at all (our own rule: send 2.0 always);
//! - anything but a `decryptedMessageLayer`, `random_bytes` under 15 bytes, a negative or
//!   wrong-parity sequence number ("Bad seq_no parity");
//! - `in_seq_no` going down ("in_seq_no is not monotonic"), or acknowledging more than the
//!   receiver sent ("in_seq_no is bigger than seq_no_state_.my_out_seq_no");
//! - the envelope layer going down ("his_layer is not monotonic");
//! - a skipped out_seq_no, or a resent one whose sequence numbers, layer or key differ from the
//!   original (only a self-delete may replace the contents, seq_no.md);
//! - a new message under a key its sender had already switched away from (the receiver has
//!   dropped it: TDLib keeps only the current key and the one before);
//! - a Resend for more than 1000 messages (`MAX_RESEND_COUNT`), a reversed range, or one for
//!   messages the receiver never sent ("Can't resend query").

use std::collections::{BTreeMap, HashMap};

use secretchat_engine::crypto::message;
use secretchat_engine::crypto::{AuthKey, Side, ige};
use secretchat_schema::Deserialize;
use secretchat_schema::e2e::{enums as e2e, types as e2e_t};
use sha2::{Digest, Sha256};

/// TDLib's `SecretChatActor::MAX_RESEND_COUNT`.
pub const MAX_RESEND_COUNT: u32 = 1000;
/// `SecretChatLayer::Mtproto2`.
const MTPROTO2_LAYER: i32 = 73;

/// One copy of a message as first sent.
#[derive(Debug, Clone)]
struct Original {
    wire: Vec<u8>,
    in_seq_no: i32,
    layer: i32,
}

/// What one sender has sent so far.
#[derive(Debug, Default)]
struct Stream {
    /// By raw out_seq_no.
    sent: BTreeMap<u32, Original>,
    /// Raw in_seq_no and layer of the newest message.
    last_in: u32,
    last_layer: i32,
    /// The key of its newest message, and the keys it switched away from: a receiver drops an
    /// old key once a message under the next one is in, so a later message may not use it.
    key: Option<i64>,
    retired: Vec<i64>,
}

/// One first send, as the log keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sent {
    /// Who sent it.
    pub sender: Side,
    /// What it was ([`kind`]).
    pub kind: &'static str,
    /// Its raw in_seq_no: how many of the other side's messages it acknowledges.
    pub raw_in: u32,
}

impl Stream {
    /// How many distinct messages this sender has sent (its next raw out_seq_no).
    fn next_out(&self) -> u32 {
        self.sent.last_key_value().map_or(0, |(k, _)| k + 1)
    }
}

/// The strict receivers for both directions of one chat.
#[derive(Default)]
pub struct StrictReceiver {
    keys: HashMap<i64, AuthKey>,
    streams: [Stream; 2],
    /// Only one direction is watched (the other side is a test's hand-driven peer): the
    /// `in_seq_no` bound against the receiver's own count is not checked.
    one_way: bool,
    /// Messages checked (first sends and resends).
    pub checked: usize,
    /// Of which resends.
    pub resends: usize,
    /// Every first send, in order.
    pub log: Vec<Sent>,
}

fn index(sender: Side) -> usize {
    match sender {
        Side::Originator => 0,
        Side::Participant => 1,
    }
}

/// `(in x, out x)` of the messages `sender` sends (seq_no.md).
fn parity(sender: Side) -> (i32, i32) {
    match sender {
        Side::Originator => (0, 1),
        Side::Participant => (1, 0),
    }
}

impl StrictReceiver {
    /// Receivers for both directions.
    pub fn new() -> Self {
        Self::default()
    }

    /// A receiver for one direction only, with `key` already known.
    pub fn one_way(key: &AuthKey) -> Self {
        let mut s = Self {
            one_way: true,
            ..Self::default()
        };
        s.learn(key);
        s
    }

    /// A key either party holds (from the DH results the harness ran).
    pub fn learn(&mut self, key: &AuthKey) {
        self.keys.insert(key.fingerprint(), key.clone());
    }

    /// The key with fingerprint `fp`, if either party has held it.
    pub fn key(&self, fp: i64) -> Option<&AuthKey> {
        self.keys.get(&fp)
    }

    /// Checks one message `sender` is sending; panics on a violation.
    pub fn observe(&mut self, sender: Side, wire: &[u8]) {
        let fail = |rule: &str| -> ! { panic!("strict receiver ({sender:?} sent): {rule}") };
        let fp = wire
            .get(..8)
            .map(|h| i64::from_le_bytes(h.try_into().unwrap_or_default()));
        let Some(key) = fp.and_then(|fp| self.keys.get(&fp)) else {
            fail("unknown auth_key_id")
        };
        let x = match sender {
            Side::Originator => 0,
            Side::Participant => 8,
        };
        let (payload, v2) = match open_v2(key, x, wire) {
            Some(p) => (p, true),
            None => match message::decrypt_v1(key, wire) {
                Ok(d) => (d.payload, false),
                Err(e) => fail(&format!("does not decrypt: {e:?}")),
            },
        };
        let Ok(e2e::DecryptedMessageLayer::DecryptedMessageLayer(l)) =
            e2e::DecryptedMessageLayer::from_bytes(&payload)
        else {
            fail("not a decryptedMessageLayer")
        };
        if !v2 && l.layer >= MTPROTO2_LAYER {
            fail("MTProto 1.0 encryption is forbidden for this layer");
        }
        if !v2 {
            fail("MTProto 1.0 sent (we send 2.0 always)");
        }
        if l.random_bytes.len() < 15 {
            fail("random_bytes shorter than 15 bytes");
        }
        let (in_x, out_x) = parity(sender);
        if l.in_seq_no < 0
            || l.out_seq_no < 0
            || l.in_seq_no % 2 != in_x
            || l.out_seq_no % 2 != out_x
        {
            fail("bad seq_no parity");
        }
        let (raw_in, raw_out) = ((l.in_seq_no / 2) as u32, (l.out_seq_no / 2) as u32);
        let other_sent = self.streams[index(sender.peer())].next_out();
        let one_way = self.one_way;
        let stream = &mut self.streams[index(sender)];
        self.checked += 1;
        let next = stream.next_out();
        if raw_out < next {
            self.resends += 1;
            let Some(first) = stream.sent.get(&raw_out) else {
                fail("a resend of a message never sent")
            };
            if first.wire != wire {
                if first.wire.get(..8) != wire.get(..8) {
                    fail("a resend under another key than the original");
                }
                if first.in_seq_no != l.in_seq_no || first.layer != l.layer {
                    fail("a resend with other sequence numbers or layer than the original");
                }
                if !is_self_delete(&l.message) {
                    fail("a resend with other contents that is not a self-delete");
                }
                // The replacement is what later resends repeat.
                if let Some(o) = stream.sent.get_mut(&raw_out) {
                    o.wire = wire.to_vec();
                }
            }
            return;
        }
        if raw_out > next {
            fail(&format!(
                "skipped out_seq_no: raw {raw_out}, expected {next}"
            ));
        }
        if raw_in < stream.last_in {
            fail("in_seq_no is not monotonic");
        }
        if !one_way && raw_in > other_sent {
            fail("in_seq_no is bigger than my_out_seq_no");
        }
        if l.layer < stream.last_layer {
            fail("his_layer is not monotonic");
        }
        if let Some(fp) = fp {
            if stream.retired.contains(&fp) {
                fail("a new message under a key the sender had switched away from");
            }
            if let Some(old) = stream.key.filter(|k| *k != fp) {
                stream.retired.push(old);
            }
            stream.key = Some(fp);
        }
        if let Some(r) = resend_range(&l.message) {
            let (start, end) = (r.start_seq_no, r.end_seq_no);
            let peer_out_x = parity(sender.peer()).1;
            if start < 0 || end < start || start % 2 != peer_out_x || end % 2 != peer_out_x {
                fail("a Resend with a bad range");
            }
            if (start / 2) as u32 + MAX_RESEND_COUNT < (end / 2) as u32 {
                fail("Can't resend too many messages");
            }
            if !one_way && (end / 2) as u32 >= other_sent {
                fail("a Resend for messages the receiver never sent");
            }
        }
        self.log.push(Sent {
            sender,
            kind: kind(&l.message),
            raw_in,
        });
        stream.last_in = raw_in;
        stream.last_layer = l.layer;
        stream.sent.insert(
            raw_out,
            Original {
                wire: wire.to_vec(),
                in_seq_no: l.in_seq_no,
                layer: l.layer,
            },
        );
    }
}

impl StrictReceiver {
    /// How many first sends of `kind` `sender` made from entry `from` of the log on.
    pub fn count_since(&self, from: usize, sender: Side, kind: &str) -> usize {
        self.log
            .iter()
            .skip(from)
            .filter(|s| s.sender == sender && s.kind == kind)
            .count()
    }
}

/// A short name for what a message is: `message`, or the service action (`noop`, `resend`,
/// `notify_layer`, `request_key`, `accept_key`, `commit_key`, `abort_key`, `other_service`).
pub fn kind(m: &e2e::DecryptedMessage) -> &'static str {
    use e2e::DecryptedMessageAction as A;
    match action(m) {
        None => "message",
        Some(A::Noop(_)) => "noop",
        Some(A::Resend(_)) => "resend",
        Some(A::NotifyLayer(_)) => "notify_layer",
        Some(A::RequestKey(_)) => "request_key",
        Some(A::AcceptKey(_)) => "accept_key",
        Some(A::CommitKey(_)) => "commit_key",
        Some(A::AbortKey(_)) => "abort_key",
        Some(_) => "other_service",
    }
}

fn action(m: &e2e::DecryptedMessage) -> Option<&e2e::DecryptedMessageAction> {
    match m {
        e2e::DecryptedMessage::Service8(s) => Some(&s.action),
        e2e::DecryptedMessage::Service23(s) => Some(&s.action),
        _ => None,
    }
}

fn resend_range(m: &e2e::DecryptedMessage) -> Option<&e2e_t::DecryptedMessageActionResend> {
    match action(m)? {
        e2e::DecryptedMessageAction::Resend(r) => Some(r),
        _ => None,
    }
}

fn is_self_delete(m: &e2e::DecryptedMessage) -> bool {
    matches!(
        action(m),
        Some(e2e::DecryptedMessageAction::DeleteMessages(_))
    )
}

/// MTProto 2.0 opening from the spec (end-to-end.md, "MTProto 2.0"): the payload when the
/// msg_key, the length prefix and the padding (12..=1024 bytes, to a 16-byte block) are right.
pub fn open_v2(key: &AuthKey, x: usize, wire: &[u8]) -> Option<Vec<u8>> {
    let k = key.bytes();
    let msg_key = wire.get(8..24)?;
    let mut body = wire.get(24..)?.to_vec();
    if body.is_empty() || !body.len().is_multiple_of(16) {
        return None;
    }
    let (aes_key, aes_iv) = super::seal::kdf_v2(key, x, msg_key);
    ige::decrypt(&aes_key, &aes_iv, &mut body).ok()?;
    let large = Sha256::new()
        .chain_update(&k[88 + x..120 + x])
        .chain_update(&body)
        .finalize();
    if &large[8..24] != msg_key {
        return None;
    }
    let len = u32::from_le_bytes(body.get(..4)?.try_into().ok()?) as usize;
    let pad = body.len().checked_sub(4 + len)?;
    if !(12..=1024).contains(&pad) || !len.is_multiple_of(4) {
        return None;
    }
    Some(body[4..4 + len].to_vec())
}
