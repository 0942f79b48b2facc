//! Downloading: in order, streamed, verified, resumable.

use std::io::{Seek, SeekFrom, Write};
use std::path::Path;

use secretchat_schema::api::functions::upload as up;
use secretchat_schema::api::{enums as api, types as api_types};

use super::{FileError, FileRef, encrypted_len};
use crate::crypto::file::{FileKey, PART_SIZE};
use crate::crypto::ige::Direction;
use crate::runtime::workers::CryptPart;
use crate::runtime::{Engine, EngineError, call_retrying};

impl Engine {
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
        if !crate::crypto::keys::file_fingerprints_equal(key.fingerprint(), f.file.key_fingerprint)
        {
            return Err(FileError::KeyMismatch);
        }
        let stored = u64::try_from(f.file.size).unwrap_or(0);
        if stored != encrypted_len(f.size) {
            return Err(FileError::SizeMismatch {
                declared: f.size,
                stored,
            });
        }
        // The file's parts are on the DC it names.
        let api = crate::transport::InDc {
            api: self.api(account)?,
            dc_id: f.file.dc_id,
        };
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
            let api::upload::File::File(part) = call_retrying(&api, &req).await?;
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
                .put_meta_lazy(&progress_key, &rec)
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
