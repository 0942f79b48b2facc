//! Files from and to streams: [`Engine::send_file_from`] reads any `AsyncRead`,
//! [`Engine::download_to`] writes into any `AsyncWrite`.
//!
//! Both pass through a spool file in the database directory (`spool/`), so a transfer
//! interrupted by a crash resumes like a file sent from a path: the upload's bytes must be
//! readable again after a restart, and a download is verified (its padding checked) before a
//! byte reaches the writer. A spool file is removed once its transfer is done, and an
//! account's are removed with it. Spooled bytes are the plaintext: with an at-rest key set,
//! keep the database on storage that is itself protected, as for the files sent from paths.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::message::InputFile;
use crate::{AccountId, ChatId, Engine, Error, FileRef};

/// The spool directory and the files transfers are using now.
#[derive(Debug)]
pub(crate) struct Spool {
    dir: PathBuf,
    busy: Mutex<HashSet<PathBuf>>,
}

/// Marks a spool file busy for as long as it lives.
struct Busy<'a> {
    spool: &'a Spool,
    path: PathBuf,
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        if let Ok(mut b) = self.spool.busy.lock() {
            b.remove(&self.path);
        }
    }
}

impl Spool {
    pub(crate) fn new(db: &Path) -> Self {
        Spool {
            dir: db.join("spool"),
            busy: Mutex::default(),
        }
    }

    fn claim(&self, name: String) -> Result<Busy<'_>, Error> {
        std::fs::create_dir_all(&self.dir)?;
        let path = self.dir.join(name);
        let mut busy = self.busy.lock().map_err(|_| Error::Stopped)?;
        if !busy.insert(path.clone()) {
            return Err(Error::InvalidInput("this transfer is already running"));
        }
        Ok(Busy { spool: self, path })
    }

    /// Removes `account`'s spool files no transfer is using (after its uploads were resumed,
    /// or when it is removed).
    pub(crate) fn sweep(&self, account: AccountId) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        let prefixes = [format!("up-{}-", account.0), format!("dl-{}-", account.0)];
        let Ok(busy) = self.busy.lock() else { return };
        for e in entries.flatten() {
            let name = e.file_name();
            let name = name.to_string_lossy();
            if prefixes.iter().any(|p| name.starts_with(p.as_str())) && !busy.contains(&e.path()) {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}

impl Engine {
    /// [`Engine::send_file`] with the bytes read from `source`, which must yield exactly
    /// `len` bytes. `file` describes the file as for a path (its path only names it:
    /// `InputFile::document("report.pdf", …)`). The bytes are spooled to the database
    /// directory first, so [`Engine::resume_uploads`] can finish the upload after a crash.
    ///
    /// # Errors
    /// [`Error::Io`] (`UnexpectedEof` if `source` ends before `len` bytes,
    /// `InvalidData` if it has more), and as [`Engine::send_file`].
    pub async fn send_file_from<R>(
        &self,
        account: AccountId,
        chat: ChatId,
        source: R,
        len: u64,
        mut file: InputFile,
    ) -> Result<i64, Error>
    where
        R: AsyncRead + Unpin + Send,
    {
        let spool = self.spool();
        let busy = spool.claim(format!("up-{}-{:016x}", account.0, file.random_id()))?;
        let written = write_exactly(source, len, &busy.path).await;
        if let Err(e) = written {
            let _ = std::fs::remove_file(&busy.path);
            return Err(e);
        }
        file.0.path = busy.path.clone();
        let result = self.send_file(account, chat, file).await;
        // An upload that failed on a call stays stored and resumable from the spool file.
        if !matches!(result, Err(Error::Rpc(_) | Error::Decode(_))) {
            let _ = std::fs::remove_file(&busy.path);
        }
        result
    }

    /// [`Engine::download`] into `dest`: the file is downloaded and verified first (to a
    /// spool file, resumable like a download to a path), then copied into `dest`, which is
    /// flushed. Returns the number of bytes written.
    ///
    /// # Errors
    /// As [`Engine::download`]; [`Error::Io`] when writing to `dest` fails.
    pub async fn download_to<W>(
        &self,
        account: AccountId,
        chat: ChatId,
        file: &FileRef,
        mut dest: W,
    ) -> Result<u64, Error>
    where
        W: AsyncWrite + Unpin + Send,
    {
        let spool = self.spool();
        let busy = spool.claim(format!("dl-{}-{:016x}", account.0, file.file.id))?;
        self.download(account, chat, file, &busy.path).await?;
        let copied = async {
            let mut from = tokio::fs::File::open(&busy.path).await?;
            let n = tokio::io::copy(&mut from, &mut dest).await?;
            dest.flush().await?;
            Ok::<u64, std::io::Error>(n)
        }
        .await;
        let _ = std::fs::remove_file(&busy.path);
        Ok(copied?)
    }
}

/// Copies exactly `len` bytes of `source` into a new file at `path`, synced.
async fn write_exactly<R>(source: R, len: u64, path: &Path) -> Result<(), Error>
where
    R: AsyncRead + Unpin + Send,
{
    let mut out = tokio::fs::File::create(path).await?;
    let mut limited = source.take(len);
    let n = tokio::io::copy(&mut limited, &mut out).await?;
    if n < len {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            format!("the source ended after {n} of {len} bytes"),
        )
        .into());
    }
    let mut source = limited.into_inner();
    if source.read(&mut [0u8; 1]).await? != 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("the source has more than {len} bytes"),
        )
        .into());
    }
    out.sync_all().await?;
    Ok(())
}
