//! The engine's values as the protocol's JSON, and back: chats, messages, files, events.
//! 64-bit values are decimal strings; bytes are lowercase hex; TL objects (entities,
//! document attributes, typing actions) are in the form `secretchat tl decode` prints
//! (`{"_": "messageEntityBold", …}`).

use secretchat::crypto::keys::Secret32;
use secretchat::tl::TlJson;
use secretchat::tl::api::types as api_types;
use secretchat::{
    AccountId, ChatId, ChatState, Event, FileRef, Media, Message, PeerAction, SecretChat, Update,
};
use serde_json::{Value, json};

use crate::wire::{Fields, WireError};

/// A 64-bit value in the protocol's form.
pub fn long(v: impl ToString) -> Value {
    Value::String(v.to_string())
}

/// A chat as `getSecretChat` answers and `updateSecretChat` carries it.
pub fn secret_chat(c: &SecretChat) -> Value {
    let mut v = json!({
        "@type": "secretChat",
        "id": long(c.id.0),
        "server_chat_id": c.server_chat_id,
        "user_id": long(c.user_id),
        "state": c.state.name(),
        "is_outbound": c.is_outbound,
        "layer": c.layer,
        "ttl": c.ttl,
        "key_hash": hex::encode(&c.key_hash),
    });
    if let ChatState::Closed(reason) = &c.state {
        v["close_reason"] = Value::String(reason.to_string());
    }
    v
}

/// A received file, enough to download it again (`downloadFile`'s `file`).
pub fn file(chat: ChatId, f: &FileRef) -> Value {
    json!({
        "secret_chat_id": long(chat.0),
        "id": long(f.file.id),
        "access_hash": long(f.file.access_hash),
        "size": long(f.file.size),
        "dc_id": f.file.dc_id,
        "key_fingerprint": f.file.key_fingerprint,
        "key": hex::encode(f.key.0),
        "iv": hex::encode(f.iv.0),
        "plain_size": long(f.size),
    })
}

/// [`file`] read back: the chat and the file.
///
/// # Errors
/// A missing or malformed field.
pub fn file_ref(f: &Fields<'_>) -> Result<(ChatId, FileRef), WireError> {
    let secret = |name: &str| -> Result<Secret32, WireError> {
        let bytes: [u8; 32] = f
            .hex(name)?
            .try_into()
            .map_err(|_| WireError::bad(format!("`{name}` is not 32 bytes")))?;
        Ok(Secret32(bytes))
    };
    let file = api_types::EncryptedFile {
        id: f.i64("id")?,
        access_hash: f.i64("access_hash")?,
        size: f.i64("size")?,
        dc_id: f.i32("dc_id")?,
        key_fingerprint: f.i32("key_fingerprint")?,
    };
    let chat = ChatId(f.u64("secret_chat_id")?);
    Ok((
        chat,
        FileRef {
            file,
            key: secret("key")?,
            iv: secret("iv")?,
            size: f.u64("plain_size")?,
        },
    ))
}

fn media(m: &Media) -> Value {
    match m {
        Media::Photo { width, height } => {
            json!({"@type": "photo", "width": width, "height": height})
        }
        Media::Video {
            width,
            height,
            duration,
            mime_type,
        } => {
            json!({"@type": "video", "width": width, "height": height, "duration": duration, "mime_type": mime_type})
        }
        Media::Audio {
            duration,
            mime_type,
        } => json!({"@type": "audio", "duration": duration, "mime_type": mime_type}),
        Media::Document {
            mime_type,
            file_name,
            attributes,
        } => json!({
            "@type": "document",
            "mime_type": mime_type,
            "file_name": file_name,
            "attributes": attributes.iter().map(TlJson::to_json).collect::<Vec<_>>(),
        }),
        Media::Geo { lat, long } => json!({"@type": "geo", "lat": lat, "long": long}),
        Media::Contact {
            phone_number,
            first_name,
            last_name,
            user_id,
        } => json!({
            "@type": "contact", "phone_number": phone_number, "first_name": first_name,
            "last_name": last_name, "user_id": user_id,
        }),
        Media::Venue {
            lat,
            long,
            title,
            address,
        } => {
            json!({"@type": "venue", "lat": lat, "long": long, "title": title, "address": address})
        }
        Media::WebPage { url } => json!({"@type": "webPage", "url": url}),
        _ => json!({"@type": "external"}),
    }
}

/// A received message.
pub fn message(chat: ChatId, m: &Message) -> Value {
    let mut v = json!({
        "@type": "message",
        "random_id": long(m.random_id),
        "date": m.date,
        "text": m.text,
        "entities": m.entities.iter().map(TlJson::to_json).collect::<Vec<_>>(),
        "ttl": m.ttl,
        "silent": m.silent,
        "no_webpage": m.no_webpage,
        "layer": m.layer,
    });
    if let Some(r) = m.reply_to_random_id {
        v["reply_to_random_id"] = long(r);
    }
    if let Some(b) = &m.via_bot_name {
        v["via_bot_name"] = Value::String(b.clone());
    }
    if let Some(g) = m.grouped_id {
        v["grouped_id"] = long(g);
    }
    if let Some(md) = &m.media {
        v["media"] = media(md);
    }
    if let Some(f) = &m.file {
        v["file"] = file(chat, f);
    }
    v
}

fn peer_action(a: &PeerAction) -> Value {
    match a {
        PeerAction::SetTtl(t) => json!({"@type": "setTtl", "ttl": t}),
        PeerAction::Read(ids) => json!({"@type": "read", "random_ids": longs(ids)}),
        PeerAction::Screenshot(ids) => json!({"@type": "screenshot", "random_ids": longs(ids)}),
        PeerAction::FlushHistory => json!({"@type": "flushHistory"}),
        PeerAction::Typing(t) => json!({"@type": "typing", "action": t.to_json()}),
        PeerAction::Other(o) => json!({"@type": "other", "action": o.to_json()}),
        _ => json!({"@type": "other"}),
    }
}

fn longs(ids: &[i64]) -> Vec<Value> {
    ids.iter().map(|i| long(*i)).collect()
}

/// An event line: `@type`, `seq` (a decimal string for stored events, which `ack` makes
/// final; `null` for the others), `account`, `secret_chat_id`, and the update's fields.
pub fn event(e: &Event) -> Value {
    let (kind, mut body) = update(e.chat, &e.update);
    body["@type"] = Value::String(kind.to_owned());
    body["seq"] = e.seq.map_or(Value::Null, long);
    body["account"] = long(e.account.0);
    body["secret_chat_id"] = long(e.chat.0);
    body
}

fn update(chat: ChatId, u: &Update) -> (&'static str, Value) {
    match u {
        Update::ChatRequested { user_id, date } => (
            "updateSecretChatRequested",
            json!({"user_id": long(user_id), "date": date}),
        ),
        Update::ChatUpdated(c) => ("updateSecretChat", json!({"secret_chat": secret_chat(c)})),
        Update::ChatReady { key_hash } => (
            "updateSecretChatReady",
            json!({"key_hash": hex::encode(key_hash)}),
        ),
        Update::NewMessage(m) => ("updateNewMessage", json!({"message": message(chat, m)})),
        Update::MessagesDeleted { random_ids } => (
            "updateMessagesDeleted",
            json!({"random_ids": longs(random_ids)}),
        ),
        Update::PeerAction { random_id, action } => (
            "updatePeerAction",
            json!({"random_id": long(random_id), "action": peer_action(action)}),
        ),
        Update::MessagesRead { max_date, date } => (
            "updateMessagesRead",
            json!({"max_date": max_date, "date": date}),
        ),
        Update::Typing => ("updateTyping", json!({})),
        Update::MessageSent { random_id, date } => (
            "updateMessageSent",
            json!({"random_id": long(random_id), "date": date}),
        ),
        Update::CallFailed {
            method,
            random_id,
            error,
        } => (
            "updateCallFailed",
            json!({
                "method": method,
                "random_id": random_id.map(long),
                "code": error.code,
                "message": error.message,
            }),
        ),
        Update::PeerLayer(l) => ("updatePeerLayer", json!({"layer": l})),
        Update::PeerNewerThanUs(l) => ("updatePeerNewerThanUs", json!({"layer": l})),
        Update::Rekeyed { key_fingerprint } => (
            "updateRekeyed",
            json!({"key_fingerprint": long(key_fingerprint)}),
        ),
        Update::ChatUnhealthy {
            holes,
            unacknowledged,
        } => (
            "updateSecretChatUnhealthy",
            json!({"holes": holes, "unacknowledged": unacknowledged}),
        ),
        Update::ChatClosed(r) => ("updateSecretChatClosed", json!({"reason": r.to_string()})),
        Update::FileProgress {
            file_id,
            done,
            total,
            upload,
        } => (
            "updateFileProgress",
            json!({"file_id": long(file_id), "done": long(done), "total": long(total), "upload": upload}),
        ),
        Update::StoreFailed(s) => ("updateStoreFailed", json!({"message": s})),
        Update::AccountLost => ("updateAccountLost", json!({})),
        _ => ("updateOther", json!({})),
    }
}

/// The account of a request.
///
/// # Errors
/// Missing or not an unsigned 64-bit integer.
pub fn account(f: &Fields<'_>) -> Result<AccountId, WireError> {
    Ok(AccountId(f.u64("account")?))
}

/// The chat of a request (`secret_chat_id`).
///
/// # Errors
/// Missing or not an unsigned 64-bit integer.
pub fn chat(f: &Fields<'_>) -> Result<ChatId, WireError> {
    Ok(ChatId(f.u64("secret_chat_id")?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_survives_the_round_trip() {
        let f = FileRef {
            file: api_types::EncryptedFile {
                id: -7,
                access_hash: i64::MAX,
                size: 1040,
                dc_id: 2,
                key_fingerprint: -99,
            },
            key: Secret32([1; 32]),
            iv: Secret32([2; 32]),
            size: 1000,
        };
        let v = file(ChatId(5), &f);
        assert_eq!(v["access_hash"], "9223372036854775807");
        let (chat, back) = file_ref(&Fields(v.as_object().unwrap())).unwrap();
        assert_eq!(chat, ChatId(5));
        assert_eq!(back.file, f.file);
        assert_eq!((back.key, back.iv, back.size), (f.key, f.iv, f.size));
        let mut short = v.clone();
        short["key"] = Value::String("00".into());
        assert_eq!(
            file_ref(&Fields(short.as_object().unwrap()))
                .unwrap_err()
                .message,
            "`key` is not 32 bytes"
        );
    }
}
