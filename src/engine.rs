//! [`Engine`]: the handle an application holds.

use std::future::Future;
use std::path::Path;
use std::sync::Arc;

use secretchat_engine::protocol::chat::{ChatStatus, Command, ServiceAction};
use secretchat_engine::runtime::Engine as Inner;
use secretchat_engine::runtime::files::FileRef;
use secretchat_engine::runtime::metrics::MetricsSnapshot;
use secretchat_engine::transport::{ServerApi, UpdateFeed};
use secretchat_schema::api::{enums as api, types as api_types};

use crate::event::EventStream;
use crate::files::Spool;
use crate::message::{InputFile, InputMessage};
use crate::{AccountId, ChatId, EngineConfig, Error, SecretChat};

/// The engine: every account's secret chats over one database. Cheap to clone; usable from
/// any thread and any async runtime (the engine runs on threads of its own).
///
/// A command (accept, send, close…) resolves once its effect is **stored**: from then on it
/// happens exactly once, whatever crashes in between. Events come from the
/// [`EventStream`] returned by [`Engine::open`]; acknowledge each with [`Engine::ack`] once
/// handled.
#[derive(Debug, Clone)]
pub struct Engine {
    inner: Inner,
    spool: Arc<Spool>,
}

fn check_id(random_id: i64) -> Result<(), Error> {
    if random_id == 0 {
        return Err(Error::InvalidInput("random_id 0"));
    }
    Ok(())
}

impl Engine {
    /// Opens (or creates) the database at `path`. Returns the engine and its events; the
    /// events not acknowledged before the last shutdown or crash come first.
    ///
    /// # Errors
    /// [`Error::Store`] (a database from a newer version, or sealed with another at-rest
    /// key, is refused).
    pub fn open(
        path: impl AsRef<Path>,
        config: EngineConfig,
    ) -> Result<(Engine, EventStream), Error> {
        let (inner, events) = Inner::open(path.as_ref(), config.0)?;
        let spool = Arc::new(Spool::new(path.as_ref()));
        Ok((Engine { inner, spool }, EventStream { inner: events }))
    }

    /// Opens the engine on a PostgreSQL database shared by several nodes (docs/store.md):
    /// records there, sealed with `config`'s at-rest key (required); file transfers spooled
    /// under `files_dir` on this machine. [`Engine::add_account`] takes the account's lease
    /// (refused with [`StoreError::Owned`](crate::StoreError::Owned) while another node's runs); an account this node
    /// loses (another node took it over, or it could not renew its lease) stops here by
    /// itself.
    ///
    /// # Errors
    /// [`Error::Store`]: the database cannot be reached, no at-rest key, the wrong one.
    #[cfg(feature = "postgres")]
    pub fn open_postgres(
        files_dir: impl AsRef<Path>,
        db: crate::PgOptions,
        config: EngineConfig,
    ) -> Result<(Engine, EventStream), Error> {
        use secretchat_engine::store::{Store, postgres::Postgres};
        let backend = Postgres::connect(db)?;
        let store = Store::with_backend(backend, config.0.store.clone())?;
        let (inner, events) = Inner::open_with_store(store, config.0)?;
        let spool = Arc::new(Spool::new(files_dir.as_ref()));
        Ok((Engine { inner, spool }, EventStream { inner: events }))
    }

    /// Stops `account` here, keeping what is stored for it; on a shared database also gives
    /// up its lease, so another node can add it at once (the hand-over). It can be added
    /// again.
    ///
    /// # Errors
    /// [`Error::Store`], [`Error::Stopped`].
    pub async fn release_account(&self, account: AccountId) -> Result<(), Error> {
        Ok(self.inner.release_account(account.0).await?)
    }

    /// Stops gracefully: every chat finishes the step it is storing, queued
    /// acknowledgements are written, the database is flushed and released (it can be
    /// opened again at once). Other clones get [`Error::Stopped`] from then on. Never
    /// blocks the caller's thread. Dropping the last handle instead closes synchronously.
    ///
    /// # Errors
    /// [`Error::Store`] when the final flush fails.
    pub async fn shutdown(self) -> Result<(), Error> {
        Ok(self.inner.shutdown().await?)
    }

    /// Adds an account whose server calls go through `api`; returns the feed its transport
    /// pushes the account's updates into (`updateNewEncryptedMessage`, `updateEncryption`,
    /// `updateEncryptedMessagesRead`, `updateEncryptedChatTyping`).
    ///
    /// # Errors
    /// [`Error::Stopped`].
    pub async fn add_account(
        &self,
        account: AccountId,
        api: Arc<dyn ServerApi>,
    ) -> Result<UpdateFeed, Error> {
        Ok(self.inner.add_account(account.0, api).await?)
    }

    /// Adds `account` as soon as no other node's lease on it runs: the take-over of a
    /// standby node. While another node holds the account, this tries again every `poll`
    /// (a fraction of the lease: the take-over then comes at most `poll` after the lease runs
    /// out); any other error ends it. On an embedded database it is [`Engine::add_account`].
    ///
    /// The account's events stored before (by the node that held it) come first on this
    /// engine's event stream; see docs/store.md.
    ///
    /// # Errors
    /// As [`Engine::add_account`], except [`StoreError::Owned`](crate::StoreError::Owned).
    pub async fn take_over(
        &self,
        account: AccountId,
        api: Arc<dyn ServerApi>,
        poll: std::time::Duration,
    ) -> Result<UpdateFeed, Error> {
        loop {
            match self.add_account(account, api.clone()).await {
                Err(Error::Store(crate::StoreError::Owned { .. })) => {
                    tokio::time::sleep(poll).await;
                }
                other => return other,
            }
        }
    }

    /// A standby for `accounts`: each runs on this node whenever no other node's lease on
    /// it runs — taken over ([`Engine::take_over`]) as soon as its lease runs out, and again
    /// each time this node loses it. The feed of every take-over comes on the returned
    /// channel, for the application to connect to the account's transport. It ends when the
    /// engine stops or the receiver is dropped. On an embedded database each account is
    /// simply added once.
    ///
    /// Spawned on the current Tokio runtime.
    pub fn standby(
        &self,
        accounts: Vec<(AccountId, Arc<dyn ServerApi>)>,
        poll: std::time::Duration,
    ) -> tokio::sync::mpsc::Receiver<(AccountId, UpdateFeed)> {
        let (tx, rx) = tokio::sync::mpsc::channel(accounts.len().max(1));
        for (account, api) in accounts {
            let (engine, tx) = (self.clone(), tx.clone());
            let mut lost = self.inner.store().lost_accounts();
            tokio::spawn(async move {
                loop {
                    let feed = match engine.take_over(account, api.clone(), poll).await {
                        Ok(feed) => feed,
                        Err(Error::Stopped) => return,
                        Err(e) => {
                            tracing::warn!(account = account.0, error = %e, "standby take-over failed");
                            tokio::time::sleep(poll * 10).await;
                            continue;
                        }
                    };
                    if tx.send((account, feed)).await.is_err() {
                        return;
                    }
                    // Until this node loses it (another node took it, or its lease ran out).
                    let Some(lost) = lost.as_mut() else { return };
                    if lost.wait_for(|l| l.contains(&account.0)).await.is_err() {
                        return;
                    }
                }
            });
        }
        rx
    }

    /// Stops `account` and deletes everything stored for it, its keys erased from disk (a
    /// user logging out). Returns how many chats it had. It can be added again, as new.
    ///
    /// # Errors
    /// [`Error::Store`], [`Error::Stopped`].
    pub async fn remove_account(&self, account: AccountId) -> Result<usize, Error> {
        let n = self.inner.remove_account(account.0).await?;
        self.spool.sweep(account);
        Ok(n)
    }

    /// Asks user `user_id` (with the `access_hash` the account knows for them) for a
    /// secret chat. Returns at once with the new chat's id; [`Update::ChatUpdated`] and
    /// [`Update::ChatReady`] follow when the peer accepts.
    ///
    /// [`Update::ChatUpdated`]: crate::Update::ChatUpdated
    /// [`Update::ChatReady`]: crate::Update::ChatReady
    ///
    /// # Errors
    /// [`Error::NoSuchAccount`], [`Error::Store`].
    pub async fn request_chat(
        &self,
        account: AccountId,
        user_id: i64,
        access_hash: i64,
    ) -> Result<ChatId, Error> {
        let user = api::InputUser::InputUser(api_types::InputUser {
            user_id,
            access_hash,
        });
        Ok(ChatId(self.inner.request_chat(account.0, user).await?))
    }

    /// Accepts a chat the peer requested ([`Update::ChatRequested`](crate::Update::ChatRequested)).
    ///
    /// # Errors
    /// [`Error::NoSuchChat`], [`Error::NoSuchAccount`], [`Error::Store`].
    pub async fn accept_chat(&self, account: AccountId, chat: ChatId) -> Result<(), Error> {
        self.command(account, chat, Command::Accept).await
    }

    /// Declines a chat the peer requested.
    ///
    /// # Errors
    /// As [`Engine::accept_chat`].
    pub async fn decline_chat(&self, account: AccountId, chat: ChatId) -> Result<(), Error> {
        self.command(account, chat, Command::Decline).await
    }

    /// Closes a chat for good (`messages.discardEncryption`); with `delete_history` the
    /// server deletes its history for the peer too.
    ///
    /// # Errors
    /// As [`Engine::accept_chat`].
    pub async fn close_chat(
        &self,
        account: AccountId,
        chat: ChatId,
        delete_history: bool,
    ) -> Result<(), Error> {
        self.command(account, chat, Command::Close { delete_history })
            .await
    }

    /// The chat as it stands now.
    ///
    /// # Errors
    /// [`Error::NoSuchChat`], [`Error::NoSuchAccount`].
    pub async fn chat(&self, account: AccountId, chat: ChatId) -> Result<SecretChat, Error> {
        let status = self.inner.status(account.0, chat.0).await?;
        Ok(SecretChat::from_status(chat, &status))
    }

    /// The protocol's view of a chat (sequence numbers, holes, key age, re-keys): for
    /// diagnostics and monitoring.
    ///
    /// # Errors
    /// As [`Engine::chat`].
    pub async fn diagnostics(&self, account: AccountId, chat: ChatId) -> Result<ChatStatus, Error> {
        Ok(self.inner.status(account.0, chat.0).await?)
    }

    /// The chat with the server's id `server_chat_id`, if the engine has it.
    ///
    /// # Errors
    /// [`Error::Store`].
    pub fn chat_by_server_id(
        &self,
        account: AccountId,
        server_chat_id: i32,
    ) -> Result<Option<ChatId>, Error> {
        Ok(self
            .inner
            .chat_by_server_id(account.0, server_chat_id)?
            .map(ChatId))
    }

    /// Sends a message; resolves with its id once it is stored (it then reaches the peer
    /// exactly once). Sent before the key is agreed, it waits and goes out when the chat is
    /// ready.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for a `random_id` of 0; as [`Engine::accept_chat`].
    pub async fn send_message(
        &self,
        account: AccountId,
        chat: ChatId,
        message: InputMessage,
    ) -> Result<i64, Error> {
        self.queue_message(account, chat, message).await
    }

    /// [`Engine::send_message`], queued when called: messages queued one after another go
    /// out in that order, and the chat stores those that queue up together (one write). For
    /// keeping many messages in flight without awaiting each.
    ///
    /// # Errors
    /// As [`Engine::send_message`].
    pub fn queue_message(
        &self,
        account: AccountId,
        chat: ChatId,
        message: InputMessage,
    ) -> impl Future<Output = Result<i64, Error>> + Send + 'static {
        let id = message.0.random_id;
        let stored = check_id(id).map(|()| {
            self.inner
                .submit(account.0, chat.0, Command::Send(Box::new(message.0)))
        });
        async move {
            stored?.await?;
            Ok(id)
        }
    }

    /// Encrypts, uploads and sends a file; resolves with the message's id once it is
    /// stored. Progress arrives as [`Update::FileProgress`](crate::Update::FileProgress);
    /// after a crash [`Engine::resume_uploads`] finishes it.
    ///
    /// # Errors
    /// [`Error::Io`], [`Error::FileTooLarge`], [`Error::Rpc`] (the upload stays resumable),
    /// as [`Engine::send_message`].
    pub async fn send_file(
        &self,
        account: AccountId,
        chat: ChatId,
        file: InputFile,
    ) -> Result<i64, Error> {
        let id = file.0.random_id;
        check_id(id)?;
        self.inner.send_file(account.0, chat.0, file.0).await?;
        Ok(id)
    }

    /// Finishes the uploads of `account` a crash interrupted; returns how many.
    ///
    /// # Errors
    /// As [`Engine::send_file`].
    pub async fn resume_uploads(&self, account: AccountId) -> Result<usize, Error> {
        let n = self.inner.resume_uploads(account.0).await?;
        self.spool.sweep(account);
        Ok(n)
    }

    /// Downloads and decrypts a received file ([`Message::file`](crate::Message::file)) to
    /// `dest`, verifying it. Resumes from its last stored part when called again after a
    /// transient failure or a crash.
    ///
    /// # Errors
    /// [`Error::FileKeyMismatch`], [`Error::FileSizeMismatch`], [`Error::FileCorrupt`] (the
    /// partial output is removed), [`Error::Rpc`] and [`Error::Io`].
    pub async fn download(
        &self,
        account: AccountId,
        chat: ChatId,
        file: &FileRef,
        dest: &Path,
    ) -> Result<(), Error> {
        Ok(self.inner.download(account.0, chat.0, file, dest).await?)
    }

    /// Tells the peer these messages were read (starting their self-destruct timers).
    ///
    /// # Errors
    /// As [`Engine::accept_chat`].
    pub async fn mark_read(
        &self,
        account: AccountId,
        chat: ChatId,
        random_ids: Vec<i64>,
    ) -> Result<(), Error> {
        self.service(account, chat, ServiceAction::Read(random_ids))
            .await
    }

    /// Deletes these messages for the peer too.
    ///
    /// # Errors
    /// As [`Engine::accept_chat`].
    pub async fn delete_messages(
        &self,
        account: AccountId,
        chat: ChatId,
        random_ids: Vec<i64>,
    ) -> Result<(), Error> {
        self.service(account, chat, ServiceAction::Delete(random_ids))
            .await
    }

    /// Sets the chat's self-destruct timer (seconds; 0: off).
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for a negative timer; as [`Engine::accept_chat`].
    pub async fn set_ttl(
        &self,
        account: AccountId,
        chat: ChatId,
        seconds: i32,
    ) -> Result<(), Error> {
        if seconds < 0 {
            return Err(Error::InvalidInput("negative ttl"));
        }
        self.service(account, chat, ServiceAction::SetTtl(seconds))
            .await
    }

    /// Tells the peer a screenshot of these messages was taken.
    ///
    /// # Errors
    /// As [`Engine::accept_chat`].
    pub async fn notify_screenshot(
        &self,
        account: AccountId,
        chat: ChatId,
        random_ids: Vec<i64>,
    ) -> Result<(), Error> {
        self.service(account, chat, ServiceAction::Screenshot(random_ids))
            .await
    }

    /// Clears the chat's history on both sides.
    ///
    /// # Errors
    /// As [`Engine::accept_chat`].
    pub async fn clear_history(&self, account: AccountId, chat: ChatId) -> Result<(), Error> {
        self.service(account, chat, ServiceAction::FlushHistory)
            .await
    }

    /// Starts a re-key now (the engine re-keys by itself every 100 messages or week).
    ///
    /// # Errors
    /// As [`Engine::accept_chat`].
    pub async fn rekey(&self, account: AccountId, chat: ChatId) -> Result<(), Error> {
        self.command(account, chat, Command::Rekey).await
    }

    /// The application handled event `seq`: it is never delivered again. Queued when called
    /// (the caller's thread never waits for the store); the future resolves once the
    /// acknowledgement is stored.
    ///
    /// # Errors
    /// [`Error::Store`], [`Error::Stopped`].
    pub fn ack(&self, seq: u64) -> impl Future<Output = Result<(), Error>> + Send + 'static {
        self.ack_all(vec![seq])
    }

    /// [`Engine::ack`] for several events (one store write).
    ///
    /// # Errors
    /// As [`Engine::ack`].
    pub fn ack_all(
        &self,
        seqs: Vec<u64>,
    ) -> impl Future<Output = Result<(), Error>> + Send + 'static {
        let stored = self.inner.acknowledge(seqs);
        async move { Ok(stored.await?) }
    }

    /// Engine-wide counters (holes, resends, rejected messages, store batches, CPU split).
    pub fn metrics(&self) -> MetricsSnapshot {
        self.inner.metrics()
    }

    /// How long the store's writes waited for durability (the most recent ones), when its
    /// backend measures it (PostgreSQL: from submission to commit).
    pub fn commit_latency(&self) -> Option<crate::StoreLatency> {
        self.inner.store().commit_latency()
    }

    /// How many times destroyed keys were erased from disk since the engine opened.
    pub fn key_erasures(&self) -> u64 {
        self.inner.store().erasures()
    }

    /// The database's size on disk, in bytes.
    pub fn disk_size(&self) -> u64 {
        self.inner.store().disk_size()
    }

    /// How many of `account`'s chats are in memory now (idle ones leave after
    /// `idle_after`).
    ///
    /// # Errors
    /// [`Error::Stopped`].
    pub async fn loaded_chats(&self, account: AccountId) -> Result<usize, Error> {
        Ok(self.inner.active_chats(account.0).await?)
    }

    async fn command(&self, account: AccountId, chat: ChatId, c: Command) -> Result<(), Error> {
        Ok(self.inner.command(account.0, chat.0, c).await?)
    }

    async fn service(
        &self,
        account: AccountId,
        chat: ChatId,
        a: ServiceAction,
    ) -> Result<(), Error> {
        self.command(account, chat, Command::Service(a)).await
    }

    pub(crate) fn spool(&self) -> &Spool {
        &self.spool
    }

    /// The engine underneath (for the simulator's bulk provisioning).
    #[cfg(feature = "sim")]
    pub(crate) fn inner(&self) -> &Inner {
        &self.inner
    }
}
