//! The stored records of a chat: TL objects (`secretchat.*` constructors, ids = CRC32 of their
//! TL line), encoded and decoded by the same hostile-safe code as everything else.

use secretchat_schema::e2e::enums;
use secretchat_schema::{
    DecodeError, Deserialize, Identifiable, Serialize, TlDeserialize, TlSerialize,
};
use zeroize::Zeroize;

use super::{OutboxEntry, WaitingEntry};

/// `secretchat.chatState#e8fa4b79 format:int side:int chat_id:int access_hash:long phase:int
/// phase_secret:bytes phase_peer:bytes phase_fingerprint:long phase_user:bytes
/// phase_random_id:int closed_kind:string dh_p:bytes dh_g:int key:bytes previous:Vector<bytes>
/// seq:Vector<int> peer_layer:int mtproto2:Bool rekey:int rekey_exchange:long rekey_secret:bytes
/// rekey_fingerprint:long visualization:bytes counters:Vector<long> timers:Vector<long>
/// unhealthy_reported:Bool early:Vector<bytes> early_files:Vector<bytes> pending:Vector<bytes>
/// pending_files:Vector<bytes> = secretchat.ChatState`
#[derive(Default, TlSerialize, TlDeserialize, Identifiable)]
#[tl(id = 0xe8fa4b79, name = "secretchat.chatState")]
pub(super) struct StoredChat {
    pub(super) format: i32,
    pub(super) side: i32,
    pub(super) chat_id: i32,
    pub(super) access_hash: i64,
    pub(super) phase: i32,
    pub(super) phase_secret: Vec<u8>,
    pub(super) phase_peer: Vec<u8>,
    pub(super) phase_fingerprint: i64,
    pub(super) phase_user: Vec<u8>,
    pub(super) phase_random_id: i32,
    pub(super) closed_kind: String,
    pub(super) dh_p: Vec<u8>,
    pub(super) dh_g: i32,
    pub(super) key: Vec<u8>,
    pub(super) previous: Vec<Vec<u8>>,
    pub(super) seq: Vec<i32>,
    pub(super) peer_layer: i32,
    pub(super) mtproto2: bool,
    pub(super) rekey: i32,
    pub(super) rekey_exchange: i64,
    pub(super) rekey_secret: Vec<u8>,
    pub(super) rekey_fingerprint: i64,
    pub(super) visualization: Vec<u8>,
    pub(super) counters: Vec<i64>,
    pub(super) timers: Vec<i64>,
    pub(super) unhealthy_reported: bool,
    pub(super) early: Vec<Vec<u8>>,
    pub(super) early_files: Vec<Vec<u8>>,
    pub(super) pending: Vec<Vec<u8>>,
    pub(super) pending_files: Vec<Vec<u8>>,
}

impl Drop for StoredChat {
    fn drop(&mut self) {
        self.phase_secret.zeroize();
        self.key.zeroize();
        self.previous.iter_mut().for_each(Zeroize::zeroize);
        self.rekey_secret.zeroize();
    }
}

/// `secretchat.outboxEntry#88dc6241 random_id:long wire:bytes in_seq_no:int out_seq_no:int
/// service:Bool file:bytes silent:Bool = secretchat.OutboxEntry`
#[derive(TlSerialize, TlDeserialize, Identifiable)]
#[tl(id = 0x88dc6241, name = "secretchat.outboxEntry")]
struct StoredOutbox {
    random_id: i64,
    wire: Vec<u8>,
    in_seq_no: i32,
    out_seq_no: i32,
    service: bool,
    file: Vec<u8>,
    silent: bool,
}

/// `secretchat.waitingEntry#b63cb346 layer:bytes file:bytes resend_done:Bool =
/// secretchat.WaitingEntry`
#[derive(TlSerialize, TlDeserialize, Identifiable)]
#[tl(id = 0xb63cb346, name = "secretchat.waitingEntry")]
struct StoredWaiting {
    layer: Vec<u8>,
    file: Vec<u8>,
    resend_done: bool,
}

pub(super) fn opt_bytes<T: Serialize>(v: &Option<T>) -> Vec<u8> {
    v.as_ref()
        .and_then(|v| v.to_bytes().ok())
        .unwrap_or_default()
}

pub(super) fn opt_from<T: Deserialize>(b: &[u8]) -> Result<Option<T>, DecodeError> {
    if b.is_empty() {
        Ok(None)
    } else {
        T::from_bytes(b).map(Some)
    }
}

impl OutboxEntry {
    /// The stored form.
    ///
    /// # Errors
    /// Only for payloads beyond TL's size limit.
    pub fn to_bytes(&self) -> Result<Vec<u8>, secretchat_schema::EncodeError> {
        StoredOutbox {
            random_id: self.random_id,
            wire: self.wire.clone(),
            in_seq_no: self.in_seq_no,
            out_seq_no: self.out_seq_no,
            service: self.service,
            file: opt_bytes(&self.file),
            silent: self.silent,
        }
        .to_bytes()
    }

    /// Reads the stored form.
    ///
    /// # Errors
    /// [`DecodeError`] for corrupt bytes.
    pub fn from_bytes(b: &[u8]) -> Result<Self, DecodeError> {
        let s = StoredOutbox::from_bytes(b)?;
        Ok(Self {
            random_id: s.random_id,
            file: opt_from(&s.file)?,
            wire: s.wire,
            in_seq_no: s.in_seq_no,
            out_seq_no: s.out_seq_no,
            service: s.service,
            silent: s.silent,
        })
    }
}

impl WaitingEntry {
    /// The stored form.
    ///
    /// # Errors
    /// Only for payloads beyond TL's size limit.
    pub fn to_bytes(&self) -> Result<Vec<u8>, secretchat_schema::EncodeError> {
        StoredWaiting {
            layer: self.layer.to_bytes()?,
            file: opt_bytes(&self.file),
            resend_done: self.resend_done,
        }
        .to_bytes()
    }

    /// Reads the stored form.
    ///
    /// # Errors
    /// [`DecodeError`] for corrupt bytes.
    pub fn from_bytes(b: &[u8]) -> Result<Self, DecodeError> {
        let s = StoredWaiting::from_bytes(b)?;
        let enums::DecryptedMessageLayer::DecryptedMessageLayer(layer) =
            enums::DecryptedMessageLayer::from_bytes(&s.layer)?;
        Ok(Self {
            layer,
            file: opt_from(&s.file)?,
            resend_done: s.resend_done,
        })
    }
}
