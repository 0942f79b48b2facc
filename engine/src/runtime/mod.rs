//! The running engine: an actix system on its own threads, driven through [`Engine`] from any
//! async runtime (or none: every method is a plain future).
//!
//! - [`account::AccountActor`] per account: routes updates, activates chats from the store on
//!   demand, acknowledges qts only up to what is stored.
//! - [`chat::ChatActor`] per active chat: the only writer of its chat; persist → send.
//! - [`workers`]: the DH pool (`RekeyActor`), the file pool (`FileCryptor`), the DH config
//!   service (`DhConfigActor`).
//!
//! Opening reads no chat: chats are loaded when addressed; those with work in flight
//! (unacknowledged messages, holes) are resumed in the background after open.

pub mod account;
mod acker;
mod admission;
pub mod chat;
mod commands;
mod events;
pub mod files;
pub mod metrics;
pub mod model;
mod provision;
mod queue;
mod trace;
pub mod workers;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actix::prelude::*;
use secretchat_schema::RemoteCall;
use secretchat_schema::api::enums as api;
use tokio::sync::{mpsc, oneshot};

use crate::protocol::chat::snapshot::RestoreError;
use crate::protocol::chat::{AppEvent, ChatConfig, ChatStatus, Command};
use crate::store::{Store, StoreError, StoreOptions};
use crate::transport::{CallError, RpcError, ServerApi, UpdateFeed, call};
use account::{AccountActor, ChatCommand, RequestChat, Resume, Status};
use metrics::{EngineMetrics, MetricsSnapshot};
pub use provision::ProvisionedChat;
use workers::{ChatLoader, DhConfigActor, FileCryptor, ParamsRegistry, RekeyActor};

use events::EventSink;
pub use events::Events;

/// Engine settings.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Protocol timers.
    pub chat: ChatConfig,
    /// Store durability and at-rest encryption.
    pub store: StoreOptions,
    /// Threads for DH exponentiations.
    pub dh_threads: usize,
    /// Threads for file encryption.
    pub file_threads: usize,
    /// Threads running chat actors.
    pub chat_threads: usize,
    /// How often processed qts are acknowledged to the server.
    pub ack_interval: Duration,
    /// How often a qts gap is checked for (a gap that outlived one interval is fetched with
    /// getDifference).
    pub difference_interval: Duration,
    /// With no gap seen, how often getDifference polls for what the stream lost silently (a
    /// last message whose push was lost leaves no gap behind it).
    pub idle_difference_interval: Duration,
    /// Chats not addressed for this long leave memory (their records stay in the store).
    pub idle_after: Duration,
    /// Chats kept in memory at most, over all accounts (a soft limit): beyond it, inputs for
    /// sleeping chats wait as events while the quietest loaded chats are asked to sleep
    /// (docs/engine.md, "Admission"). A loaded chat costs a few kilobytes.
    pub max_loaded_chats: usize,
    /// Inputs an account holds at most while the database reads the chats they are for
    /// (see `runtime/account/held.rs`): past it, updates are left for the difference and
    /// commands answer [`EngineError::Busy`].
    pub max_waiting_for_reads: usize,
    /// Events queued for the application at most: beyond them, stored events wait in the
    /// store and the rest are dropped and counted ([`Events`]).
    pub event_capacity: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Self {
            chat: ChatConfig::default(),
            store: StoreOptions::default(),
            dh_threads: cores,
            file_threads: cores.min(4),
            chat_threads: cores,
            ack_interval: Duration::from_millis(200),
            difference_interval: Duration::from_secs(5),
            idle_difference_interval: Duration::from_secs(5),
            idle_after: Duration::from_secs(60),
            max_loaded_chats: 50_000,
            max_waiting_for_reads: 4096,
            event_capacity: 1024,
        }
    }
}

/// Engine failures.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// The store failed (or belongs to a newer version).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A stored chat could not be restored.
    #[error(transparent)]
    Restore(#[from] RestoreError),
    /// No such chat.
    #[error("no chat with handle {0}")]
    NoSuchChat(u64),
    /// No such account.
    #[error("no account {0}")]
    NoSuchAccount(u64),
    /// The engine is shut down.
    #[error("the engine has stopped")]
    Stopped,
    /// Too much waits for the database (an outage, or reads far slower than what arrives):
    /// nothing of the request was stored; try again later.
    #[error("busy: too much waits for the database")]
    Busy,
    /// DH parameters that are not valid (provisioning).
    #[error("invalid DH parameters")]
    InvalidDhParams,
}

/// Answers a command once its step is stored (or why it could not be).
pub type Reply = oneshot::Sender<Result<(), EngineError>>;

/// What an application event acknowledges upstream once stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckToken {
    /// A queue event's qts.
    Qts(i32),
    /// One message of a getDifference batch.
    Difference,
}

/// An event for the application.
#[derive(Debug, Clone, PartialEq)]
pub struct EngineEvent {
    /// Inbox sequence: acknowledge with [`Engine::ack`] once handled (None: not stored, e.g.
    /// errors, which are informational).
    pub seq: Option<u64>,
    /// The account.
    pub account: u64,
    /// The chat handle.
    pub chat: u64,
    /// What happened.
    pub kind: EventKind,
}

/// The kinds of [`EngineEvent`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum EventKind {
    /// A protocol event (request, ready, message, service action, rekey, close…).
    App(AppEvent),
    /// The chat changed what [`model::SecretChat`] shows: state, server id, the other user,
    /// layer or self-destruct timer (not stored: read the chat with [`Engine::status`] after
    /// a restart).
    ChatUpdated(Box<model::SecretChat>),
    /// The peer read our messages sent up to `max_date` (`updateEncryptedMessagesRead`; not
    /// stored).
    MessagesRead {
        /// Messages sent at or before this server time (seconds) are read.
        max_date: i32,
        /// When the peer read them.
        date: i32,
    },
    /// The peer is typing (`updateEncryptedChatTyping`; not stored).
    Typing,
    /// The server accepted one of our messages (`messages.sendEncrypted*` answered; not
    /// stored). A message sent again (after a restart, for the peer's Resend) may be
    /// confirmed again.
    MessageSent {
        /// The message.
        random_id: i64,
        /// The server's date for it.
        date: i32,
    },
    /// A server call failed for a reason the engine cannot fix: a message stays stored and
    /// is sent again by the protocol's timers; a failed `requestEncryption` leaves the chat
    /// pending. Not stored.
    CallFailed {
        /// The method (`messages.sendEncrypted`…).
        method: &'static str,
        /// The message the call carried, if any.
        random_id: Option<i64>,
        /// The server's error.
        error: RpcError,
    },
    /// A write to the store failed: the chat stopped and restarts from its last stored state
    /// when next addressed (nothing unstored was sent or acknowledged). Not stored.
    StoreFailed(String),
    /// A file transfer advanced (not stored, not acknowledged).
    FileProgress {
        /// The file id (server id of the upload or download).
        file_id: i64,
        /// Bytes done (encrypted).
        done: u64,
        /// Bytes in all (encrypted).
        total: u64,
        /// Upload (else download).
        upload: bool,
    },
    /// On a shared database, this engine stopped the account by itself: another node took
    /// it over, or its lease ran out unrenewed (the database unreachable). Calls for it fail
    /// with `NoSuchAccount` until it is added again. Not stored (`chat` is 0).
    AccountLost,
}

/// State shared by the actors.
pub struct Shared {
    pub(crate) store: Arc<Store>,
    pub(crate) config: EngineConfig,
    pub(crate) events: EventSink,
    pub(crate) rekey: Addr<RekeyActor>,
    /// The file pool; the encrypted-file path sends it parts.
    #[allow(dead_code)]
    pub(crate) files: Addr<FileCryptor>,
    pub(crate) dh_config: Addr<DhConfigActor>,
    /// Reads chat records off the account threads (a shared database only).
    pub(crate) loader: Option<Addr<ChatLoader>>,
    pub(crate) registry: Arc<ParamsRegistry>,
    pub(crate) metrics: Arc<EngineMetrics>,
    arbiters: Vec<ArbiterHandle>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Shared")
    }
}

impl Shared {
    fn arbiter(&self, handle: u64) -> ArbiterHandle {
        let n = self.arbiters.len().max(1);
        self.arbiters
            .get((handle % n as u64) as usize)
            .cloned()
            .unwrap_or_else(Arbiter::current)
    }
}

/// Milliseconds since the epoch (the runtime reads the clock; the core never does).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Sends raw `request`, retrying FLOOD_WAIT/429 after the server's delay and transient
/// failures shortly (at most 30 attempts).
///
/// # Errors
/// The last [`RpcError`].
pub async fn invoke_retrying(api: &dyn ServerApi, request: Vec<u8>) -> Result<Vec<u8>, RpcError> {
    let mut attempt = 0;
    loop {
        match api.invoke(request.clone()).await {
            Ok(a) => return Ok(a),
            Err(e) => match e.retry_delay(attempt) {
                Some(d) if attempt < 30 => {
                    attempt += 1;
                    tokio::time::sleep(d).await;
                }
                _ => return Err(e),
            },
        }
    }
}

/// A typed call with [`invoke_retrying`]'s retries.
///
/// # Errors
/// [`CallError`].
pub async fn call_retrying<R: RemoteCall>(
    api: &dyn ServerApi,
    request: &R,
) -> Result<R::Return, CallError> {
    let mut attempt = 0;
    loop {
        match call(api, request).await {
            Err(CallError::Rpc(e)) => match e.retry_delay(attempt) {
                Some(d) if attempt < 30 => {
                    attempt += 1;
                    tokio::time::sleep(d).await;
                }
                _ => return Err(CallError::Rpc(e)),
            },
            other => return other,
        }
    }
}

enum Request {
    AddAccount(u64, Arc<dyn ServerApi>, oneshot::Sender<UpdateFeed>),
    OpenChat(
        u64,
        api::InputUser,
        oneshot::Sender<Result<u64, EngineError>>,
    ),
    /// A command, and the metadata record its step removes ([`ChatInput::forget`]).
    Command(
        u64,
        u64,
        Command,
        Option<Box<[u8]>>,
        oneshot::Sender<Result<(), EngineError>>,
    ),
    Status(u64, u64, oneshot::Sender<Result<ChatStatus, EngineError>>),
    Active(u64, oneshot::Sender<usize>),
    /// Stop the account and delete its data.
    RemoveAccount(u64, oneshot::Sender<Result<usize, EngineError>>),
    /// Stops the account here, keeping its records; then gives it up on a shared database
    /// (`true`), or not (`false`: it was lost already).
    ReleaseAccount(u64, bool, oneshot::Sender<Result<(), EngineError>>),
    /// Stops the account's actors if it runs here, and waits for any stop of them still
    /// under way (before it is acquired again: no actor of an earlier holding may write
    /// under the new one).
    Quiesce(u64, oneshot::Sender<()>),
    /// Chats with work pending after a restart (found by the background scan).
    Pending(Vec<(u64, u64)>),
    /// Stop once the requests before it are handled (the engine is closing).
    Stop,
}

/// The engine: cheap to clone, usable from any thread or runtime.
#[derive(Clone)]
pub struct Engine {
    tx: mpsc::UnboundedSender<Request>,
    store: Arc<Store>,
    apis: Arc<std::sync::Mutex<HashMap<u64, Arc<dyn ServerApi>>>>,
    /// The uploads running in this process.
    uploads: Arc<files::Running>,
    events: EventSink,
    files: Addr<FileCryptor>,
    metrics: Arc<EngineMetrics>,
    registry: Arc<ParamsRegistry>,
    config: EngineConfig,
    acker: acker::Acker,
    _system: Arc<SystemGuard>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Engine")
    }
}

/// Stops the engine once: by [`Engine::shutdown`], or when the last handle is dropped.
struct SystemGuard {
    closer: std::sync::Mutex<Option<Closer>>,
}

/// What stopping the engine joins and flushes.
struct Closer {
    system: System,
    thread: std::thread::JoinHandle<()>,
    /// The pending-work scan after a restart: told to stop and joined (it holds the store).
    scan: (Arc<AtomicBool>, std::thread::JoinHandle<()>),
    /// Flushed once everything stopped: the next open has no log to replay.
    store: Arc<Store>,
    /// Tells the request loop to stop (other handles may still hold senders).
    requests: mpsc::UnboundedSender<Request>,
    /// Writes the acknowledgements queued before the close.
    acks: acker::AckerThread,
}

impl Closer {
    /// Stops the actors (each finishes the step it is storing), joins their threads and
    /// flushes the store. Blocks.
    fn close(self) -> Result<(), EngineError> {
        let (cancel, scan) = self.scan;
        cancel.store(true, Ordering::Relaxed);
        let _ = scan.join();
        let _ = self.requests.send(Request::Stop);
        self.system.stop();
        let _ = self.thread.join();
        self.acks.stop();
        self.store.flush()?;
        Ok(())
    }
}

impl SystemGuard {
    fn take(&self) -> Option<Closer> {
        self.closer.lock().ok().and_then(|mut c| c.take())
    }
}

impl Drop for SystemGuard {
    fn drop(&mut self) {
        let Some(closer) = self.take() else {
            return;
        };
        // Synchronous: a close left running on a thread of its own could still hold the
        // database when the process exits (RocksDB aborts then) or when it is opened again.
        // Async code closes with `Engine::shutdown().await`, which does not block.
        if let Err(e) = closer.close() {
            tracing::warn!(error = %e, "store flush at close failed");
        }
    }
}

impl Engine {
    /// Stops the engine gracefully: every actor finishes the step it is storing, the store is
    /// flushed (the next open replays no log) and, when this was the last handle, the database
    /// is released by the time this returns: it can be opened again at once. Other clones of
    /// the handle get [`EngineError::Stopped`] from then on. The blocking part runs on tokio's
    /// blocking pool, never on the caller's async thread.
    ///
    /// Dropping the last handle without calling this closes the engine too, but
    /// synchronously: the dropping thread waits for the actors and the flush. In async code,
    /// call this instead.
    ///
    /// # Errors
    /// [`EngineError::Store`] when the final flush fails (everything was stored before it);
    /// [`EngineError::Stopped`] when the closing task could not run.
    pub async fn shutdown(self) -> Result<(), EngineError> {
        let closer = self._system.take();
        drop(self);
        match closer {
            Some(c) => tokio::task::spawn_blocking(move || c.close())
                .await
                .map_err(|_| EngineError::Stopped)?,
            None => Ok(()),
        }
    }

    /// Opens the engine on the database at `path` (created if missing). Returns the engine and
    /// its event stream; events not acknowledged before the last shutdown or crash come first.
    ///
    /// # Errors
    /// [`EngineError::Store`] (including a database from a newer version).
    pub fn open(path: &Path, config: EngineConfig) -> Result<(Engine, Events), EngineError> {
        let store = Store::open(path, config.store.clone())?;
        Self::open_with_store(store, config)
    }

    /// Opens the engine on `store` (any backend: [`Store::with_backend`]); `config.store` is
    /// not used (the store is open already).
    ///
    /// # Errors
    /// [`EngineError::Stopped`] when its threads cannot start.
    pub fn open_with_store(
        store: Arc<Store>,
        config: EngineConfig,
    ) -> Result<(Engine, Events), EngineError> {
        // The unacknowledged inbox is read page by page as the application consumes it.
        let (events_tx, events_rx) = events::queue(&store, config.event_capacity);
        let (tx, rx) = mpsc::unbounded_channel();
        // The chats with work pending (unacknowledged outbox, waiting messages) are found in
        // the background: the scan seeks once per such chat (a million quiet chats each keep
        // their last message until the peer answers), and nothing waits for its result — a
        // chat addressed before its turn is activated anyway; resuming only restarts timers.
        let scan_store = store.clone();
        let scan_tx = tx.clone();
        let cancel = Arc::new(AtomicBool::new(false));
        let scan_cancel = cancel.clone();
        let scan = std::thread::Builder::new()
            .name("secretchat-resume-scan".into())
            .spawn(
                move || match scan_store.chats_with_pending_work_until(&scan_cancel) {
                    Ok(p) => {
                        let _ = scan_tx.send(Request::Pending(p));
                    }
                    Err(e) => tracing::warn!(error = %e, "pending-work scan failed"),
                },
            )
            .map_err(|_| EngineError::Stopped)?;
        let (sys_tx, sys_rx) = std::sync::mpsc::channel();
        let thread_store = store.clone();
        let engine_events = events_tx.clone();
        let file_threads = config.file_threads.max(1);
        let metrics = Arc::new(EngineMetrics::default());
        let file_metrics = metrics.clone();
        let thread_metrics = metrics.clone();
        let registry = Arc::new(ParamsRegistry::default());
        let thread_registry = registry.clone();
        let engine_config = config.clone();
        let thread = std::thread::Builder::new()
            .name("secretchat-engine".into())
            .spawn(move || {
                let sys = System::new();
                let files = sys.block_on(async move {
                    SyncArbiter::start(file_threads, move || FileCryptor(file_metrics.clone()))
                });
                let _ = sys_tx.send((System::current(), files.clone()));
                let shared_parts = Parts {
                    files,
                    metrics: thread_metrics,
                    registry: thread_registry,
                };
                sys.block_on(run(thread_store, config, events_tx, rx, shared_parts));
            })
            .map_err(|_| EngineError::Stopped)?;
        let (system, files) = sys_rx.recv().map_err(|_| EngineError::Stopped)?;
        if let Some(mut lost) = store.lost_accounts() {
            // An account this node lost (another node took it, or its lease ran out while
            // the database was unreachable) stops here at once: no more sends for it.
            let requests = tx.clone();
            system.arbiter().spawn(async move {
                while lost.changed().await.is_ok() {
                    let accounts = lost.borrow_and_update().clone();
                    for account in accounts {
                        let (reply, _) = oneshot::channel();
                        let _ = requests.send(Request::ReleaseAccount(account, false, reply));
                    }
                }
            });
        }
        let (acker, acks) = acker::start(store.clone())?;
        let guard = SystemGuard {
            closer: std::sync::Mutex::new(Some(Closer {
                system,
                thread,
                scan: (cancel, scan),
                store: store.clone(),
                requests: tx.clone(),
                acks,
            })),
        };
        Ok((
            Engine {
                tx,
                store,
                apis: Arc::default(),
                uploads: Arc::default(),
                events: engine_events,
                files,
                metrics,
                registry,
                config: engine_config,
                acker,
                _system: Arc::new(guard),
            },
            events_rx,
        ))
    }

    /// Adds an account talking to `api`; returns the feed its transport pushes updates into.
    ///
    /// # Errors
    /// [`EngineError::Stopped`].
    pub async fn add_account(
        &self,
        account: u64,
        api: Arc<dyn ServerApi>,
    ) -> Result<UpdateFeed, EngineError> {
        if self.store.is_shared() {
            // Its actors of an earlier holding (lost, or being stopped) are gone first: they
            // would write under the epoch acquired now.
            let (tx, rx) = oneshot::channel();
            self.tx
                .send(Request::Quiesce(account, tx))
                .map_err(|_| EngineError::Stopped)?;
            rx.await.map_err(|_| EngineError::Stopped)?;
            // Its earlier events are left to the adoption below, not to the pages.
            self.events.adopting(account);
            // The account is this node's from now on (or refused: another node's lease on it
            // runs), and the events stored for it before (by another node, or by this one
            // earlier) are this node's to deliver, ahead of its new ones. Two round trips,
            // made off the caller's thread (it may be a runtime's worker).
            let store = self.store.clone();
            let taken = off_thread("secretchat-acquire", move || {
                store.acquire_account(account)?;
                store.adopt_inbox(account).inspect_err(|_| {
                    // Not left holding a lease with nothing running it.
                    let _ = store.release_account(account);
                })
            })
            .await
            .and_then(|r| r.map_err(EngineError::from));
            match taken {
                Ok(below) => self.events.adopt(account, below),
                Err(e) => {
                    self.events.adopt_abandoned(account);
                    return Err(e);
                }
            }
        }
        if let Ok(mut m) = self.apis.lock() {
            m.insert(account, api.clone());
        }
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Request::AddAccount(account, api, tx))
            .map_err(|_| EngineError::Stopped)?;
        rx.await.map_err(|_| EngineError::Stopped)
    }

    /// Starts a secret chat with `user`; returns the chat's handle (events name it).
    ///
    /// # Errors
    /// [`EngineError`].
    pub async fn request_chat(
        &self,
        account: u64,
        user: api::InputUser,
    ) -> Result<u64, EngineError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Request::OpenChat(account, user, tx))
            .map_err(|_| EngineError::Stopped)?;
        rx.await.map_err(|_| EngineError::Stopped)?
    }

    /// Sends a command to a chat (accept, decline, send, service action, close, rekey).
    ///
    /// # Errors
    /// [`EngineError`].
    pub async fn command(
        &self,
        account: u64,
        chat: u64,
        command: Command,
    ) -> Result<(), EngineError> {
        self.submit(account, chat, command).await
    }

    /// Queues a command at once and returns a future that resolves when it is stored (the
    /// same answer as [`Engine::command`]). Commands submitted one after another run in that
    /// order, so an application can keep several messages of a chat in flight without waiting
    /// for each to be stored: the chat then stores them together (one write, one fsync).
    ///
    /// # Errors
    /// The future answers [`EngineError`] as [`Engine::command`] does.
    pub fn submit(
        &self,
        account: u64,
        chat: u64,
        command: Command,
    ) -> impl std::future::Future<Output = Result<(), EngineError>> + Send + 'static {
        self.submit_forgetting(account, chat, command, None)
    }

    /// [`Engine::submit`], removing the metadata record `forget` in the same write as the
    /// command's step.
    pub(crate) fn submit_forgetting(
        &self,
        account: u64,
        chat: u64,
        command: Command,
        forget: Option<Box<[u8]>>,
    ) -> impl std::future::Future<Output = Result<(), EngineError>> + Send + 'static {
        let (tx, rx) = oneshot::channel();
        let queued = self
            .tx
            .send(Request::Command(account, chat, command, forget, tx));
        async move {
            queued.map_err(|_| EngineError::Stopped)?;
            rx.await.map_err(|_| EngineError::Stopped)?
        }
    }

    /// A chat's status (state, layers, seq numbers, key age, holes).
    ///
    /// # Errors
    /// [`EngineError`].
    pub async fn status(&self, account: u64, chat: u64) -> Result<ChatStatus, EngineError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Request::Status(account, chat, tx))
            .map_err(|_| EngineError::Stopped)?;
        rx.await.map_err(|_| EngineError::Stopped)?
    }

    /// How many of `account`'s chats are in memory (idle ones leave after `idle_after`).
    ///
    /// # Errors
    /// [`EngineError::Stopped`].
    pub async fn active_chats(&self, account: u64) -> Result<usize, EngineError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Request::Active(account, tx))
            .map_err(|_| EngineError::Stopped)?;
        rx.await.map_err(|_| EngineError::Stopped)
    }

    /// The application handled event `seq`: it is removed from the inbox and never delivered
    /// again.
    ///
    /// # Errors
    /// [`EngineError::Store`].
    pub fn ack(&self, seq: u64) -> Result<(), EngineError> {
        self.store.ack_inbox(std::slice::from_ref(&seq))?;
        Ok(())
    }

    /// [`Engine::ack`] for several events at once (one store write).
    ///
    /// # Errors
    /// [`EngineError::Store`].
    pub fn ack_all(&self, seqs: &[u64]) -> Result<(), EngineError> {
        if !seqs.is_empty() {
            self.store.ack_inbox(seqs)?;
        }
        Ok(())
    }

    /// Removes `seqs` from the inbox like [`Engine::ack_all`], but on the engine's own
    /// thread: the caller's thread never waits for the store. Queued when called (while
    /// fewer than a few thousand wait; beyond, when the future is polled); the future
    /// resolves once the removal is stored (with the store's durability).
    ///
    /// # Errors
    /// [`EngineError::Store`], [`EngineError::Stopped`].
    pub fn acknowledge(
        &self,
        seqs: Vec<u64>,
    ) -> impl std::future::Future<Output = Result<(), EngineError>> + Send + 'static {
        let queued = (!seqs.is_empty()).then(|| self.acker.ack(seqs));
        async move {
            match queued {
                Some(q) => q.await,
                None => Ok(()),
            }
        }
    }

    /// The chat handle of server chat `chat_id` of `account`, if the engine has it stored.
    ///
    /// # Errors
    /// [`EngineError::Store`].
    pub fn chat_by_server_id(
        &self,
        account: u64,
        chat_id: i32,
    ) -> Result<Option<u64>, EngineError> {
        match self.store.handle_of(account, chat_id)? {
            Some(h) if self.store.has_chat(account, h)? => Ok(Some(h)),
            _ => Ok(None),
        }
    }

    /// Stops `account` (its chats stop after the step they are storing; its transport's
    /// feed is no longer read) and deletes everything stored for it, erasing its keys from
    /// disk: for a user who logs out. Returns how many chats were removed. The account can
    /// be added again afterwards, as new. File transfers of the account still running are
    /// not stopped: end them first.
    ///
    /// # Errors
    /// [`EngineError::Store`], [`EngineError::Stopped`].
    pub async fn remove_account(&self, account: u64) -> Result<usize, EngineError> {
        if let Ok(mut m) = self.apis.lock() {
            m.remove(&account);
        }
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Request::RemoveAccount(account, tx))
            .map_err(|_| EngineError::Stopped)?;
        rx.await.map_err(|_| EngineError::Stopped)?
    }

    /// Stops `account` on this engine, keeping everything stored for it, and on a shared
    /// database gives up its lease so that another node can take it over at once (the
    /// hand-over). Its transport's feed is no longer read. It can be added again (here, or
    /// on the node that takes it).
    ///
    /// # Errors
    /// [`EngineError::Store`], [`EngineError::Stopped`].
    pub async fn release_account(&self, account: u64) -> Result<(), EngineError> {
        if let Ok(mut m) = self.apis.lock() {
            m.remove(&account);
        }
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Request::ReleaseAccount(account, true, tx))
            .map_err(|_| EngineError::Stopped)?;
        rx.await.map_err(|_| EngineError::Stopped)?
    }

    /// Engine-wide counters: holes, Resend requests, re-sends, rejected messages, batches.
    pub fn metrics(&self) -> MetricsSnapshot {
        self.metrics.snapshot()
    }

    /// The store (for reports: size on disk).
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }
}

/// Runs `f` (blocking store calls: database round trips) on a thread of its own and waits for
/// it without holding the caller's thread, whatever runtime the caller runs on.
async fn off_thread<T: Send + 'static>(
    name: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, EngineError> {
    let (tx, rx) = oneshot::channel();
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            let _ = tx.send(f());
        })
        .map_err(|_| EngineError::Stopped)?;
    rx.await.map_err(|_| EngineError::Stopped)
}

/// Hands a request to its account without waiting here: a command resolves only once its
/// chat stored it, and one busy chat must not hold up every other request.
fn forward<M, T>(
    accounts: &HashMap<u64, Addr<AccountActor>>,
    account: u64,
    msg: M,
    reply: oneshot::Sender<Result<T, EngineError>>,
) where
    M: Message<Result = Result<T, EngineError>> + Send + 'static,
    T: Send + 'static,
    AccountActor: Handler<M>,
{
    let Some(addr) = accounts.get(&account).cloned() else {
        let _ = reply.send(Err(EngineError::NoSuchAccount(account)));
        return;
    };
    actix::spawn(async move {
        let r = addr.send(msg).await.unwrap_or(Err(EngineError::Stopped));
        let _ = reply.send(r);
    });
}

/// Stops `account`'s actor and its chats (each after the step it is storing), removing it.
async fn halt_account(accounts: &mut HashMap<u64, Addr<AccountActor>>, account: u64) {
    if let Some(addr) = accounts.remove(&account) {
        halt(addr).await;
    }
}

/// Stops an account's actor and its chats.
async fn halt(addr: Addr<AccountActor>) {
    let chats = addr.send(account::Halt).await.unwrap_or_default();
    for chat in chats {
        let _ = chat.send(chat::Halt).await;
    }
}

/// Chat loads in flight at once on a shared database (each holds a connection for a round
/// trip; more queue in the loader's mailbox).
const LOAD_THREADS: usize = 4;

/// What `Engine::open` made before the system started and the actors share.
struct Parts {
    files: Addr<FileCryptor>,
    metrics: Arc<EngineMetrics>,
    registry: Arc<ParamsRegistry>,
}

async fn run(
    store: Arc<Store>,
    config: EngineConfig,
    events: EventSink,
    mut rx: mpsc::UnboundedReceiver<Request>,
    parts: Parts,
) {
    let Parts {
        files,
        metrics,
        registry,
    } = parts;
    let dh_threads = config.dh_threads.max(1);
    let dh_metrics = metrics.clone();
    let rekey = SyncArbiter::start(dh_threads, move || RekeyActor(dh_metrics.clone()));
    let dh_config = DhConfigActor::new(store.clone(), registry.clone()).start();
    let loader = store.is_shared().then(|| {
        let store = store.clone();
        SyncArbiter::start(LOAD_THREADS, move || ChatLoader(store.clone()))
    });
    let arbiters: Vec<Arbiter> = (0..config.chat_threads.max(1))
        .map(|_| Arbiter::new())
        .collect();
    let shared = Arc::new(Shared {
        store,
        config,
        events,
        rekey,
        files,
        dh_config,
        loader,
        registry,
        metrics,
        arbiters: arbiters.iter().map(Arbiter::handle).collect(),
    });
    let mut accounts: HashMap<u64, Addr<AccountActor>> = HashMap::new();
    let mut pending: HashMap<u64, Vec<u64>> = HashMap::new();
    // Accounts whose actors are being stopped off the loop: done when the value turns true.
    let mut halting: HashMap<u64, tokio::sync::watch::Receiver<bool>> = HashMap::new();
    while let Some(req) = rx.recv().await {
        match req {
            Request::Stop => break,
            Request::AddAccount(account, api, reply) => {
                // Added again while it runs (on a shared database: lost, and taken back
                // before this engine stopped it): the old actors stop first, so one chat
                // never has two.
                halt_account(&mut accounts, account).await;
                let (feed, updates, catch_up) = UpdateFeed::for_account();
                let actor = AccountActor::new(account, api, shared.clone(), updates, catch_up);
                let addr = actor.start();
                if let Some(handles) = pending.remove(&account) {
                    addr.do_send(Resume(handles));
                }
                if shared.store.is_shared() {
                    // Another node may have run this account since this engine opened (its
                    // scan at open saw the database as it was then): its chats with pending
                    // work are found now, off the request loop.
                    let (store, addr) = (shared.store.clone(), addr.clone());
                    let spawned = std::thread::Builder::new()
                        .name("secretchat-resume-scan".into())
                        .spawn(move || match store.pending_work_of(account) {
                            Ok(handles) if !handles.is_empty() => addr.do_send(Resume(handles)),
                            Ok(_) => {}
                            Err(e) => {
                                tracing::warn!(account, error = %e, "pending-work scan failed")
                            }
                        });
                    if spawned.is_err() {
                        tracing::warn!(account, "could not start the pending-work scan");
                    }
                }
                accounts.insert(account, addr);
                let _ = reply.send(feed);
            }
            Request::OpenChat(account, user, reply) => {
                forward(&accounts, account, RequestChat(user), reply)
            }
            Request::Command(account, chat, command, forget, reply) => match accounts.get(&account)
            {
                Some(a) => a.do_send(ChatCommand(chat, command, reply, forget)),
                None => {
                    let _ = reply.send(Err(EngineError::NoSuchAccount(account)));
                }
            },
            Request::Active(account, reply) => {
                let n = match accounts.get(&account) {
                    Some(a) => a.send(account::ActiveChats).await.unwrap_or(0),
                    None => 0,
                };
                let _ = reply.send(n);
            }
            Request::ReleaseAccount(account, give_up, reply) => {
                pending.remove(&account);
                // Out of the map at once (nothing reaches it from now on); its actors are
                // halted off the request loop, which a chat busy in a store call would hold.
                let addr = accounts.remove(&account);
                let (halted, done) = tokio::sync::watch::channel(false);
                halting.retain(|_, rx| !*rx.borrow());
                halting.insert(account, done);
                if !give_up && addr.is_some() {
                    shared.events.deliver(EngineEvent {
                        seq: None,
                        account,
                        chat: 0,
                        kind: EventKind::AccountLost,
                    });
                }
                let store = shared.store.clone();
                actix::spawn(async move {
                    if let Some(addr) = addr {
                        halt(addr).await;
                    }
                    halted.send_replace(true);
                    let spawned = std::thread::Builder::new()
                        .name("secretchat-release-account".into())
                        .spawn(move || {
                            let released = if give_up {
                                store.release_account(account).map_err(Into::into)
                            } else {
                                Ok(())
                            };
                            let _ = reply.send(released);
                        });
                    if spawned.is_err() {
                        tracing::warn!(account, "could not start the account release");
                    }
                });
            }
            Request::RemoveAccount(account, reply) => {
                pending.remove(&account);
                halt_account(&mut accounts, account).await;
                let store = shared.store.clone();
                // Off the request loop: the erasure flushes and compacts.
                let spawned = std::thread::Builder::new()
                    .name("secretchat-remove-account".into())
                    .spawn(move || {
                        let _ = reply.send(store.remove_account(account).map_err(Into::into));
                    });
                if spawned.is_err() {
                    tracing::warn!(account, "could not start the account removal");
                }
            }
            Request::Status(account, chat, reply) => {
                forward(&accounts, account, Status(chat), reply)
            }
            Request::Quiesce(account, reply) => {
                let addr = accounts.remove(&account);
                let mut stopping = halting.get(&account).cloned();
                actix::spawn(async move {
                    if let Some(addr) = addr {
                        halt(addr).await;
                    }
                    if let Some(rx) = stopping.as_mut() {
                        let _ = rx.wait_for(|done| *done).await;
                    }
                    let _ = reply.send(());
                });
            }
            Request::Pending(found) => {
                for (account, handle) in found {
                    pending.entry(account).or_default().push(handle);
                }
                for (account, addr) in &accounts {
                    if let Some(handles) = pending.remove(account) {
                        addr.do_send(Resume(handles));
                    }
                }
            }
        }
    }
    // Shut down: stop the chat threads (their actors and the store handles they hold are
    // dropped), then the system.
    drop(accounts);
    drop(shared);
    for a in arbiters {
        a.stop();
        let _ = a.join();
    }
    System::current().stop();
}
