//! Convenience methods on [`Engine`] for the usual commands.

use secretchat_schema::e2e::enums as e2e;

use super::{Engine, EngineError};
use crate::protocol::chat::{Command, Outgoing, ServiceAction};

impl Engine {
    /// Accepts a requested chat.
    ///
    /// # Errors
    /// [`EngineError`].
    pub async fn accept(&self, account: u64, chat: u64) -> Result<(), EngineError> {
        self.command(account, chat, Command::Accept).await
    }

    /// Declines a requested chat.
    ///
    /// # Errors
    /// [`EngineError`].
    pub async fn decline(&self, account: u64, chat: u64) -> Result<(), EngineError> {
        self.command(account, chat, Command::Decline).await
    }

    /// Sends a message (text with entities, media, reply, TTL…). Returns once it is stored:
    /// from then on it will reach the peer exactly once, whatever crashes in between.
    ///
    /// # Errors
    /// [`EngineError`].
    pub async fn send(
        &self,
        account: u64,
        chat: u64,
        message: Outgoing,
    ) -> Result<(), EngineError> {
        self.command(account, chat, Command::Send(Box::new(message)))
            .await
    }

    /// Sends plain text with a random message id; returns the id.
    ///
    /// # Errors
    /// [`EngineError`].
    pub async fn send_text(&self, account: u64, chat: u64, text: &str) -> Result<i64, EngineError> {
        let id = rand::random::<i64>();
        self.send(account, chat, Outgoing::text(id, text)).await?;
        Ok(id)
    }

    /// Sends a service action (TTL, read, delete, screenshot, typing, flush).
    ///
    /// # Errors
    /// [`EngineError`].
    pub async fn service(
        &self,
        account: u64,
        chat: u64,
        action: ServiceAction,
    ) -> Result<(), EngineError> {
        self.command(account, chat, Command::Service(action)).await
    }

    /// Sets the self-destruct timer for new messages.
    ///
    /// # Errors
    /// [`EngineError`].
    pub async fn set_ttl(&self, account: u64, chat: u64, seconds: i32) -> Result<(), EngineError> {
        self.service(account, chat, ServiceAction::SetTtl(seconds))
            .await
    }

    /// Marks messages read.
    ///
    /// # Errors
    /// [`EngineError`].
    pub async fn mark_read(
        &self,
        account: u64,
        chat: u64,
        random_ids: Vec<i64>,
    ) -> Result<(), EngineError> {
        self.service(account, chat, ServiceAction::Read(random_ids))
            .await
    }

    /// Deletes messages on both sides (unacknowledged copies are replaced by self-deletes).
    ///
    /// # Errors
    /// [`EngineError`].
    pub async fn delete(
        &self,
        account: u64,
        chat: u64,
        random_ids: Vec<i64>,
    ) -> Result<(), EngineError> {
        self.service(account, chat, ServiceAction::Delete(random_ids))
            .await
    }

    /// Reports a screenshot of messages.
    ///
    /// # Errors
    /// [`EngineError`].
    pub async fn screenshot(
        &self,
        account: u64,
        chat: u64,
        random_ids: Vec<i64>,
    ) -> Result<(), EngineError> {
        self.service(account, chat, ServiceAction::Screenshot(random_ids))
            .await
    }

    /// Sends a typing notification.
    ///
    /// # Errors
    /// [`EngineError`].
    pub async fn typing(
        &self,
        account: u64,
        chat: u64,
        action: e2e::SendMessageAction,
    ) -> Result<(), EngineError> {
        self.service(account, chat, ServiceAction::Typing(action))
            .await
    }

    /// Clears the history on both sides.
    ///
    /// # Errors
    /// [`EngineError`].
    pub async fn flush_history(&self, account: u64, chat: u64) -> Result<(), EngineError> {
        self.service(account, chat, ServiceAction::FlushHistory)
            .await
    }

    /// Closes the chat (`messages.discardEncryption`).
    ///
    /// # Errors
    /// [`EngineError`].
    pub async fn close(
        &self,
        account: u64,
        chat: u64,
        delete_history: bool,
    ) -> Result<(), EngineError> {
        self.command(account, chat, Command::Close { delete_history })
            .await
    }
}
