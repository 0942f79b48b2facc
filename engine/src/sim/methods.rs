//! The simulated server's methods.

use rand::Rng;
use secretchat_schema::api::enums as api;
use secretchat_schema::api::functions::{messages as m, updates as u, upload as up};
use secretchat_schema::api::types as t;
use secretchat_schema::{Deserialize, Identifiable, Reader, Serialize};

use super::{Chat, ChatState, SimServer, State};
use crate::crypto::prime::TELEGRAM_DH_PRIME;
use crate::transport::RpcError;

/// The DH config version the simulator serves.
pub const DH_VERSION: i32 = 1;

/// The most messages one `updates.getDifference` answer carries (the rest follow in slices).
pub const DIFFERENCE_LIMIT: usize = 1000;

fn bad(msg: &str) -> RpcError {
    RpcError::new(400, msg)
}

fn ser<T: Serialize>(v: &T) -> Result<Vec<u8>, RpcError> {
    v.to_bytes().map_err(|_| RpcError::new(500, "ENCODE"))
}

fn de<T: Deserialize>(b: &[u8]) -> Result<T, RpcError> {
    T::from_bytes(b).map_err(|_| bad("INPUT_REQUEST_INVALID"))
}

fn bool_bytes(v: bool) -> Vec<u8> {
    let mut out = Vec::new();
    let _ = v.serialize(&mut out);
    out
}

impl SimServer {
    /// Handles one raw request from device `device` of `user`.
    pub(super) fn handle(&self, user: i64, device: u32, req: &[u8]) -> Result<Vec<u8>, RpcError> {
        let mut s = self.lock();
        s.stats.requests += 1;
        let f = s.faults;
        if s.chance(f.error) {
            s.stats.injected_errors += 1;
            return Err(RpcError::new(500, "INTERNAL"));
        }
        if s.chance(f.flood) {
            s.stats.injected_errors += 1;
            return Err(RpcError::new(420, "FLOOD_WAIT_1"));
        }
        s.expire(user, device);
        let id = Reader::new(req)
            .read_u32()
            .map_err(|_| bad("INPUT_METHOD_INVALID"))?;
        let answer = self.dispatch(&mut s, user, device, id, req)?;
        if let Some(n) = s.lose_replies.get_mut(&id).filter(|n| **n > 0) {
            *n -= 1;
            s.stats.injected_errors += 1;
            return Err(RpcError::new(-503, "TIMEOUT"));
        }
        if s.chance(f.lost_reply) {
            s.stats.injected_errors += 1;
            return Err(RpcError::new(-503, "TIMEOUT"));
        }
        Ok(answer)
    }

    fn dispatch(
        &self,
        s: &mut State,
        user: i64,
        device: u32,
        id: u32,
        req: &[u8],
    ) -> Result<Vec<u8>, RpcError> {
        let d = &self.delivery;
        match id {
            m::GetDhConfig::CONSTRUCTOR_ID => {
                let r: m::GetDhConfig = de(req)?;
                let len = r.random_length.clamp(0, 256) as usize;
                let random: Vec<u8> = (0..len).map(|_| s.rng.r#gen()).collect();
                if r.version == DH_VERSION {
                    ser(&api::messages::DhConfig::NotModified(
                        t::messages::DhConfigNotModified { random },
                    ))
                } else {
                    ser(&api::messages::DhConfig::DhConfig(t::messages::DhConfig {
                        g: 3,
                        p: TELEGRAM_DH_PRIME.to_vec(),
                        version: DH_VERSION,
                        random,
                    }))
                }
            }
            m::RequestEncryption::CONSTRUCTOR_ID => {
                let r: m::RequestEncryption = de(req)?;
                let api::InputUser::InputUser(peer) = r.user_id else {
                    return Err(bad("USER_ID_INVALID"));
                };
                if r.g_a.len() != 256 {
                    return Err(bad("DH_G_A_INVALID"));
                }
                if let Some(&chat_id) = s.requests.get(&(user, device, r.random_id)) {
                    // A repeated request (its answer was lost): the same chat.
                    let c = s
                        .chats
                        .get(&chat_id)
                        .ok_or_else(|| bad("CHAT_ID_INVALID"))?;
                    let date = s.date();
                    return ser(&api::EncryptedChat::Waiting(t::EncryptedChatWaiting {
                        id: chat_id,
                        access_hash: c.access_hash,
                        date,
                        admin_id: user,
                        participant_id: c.participant,
                    }));
                }
                let Some(devices) = s.users.get(&peer.user_id).map(Vec::len) else {
                    return Err(bad("USER_ID_INVALID"));
                };
                s.next_chat += 1;
                let chat_id = s.next_chat;
                s.requests.insert((user, device, r.random_id), chat_id);
                let access_hash = s.rng.r#gen();
                let date = s.date();
                s.chats.insert(
                    chat_id,
                    Chat {
                        admin: (user, device),
                        participant: peer.user_id,
                        access_hash,
                        g_a: r.g_a.clone(),
                        state: ChatState::Requested,
                    },
                );
                let requested = api::EncryptedChat::Requested(t::EncryptedChatRequested {
                    folder_id: None,
                    id: chat_id,
                    access_hash,
                    date,
                    admin_id: user,
                    participant_id: peer.user_id,
                    g_a: r.g_a,
                });
                for dev in 0..devices as u32 {
                    let up = api::Update::Encryption(t::UpdateEncryption {
                        chat: requested.clone(),
                        date,
                    });
                    s.push(d, peer.user_id, dev, up, false);
                }
                ser(&api::EncryptedChat::Waiting(t::EncryptedChatWaiting {
                    id: chat_id,
                    access_hash,
                    date,
                    admin_id: user,
                    participant_id: peer.user_id,
                }))
            }
            m::AcceptEncryption::CONSTRUCTOR_ID => {
                let r: m::AcceptEncryption = de(req)?;
                let api::InputEncryptedChat::InputEncryptedChat(peer) = r.peer;
                let date = s.date();
                let chat = s
                    .chats
                    .get_mut(&peer.chat_id)
                    .ok_or_else(|| bad("CHAT_ID_INVALID"))?;
                if chat.participant != user || chat.access_hash != peer.access_hash {
                    return Err(bad("CHAT_ID_INVALID"));
                }
                match chat.state {
                    // Also for a repeat from the device that accepted (its answer was lost):
                    // the real server may answer a repeat this way.
                    ChatState::Accepted(_) => return Err(bad("ENCRYPTION_ALREADY_ACCEPTED")),
                    ChatState::Discarded => return Err(bad("ENCRYPTION_ALREADY_DECLINED")),
                    ChatState::Requested => {}
                }
                chat.state = ChatState::Accepted(device);
                let (admin, participant, access_hash, g_a) = (
                    chat.admin,
                    chat.participant,
                    chat.access_hash,
                    chat.g_a.clone(),
                );
                let full = |g: Vec<u8>| {
                    api::EncryptedChat::EncryptedChat(t::EncryptedChat {
                        id: peer.chat_id,
                        access_hash,
                        date,
                        admin_id: admin.0,
                        participant_id: participant,
                        g_a_or_b: g,
                        key_fingerprint: r.key_fingerprint,
                    })
                };
                let to_admin = api::Update::Encryption(t::UpdateEncryption {
                    chat: full(r.g_b),
                    date,
                });
                s.push(d, admin.0, admin.1, to_admin, false);
                let devices = s.users.get(&participant).map_or(0, Vec::len) as u32;
                for dev in (0..devices).filter(|&x| x != device) {
                    let gone = api::Update::Encryption(t::UpdateEncryption {
                        chat: api::EncryptedChat::Discarded(t::EncryptedChatDiscarded {
                            history_deleted: false,
                            id: peer.chat_id,
                        }),
                        date,
                    });
                    s.push(d, participant, dev, gone, false);
                }
                ser(&full(g_a))
            }
            m::DiscardEncryption::CONSTRUCTOR_ID => {
                let r: m::DiscardEncryption = de(req)?;
                let date = s.date();
                let chat = s
                    .chats
                    .get_mut(&r.chat_id)
                    .ok_or_else(|| bad("CHAT_ID_INVALID"))?;
                if chat.state == ChatState::Discarded {
                    return Err(bad("ENCRYPTION_ALREADY_DECLINED"));
                }
                let old = chat.state;
                chat.state = ChatState::Discarded;
                let (admin, participant) = (chat.admin, chat.participant);
                let mut targets = vec![admin];
                match old {
                    ChatState::Accepted(dev) => targets.push((participant, dev)),
                    _ => {
                        let n = s.users.get(&participant).map_or(0, Vec::len) as u32;
                        targets.extend((0..n).map(|dev| (participant, dev)));
                    }
                }
                for (u, dev) in targets.into_iter().filter(|&x| x != (user, device)) {
                    let gone = api::Update::Encryption(t::UpdateEncryption {
                        chat: api::EncryptedChat::Discarded(t::EncryptedChatDiscarded {
                            history_deleted: r.delete_history,
                            id: r.chat_id,
                        }),
                        date,
                    });
                    s.push(d, u, dev, gone, false);
                }
                Ok(bool_bytes(true))
            }
            m::SendEncrypted::CONSTRUCTOR_ID => {
                let r: m::SendEncrypted = de(req)?;
                self.send(s, user, device, r.peer, r.random_id, r.data, None, false)
            }
            m::SendEncryptedService::CONSTRUCTOR_ID => {
                let r: m::SendEncryptedService = de(req)?;
                self.send(s, user, device, r.peer, r.random_id, r.data, None, true)
            }
            m::SendEncryptedFile::CONSTRUCTOR_ID => {
                let r: m::SendEncryptedFile = de(req)?;
                self.send(
                    s,
                    user,
                    device,
                    r.peer,
                    r.random_id,
                    r.data,
                    Some(r.file),
                    false,
                )
            }
            m::ReceivedQueue::CONSTRUCTOR_ID => {
                let r: m::ReceivedQueue = de(req)?;
                if let Some(dev) = s.device_mut(user, device) {
                    dev.queue.retain(|&q, _| q > r.max_qts);
                }
                ser(&Vec::<i64>::new())
            }
            u::GetDifference::CONSTRUCTOR_ID => {
                let r: u::GetDifference = de(req)?;
                let date = s.date();
                let dev = s
                    .device_mut(user, device)
                    .ok_or_else(|| bad("AUTH_KEY_INVALID"))?;
                dev.queue.retain(|&q, _| q > r.qts);
                // Like the real server, a long backlog comes in slices
                // (`updates.differenceSlice` up to an intermediate state).
                let mut messages = Vec::new();
                let mut upto = r.qts;
                for (&q, (up, _)) in &dev.queue {
                    if messages.len() >= DIFFERENCE_LIMIT {
                        break;
                    }
                    if let api::Update::NewEncryptedMessage(m) = up {
                        messages.push(m.message.clone());
                    }
                    upto = q;
                }
                let whole = dev.queue.range(upto + 1..).next().is_none();
                let qts = if whole { dev.qts } else { upto };
                if messages.is_empty() {
                    return ser(&api::updates::Difference::Empty(
                        t::updates::DifferenceEmpty { date, seq: 0 },
                    ));
                }
                let state = api::updates::State::State(t::updates::State {
                    pts: 0,
                    qts,
                    date,
                    seq: 0,
                    unread_count: 0,
                });
                if !whole {
                    return ser(&api::updates::Difference::Slice(
                        t::updates::DifferenceSlice {
                            new_messages: vec![],
                            new_encrypted_messages: messages,
                            other_updates: vec![],
                            chats: vec![],
                            users: vec![],
                            intermediate_state: state,
                        },
                    ));
                }
                ser(&api::updates::Difference::Difference(
                    t::updates::Difference {
                        new_messages: vec![],
                        new_encrypted_messages: messages,
                        other_updates: vec![],
                        chats: vec![],
                        users: vec![],
                        state,
                    },
                ))
            }
            m::ReadEncryptedHistory::CONSTRUCTOR_ID | m::SetEncryptedTyping::CONSTRUCTOR_ID => {
                Ok(bool_bytes(true))
            }
            up::SaveFilePart::CONSTRUCTOR_ID => {
                let r: up::SaveFilePart = de(req)?;
                s.files
                    .save_part((user, device, r.file_id), r.file_part, r.bytes, None)?;
                Ok(bool_bytes(true))
            }
            up::SaveBigFilePart::CONSTRUCTOR_ID => {
                let r: up::SaveBigFilePart = de(req)?;
                s.files.save_part(
                    (user, device, r.file_id),
                    r.file_part,
                    r.bytes,
                    Some(r.file_total_parts),
                )?;
                Ok(bool_bytes(true))
            }
            up::GetFile::CONSTRUCTOR_ID => {
                let r: up::GetFile = de(req)?;
                let api::InputFileLocation::InputEncryptedFileLocation(loc) = r.location;
                let bytes = s
                    .files
                    .read(loc.id, loc.access_hash, r.offset, r.limit, r.precise)?;
                ser(&api::upload::File::File(t::upload::File {
                    r#type: api::storage::FileType::FilePartial(t::storage::FilePartial {}),
                    mtime: 0,
                    bytes,
                }))
            }
            _ => Err(bad("METHOD_INVALID")),
        }
    }

    /// Stores an uploaded file from its parts; returns its `encryptedFile`.
    fn finish_upload(
        &self,
        s: &mut State,
        user: i64,
        device: u32,
        file: &api::InputEncryptedFile,
    ) -> Result<api::EncryptedFile, RpcError> {
        let (id, parts, fp) = match file {
            api::InputEncryptedFile::Uploaded(f) => (f.id, f.parts, f.key_fingerprint),
            api::InputEncryptedFile::BigUploaded(f) => (f.id, f.parts, f.key_fingerprint),
            api::InputEncryptedFile::InputEncryptedFile(f) => {
                return s.files.existing(f.id, f.access_hash);
            }
            api::InputEncryptedFile::Empty(_) => return Err(bad("FILE_EMPTY")),
        };
        let access_hash = s.rng.r#gen();
        s.files.finish((user, device, id), parts, fp, access_hash)
    }

    #[allow(clippy::too_many_arguments)]
    fn send(
        &self,
        s: &mut State,
        user: i64,
        device: u32,
        peer: api::InputEncryptedChat,
        random_id: i64,
        data: Vec<u8>,
        file: Option<api::InputEncryptedFile>,
        service: bool,
    ) -> Result<Vec<u8>, RpcError> {
        if let Some(reply) = s
            .device_mut(user, device)
            .and_then(|d| d.sent.get(&random_id))
        {
            let reply = reply.clone();
            s.stats.deduplicated += 1;
            return Ok(reply);
        }
        let api::InputEncryptedChat::InputEncryptedChat(peer) = peer;
        let chat = s
            .chats
            .get(&peer.chat_id)
            .ok_or_else(|| bad("CHAT_ID_INVALID"))?;
        if chat.access_hash != peer.access_hash {
            return Err(bad("CHAT_ID_INVALID"));
        }
        let to = match chat.state {
            ChatState::Discarded => return Err(bad("ENCRYPTION_DECLINED")),
            ChatState::Requested => return Err(bad("CHAT_ID_INVALID")),
            ChatState::Accepted(dev) if (user, device) == chat.admin => (chat.participant, dev),
            ChatState::Accepted(dev) if (user, dev) == (chat.participant, device) => chat.admin,
            ChatState::Accepted(_) => return Err(bad("CHAT_ID_INVALID")),
        };
        if data.len() > 1 << 20 || data.len() % 16 != 8 {
            return Err(bad("DATA_INVALID"));
        }
        let date = s.date();
        let (message, reply) = match file {
            Some(f) => {
                let ef = self.finish_upload(s, user, device, &f)?;
                let m = api::EncryptedMessage::EncryptedMessage(t::EncryptedMessage {
                    random_id,
                    chat_id: peer.chat_id,
                    date,
                    bytes: data,
                    file: ef.clone(),
                });
                let reply = api::messages::SentEncryptedMessage::SentEncryptedFile(
                    t::messages::SentEncryptedFile { date, file: ef },
                );
                (m, reply)
            }
            None => {
                let m = if service {
                    api::EncryptedMessage::Service(t::EncryptedMessageService {
                        random_id,
                        chat_id: peer.chat_id,
                        date,
                        bytes: data,
                    })
                } else {
                    api::EncryptedMessage::EncryptedMessage(t::EncryptedMessage {
                        random_id,
                        chat_id: peer.chat_id,
                        date,
                        bytes: data,
                        file: api::EncryptedFile::Empty(t::EncryptedFileEmpty {}),
                    })
                };
                let reply = api::messages::SentEncryptedMessage::SentEncryptedMessage(
                    t::messages::SentEncryptedMessage { date },
                );
                (m, reply)
            }
        };
        let reply = ser(&reply)?;
        if let Some(dev) = s.device_mut(user, device) {
            dev.sent.insert(random_id, reply.clone());
        }
        s.enqueue(&self.delivery, to.0, to.1, message);
        Ok(reply)
    }
}
