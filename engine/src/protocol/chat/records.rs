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

/// `secretchat.waitingEntryDated#72010e5a layer:bytes file:bytes resend_done:Bool date:int =
/// secretchat.WaitingEntry` — the form written since the envelope's date is kept.
#[derive(TlSerialize, TlDeserialize, Identifiable)]
#[tl(id = 0x72010e5a, name = "secretchat.waitingEntryDated")]
struct StoredWaitingDated {
    layer: Vec<u8>,
    file: Vec<u8>,
    resend_done: bool,
    date: i32,
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
        StoredWaitingDated {
            layer: self.layer.to_bytes()?,
            file: opt_bytes(&self.file),
            resend_done: self.resend_done,
            date: self.date,
        }
        .to_bytes()
    }

    /// Reads the stored form (either constructor; the undated one has date 0).
    ///
    /// # Errors
    /// [`DecodeError`] for corrupt bytes.
    pub fn from_bytes(b: &[u8]) -> Result<Self, DecodeError> {
        let s = if b.get(..4) == Some(&StoredWaiting::CONSTRUCTOR_ID.to_le_bytes()[..]) {
            let s = StoredWaiting::from_bytes(b)?;
            StoredWaitingDated {
                layer: s.layer,
                file: s.file,
                resend_done: s.resend_done,
                date: 0,
            }
        } else {
            StoredWaitingDated::from_bytes(b)?
        };
        let enums::DecryptedMessageLayer::DecryptedMessageLayer(layer) =
            enums::DecryptedMessageLayer::from_bytes(&s.layer)?;
        Ok(Self {
            layer,
            file: opt_from(&s.file)?,
            date: s.date,
            resend_done: s.resend_done,
        })
    }
}

/// `secretchat.inboxEvent#6c529c4d account:long chat:long kind:int num:long data:bytes
/// file:bytes text:string = secretchat.InboxEvent` — an application event waiting for the
/// application's acknowledgement.
#[derive(Default, TlSerialize, TlDeserialize, Identifiable)]
#[tl(id = 0x6c529c4d, name = "secretchat.inboxEvent")]
struct StoredEvent {
    account: i64,
    chat: i64,
    kind: i32,
    num: i64,
    data: Vec<u8>,
    file: Vec<u8>,
    text: String,
}

impl Drop for StoredEvent {
    fn drop(&mut self) {
        self.data.zeroize();
    }
}

impl super::AppEvent {
    /// The stored form, tagged with the account and chat handle it belongs to.
    ///
    /// # Errors
    /// Only for payloads beyond TL's size limit.
    pub fn to_record(
        &self,
        account: u64,
        chat: u64,
    ) -> Result<Vec<u8>, secretchat_schema::EncodeError> {
        use super::AppEvent as E;
        let mut s = StoredEvent::default();
        s.account = account as i64;
        s.chat = chat as i64;
        match self {
            E::ChatRequested { admin_id, date } => {
                s.kind = 1;
                s.num = *admin_id;
                s.data = date.to_le_bytes().to_vec();
            }
            E::ChatReady { visualization } => {
                s.kind = 2;
                s.data = visualization.clone();
            }
            E::Message {
                message,
                file,
                date,
            } => {
                s.kind = 3;
                s.num = i64::from(*date);
                s.data = message.to_bytes()?;
                s.file = opt_bytes(file);
            }
            E::Service { random_id, action } => {
                s.kind = 4;
                s.num = *random_id;
                s.data = action.to_bytes()?;
            }
            E::PeerLayer(l) => {
                s.kind = 5;
                s.num = i64::from(*l);
            }
            E::PeerNewerThanUs(l) => {
                s.kind = 6;
                s.num = i64::from(*l);
            }
            E::Rekeyed(fp) => {
                s.kind = 7;
                s.num = *fp;
            }
            E::ChatUnhealthy {
                holes,
                unacknowledged,
            } => {
                s.kind = 8;
                s.num = *unacknowledged as i64;
                s.data = holes
                    .iter()
                    .flat_map(|(a, b)| [a.to_le_bytes(), b.to_le_bytes()].concat())
                    .collect();
            }
            E::ChatClosed(r) => {
                s.kind = 9;
                s.text = r.kind().to_owned();
            }
            E::MessagesDeleted { random_ids } => {
                s.kind = 10;
                s.data = random_ids.iter().flat_map(|id| id.to_le_bytes()).collect();
            }
        }
        s.to_bytes()
    }

    /// Reads the stored form: `(account, chat handle, event)`.
    ///
    /// # Errors
    /// [`DecodeError`] for corrupt records.
    pub fn from_record(b: &[u8]) -> Result<(u64, u64, Self), DecodeError> {
        use super::AppEvent as E;
        let s = StoredEvent::from_bytes(b)?;
        let bad = || DecodeError::Invalid("inbox event");
        let layer = || i32::try_from(s.num).map_err(|_| bad());
        let e = match s.kind {
            1 => E::ChatRequested {
                admin_id: s.num,
                date: i32::from_le_bytes(
                    s.data
                        .get(..4)
                        .and_then(|d| d.try_into().ok())
                        .ok_or_else(bad)?,
                ),
            },
            2 => E::ChatReady {
                visualization: s.data.clone(),
            },
            3 => E::Message {
                message: Box::new(enums::DecryptedMessage::from_bytes(&s.data)?),
                file: opt_from(&s.file)?,
                // Records written before the date was kept have 0 here.
                date: i32::try_from(s.num).map_err(|_| bad())?,
            },
            4 => E::Service {
                random_id: s.num,
                action: enums::DecryptedMessageAction::from_bytes(&s.data)?,
            },
            5 => E::PeerLayer(layer()?),
            6 => E::PeerNewerThanUs(layer()?),
            7 => E::Rekeyed(s.num),
            8 => E::ChatUnhealthy {
                unacknowledged: usize::try_from(s.num).map_err(|_| bad())?,
                holes: s
                    .data
                    .chunks_exact(8)
                    .map(|c| {
                        let a = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
                        let b = u32::from_le_bytes([c[4], c[5], c[6], c[7]]);
                        (a, b)
                    })
                    .collect(),
            },
            9 => E::ChatClosed(super::CloseReason::from_kind(&s.text)),
            10 => E::MessagesDeleted {
                random_ids: s
                    .data
                    .chunks_exact(8)
                    .map(|c| i64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
                    .collect(),
            },
            _ => return Err(bad()),
        };
        Ok((s.account as u64, s.chat as u64, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::chat::AppEvent;
    use secretchat_schema::e2e::types::DecryptedMessageLayer;

    fn entry(date: i32) -> WaitingEntry {
        WaitingEntry {
            layer: DecryptedMessageLayer {
                random_bytes: vec![1; 15],
                layer: 73,
                in_seq_no: 0,
                out_seq_no: 3,
                message: crate::protocol::layer::text_message(73, 9, 0, "held".into(), vec![]),
            },
            file: None,
            date,
            resend_done: true,
        }
    }

    #[test]
    fn a_waiting_entry_keeps_its_date() {
        let e = entry(1_700_000_001);
        let b = e.to_bytes().unwrap();
        assert_eq!(b[..4], StoredWaitingDated::CONSTRUCTOR_ID.to_le_bytes());
        assert_eq!(WaitingEntry::from_bytes(&b).unwrap(), e);
    }

    #[test]
    fn an_undated_waiting_entry_from_an_earlier_build_reads_with_date_0() {
        let e = entry(0);
        let old = StoredWaiting {
            layer: e.layer.to_bytes().unwrap(),
            file: Vec::new(),
            resend_done: true,
        }
        .to_bytes()
        .unwrap();
        assert_eq!(WaitingEntry::from_bytes(&old).unwrap(), e);
        // Neither constructor: refused, not misread.
        let mut bad = old.clone();
        bad[0] ^= 1;
        assert!(WaitingEntry::from_bytes(&bad).is_err());
    }

    #[test]
    fn an_inbox_message_keeps_its_date() {
        let event = AppEvent::Message {
            message: Box::new(entry(0).layer.message),
            file: None,
            date: 1_700_000_002,
        };
        let record = event.to_record(4, 5).unwrap();
        assert_eq!(AppEvent::from_record(&record).unwrap(), (4, 5, event));
    }
}
