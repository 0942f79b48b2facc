//! Uploading: part by part, resumable, then the message (and forwarding without upload).

use std::io::{Read, Seek, SeekFrom};

use md5::{Digest, Md5};
use secretchat_schema::api::functions::upload as up;
use secretchat_schema::api::{enums as api, types as api_types};
use secretchat_schema::e2e::{enums as e2e, types as e2e_t};
use secretchat_schema::{Deserialize, Identifiable, Serialize, TlDeserialize, TlSerialize};
use zeroize::Zeroize;

use super::{BIG_FILE, FileError, FileRef, FileToSend, MAX_PARTS, encrypted_len, media};
use crate::crypto::file::{FileKey, PART_SIZE};
use crate::crypto::ige::Direction;
use crate::crypto::keys::Secret32;
use crate::protocol::chat::{Command, Outgoing};
use crate::runtime::workers::CryptPart;
use crate::runtime::{Engine, EngineError, call_retrying};
use crate::transport::CallError;

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

/// The uploads this process is running, by `(account, file_id)`: [`Engine::resume_uploads`]
/// leaves them alone (run twice, an upload's message was sent twice).
#[derive(Debug, Default)]
pub(crate) struct Running(std::sync::Mutex<std::collections::HashSet<(u64, i64)>>);

/// One upload claimed in [`Running`] until dropped.
struct Claim<'a> {
    running: &'a Running,
    key: (u64, i64),
}

impl Running {
    /// Claims `(account, file_id)`; `None` while another claim on it lives.
    fn claim(&self, account: u64, file_id: i64) -> Option<Claim<'_>> {
        let fresh = self.0.lock().ok()?.insert((account, file_id));
        // Built only when it is ours: a `Claim` dropped releases its key.
        fresh.then(|| Claim {
            running: self,
            key: (account, file_id),
        })
    }
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        if let Ok(mut set) = self.running.0.lock() {
            set.remove(&self.key);
        }
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

impl Engine {
    /// Uploads `file` and sends it to `chat`. Returns the server file id. Progress arrives as
    /// [`EventKind::FileProgress`](crate::runtime::EventKind::FileProgress) events; after a crash, [`Engine::resume_uploads`] finishes it.
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
            silent: file.silent,
            random_id: file.random_id,
            ttl: file.ttl,
            message: file.caption.clone(),
            media: Some(media),
            entities: None,
            via_bot_name: None,
            reply_to_random_id: file.reply_to_random_id,
            grouped_id: None,
        });
        let mut rec = Upload::default();
        rec.account = account as i64;
        rec.chat = chat as i64;
        // Claimed before its record is stored, released after the record is gone.
        let claim = loop {
            rec.file_id = rand::random::<i64>();
            if let Some(c) = self.uploads.claim(account, rec.file_id) {
                break c;
            }
        };
        rec.path = file.path.to_string_lossy().into_owned();
        rec.size = size as i64;
        rec.key = key.key.0.to_vec();
        rec.iv = key.iv.0.to_vec();
        rec.state = key.iv.0.to_vec();
        rec.message = message.to_bytes().map_err(CallError::from)?;
        let bytes = rec.to_bytes().map_err(CallError::from)?;
        // Not fsynced: losing this record on a power cut only means the upload is not resumed.
        self.store
            .put_meta_lazy(&upload_key(account, rec.file_id), &bytes)
            .map_err(EngineError::from)?;
        let id = rec.file_id;
        self.run_upload(rec).await?;
        drop(claim);
        Ok(id)
    }

    /// Finishes the uploads of `account` a crash interrupted (from their last stored part) and
    /// sends their messages. Returns how many it finished. Uploads this process is running
    /// (a [`Engine::send_file`] in progress, another resume) are left to them.
    ///
    /// # Errors
    /// [`FileError`] for the first one that fails (the rest stay stored).
    pub async fn resume_uploads(&self, account: u64) -> Result<usize, FileError> {
        let prefix = [b"upload/".as_slice(), &account.to_be_bytes()].concat();
        let pending = self
            .store
            .meta_with_prefix(&prefix)
            .map_err(EngineError::from)?;
        let mut n = 0;
        for (key, _) in pending {
            let Some(file_id) = key
                .get(prefix.len()..)
                .and_then(|id| <[u8; 8]>::try_from(id).ok())
                .map(i64::from_be_bytes)
            else {
                continue;
            };
            let Some(claim) = self.uploads.claim(account, file_id) else {
                continue;
            };
            // Read again under the claim: an upload that finished since the listing has
            // removed its record (with the step that stored its message) before releasing
            // its claim.
            let Some(v) = self.store.get_meta(&key).map_err(EngineError::from)? else {
                continue;
            };
            let rec = Upload::from_bytes(&v).map_err(CallError::from)?;
            self.run_upload(rec).await?;
            drop(claim);
            n += 1;
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
        tracing::debug!(
            account,
            chat = rec.chat,
            file_id = rec.file_id,
            size,
            from_part = rec.next_part,
            key = ?key,
            "upload"
        );
        let mut input = std::fs::File::open(&rec.path)?;
        let state: [u8; 32] = rec
            .state
            .as_slice()
            .try_into()
            .map_err(|_| FileError::Corrupt)?;
        let stream = key.resume(Direction::Encrypt, &state);
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
        // Encryption of part k+1 (on the pool) overlaps the upload of part k.
        // Part buffers are recycled: a fresh 512 KiB allocation per part costs page faults.
        let mut spare: Option<Vec<u8>> = None;
        let read_part = |input: &mut std::fs::File,
                         part: i32,
                         spare: Option<Vec<u8>>|
         -> Result<Vec<u8>, FileError> {
            let last = part == parts - 1;
            let want = if last {
                (size - part as u64 * PART_SIZE as u64) as usize
            } else {
                PART_SIZE
            };
            let mut buf = spare.unwrap_or_default();
            buf.clear();
            buf.resize(want, 0);
            input.read_exact(&mut buf)?;
            if last && buf.is_empty() {
                buf.resize(16, 0);
            }
            Ok(buf)
        };
        // `send` queues the part at once; awaiting the answer later lets the pool work meanwhile.
        let encrypt = |stream, data, last| self.files.send(CryptPart { stream, data, last });
        let mut next = if rec.next_part < parts {
            let buf = read_part(&mut input, rec.next_part, None)?;
            Some(encrypt(stream, buf, rec.next_part == parts - 1))
        } else {
            None
        };
        for part in rec.next_part..parts {
            let Some(job) = next.take() else {
                break;
            };
            // Read the next part while this one is being encrypted, so the pool gets it the
            // moment it is free.
            let ahead = if part + 1 < parts {
                Some(read_part(&mut input, part + 1, spare.take())?)
            } else {
                None
            };
            let (stream, data) = job
                .await
                .map_err(|_| EngineError::Stopped)?
                .map_err(|_| FileError::Corrupt)?;
            let state = stream.chain_state();
            if let Some(buf) = ahead {
                next = Some(encrypt(stream, buf, part + 1 == parts - 1));
            }
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
                spare = Some(req.bytes);
            } else {
                let req = up::SaveFilePart {
                    file_id: rec.file_id,
                    file_part: part,
                    bytes: data,
                };
                call_retrying(&*api, &req).await?;
                spare = Some(req.bytes);
            }
            rec.next_part = part + 1;
            rec.state = state.to_vec();
            let bytes = rec.to_bytes().map_err(CallError::from)?;
            self.store
                .put_meta_lazy(&upload_key(account, rec.file_id), &bytes)
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
            reply_to_random_id: m.reply_to_random_id,
            ttl: m.ttl,
            silent: m.silent,
            no_webpage: false,
            via_bot_name: None,
            grouped_id: None,
        };
        // The record goes in the write that stores the message: a crash leaves either both
        // (the upload is resumed and sends it) or neither (it was sent once).
        self.submit_forgetting(
            account,
            rec.chat as u64,
            Command::Send(Box::new(outgoing)),
            Some(upload_key(account, rec.file_id).into()),
        )
        .await?;
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
}
