//! Layers (`end-to-end.md` "Updating to new layers", "Upgrade to MTProto 2.0").
//!
//! We speak [`OUR_LAYER`]. The peer's layer starts at [`INITIAL_PEER_LAYER`] and only rises, from
//! every `decryptedMessageLayer.layer` and every `decryptedMessageActionNotifyLayer` (also when
//! wrapped in the layer-8 `decryptedMessageService#aa48327d`). Outgoing messages use
//! `min(ours, peer's)`: its constructors and features.
//!
//! MTProto version: every outgoing message is 2.0, as TDLib sends (`SecretChatActor::
//! create_encrypted_message` sets `version = 2` unconditionally). A received 1.0 message is
//! accepted only from an old peer: its envelope layer is below [`MTPROTO2_LAYER`] (TDLib:
//! "MTProto 1.0 encryption is forbidden for this layer") **and** its position comes before the
//! earliest position at which the peer sent us a 2.0 message ([`LayerState::mtproto1_allowed`]):
//! a peer never goes back, and a hole after the switch does not re-open 1.0 (docs/protocol.md).

use secretchat_schema::e2e::{enums, types};
use secretchat_schema::{DecodeError, Deserialize, Identifiable, Reader};

use crate::crypto::message::Version;

/// The end-to-end layer this engine implements.
pub const OUR_LAYER: i32 = 144;
/// The peer layer assumed for a new chat.
pub const INITIAL_PEER_LAYER: i32 = 46;
/// The layer from which MTProto 2.0 is mandatory.
pub const MTPROTO2_LAYER: i32 = 73;
/// Entities underline/strike/blockquote exist from this layer.
pub const NEW_ENTITIES_LAYER: i32 = 101;
/// Spoiler and custom-emoji entities exist from this layer.
pub const SPOILER_LAYER: i32 = 144;
/// `decryptedMessageMediaDocument` with a 64-bit size exists from this layer.
pub const DOCUMENT64_LAYER: i32 = 143;

/// What observing a layer value meant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum Observed {
    /// Nothing new.
    Same,
    /// The peer's layer rose to this value (persist it).
    Raised(i32),
    /// The peer speaks a layer above ours: the application should ask the user to update.
    /// The peer layer is raised to ours (we cannot use more).
    PeerNewerThanUs(i32),
}

/// One chat's layer state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LayerState {
    peer: i32,
    /// The earliest raw position (the peer's out_seq_no) of an MTProto 2.0 message we received:
    /// the peer had switched to 2.0 by then, so no 1.0 message may come from there on.
    v2_from: Option<u32>,
    /// The layer we speak: [`OUR_LAYER`], or lower to behave as an older client.
    ours: i32,
}

impl Default for LayerState {
    fn default() -> Self {
        Self::new(OUR_LAYER)
    }
}

impl LayerState {
    /// A new chat's state when we speak `ours` (clamped to
    /// [`INITIAL_PEER_LAYER`]..=[`OUR_LAYER`]).
    pub fn new(ours: i32) -> Self {
        Self {
            peer: INITIAL_PEER_LAYER,
            v2_from: None,
            ours: ours.clamp(INITIAL_PEER_LAYER, OUR_LAYER),
        }
    }

    /// Restores stored state (`ours` comes from the configuration, not the record):
    /// `v2_from` is [`LayerState::parts`]' second value.
    pub fn from_parts(peer: i32, v2_from: Option<u32>, ours: i32) -> Self {
        let ours = ours.clamp(INITIAL_PEER_LAYER, OUR_LAYER);
        Self {
            peer: peer.clamp(INITIAL_PEER_LAYER, ours),
            v2_from,
            ours,
        }
    }

    /// The layer we speak.
    pub fn ours(&self) -> i32 {
        self.ours
    }

    /// `(peer layer, earliest position of a 2.0 message)` for storage.
    pub fn parts(&self) -> (i32, Option<u32>) {
        (self.peer, self.v2_from)
    }

    /// The peer's known layer.
    pub fn peer(&self) -> i32 {
        self.peer
    }

    /// The layer outgoing messages are built for.
    pub fn negotiated(&self) -> i32 {
        self.peer.min(self.ours)
    }

    /// Records a layer the peer announced (message envelope or NotifyLayer).
    pub fn observe(&mut self, layer: i32) -> Observed {
        if layer > self.ours {
            self.peer = self.ours;
            return Observed::PeerNewerThanUs(layer);
        }
        if layer > self.peer {
            self.peer = layer;
            return Observed::Raised(layer);
        }
        Observed::Same
    }

    /// Records that the peer's message at raw position `at` was MTProto 2.0.
    pub fn saw_mtproto2(&mut self, at: u32) {
        self.v2_from = Some(self.v2_from.map_or(at, |p| p.min(at)));
    }

    /// Whether any MTProto 2.0 message arrived.
    pub fn mtproto2_seen(&self) -> bool {
        self.v2_from.is_some()
    }

    /// The version for outgoing messages: always 2.0 (TDLib refuses 1.0 under a layer ≥ 73
    /// envelope, and the envelope carries our layer; a 1.0 sender is not needed by any client
    /// that is still in use).
    pub fn outgoing_version(&self) -> Version {
        Version::V2
    }

    /// Whether a received message may still be tried with MTProto 1.0 at all, given that the
    /// peer's messages below raw position `received` are already in: only while some position
    /// at or after `received` comes before the peer's switch to 2.0.
    pub fn try_mtproto1(&self, received: u32) -> bool {
        self.v2_from.is_none_or(|p| p > received)
    }

    /// Whether a message that decrypted with MTProto 1.0 may be accepted: its envelope `layer`
    /// is below [`MTPROTO2_LAYER`] and its raw `position` comes before the peer's first 2.0
    /// message (`None` for an envelope-less message: only while no 2.0 message arrived).
    ///
    /// # Errors
    /// [`Mtproto1Refused`] saying which rule it breaks.
    pub fn mtproto1_allowed(
        &self,
        layer: Option<i32>,
        position: Option<u32>,
    ) -> Result<(), Mtproto1Refused> {
        if let Some(layer) = layer.filter(|l| *l >= MTPROTO2_LAYER) {
            return Err(Mtproto1Refused::LayerTooHigh { layer });
        }
        match (self.v2_from, position) {
            (Some(switch), Some(at)) if at >= switch => Err(Mtproto1Refused::AfterSwitch {
                position: at,
                switch,
            }),
            (Some(switch), None) => Err(Mtproto1Refused::AfterSwitch {
                position: switch,
                switch,
            }),
            _ => Ok(()),
        }
    }
}

/// Why a message that decrypted with MTProto 1.0 was refused (the chat is left unchanged).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Mtproto1Refused {
    /// Its envelope announces a layer from which 2.0 is mandatory (TDLib refuses it too).
    #[error("MTProto 1.0 is forbidden for layer {layer}")]
    LayerTooHigh {
        /// The envelope's layer.
        layer: i32,
    },
    /// It sits at or after the position where the peer's 2.0 messages began.
    #[error("MTProto 1.0 message at position {position}, after the switch to 2.0 at {switch}")]
    AfterSwitch {
        /// The message's raw position (the peer's out_seq_no).
        position: u32,
        /// The earliest raw position of a 2.0 message.
        switch: u32,
    },
}

/// Keeps only the entities `layer` has.
pub fn entities_for(layer: i32, entities: Vec<enums::MessageEntity>) -> Vec<enums::MessageEntity> {
    use enums::MessageEntity as E;
    entities
        .into_iter()
        .filter(|e| match e {
            E::Underline(_) | E::Strike(_) | E::Blockquote(_) => layer >= NEW_ENTITIES_LAYER,
            E::Spoiler(_) | E::CustomEmoji(_) => layer >= SPOILER_LAYER,
            _ => true,
        })
        .collect()
}

/// A text message for `layer`: `decryptedMessage#91cc4674` from 73, `decryptedMessage46` below.
pub fn text_message(
    layer: i32,
    random_id: i64,
    ttl: i32,
    text: String,
    entities: Vec<enums::MessageEntity>,
) -> enums::DecryptedMessage {
    let full = types::DecryptedMessage73 {
        no_webpage: false,
        silent: false,
        random_id,
        ttl,
        message: text,
        media: None,
        entities: Some(entities),
        via_bot_name: None,
        reply_to_random_id: None,
        grouped_id: None,
    };
    message_for_layer(layer, full)
}

/// `m` as the negotiated `layer` has it: `decryptedMessage46` below 73 (no silent, no_webpage,
/// grouped_id), and only the entities the layer knows.
pub fn message_for_layer(layer: i32, mut m: types::DecryptedMessage73) -> enums::DecryptedMessage {
    let entities = m
        .entities
        .take()
        .map(|e| entities_for(layer, e))
        .filter(|e| !e.is_empty());
    m.media = m.media.take().map(|md| media_for_layer(layer, md));
    if layer >= MTPROTO2_LAYER {
        enums::DecryptedMessage::DecryptedMessage73(types::DecryptedMessage73 { entities, ..m })
    } else {
        enums::DecryptedMessage::DecryptedMessage46(types::DecryptedMessage46 {
            random_id: m.random_id,
            ttl: m.ttl,
            message: m.message,
            media: m.media,
            entities,
            via_bot_name: m.via_bot_name,
            reply_to_random_id: m.reply_to_random_id,
        })
    }
}

/// Documents with 64-bit sizes exist from layer 143; below it the layer-46 constructor is used
/// (the sender refuses files that do not fit before they get here).
fn media_for_layer(layer: i32, m: enums::DecryptedMessageMedia) -> enums::DecryptedMessageMedia {
    match m {
        enums::DecryptedMessageMedia::Document143(d) if layer < DOCUMENT64_LAYER => {
            enums::DecryptedMessageMedia::Document46(types::DecryptedMessageMediaDocument46 {
                thumb: d.thumb,
                thumb_w: d.thumb_w,
                thumb_h: d.thumb_h,
                mime_type: d.mime_type,
                size: i32::try_from(d.size).unwrap_or(i32::MAX),
                key: d.key,
                iv: d.iv,
                attributes: d.attributes,
                caption: d.caption,
            })
        }
        other => other,
    }
}

/// A received plaintext: layered (with sequence numbers) or a bare old-layer message.
#[derive(Debug, Clone, PartialEq)]
pub enum Payload {
    /// `decryptedMessageLayer`.
    Layered(types::DecryptedMessageLayer),
    /// A bare `DecryptedMessage` (layer 8 style, e.g. the NotifyLayer service wrapping).
    Bare(enums::DecryptedMessage),
}

impl Payload {
    /// Decodes a decrypted payload, rejecting trailing bytes.
    ///
    /// # Errors
    /// Any [`DecodeError`].
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut peek = Reader::new(bytes);
        if peek.read_u32()? == types::DecryptedMessageLayer::CONSTRUCTOR_ID {
            enums::DecryptedMessageLayer::from_bytes(bytes)
                .map(|enums::DecryptedMessageLayer::DecryptedMessageLayer(l)| Self::Layered(l))
        } else {
            enums::DecryptedMessage::from_bytes(bytes).map(Self::Bare)
        }
    }

    /// The layer this payload announces: the envelope's, or a NotifyLayer's inside it.
    pub fn announced_layers(&self) -> impl Iterator<Item = i32> {
        let (envelope, message) = match self {
            Payload::Layered(l) => (Some(l.layer), &l.message),
            Payload::Bare(m) => (None, m),
        };
        envelope.into_iter().chain(notify_layer(message))
    }
}

fn notify_layer(m: &enums::DecryptedMessage) -> Option<i32> {
    let action = match m {
        enums::DecryptedMessage::Service8(s) => &s.action,
        enums::DecryptedMessage::Service23(s) => &s.action,
        _ => return None,
    };
    match action {
        enums::DecryptedMessageAction::NotifyLayer(n) => Some(n.layer),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secretchat_schema::Serialize;

    #[test]
    fn layer_only_rises_and_caps_at_ours() {
        let mut s = LayerState::default();
        assert_eq!(s.peer(), 46);
        assert_eq!(s.observe(23), Observed::Same);
        assert_eq!(s.observe(73), Observed::Raised(73));
        assert_eq!(s.observe(66), Observed::Same);
        assert_eq!(s.peer(), 73);
        assert_eq!(s.observe(200), Observed::PeerNewerThanUs(200));
        assert_eq!(s.negotiated(), OUR_LAYER);
    }

    #[test]
    fn mtproto_version_rules() {
        let mut s = LayerState::default();
        // 2.0 out from the first message, whatever the peer's layer.
        assert_eq!(s.outgoing_version(), Version::V2);
        assert!(s.try_mtproto1(0));
        // An old peer (layer < 73) before any 2.0 message: 1.0 is accepted.
        assert_eq!(s.mtproto1_allowed(Some(46), Some(0)), Ok(()));
        assert_eq!(s.mtproto1_allowed(None, None), Ok(()));
        // A 1.0 message claiming layer 73 or more is refused outright (TDLib's rule).
        assert_eq!(
            s.mtproto1_allowed(Some(73), Some(0)),
            Err(Mtproto1Refused::LayerTooHigh { layer: 73 })
        );
        // The peer's message at position 5 was 2.0: from 5 on, no 1.0.
        s.saw_mtproto2(5);
        assert_eq!(s.mtproto1_allowed(Some(46), Some(4)), Ok(()));
        assert_eq!(
            s.mtproto1_allowed(Some(46), Some(5)),
            Err(Mtproto1Refused::AfterSwitch {
                position: 5,
                switch: 5
            })
        );
        assert!(s.mtproto1_allowed(None, None).is_err());
        // An earlier 2.0 message (filling a hole) moves the switch back, never forward.
        s.saw_mtproto2(3);
        s.saw_mtproto2(9);
        assert_eq!(s.parts().1, Some(3));
        assert!(s.mtproto1_allowed(Some(46), Some(3)).is_err());
        // Once everything before the switch is in, 1.0 is not even tried.
        assert!(s.try_mtproto1(2));
        assert!(!s.try_mtproto1(3));
        assert_eq!(s.outgoing_version(), Version::V2);
    }

    #[test]
    fn constructors_and_entities_follow_the_layer() {
        let ents = vec![
            enums::MessageEntity::Bold(types::MessageEntityBold {
                offset: 0,
                length: 1,
            }),
            enums::MessageEntity::Strike(types::MessageEntityStrike {
                offset: 0,
                length: 1,
            }),
            enums::MessageEntity::Spoiler(types::MessageEntitySpoiler {
                offset: 0,
                length: 1,
            }),
        ];
        let m = text_message(66, 1, 0, "x".into(), ents.clone());
        let enums::DecryptedMessage::DecryptedMessage46(m46) = m else {
            panic!("{m:?}")
        };
        assert_eq!(m46.entities.map(|e| e.len()), Some(1));
        let m = text_message(101, 1, 0, "x".into(), ents.clone());
        let enums::DecryptedMessage::DecryptedMessage73(m73) = m else {
            panic!("{m:?}")
        };
        assert_eq!(m73.entities.map(|e| e.len()), Some(2));
        let enums::DecryptedMessage::DecryptedMessage73(m144) =
            text_message(144, 1, 0, "x".into(), ents)
        else {
            panic!()
        };
        assert_eq!(m144.entities.map(|e| e.len()), Some(3));
    }

    #[test]
    fn payload_decoding_and_announced_layers() {
        // The layer-8 service wrapping of NotifyLayer (end-to-end.md).
        let bare = enums::DecryptedMessage::Service8(types::DecryptedMessageService8 {
            random_id: 5,
            random_bytes: vec![1; 15],
            action: enums::DecryptedMessageAction::NotifyLayer(
                types::DecryptedMessageActionNotifyLayer { layer: 101 },
            ),
        });
        let p = Payload::decode(&bare.to_bytes().unwrap()).unwrap();
        assert_eq!(p.announced_layers().collect::<Vec<_>>(), vec![101]);
        let layered = types::DecryptedMessageLayer {
            random_bytes: vec![2; 15],
            layer: 144,
            in_seq_no: 0,
            out_seq_no: 1,
            message: text_message(144, 9, 0, "hi".into(), vec![]),
        };
        let p = Payload::decode(&layered.to_bytes().unwrap()).unwrap();
        assert_eq!(p, Payload::Layered(layered));
        assert_eq!(p.announced_layers().collect::<Vec<_>>(), vec![144]);
        assert!(Payload::decode(&[1, 2, 3]).is_err());
    }
}
