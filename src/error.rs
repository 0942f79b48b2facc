//! [`Error`]: every failure of the library, one matchable enum.

use secretchat_engine::protocol::chat::snapshot::RestoreError;
use secretchat_engine::runtime::EngineError;
use secretchat_engine::runtime::files::FileError;
use secretchat_engine::store::StoreError;
use secretchat_engine::transport::{CallError, RpcError};
use secretchat_schema::{DecodeError, EncodeError};

use crate::{AccountId, ChatId};

/// What went wrong. Commands fail before anything is stored; a command that succeeded was
/// stored and its effects happen even across a crash (a server call that fails afterwards is
/// reported as [`Update::CallFailed`](crate::Update::CallFailed)).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The store failed, belongs to a newer version, or was sealed with another at-rest key.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A stored chat could not be restored (corrupt, newer format, rolled back).
    #[error(transparent)]
    Restore(#[from] RestoreError),
    /// The account has no such chat.
    #[error("no chat {0}")]
    NoSuchChat(ChatId),
    /// The engine has no such account (add it with `Engine::add_account`).
    #[error("no account {0}")]
    NoSuchAccount(AccountId),
    /// The engine has shut down.
    #[error("the engine has stopped")]
    Stopped,
    /// Too much waits for the database (an outage, or reads far slower than what arrives):
    /// nothing of the command was stored; try again later.
    #[error("busy: too much waits for the database")]
    Busy,
    /// An argument the engine refuses (the text says which).
    #[error("invalid input: {0}")]
    InvalidInput(&'static str),
    /// The server answered a call with an error.
    #[error("server error {}: {}", .0.code, .0.message)]
    Rpc(RpcError),
    /// The server's answer did not decode, or a request could not be encoded.
    #[error("bad answer: {0}")]
    Decode(String),
    /// Reading or writing a local file failed.
    #[error("file: {0}")]
    Io(#[from] std::io::Error),
    /// A received file's key does not belong to it.
    #[error("key fingerprint mismatch: the message's key does not belong to this file")]
    FileKeyMismatch,
    /// The server's file does not have the size the message declares.
    #[error("size mismatch: declared {declared}, server has {stored} encrypted bytes")]
    FileSizeMismatch {
        /// What the message says.
        declared: u64,
        /// What the server holds (encrypted).
        stored: u64,
    },
    /// A received file fails its integrity check (altered, or a wrong key).
    #[error("the decrypted file fails its padding check (tampered or wrong key)")]
    FileCorrupt,
    /// Too large for the chat (parts limit; above 2 GiB for a peer below layer 143).
    #[error("file of {0} bytes is too large")]
    FileTooLarge(u64),
}

impl From<EngineError> for Error {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::Store(s) => Error::Store(s),
            EngineError::Restore(r) => Error::Restore(r),
            EngineError::NoSuchChat(c) => Error::NoSuchChat(ChatId(c)),
            EngineError::NoSuchAccount(a) => Error::NoSuchAccount(AccountId(a)),
            EngineError::InvalidDhParams => Error::InvalidInput("DH parameters"),
            EngineError::Busy => Error::Busy,
            _ => Error::Stopped,
        }
    }
}

impl From<CallError> for Error {
    fn from(e: CallError) -> Self {
        match e {
            CallError::Rpc(r) => Error::Rpc(r),
            other => Error::Decode(other.to_string()),
        }
    }
}

impl From<DecodeError> for Error {
    fn from(e: DecodeError) -> Self {
        Error::Decode(e.to_string())
    }
}

impl From<EncodeError> for Error {
    fn from(e: EncodeError) -> Self {
        Error::Decode(e.to_string())
    }
}

impl From<FileError> for Error {
    fn from(e: FileError) -> Self {
        match e {
            FileError::Io(e) => Error::Io(e),
            FileError::Call(c) => c.into(),
            FileError::Engine(e) => e.into(),
            FileError::KeyMismatch => Error::FileKeyMismatch,
            FileError::SizeMismatch { declared, stored } => {
                Error::FileSizeMismatch { declared, stored }
            }
            FileError::Corrupt => Error::FileCorrupt,
            FileError::TooLarge(n) => Error::FileTooLarge(n),
            FileError::NoAccount(a) => Error::NoSuchAccount(AccountId(a)),
            _ => Error::Stopped,
        }
    }
}

impl Error {
    /// Whether trying again later may succeed: the server's transient errors (flood waits,
    /// internal errors, timeouts) and local I/O. A download that failed so resumes from its
    /// last stored part.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Rpc(r) => !matches!(
                r.class(),
                secretchat_engine::transport::ErrorClass::ChatGone
                    | secretchat_engine::transport::ErrorClass::Failed
            ),
            Error::Io(_) => true,
            _ => false,
        }
    }
}
