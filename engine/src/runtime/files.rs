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

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use md5::{Digest, Md5};
use secretchat_schema::api::functions::upload as up;
use secretchat_schema::api::{enums as api, types as api_types};
use secretchat_schema::e2e::{enums as e2e, types as e2e_t};
use secretchat_schema::{Deserialize, Identifiable, Serialize, TlDeserialize, TlSerialize};
use zeroize::Zeroize;

use super::workers::CryptPart;
use super::{Engine, EngineError, EngineEvent, EventKind, call_retrying};
use crate::crypto::file::{FileKey, PART_SIZE};
use crate::crypto::ige::Direction;
use crate::crypto::keys::Secret32;
use crate::protocol::chat::Outgoing;
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

/// `secretchat.upload#820dadf3 account:long chat:long file_id:long path:string size:long
/// key:bytes iv:bytes next_part:int state:bytes message:bytes = secretchat.Upload` — an upload in
/// progress (`message`: the `decryptedMessage` to send when done, TL).
#[derive(Default, TlSerialize, TlDeserialize, Identifiable)]
#[tl(id = 0x820dadf3, name = "secretchat.upload")]
struct Upload {
    account: i64,
    chat: i64,
    file_id: i64,
    path: String,
    size: i64,
    key: Vec<u8>,
    iv: Vec<u8>,
    next_part: i32,
    state: Vec<u8>,
    message: Vec<u8>,
}

impl Drop for Upload {
    fn drop(&mut self) {
        self.key.zeroize();
        self.iv.zeroize();
        self.state.zeroize();
        self.message.zeroize();
    }
}

fn upload_key(account: u64, file_id: i64) -> Vec<u8> {
    [
        b"upload/".as_slice(),
        &account.to_be_bytes(),
        &file_id.to_be_bytes(),
    ]
    .concat()
}

/// Encrypted size of a `size`-byte file: padded to 16, at least one block.
fn encrypted_len(size: u64) -> u64 {
    size.div_ceil(16).max(1) * 16
}

impl Engine {
    fn api(&self, account: u64) -> Result<Arc<dyn ServerApi>, FileError> {
        self.apis
            .lock()
            .ok()
            .and_then(|m| m.get(&account).cloned())
            .ok_or(FileError::NoAccount(account))
    }

    fn progress(&self, account: u64, chat: u64, file_id: i64, done: u64, total: u64, upload: bool) {
        let _ = self.events.send(EngineEvent {
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

    /// Uploads `file` and sends it to `chat`. Returns the server file id. Progress arrives as
    /// [`EventKind::FileProgress`] events; after a crash, [`Engine::resume_uploads`] finishes it.
    ///
    /// # Errors
    /// [`FileError`]; a stored upload stays resumable.
    pub async fn send_file(
        &self,
        account: u64,
        chat: u64,
        file: FileToSend,
    ) -> Result<i64, FileError> {
        let size = std::fs::metadata(&file.path)?.len();
        if encrypted_len(size).div_ceil(PART_SIZE as u64) > MAX_PARTS {
            return Err(FileError::TooLarge(size));
        }
        let status = self.status(account, chat).await?;
        if status.negotiated_layer < 143 && size > i32::MAX as u64 {
            return Err(FileError::TooLarge(size));
        }
        let mut random = [0u8; 64];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut random);
        let key = FileKey::from_random(&random);
        random.zeroize();
        let media = media(&file, &key, size)?;
        let message = e2e::DecryptedMessage::DecryptedMessage73(e2e_t::DecryptedMessage73 {
            no_webpage: false,
            silent: false,
            random_id: file.random_id,
            ttl: 0,
            message: file.caption.clone(),
            media: Some(media),
            entities: None,
            via_bot_name: None,
            reply_to_random_id: None,
            grouped_id: None,
        });
        let mut rec = Upload::default();
        rec.account = account as i64;
        rec.chat = chat as i64;
        rec.file_id = rand::random::<i64>();
        rec.path = file.path.to_string_lossy().into_owned();
        rec.size = size as i64;
        rec.key = key.key.0.to_vec();
        rec.iv = key.iv.0.to_vec();
        rec.state = key.iv.0.to_vec();
        rec.message = message.to_bytes().map_err(CallError::from)?;
        let bytes = rec.to_bytes().map_err(CallError::from)?;
        self.store
            .put_meta(&upload_key(account, rec.file_id), &bytes)
            .map_err(EngineError::from)?;
        let id = rec.file_id;
        self.run_upload(rec).await?;
        Ok(id)
    }

    /// Finishes the uploads of `account` a crash interrupted (from their last stored part) and
    /// sends their messages. Returns how many it finished.
    ///
    /// # Errors
    /// [`FileError`] for the first one that fails (the rest stay stored).
    pub async fn resume_uploads(&self, account: u64) -> Result<usize, FileError> {
        let prefix = [b"upload/".as_slice(), &account.to_be_bytes()].concat();
        let pending = self
            .store
            .meta_with_prefix(&prefix)
            .map_err(EngineError::from)?;
        let n = pending.len();
        for (_, v) in pending {
            let rec = Upload::from_bytes(&v).map_err(CallError::from)?;
            self.run_upload(rec).await?;
        }
        Ok(n)
    }

    async fn run_upload(&self, mut rec: Upload) -> Result<(), FileError> {
        let account = rec.account as u64;
        let api = self.api(account)?;
        let size = rec.size as u64;
        let key = FileKey {
            key: Secret32(
                rec.key
                    .as_slice()
                    .try_into()
                    .map_err(|_| FileError::Corrupt)?,
            ),
            iv: Secret32(
                rec.iv
                    .as_slice()
                    .try_into()
                    .map_err(|_| FileError::Corrupt)?,
            ),
        };
        let total = encrypted_len(size);
        let parts = total.div_ceil(PART_SIZE as u64) as i32;
        let big = size > BIG_FILE;
        let mut input = std::fs::File::open(&rec.path)?;
        let state: [u8; 32] = rec
            .state
            .as_slice()
            .try_into()
            .map_err(|_| FileError::Corrupt)?;
        let mut stream = key.resume(Direction::Encrypt, &state);
        let mut md5 = Md5::new();
        if !big && rec.next_part > 0 {
            // The md5 covers the whole encrypted file: redo the stored parts' bytes (≤ 10 MiB).
            let mut again = key.stream(Direction::Encrypt);
            input.seek(SeekFrom::Start(0))?;
            for _ in 0..rec.next_part {
                let mut buf = vec![0u8; PART_SIZE];
                input.read_exact(&mut buf)?;
                again.part(&mut buf).map_err(|_| FileError::Corrupt)?;
                md5.update(&buf);
            }
        }
        input.seek(SeekFrom::Start(rec.next_part as u64 * PART_SIZE as u64))?;
        for part in rec.next_part..parts {
            let last = part == parts - 1;
            let want = if last {
                (size - part as u64 * PART_SIZE as u64) as usize
            } else {
                PART_SIZE
            };
            let mut buf = vec![0u8; want];
            input.read_exact(&mut buf)?;
            if last && buf.is_empty() {
                buf.resize(16, 0);
            }
            let (s, data) = self
                .files
                .send(CryptPart {
                    stream,
                    data: buf,
                    last,
                })
                .await
                .map_err(|_| EngineError::Stopped)?
                .map_err(|_| FileError::Corrupt)?;
            stream = s;
            if !big {
                md5.update(&data);
            }
            if big {
                let req = up::SaveBigFilePart {
                    file_id: rec.file_id,
                    file_part: part,
                    file_total_parts: parts,
                    bytes: data,
                };
                call_retrying(&*api, &req).await?;
            } else {
                let req = up::SaveFilePart {
                    file_id: rec.file_id,
                    file_part: part,
                    bytes: data,
                };
                call_retrying(&*api, &req).await?;
            }
            rec.next_part = part + 1;
            rec.state = stream.chain_state().to_vec();
            let bytes = rec.to_bytes().map_err(CallError::from)?;
            self.store
                .put_meta(&upload_key(account, rec.file_id), &bytes)
                .map_err(EngineError::from)?;
            let done = (u64::from(rec.next_part.unsigned_abs()) * PART_SIZE as u64).min(total);
            self.progress(account, rec.chat as u64, rec.file_id, done, total, true);
        }
        let fingerprint = key.fingerprint();
        let input_file = if big {
            api::InputEncryptedFile::BigUploaded(api_types::InputEncryptedFileBigUploaded {
                id: rec.file_id,
                parts,
                key_fingerprint: fingerprint,
            })
        } else {
            api::InputEncryptedFile::Uploaded(api_types::InputEncryptedFileUploaded {
                id: rec.file_id,
                parts,
                md5_checksum: hex::encode(md5.finalize()),
                key_fingerprint: fingerprint,
            })
        };
        let e2e::DecryptedMessage::DecryptedMessage73(m) =
            e2e::DecryptedMessage::from_bytes(&rec.message).map_err(CallError::from)?
        else {
            return Err(FileError::Corrupt);
        };
        let outgoing = Outgoing {
            random_id: m.random_id,
            text: m.message,
            entities: Vec::new(),
            media: m.media.map(|media| (media, input_file)),
            reply_to_random_id: None,
            ttl: 0,
            silent: false,
            no_webpage: false,
            via_bot_name: None,
            grouped_id: None,
        };
        self.send(account, rec.chat as u64, outgoing).await?;
        self.store
            .delete_meta(&upload_key(account, rec.file_id))
            .map_err(EngineError::from)?;
        Ok(())
    }

    /// Forwards a received or sent file to another chat without uploading it again
    /// (`inputEncryptedFile` with the server's id and access hash); the message carries the
    /// same key and IV in `media`.
    ///
    /// # Errors
    /// [`FileError`].
    pub async fn forward_file(
        &self,
        account: u64,
        chat: u64,
        file: &FileRef,
        media: e2e::DecryptedMessageMedia,
    ) -> Result<(), FileError> {
        let input = api::InputEncryptedFile::InputEncryptedFile(api_types::InputEncryptedFile {
            id: file.file.id,
            access_hash: file.file.access_hash,
        });
        let mut out = Outgoing::text(rand::random(), "");
        out.media = Some((media, input));
        self.send(account, chat, out).await?;
        Ok(())
    }

    /// Downloads and decrypts `file` to `dest`. On any error `dest` is removed. Progress is
    /// stored after every part: calling it again after a crash continues where it stopped.
    ///
    /// # Errors
    /// [`FileError::KeyMismatch`], [`FileError::SizeMismatch`], [`FileError::Corrupt`], I/O and
    /// call errors.
    pub async fn download(
        &self,
        account: u64,
        chat: u64,
        file: &FileRef,
        dest: &Path,
    ) -> Result<(), FileError> {
        let result = self.download_inner(account, chat, file, dest).await;
        if let Err(e) = &result {
            // A transport failure leaves the download resumable; a verification failure
            // removes everything.
            if !matches!(e, FileError::Call(_)) {
                let key = [
                    b"download/".as_slice(),
                    &account.to_be_bytes(),
                    &file.file.id.to_be_bytes(),
                ]
                .concat();
                let _ = self.store.delete_meta(&key);
                let _ = std::fs::remove_file(dest);
            }
        }
        result
    }

    async fn download_inner(
        &self,
        account: u64,
        chat: u64,
        f: &FileRef,
        dest: &Path,
    ) -> Result<(), FileError> {
        let key = FileKey {
            key: f.key.clone(),
            iv: f.iv.clone(),
        };
        if key.fingerprint() != f.file.key_fingerprint {
            return Err(FileError::KeyMismatch);
        }
        let stored = u64::try_from(f.file.size).unwrap_or(0);
        if stored != encrypted_len(f.size) {
            return Err(FileError::SizeMismatch {
                declared: f.size,
                stored,
            });
        }
        let api = self.api(account)?;
        let progress_key = [
            b"download/".as_slice(),
            &account.to_be_bytes(),
            &f.file.id.to_be_bytes(),
        ]
        .concat();
        // Resume: (encrypted offset, chain state) stored after each part, if the partial
        // output still holds exactly the bytes written up to there.
        let resume = self
            .store
            .get_meta(&progress_key)
            .map_err(EngineError::from)?
            .and_then(|v| {
                let offset = u64::from_be_bytes(v.get(..8)?.try_into().ok()?);
                let state: [u8; 32] = v.get(8..40)?.try_into().ok()?;
                let written = std::fs::metadata(dest).ok()?.len();
                (written == offset.min(f.size)).then_some((offset, state))
            });
        let (mut out, mut stream, mut offset) = match resume {
            Some((offset, state)) => {
                let mut out = std::fs::OpenOptions::new().write(true).open(dest)?;
                out.seek(SeekFrom::Start(offset.min(f.size)))?;
                (out, key.resume(Direction::Decrypt, &state), offset)
            }
            None => (
                std::fs::File::create(dest)?,
                key.stream(Direction::Decrypt),
                0u64,
            ),
        };
        let location = api::InputFileLocation::InputEncryptedFileLocation(
            api_types::InputEncryptedFileLocation {
                id: f.file.id,
                access_hash: f.file.access_hash,
            },
        );
        while offset < stored {
            let req = up::GetFile {
                precise: false,
                cdn_supported: false,
                location: location.clone(),
                offset: offset as i64,
                limit: PART_SIZE as i32,
            };
            let api::upload::File::File(part) = call_retrying(&*api, &req).await?;
            let mut data = part.bytes;
            let expect = (stored - offset).min(PART_SIZE as u64) as usize;
            if data.len() != expect {
                return Err(FileError::SizeMismatch {
                    declared: f.size,
                    stored: offset + data.len() as u64,
                });
            }
            let (s, plain) = self
                .files
                .send(CryptPart {
                    stream,
                    data: std::mem::take(&mut data),
                    last: false,
                })
                .await
                .map_err(|_| EngineError::Stopped)?
                .map_err(|_| FileError::Corrupt)?;
            stream = s;
            let keep = (f.size.saturating_sub(offset)).min(plain.len() as u64) as usize;
            if plain[keep..].iter().any(|&b| b != 0) {
                return Err(FileError::Corrupt);
            }
            out.write_all(&plain[..keep])?;
            offset += plain.len() as u64;
            out.sync_data()?;
            let mut rec = offset.to_be_bytes().to_vec();
            rec.extend_from_slice(&stream.chain_state());
            self.store
                .put_meta(&progress_key, &rec)
                .map_err(EngineError::from)?;
            self.progress(account, chat, f.file.id, offset, stored, false);
        }
        out.sync_all()?;
        self.store
            .delete_meta(&progress_key)
            .map_err(EngineError::from)?;
        Ok(())
    }
}
