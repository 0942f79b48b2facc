//! Layers (`end-to-end.md` "Updating to new layers", "Upgrade to MTProto 2.0").
//!
//! We speak [`OUR_LAYER`]. The peer's layer starts at [`INITIAL_PEER_LAYER`] and only rises, from
//! every `decryptedMessageLayer.layer` and every `decryptedMessageActionNotifyLayer` (also when
//! wrapped in the layer-8 `decryptedMessageService#aa48327d`). Outgoing messages use
//! `min(ours, peer's)`: its constructors and features. MTProto 2.0 is used for every outgoing
//! message once that layer is ≥ 73 or once a 2.0 message arrived. On receipt, 1.0 is tried until
//! the peer's first 2.0 message: a layer-73 envelope does not prove the peer has switched (its
//! messages sent before it learned our layer are legitimately 1.0), a 2.0 message does, and a
//! peer never goes back (docs/protocol.md). Nothing ever goes back.

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
    /// The peer has sent us an MTProto 2.0 message.
    mtproto2: bool,
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
            mtproto2: false,
            ours: ours.clamp(INITIAL_PEER_LAYER, OUR_LAYER),
        }
    }

    /// Restores stored state (`ours` comes from the configuration, not the record).
    pub fn from_parts(peer: i32, mtproto2: bool, ours: i32) -> Self {
        let ours = ours.clamp(INITIAL_PEER_LAYER, OUR_LAYER);
        Self {
            peer: peer.clamp(INITIAL_PEER_LAYER, ours),
            mtproto2,
            ours,
        }
    }

    /// The layer we speak.
    pub fn ours(&self) -> i32 {
        self.ours
    }

    /// `(peer layer, mtproto2 reached)` for storage.
    pub fn parts(&self) -> (i32, bool) {
        (self.peer, self.mtproto2)
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

    /// Records that a message decrypted with MTProto 2.0.
    pub fn saw_mtproto2(&mut self) {
        self.mtproto2 = true;
    }

    /// The version for outgoing messages.
    pub fn outgoing_version(&self) -> Version {
        if self.mtproto2 || self.negotiated() >= MTPROTO2_LAYER {
            Version::V2
        } else {
            Version::V1
        }
    }

    /// Whether a received message may still be tried with MTProto 1.0 (first, then 2.0).
    /// `gap_open`: messages from before the switch may still arrive to fill a hole.
    pub fn try_mtproto1(&self, gap_open: bool) -> bool {
        !self.mtproto2 || gap_open
    }
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
        assert_eq!(s.outgoing_version(), Version::V1);
        assert!(s.try_mtproto1(false));
        s.saw_mtproto2();
        assert_eq!(s.outgoing_version(), Version::V2);
        assert!(!s.try_mtproto1(false));
        assert!(
            s.try_mtproto1(true),
            "old messages filling a gap may still be 1.0"
        );
        let mut t = LayerState::default();
        let _ = t.observe(73);
        assert_eq!(t.outgoing_version(), Version::V2);
        assert!(
            t.try_mtproto1(false),
            "the peer's in-flight 1.0 messages are still accepted"
        );
        // Never back: a lower layer later changes nothing.
        let _ = t.observe(46);
        assert_eq!(t.outgoing_version(), Version::V2);
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
