//! Sealing and opening messages of one chat: sequence numbers ([`super::seq_no`]) + layer
//! envelope and MTProto version ([`super::layer`]) + encryption ([`crate::crypto::message`]).
//!
//! Randomness (padding, envelope `random_bytes`) comes from the caller's `RngCore`; nothing here
//! reads the OS RNG or the clock. [`Session::open`] changes no state when it fails.

use rand_core::RngCore;
use secretchat_schema::e2e::{enums, types};
use secretchat_schema::{DecodeError, EncodeError, Serialize};

use super::layer::{LayerState, Observed, Payload};
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
        let (peer, mtproto2) = self.layer.parts();
        self.layer = LayerState::from_parts(peer, mtproto2, ours);
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
        let sealed = self.seal_at(message, in_seq_no, out_seq_no, rng)?;
        self.seq = seq;
        Ok(sealed)
    }

    /// Seals `message` with given (already assigned) wire sequence numbers, without counting a
    /// new message: for replacing the stored copy of a message deleted before it was
    /// acknowledged (seq_no.md, "Deleting unacknowledged messages").
    ///
    /// # Errors
    /// [`SessionError::Encode`], [`SessionError::Crypto`].
    pub fn seal_at(
        &self,
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
            Version::V2 => message::encrypt_v2(&self.key, self.side, &payload, &pad)?,
            Version::V1 => message::encrypt_v1(&self.key, &payload, &pad)?,
        };
        Ok(Sealed {
            wire,
            in_seq_no,
            out_seq_no,
            version,
        })
    }

    /// Decrypts (1.0 first while the rules allow, then 2.0), decodes and classifies a received
    /// message. Layer news is applied; the sequence position is not — call [`Session::accept`]
    /// after processing an in-order message.
    ///
    /// # Errors
    /// [`SessionError::Crypto`] (forged, wrong key, tampered), [`SessionError::Decode`],
    /// [`SessionError::Seq`] (must close the chat), [`SessionError::NoEnvelope`]. No state
    /// changes on error.
    pub fn open(&mut self, wire: &[u8], gap_open: bool) -> Result<Opened, SessionError> {
        let peer = self.side.peer();
        let fp = wire_fingerprint(wire);
        let key = self
            .previous
            .iter()
            .find(|k| fp.is_some_and(|fp| k.has_fingerprint(fp) && !self.key.has_fingerprint(fp)))
            .unwrap_or(&self.key);
        let decrypted = if self.layer.try_mtproto1(gap_open) {
            message::decrypt_v1(key, wire).or_else(|_| message::decrypt_v2(key, peer, wire))?
        } else {
            message::decrypt_v2(key, peer, wire)?
        };
        let payload = Payload::decode(&decrypted.payload)?;
        let received = match &payload {
            Payload::Layered(l) => Some(self.seq.classify(l.in_seq_no, l.out_seq_no)?),
            Payload::Bare(_) if payload.announced_layers().next().is_some() => None,
            Payload::Bare(_) => return Err(SessionError::NoEnvelope),
        };
        if decrypted.version == Version::V2 {
            self.layer.saw_mtproto2();
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
        let o = s.open(wire, false).unwrap();
        let Some(Received::InOrder { peer_in }) = o.received else {
            panic!("{:?}", o.received)
        };
        s.accept(peer_in).unwrap();
        o
    }

    #[test]
    fn upgrade_from_mtproto1_to_2_never_back() {
        let (mut a, mut b) = pair();
        let mut rng = Counter(1);
        // New chat: peer layer 46, so the first message goes out with MTProto 1.0.
        let first = a
            .seal(text_message(46, 1, 0, "hi".into(), vec![]), &mut rng)
            .unwrap();
        assert_eq!(
            (first.version, first.in_seq_no, first.out_seq_no),
            (Version::V1, 0, 1)
        );
        let o = open_in_order(&mut b, &first.wire);
        assert_eq!(o.version, Version::V1);
        assert_eq!(
            o.layer_news,
            vec![Observed::Raised(crate::protocol::layer::OUR_LAYER)]
        );
        // B now knows A speaks 144: its reply is 2.0 and A, still at 46, falls back to 2.0.
        let reply = b
            .seal(text_message(144, 2, 0, "yo".into(), vec![]), &mut rng)
            .unwrap();
        assert_eq!(
            (reply.version, reply.in_seq_no, reply.out_seq_no),
            (Version::V2, 3, 0)
        );
        let o = open_in_order(&mut a, &reply.wire);
        assert_eq!(o.version, Version::V2);
        // A's next message is 2.0; once B has seen it, B stops trying 1.0.
        let next = a
            .seal(text_message(144, 5, 0, "ok".into(), vec![]), &mut rng)
            .unwrap();
        assert_eq!(next.version, Version::V2);
        assert!(b.layer().try_mtproto1(false));
        open_in_order(&mut b, &next.wire);
        for s in [&a, &b] {
            assert_eq!(s.layer().outgoing_version(), Version::V2);
            assert!(!s.layer().try_mtproto1(false));
        }
        // A 1.0 message is no longer accepted once 2.0 is reached.
        let mut old = Session::new(AuthKey::new([0x42; 256]), Side::Originator);
        let _ = old
            .seal(text_message(46, 3, 0, "x".into(), vec![]), &mut rng)
            .unwrap();
        let v1 = old
            .seal(text_message(46, 4, 0, "x".into(), vec![]), &mut rng)
            .unwrap();
        assert_eq!(v1.version, Version::V1);
        assert!(matches!(
            b.open(&v1.wire, false),
            Err(SessionError::Crypto(CryptoError::MsgKeyMismatch))
        ));
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
            b.open(&m[0].wire, false).unwrap().received,
            Some(Received::Duplicate)
        );
        let gap = b.open(&m[3].wire, false).unwrap().received;
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
        assert!(b.open(&tampered, false).is_err());
        assert_eq!(*b.seq(), before);
        open_in_order(&mut b, &m[1].wire);
        open_in_order(&mut b, &m[2].wire);
        open_in_order(&mut b, &m[3].wire);
        assert_eq!(b.seq().parts(), (0, 4, 0));
    }

    #[test]
    fn mirrored_message_is_a_seq_error() {
        let (mut a, _) = pair();
        let mut rng = Counter(3);
        let m = a
            .seal(text_message(144, 1, 0, "me".into(), vec![]), &mut rng)
            .unwrap();
        // A message of ours fed back to us. A new chat sends MTProto 1.0, which has no direction
        // (x = 0), so it decrypts: the seq_no parity is what catches the mirror (seq_no.md).
        assert_eq!(m.version, Version::V1);
        let mut mirror = Session::new(AuthKey::new([0x42; 256]), Side::Originator);
        assert_eq!(
            mirror.open(&m.wire, false),
            Err(SessionError::Seq(SeqError::Parity { value: 0 }))
        );
        assert_eq!(mirror.seq().parts(), (0, 0, 0));
    }
}
