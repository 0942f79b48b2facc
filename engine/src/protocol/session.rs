//! Sealing and opening messages of one chat: sequence numbers ([`super::seq_no`]) + layer
//! envelope and MTProto version ([`super::layer`]) + encryption ([`crate::crypto::message`]).
//!
//! Randomness (padding, envelope `random_bytes`) comes from the caller's `RngCore`; nothing here
//! reads the OS RNG or the clock. [`Session::open`] changes no state when it fails.

use rand_core::RngCore;
use secretchat_schema::e2e::{enums, types};
use secretchat_schema::{DecodeError, EncodeError, Serialize};

use super::layer::{LayerState, Mtproto1Refused, Observed, Payload};
use super::seq_no::{Received, SeqError, SeqNo};
use crate::crypto::message::{self, Version};
use crate::crypto::{AuthKey, CryptoError, Side};

/// Why a message could not be sealed or opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// Decryption or encryption failed.
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    /// The plaintext is not a valid end-to-end TL object.
    #[error("malformed payload: {0}")]
    Decode(#[from] DecodeError),
    /// The message could not be serialized.
    #[error(transparent)]
    Encode(#[from] EncodeError),
    /// A sequence-number violation: the chat must be closed.
    #[error(transparent)]
    Seq(#[from] SeqError),
    /// A message without the `decryptedMessageLayer` envelope carries no sequence numbers; only
    /// layer-8 style NotifyLayer service messages are accepted that way.
    #[error("message without a layer envelope")]
    NoEnvelope,
    /// An MTProto 1.0 message where only 2.0 is allowed (see [`LayerState::mtproto1_allowed`]).
    #[error(transparent)]
    Mtproto1(#[from] Mtproto1Refused),
    /// A message under a superseded key at or after the position where the peer's messages
    /// under the current key begin: the peer had switched by then.
    #[error("message at position {position} under an old key; the peer switched at {switch}")]
    OldKeyAfterSwitch {
        /// The message's raw position (the peer's out_seq_no).
        position: u32,
        /// Where the peer's messages under the current key begin.
        switch: u32,
    },
    /// A message arrived before the key was agreed and the queue for such messages is full
    /// ([`MAX_EARLY`](crate::protocol::chat::MAX_EARLY) messages or
    /// [`MAX_EARLY_BYTES`](crate::protocol::chat::MAX_EARLY_BYTES)).
    #[error("too many messages before the key is agreed")]
    EarlyFull,
    /// A message was to be sealed under a key this session no longer holds.
    #[error("the key is no longer held")]
    KeyNotHeld,
}

/// Most superseded keys kept while holes from before a switch are open.
pub const MAX_OLD_KEYS: usize = 4;

/// A sealed outgoing message: store `wire` before sending it (resends reuse these bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    /// The encrypted bytes for `messages.sendEncrypted*`.
    pub wire: Vec<u8>,
    /// The wire in_seq_no it carries.
    pub in_seq_no: i32,
    /// The wire out_seq_no it carries.
    pub out_seq_no: i32,
    /// MTProto version used.
    pub version: Version,
}

/// An opened incoming message, not yet accepted.
#[derive(Debug, Clone, PartialEq)]
pub struct Opened {
    /// The decoded payload.
    pub payload: Payload,
    /// Where it falls in the sequence (`None` for an envelope-less NotifyLayer).
    pub received: Option<Received>,
    /// MTProto version it came with.
    pub version: Version,
    /// Layer news from it (already applied to the session).
    pub layer_news: Vec<Observed>,
}

/// The sealing/opening state of one chat.
#[derive(Debug)]
pub struct Session {
    key: AuthKey,
    /// Keys before the last re-keys (newest last), kept for late messages until they may be
    /// discarded; at most [`MAX_OLD_KEYS`].
    previous: Vec<AuthKey>,
    side: Side,
    seq: SeqNo,
    layer: LayerState,
}

impl Session {
    /// A new session for our `side` of a chat with `key`.
    pub fn new(key: AuthKey, side: Side) -> Self {
        Self {
            key,
            previous: Vec::new(),
            side,
            seq: SeqNo::new(side),
            layer: LayerState::default(),
        }
    }

    /// The same session speaking layer `ours` (below [`OUR_LAYER`](super::layer::OUR_LAYER): as an older
    /// client, for interoperability tests and mixed-layer simulations).
    pub fn with_our_layer(mut self, ours: i32) -> Self {
        let (peer, v2_from) = self.layer.parts();
        self.layer = LayerState::from_parts(peer, v2_from, ours);
        self
    }

    /// Rebuilds a session from stored parts.
    pub fn from_parts(
        key: AuthKey,
        previous: Vec<AuthKey>,
        side: Side,
        seq: SeqNo,
        layer: LayerState,
    ) -> Self {
        Self {
            key,
            previous,
            side,
            seq,
            layer,
        }
    }

    /// The key in use.
    pub fn key(&self) -> &AuthKey {
        &self.key
    }

    /// The previous keys still kept for late messages (oldest first).
    pub fn previous_keys(&self) -> &[AuthKey] {
        &self.previous
    }

    /// Our side of the chat.
    pub fn side(&self) -> Side {
        self.side
    }

    /// Switches to `key` for sending and receiving; the current key joins the previous ones
    /// (beyond [`MAX_OLD_KEYS`] the oldest is dropped and zeroized).
    /// Returns whether the oldest key had to be dropped to make room.
    pub fn install(&mut self, key: AuthKey) -> bool {
        self.previous.push(std::mem::replace(&mut self.key, key));
        if self.previous.len() > MAX_OLD_KEYS {
            self.previous.remove(0);
            return true;
        }
        false
    }

    /// Drops (and zeroizes) the `n` oldest previous keys.
    pub fn discard_oldest(&mut self, n: usize) {
        self.previous.drain(..n.min(self.previous.len()));
    }

    /// The sequence-number state.
    pub fn seq(&self) -> &SeqNo {
        &self.seq
    }

    /// The layer state.
    pub fn layer(&self) -> &LayerState {
        &self.layer
    }

    /// Wraps `message` in a `decryptedMessageLayer` (our layer, fresh sequence numbers) and
    /// encrypts it with the version the layer rules pick.
    ///
    /// # Errors
    /// [`SessionError::Seq`] on counter overflow, [`SessionError::Encode`],
    /// [`SessionError::Crypto`]; on error no sequence number is used up.
    pub fn seal(
        &mut self,
        message: enums::DecryptedMessage,
        rng: &mut impl RngCore,
    ) -> Result<Sealed, SessionError> {
        let mut seq = self.seq;
        let (in_seq_no, out_seq_no) = seq.next_outgoing()?;
        let sealed = self.seal_with(&self.key, message, in_seq_no, out_seq_no, rng)?;
        self.seq = seq;
        Ok(sealed)
    }

    /// Seals `message` with given (already assigned) wire sequence numbers, without counting a
    /// new message: for replacing the stored copy of a message deleted before it was
    /// acknowledged (seq_no.md, "Deleting unacknowledged messages"). With
    /// `original_fingerprint` the replacement goes out under the key that sealed the original:
    /// a peer refuses an old-key message after our switch, and would take a new-key message
    /// before it as the switch. `None` seals under the current key.
    ///
    /// # Errors
    /// [`SessionError::KeyNotHeld`] when that key is gone, [`SessionError::Encode`],
    /// [`SessionError::Crypto`].
    pub fn seal_at(
        &self,
        message: enums::DecryptedMessage,
        in_seq_no: i32,
        out_seq_no: i32,
        original_fingerprint: Option<i64>,
        rng: &mut impl RngCore,
    ) -> Result<Sealed, SessionError> {
        let key = match original_fingerprint {
            None => &self.key,
            Some(fp) => std::iter::once(&self.key)
                .chain(&self.previous)
                .find(|k| k.has_fingerprint(fp))
                .ok_or(SessionError::KeyNotHeld)?,
        };
        self.seal_with(key, message, in_seq_no, out_seq_no, rng)
    }

    fn seal_with(
        &self,
        key: &AuthKey,
        message: enums::DecryptedMessage,
        in_seq_no: i32,
        out_seq_no: i32,
        rng: &mut impl RngCore,
    ) -> Result<Sealed, SessionError> {
        let mut random_bytes = vec![0u8; 15 + (rng.next_u32() % 16) as usize];
        rng.fill_bytes(&mut random_bytes);
        let envelope = types::DecryptedMessageLayer {
            random_bytes,
            layer: self.layer.ours(),
            in_seq_no,
            out_seq_no,
            message,
        };
        let payload = envelope.to_bytes()?;
        let version = self.layer.outgoing_version();
        let pad = message::random_padding(payload.len(), version, rng);
        let wire = match version {
            Version::V2 => message::encrypt_v2(key, self.side, &payload, &pad)?,
            Version::V1 => message::encrypt_v1(key, &payload, &pad)?,
        };
        Ok(Sealed {
            wire,
            in_seq_no,
            out_seq_no,
            version,
        })
    }

    /// Decrypts (2.0, then 1.0 while an old peer may still send it), decodes and classifies a
    /// received message. Layer news is applied; the sequence position is not — call
    /// [`Session::accept`] after processing an in-order message. `old_keys_before` is where the
    /// peer's messages under the current key begin, as far as known (the earliest position
    /// seen under it, or the position after a processed CommitKey): a message under a
    /// superseded key at or after it is refused (the peer had switched by then).
    ///
    /// # Errors
    /// [`SessionError::Crypto`] (forged, wrong key, tampered), [`SessionError::Decode`],
    /// [`SessionError::Seq`] (must close the chat), [`SessionError::NoEnvelope`],
    /// [`SessionError::Mtproto1`], [`SessionError::OldKeyAfterSwitch`]. No state changes on
    /// error.
    pub fn open(
        &mut self,
        wire: &[u8],
        old_keys_before: Option<u32>,
    ) -> Result<Opened, SessionError> {
        let peer = self.side.peer();
        let fp = wire_fingerprint(wire);
        let old = self
            .previous
            .iter()
            .find(|k| fp.is_some_and(|fp| k.has_fingerprint(fp) && !self.key.has_fingerprint(fp)));
        let key = old.unwrap_or(&self.key);
        let decrypted = match message::decrypt_v2(key, peer, wire) {
            Ok(d) => d,
            Err(e) if self.layer.try_mtproto1(self.seq.parts().1) => {
                message::decrypt_v1(key, wire).map_err(|_| e)?
            }
            Err(e) => return Err(e.into()),
        };
        let payload = Payload::decode(&decrypted.payload)?;
        let (envelope_layer, out_seq_no) = match &payload {
            Payload::Layered(l) => (Some(l.layer), Some(l.out_seq_no)),
            Payload::Bare(_) if payload.announced_layers().next().is_some() => (None, None),
            Payload::Bare(_) => return Err(SessionError::NoEnvelope),
        };
        // The version and key rules come before the sequence checks: a message they refuse
        // is rejected, and must not close the chat through a sequence error.
        let position = out_seq_no.and_then(|o| self.seq.peer_out_raw(o).ok());
        if decrypted.version == Version::V1 {
            self.layer.mtproto1_allowed(envelope_layer, position)?;
        }
        if let (Some(_), Some(position), Some(switch)) = (old, position, old_keys_before) {
            if position >= switch {
                return Err(SessionError::OldKeyAfterSwitch { position, switch });
            }
        }
        let received = match &payload {
            Payload::Layered(l) => Some(self.seq.classify(l.in_seq_no, l.out_seq_no)?),
            Payload::Bare(_) => None,
        };
        if let (Version::V2, Some(at)) = (decrypted.version, position) {
            self.layer.saw_mtproto2(at);
        }
        let layer_news = payload
            .announced_layers()
            .map(|l| self.layer.observe(l))
            .filter(|o| *o != Observed::Same)
            .collect();
        Ok(Opened {
            payload,
            received,
            version: decrypted.version,
            layer_news,
        })
    }

    /// Counts an in-order message (from [`Received::InOrder`]) as processed.
    ///
    /// # Errors
    /// [`SessionError::Seq`] on overflow.
    pub fn accept(&mut self, peer_in: u32) -> Result<(), SessionError> {
        Ok(self.seq.accept(peer_in)?)
    }
}

/// The key fingerprint a wire message names (its first 8 bytes), if it is long enough.
pub fn wire_fingerprint(wire: &[u8]) -> Option<i64> {
    let head: [u8; 8] = wire.get(..8)?.try_into().ok()?;
    Some(i64::from_le_bytes(head))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::layer::text_message;

    /// A deterministic RngCore for tests.
    struct Counter(u64);
    impl RngCore for Counter {
        fn next_u32(&mut self) -> u32 {
            self.next_u64() as u32
        }
        fn next_u64(&mut self) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            self.0 >> 11
        }
        fn fill_bytes(&mut self, dest: &mut [u8]) {
            dest.iter_mut().for_each(|b| *b = self.next_u64() as u8);
        }
        fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
            self.fill_bytes(dest);
            Ok(())
        }
    }

    fn pair() -> (Session, Session) {
        let key = AuthKey::new([0x42; 256]);
        (
            Session::new(key.clone(), Side::Originator),
            Session::new(key, Side::Participant),
        )
    }

    fn open_in_order(s: &mut Session, wire: &[u8]) -> Opened {
        let o = s.open(wire, None).unwrap();
        let Some(Received::InOrder { peer_in }) = o.received else {
            panic!("{:?}", o.received)
        };
        s.accept(peer_in).unwrap();
        o
    }

    /// What an old (layer < 73) client sends: MTProto 1.0 under its own layer's envelope.
    fn old_client(layer: i32, in_seq_no: i32, out_seq_no: i32, text: &str) -> Vec<u8> {
        let envelope = types::DecryptedMessageLayer {
            random_bytes: vec![7; 15],
            layer,
            in_seq_no,
            out_seq_no,
            message: text_message(46, 1, 0, text.into(), vec![]),
        };
        let payload = envelope.to_bytes().unwrap();
        let pad = vec![0u8; (16 - (payload.len() + 4) % 16) % 16];
        message::encrypt_v1(&AuthKey::new([0x42; 256]), &payload, &pad).unwrap()
    }

    #[test]
    fn sends_2_0_always_and_accepts_1_0_only_from_old_peers_before_their_switch() {
        let (mut a, mut b) = pair();
        let mut rng = Counter(1);
        // A new chat (peer layer assumed 46): still 2.0 out.
        let first = a
            .seal(text_message(46, 1, 0, "hi".into(), vec![]), &mut rng)
            .unwrap();
        assert_eq!(
            (first.version, first.in_seq_no, first.out_seq_no),
            (Version::V2, 0, 1)
        );
        let o = open_in_order(&mut b, &first.wire);
        assert_eq!(o.version, Version::V2);
        // B (the participant) receiving from an old originator: 1.0 under layer 46 at
        // positions before the originator's first 2.0 message (position 0) — none left.
        let late_v1 = old_client(46, 0, 3, "old");
        assert_eq!(
            b.open(&late_v1, None),
            Err(SessionError::Crypto(CryptoError::MsgKeyMismatch)),
            "1.0 is not even tried once everything before the switch is in"
        );
        // A fresh receiver and an old peer: 1.0 under layer 46 is accepted...
        let (_, mut c) = pair();
        let o = open_in_order(&mut c, &old_client(46, 0, 1, "old 0"));
        assert_eq!(o.version, Version::V1);
        // ...but never under a layer ≥ 73 envelope (TDLib's rule), and the state stays.
        let before = *c.seq();
        assert_eq!(
            c.open(&old_client(73, 0, 3, "lying"), None),
            Err(SessionError::Mtproto1(Mtproto1Refused::LayerTooHigh {
                layer: 73
            }))
        );
        assert_eq!(*c.seq(), before);
        // The peer's 2.0 message at position 3 (position 2 is a hole): 1.0 stays possible for
        // position 2 only.
        let mut peer = Session::from_parts(
            AuthKey::new([0x42; 256]),
            Vec::new(),
            Side::Originator,
            SeqNo::from_parts(Side::Originator, 3, 0, 0),
            LayerState::from_parts(144, Some(0), 144),
        );
        let v2 = peer
            .seal(text_message(144, 9, 0, "new".into(), vec![]), &mut rng)
            .unwrap();
        assert!(matches!(
            c.open(&v2.wire, None).unwrap().received,
            Some(Received::Gap { raw_out: 3, .. })
        ));
        assert_eq!(c.layer().parts().1, Some(3));
        assert!(c.open(&old_client(46, 0, 5, "in the hole"), None).is_ok());
        assert_eq!(
            c.open(&old_client(46, 0, 7, "after the switch"), None),
            Err(SessionError::Mtproto1(Mtproto1Refused::AfterSwitch {
                position: 3,
                switch: 3
            }))
        );
    }

    #[test]
    fn old_key_only_before_the_switch() {
        let (mut a, mut b) = pair();
        let mut rng = Counter(5);
        let m0 = a
            .seal(text_message(144, 1, 0, "old key".into(), vec![]), &mut rng)
            .unwrap();
        let m1 = a
            .seal(
                text_message(144, 2, 0, "old key too".into(), vec![]),
                &mut rng,
            )
            .unwrap();
        let new = AuthKey::new([0x43; 256]);
        a.install(new.clone());
        b.install(new);
        let m2 = a
            .seal(text_message(144, 3, 0, "new key".into(), vec![]), &mut rng)
            .unwrap();
        // The peer's first message under the new key was at position 1: position 0 may still
        // come under the old key, position 1 may not.
        assert!(b.open(&m0.wire, Some(1)).is_ok());
        assert_eq!(
            b.open(&m1.wire, Some(1)),
            Err(SessionError::OldKeyAfterSwitch {
                position: 1,
                switch: 1
            })
        );
        assert!(b.open(&m1.wire, Some(2)).is_ok());
        assert!(b.open(&m2.wire, Some(1)).is_ok());
    }

    #[test]
    fn duplicates_gaps_and_untouched_state_on_rejection() {
        let (mut a, mut b) = pair();
        let mut rng = Counter(7);
        let m: Vec<Sealed> = (0..4)
            .map(|i| {
                a.seal(text_message(144, i, 0, format!("m{i}"), vec![]), &mut rng)
                    .unwrap()
            })
            .collect();
        open_in_order(&mut b, &m[0].wire);
        assert_eq!(
            b.open(&m[0].wire, None).unwrap().received,
            Some(Received::Duplicate)
        );
        let gap = b.open(&m[3].wire, None).unwrap().received;
        assert_eq!(
            gap,
            Some(Received::Gap {
                start: 3,
                end: 5,
                raw_out: 3
            })
        );
        let before = *b.seq();
        let mut tampered = m[1].wire.clone();
        tampered[50] ^= 0x80;
        assert!(b.open(&tampered, None).is_err());
        assert_eq!(*b.seq(), before);
        open_in_order(&mut b, &m[1].wire);
        open_in_order(&mut b, &m[2].wire);
        open_in_order(&mut b, &m[3].wire);
        assert_eq!(b.seq().parts(), (0, 4, 0));
    }

    #[test]
    fn mirrored_message_is_refused() {
        // Distinct key bytes: with a constant key x = 0 and x = 8 would read the same bytes.
        let mut k = [0u8; 256];
        k.iter_mut().enumerate().for_each(|(i, b)| *b = i as u8);
        let mut a = Session::new(AuthKey::new(k), Side::Originator);
        let mut rng = Counter(3);
        let m = a
            .seal(text_message(144, 1, 0, "me".into(), vec![]), &mut rng)
            .unwrap();
        // A message of ours fed back to us: MTProto 2.0 binds the direction (x), so it does not
        // decrypt for the same side.
        let mut mirror = Session::new(AuthKey::new(k), Side::Originator);
        assert!(matches!(
            mirror.open(&m.wire, None),
            Err(SessionError::Crypto(_))
        ));
        assert_eq!(mirror.seq().parts(), (0, 0, 0));
    }
}
