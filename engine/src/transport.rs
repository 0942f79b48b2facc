//! The server side as the engine sees it: [`ServerApi`] sends raw TL requests (a serialized
//! function) and returns the raw TL answer, so any MTProto client can carry it (grammers'
//! `invoke` on raw bytes is enough); updates come back through [`UpdateFeed`]. [`call`] adds the
//! typed layer with the generated schema types, and [`RpcError`] classifies server errors.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use secretchat_schema::api::enums as api;
use secretchat_schema::{DecodeError, Deserialize, EncodeError, RemoteCall};

/// A boxed future (object-safe trait methods).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// An error answer from the server (`rpc_error code message`), or a transport failure
/// (code -503: the request may or may not have been executed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("rpc error {code}: {message}")]
pub struct RpcError {
    /// The code (420 flood, 400 bad request, 500 internal, -503 timeout…).
    pub code: i32,
    /// The message (`FLOOD_WAIT_3`, `ENCRYPTION_DECLINED`…).
    pub message: String,
}

/// What the engine does about an [`RpcError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// Wait this long, then retry the same request.
    RetryAfter(Duration),
    /// The chat is gone (declined, accepted elsewhere, invalid): close it cleanly.
    ChatGone,
    /// Anything else: report it; the message stays stored.
    Failed,
}

impl RpcError {
    /// A new error.
    pub fn new(code: i32, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    /// How to react: FLOOD_WAIT/429 → retry after the server's delay; internal errors and
    /// timeouts → retry soon; ENCRYPTION_DECLINED, ENCRYPTION_ALREADY_ACCEPTED,
    /// ENCRYPTION_ALREADY_DECLINED, CHAT_ID_INVALID → the chat is gone; the rest fails.
    pub fn class(&self) -> ErrorClass {
        if let Some(secs) = self.message.strip_prefix("FLOOD_WAIT_") {
            let secs = secs.parse::<u64>().unwrap_or(1).min(3600);
            return ErrorClass::RetryAfter(Duration::from_secs(secs));
        }
        match (self.code, self.message.as_str()) {
            (429, _) => ErrorClass::RetryAfter(Duration::from_secs(1)),
            _ if self.is_transient() => ErrorClass::RetryAfter(FIRST_TRANSIENT_RETRY),
            (
                _,
                "ENCRYPTION_DECLINED"
                | "ENCRYPTION_ALREADY_ACCEPTED"
                | "ENCRYPTION_ALREADY_DECLINED"
                | "CHAT_ID_INVALID",
            ) => ErrorClass::ChatGone,
            _ => ErrorClass::Failed,
        }
    }

    /// An internal error or a timeout (retried with a backoff), not the server's FLOOD_WAIT.
    fn is_transient(&self) -> bool {
        matches!(self.code, 500..=599 | -503) && !self.message.starts_with("FLOOD_WAIT_")
    }

    /// The wait before retry number `attempt` (0 for the first retry), or `None` when the
    /// error is not retried: the server's own delay for FLOOD_WAIT and 429; for internal
    /// errors and timeouts a backoff from [`FIRST_TRANSIENT_RETRY`] doubling up to
    /// [`MAX_TRANSIENT_RETRY`].
    pub fn retry_delay(&self, attempt: u32) -> Option<Duration> {
        let ErrorClass::RetryAfter(d) = self.class() else {
            return None;
        };
        if self.is_transient() {
            let factor = 1u32 << attempt.min(16);
            return Some(d.saturating_mul(factor).min(MAX_TRANSIENT_RETRY));
        }
        Some(d)
    }
}

/// The first wait after an internal error or a timeout; it doubles with every further attempt
/// of the same request, up to [`MAX_TRANSIENT_RETRY`]. Short at first because a chat's later
/// sends queue behind the failed one (they must reach the server in order): a fixed 200 ms
/// held every chat's outgoing stream for 200 ms per transient error.
pub const FIRST_TRANSIENT_RETRY: Duration = Duration::from_millis(25);
/// The longest wait between attempts after internal errors or timeouts.
pub const MAX_TRANSIENT_RETRY: Duration = Duration::from_secs(5);

/// The server methods a secret-chat client calls, as raw TL. `request` is a serialized
/// function (constructor id and arguments); the answer is the serialized result.
pub trait ServerApi: Send + Sync + 'static {
    /// Sends one request.
    fn invoke(&self, request: Vec<u8>) -> BoxFuture<'static, Result<Vec<u8>, RpcError>>;

    /// Sends one request to data center `dc_id`: the engine downloads an encrypted file
    /// (`upload.getFile`) from the DC its `encryptedFile.dc_id` names. A client with
    /// connections to several DCs sends it there, with the account's authorization copied to
    /// that DC (`auth.exportAuthorization` / `auth.importAuthorization`) the first time; the
    /// default sends it like any other request.
    fn invoke_in_dc(
        &self,
        dc_id: i32,
        request: Vec<u8>,
    ) -> BoxFuture<'static, Result<Vec<u8>, RpcError>> {
        let _ = dc_id;
        self.invoke(request)
    }
}

/// `api`'s calls sent to one data center ([`ServerApi::invoke_in_dc`]).
pub struct InDc {
    /// The account's transport.
    pub api: std::sync::Arc<dyn ServerApi>,
    /// The data center.
    pub dc_id: i32,
}

impl ServerApi for InDc {
    fn invoke(&self, request: Vec<u8>) -> BoxFuture<'static, Result<Vec<u8>, RpcError>> {
        self.api.invoke_in_dc(self.dc_id, request)
    }
}

/// Why a typed call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CallError {
    /// The server answered with an error.
    #[error(transparent)]
    Rpc(#[from] RpcError),
    /// The answer did not decode as the method's result type.
    #[error("bad answer: {0}")]
    Decode(#[from] DecodeError),
    /// The request could not be serialized.
    #[error(transparent)]
    Encode(#[from] EncodeError),
}

/// Calls `request` through `api` and decodes its typed result.
///
/// # Errors
/// [`CallError`].
pub async fn call<R: RemoteCall>(api: &dyn ServerApi, request: &R) -> Result<R::Return, CallError> {
    let bytes = request.to_bytes()?;
    let answer = api.invoke(bytes).await?;
    Ok(R::Return::from_bytes(&answer)?)
}

/// Where a transport delivers the server's updates for one account
/// (`updateNewEncryptedMessage`, `updateEncryption`, `updateEncryptedMessagesRead`,
/// `updateEncryptedChatTyping`). Cheap to clone; usable from any thread.
#[derive(Clone, Debug)]
pub struct UpdateFeed {
    tx: tokio::sync::mpsc::UnboundedSender<api::Update>,
    /// The engine's account, asked to fetch the difference (one request pending at most).
    catch_up: Option<tokio::sync::mpsc::Sender<()>>,
}

impl UpdateFeed {
    /// A feed and its receiving end (a transport's own plumbing, or a test's; the engine's
    /// feeds come from `Engine::add_account`).
    pub fn channel() -> (Self, tokio::sync::mpsc::UnboundedReceiver<api::Update>) {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        (Self { tx, catch_up: None }, rx)
    }

    /// An engine account's feed: its updates, and its requests to catch up.
    pub(crate) fn for_account() -> (
        Self,
        tokio::sync::mpsc::UnboundedReceiver<api::Update>,
        tokio::sync::mpsc::Receiver<()>,
    ) {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let (catch_up, catch_up_rx) = tokio::sync::mpsc::channel(1);
        let feed = Self {
            tx,
            catch_up: Some(catch_up),
        };
        (feed, rx, catch_up_rx)
    }

    /// Delivers one update; false once the engine is gone.
    pub fn push(&self, update: api::Update) -> bool {
        self.tx.send(update).is_ok()
    }

    /// The transport's connection closed: what the server pushed in the meantime is lost
    /// (end-to-end.md, "updates.getDifference" recovers it). The account asks for the
    /// difference at its next gap check instead of waiting for its idle poll — a message
    /// pushed while the connection was down, with none behind it to show the gap, would
    /// otherwise wait for `idle_difference_interval`. Several calls before that check are
    /// one request. Nothing happens for a feed made by [`UpdateFeed::channel`].
    pub fn catch_up(&self) {
        if let Some(tx) = &self.catch_up {
            let _ = tx.try_send(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_classified() {
        let c = |code, m: &str| RpcError::new(code, m).class();
        assert_eq!(
            c(420, "FLOOD_WAIT_3"),
            ErrorClass::RetryAfter(Duration::from_secs(3))
        );
        assert_eq!(
            c(429, "TOO_MANY"),
            ErrorClass::RetryAfter(Duration::from_secs(1))
        );
        assert!(matches!(c(500, "INTERNAL"), ErrorClass::RetryAfter(_)));
        // Transient errors back off; the server's FLOOD_WAIT does not.
        let internal = RpcError::new(500, "INTERNAL");
        assert_eq!(internal.retry_delay(0), Some(FIRST_TRANSIENT_RETRY));
        assert_eq!(internal.retry_delay(1), Some(FIRST_TRANSIENT_RETRY * 2));
        assert_eq!(internal.retry_delay(30), Some(MAX_TRANSIENT_RETRY));
        let flood = RpcError::new(420, "FLOOD_WAIT_2");
        assert_eq!(flood.retry_delay(5), Some(Duration::from_secs(2)));
        assert_eq!(RpcError::new(400, "PEER_ID_INVALID").retry_delay(0), None);
        for gone in [
            "ENCRYPTION_DECLINED",
            "ENCRYPTION_ALREADY_ACCEPTED",
            "ENCRYPTION_ALREADY_DECLINED",
            "CHAT_ID_INVALID",
        ] {
            assert_eq!(c(400, gone), ErrorClass::ChatGone);
        }
        assert_eq!(c(400, "MSG_TOO_LONG"), ErrorClass::Failed);
    }
}
