//! Encrypted files end to end (`end-to-end.md` "Sending Encrypted Files", `files.md`).
//!
//! Sending: a one-time key and IV; the file is read, encrypted (one continuous IGE chain, on the
//! `FileCryptor` pool) and uploaded one 512 KiB part at a time — `upload.saveFilePart`, or
//! `upload.saveBigFilePart` above 10 MiB — so memory stays at a few parts whatever the size.
//! Progress (next part and chain state) is stored after every part; after a crash
//! [`Engine::resume_uploads`] continues from the last stored part. Then the message goes out
//! with `inputEncryptedFileUploaded` (with the md5 of the encrypted bytes) or
//! `inputEncryptedFileBigUploaded`, and a `decryptedMessageMedia*` carrying key and IV.
//!
//! Receiving: [`FileRef::from_message`] takes key, IV and size from the message and the
//! `encryptedFile` from the update; [`Engine::download`] checks the key fingerprint, fetches
//! parts in order with `upload.getFile`, decrypts as a stream, checks sizes and the zero padding
//! (IGE garbles everything after a changed block, so a tampered part shows up there whenever the
//! size is not a multiple of 16), truncates, and removes the partial output on a verification
//! error. Progress is stored per part: a download interrupted by a crash or a transport failure
//! continues from there when called again. [`Engine::forward_file`] re-sends a stored file to
//! another chat without uploading it again.

mod download;
mod upload;

pub(crate) use upload::Running;

use std::path::PathBuf;
use std::sync::Arc;

use secretchat_schema::api::{enums as api, types as api_types};
use secretchat_schema::e2e::{enums as e2e, types as e2e_t};

use super::{Engine, EngineError, EngineEvent, EventKind};
use crate::crypto::file::FileKey;
use crate::crypto::keys::Secret32;
use crate::transport::{CallError, ServerApi};

/// Files above this size use `upload.saveBigFilePart` (`files.md`).
pub const BIG_FILE: u64 = 10 * 1024 * 1024;
/// Most parts a file may have (`files.md`: 4000 × 512 KiB ≈ 2 GiB; 8000 for premium).
pub const MAX_PARTS: u64 = 8000;

/// What a file is sent as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaKind {
    /// A photo of `w × h`.
    Photo {
        /// Width.
        w: i32,
        /// Height.
        h: i32,
    },
    /// A video.
    Video {
        /// Width.
        w: i32,
        /// Height.
        h: i32,
        /// Seconds.
        duration: i32,
    },
    /// A document (also voice notes, stickers, audio: say which with `attributes`).
    Document,
}

/// A file to send.
#[derive(Debug, Clone)]
pub struct FileToSend {
    /// Where it is.
    pub path: PathBuf,
    /// As what.
    pub kind: MediaKind,
    /// MIME type.
    pub mime_type: String,
    /// Caption.
    pub caption: String,
    /// A small thumbnail (travels inside the message), its size.
    pub thumb: Vec<u8>,
    /// Thumbnail width.
    pub thumb_w: i32,
    /// Thumbnail height.
    pub thumb_h: i32,
    /// Document attributes (file name, audio/video/sticker details).
    pub attributes: Vec<e2e::DocumentAttribute>,
    /// The message's random id.
    pub random_id: i64,
    /// Reply to this message.
    pub reply_to_random_id: Option<i64>,
    /// Self-destruct timer (seconds).
    pub ttl: i32,
    /// Send without notification (layer ≥ 73).
    pub silent: bool,
}

impl FileToSend {
    /// A document at `path` with MIME type `mime_type`.
    pub fn document(path: impl Into<PathBuf>, mime_type: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            kind: MediaKind::Document,
            mime_type: mime_type.into(),
            caption: String::new(),
            thumb: Vec::new(),
            thumb_w: 0,
            thumb_h: 0,
            attributes: Vec::new(),
            random_id: rand::random(),
            reply_to_random_id: None,
            ttl: 0,
            silent: false,
        }
    }
}

/// A received file: where it is on the server and how to decrypt it.
#[derive(Clone, PartialEq)]
pub struct FileRef {
    /// The server's file.
    pub file: api_types::EncryptedFile,
    /// The one-time key.
    pub key: Secret32,
    /// The one-time IV.
    pub iv: Secret32,
    /// The plaintext size the message declares.
    pub size: u64,
}

impl std::fmt::Debug for FileRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileRef")
            .field("id", &self.file.id)
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

/// File transfer failures. Downloads remove their partial output on every error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FileError {
    /// Reading or writing the local file failed.
    #[error("file: {0}")]
    Io(#[from] std::io::Error),
    /// A server call failed.
    #[error(transparent)]
    Call(#[from] CallError),
    /// The engine failed.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The key/IV in the message do not match the file's key fingerprint.
    #[error("key fingerprint mismatch: the message's key does not belong to this file")]
    KeyMismatch,
    /// The server's file size does not fit the declared size.
    #[error("size mismatch: declared {declared}, server has {stored} encrypted bytes")]
    SizeMismatch {
        /// What the message says.
        declared: u64,
        /// What the server holds.
        stored: u64,
    },
    /// The decrypted padding is not zero: the file was altered (or the key is wrong).
    #[error("the decrypted file fails its padding check (tampered or wrong key)")]
    Corrupt,
    /// Too big for the chat (parts limit, or a peer below layer 143 and above 2 GiB).
    #[error("file of {0} bytes is too large")]
    TooLarge(u64),
    /// The account is unknown.
    #[error("no account {0}")]
    NoAccount(u64),
}

impl FileRef {
    /// The file in a received message, if it carries one.
    pub fn from_message(
        message: &e2e::DecryptedMessage,
        file: Option<&api::EncryptedFile>,
    ) -> Option<Self> {
        let Some(api::EncryptedFile::EncryptedFile(f)) = file else {
            return None;
        };
        let media = match message {
            e2e::DecryptedMessage::DecryptedMessage73(m) => m.media.as_ref()?,
            e2e::DecryptedMessage::DecryptedMessage46(m) => m.media.as_ref()?,
            _ => return None,
        };
        let (key, iv, size) = match media {
            e2e::DecryptedMessageMedia::Photo46(p) => (&p.key, &p.iv, i64::from(p.size)),
            e2e::DecryptedMessageMedia::Video46(v) => (&v.key, &v.iv, i64::from(v.size)),
            e2e::DecryptedMessageMedia::Document46(d) => (&d.key, &d.iv, i64::from(d.size)),
            e2e::DecryptedMessageMedia::Document143(d) => (&d.key, &d.iv, d.size),
            _ => return None,
        };
        Some(Self {
            file: f.clone(),
            key: Secret32(key.as_slice().try_into().ok()?),
            iv: Secret32(iv.as_slice().try_into().ok()?),
            size: u64::try_from(size).ok()?,
        })
    }
}

/// The media constructor for `kind`, in its richest form (the layer is applied when sent).
fn media(
    f: &FileToSend,
    key: &FileKey,
    size: u64,
) -> Result<e2e::DecryptedMessageMedia, FileError> {
    let small = i32::try_from(size).map_err(|_| FileError::TooLarge(size));
    let (k, iv) = (key.key.0.to_vec(), key.iv.0.to_vec());
    Ok(match f.kind {
        MediaKind::Photo { w, h } => {
            e2e::DecryptedMessageMedia::Photo46(e2e_t::DecryptedMessageMediaPhoto46 {
                thumb: f.thumb.clone(),
                thumb_w: f.thumb_w,
                thumb_h: f.thumb_h,
                w,
                h,
                size: small?,
                key: k,
                iv,
                caption: f.caption.clone(),
            })
        }
        MediaKind::Video { w, h, duration } => {
            e2e::DecryptedMessageMedia::Video46(e2e_t::DecryptedMessageMediaVideo46 {
                thumb: f.thumb.clone(),
                thumb_w: f.thumb_w,
                thumb_h: f.thumb_h,
                duration,
                mime_type: f.mime_type.clone(),
                w,
                h,
                size: small?,
                key: k,
                iv,
                caption: f.caption.clone(),
            })
        }
        MediaKind::Document => {
            e2e::DecryptedMessageMedia::Document143(e2e_t::DecryptedMessageMediaDocument143 {
                thumb: f.thumb.clone(),
                thumb_w: f.thumb_w,
                thumb_h: f.thumb_h,
                mime_type: f.mime_type.clone(),
                size: size as i64,
                key: k,
                iv,
                attributes: f.attributes.clone(),
                caption: f.caption.clone(),
            })
        }
    })
}

/// Encrypted size of a `size`-byte file: padded to 16, at least one block.
pub(super) fn encrypted_len(size: u64) -> u64 {
    size.div_ceil(16).max(1) * 16
}

impl Engine {
    pub(super) fn api(&self, account: u64) -> Result<Arc<dyn ServerApi>, FileError> {
        self.apis
            .lock()
            .ok()
            .and_then(|m| m.get(&account).cloned())
            .ok_or(FileError::NoAccount(account))
    }

    pub(super) fn progress(
        &self,
        account: u64,
        chat: u64,
        file_id: i64,
        done: u64,
        total: u64,
        upload: bool,
    ) {
        self.events.deliver(EngineEvent {
            seq: None,
            account,
            chat,
            kind: EventKind::FileProgress {
                file_id,
                done,
                total,
                upload,
            },
        });
    }
}
