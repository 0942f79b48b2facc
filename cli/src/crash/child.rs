//! The engine process of the crash test (`secretchat crash-engine`, started by the driver):
//! the real engine on a data directory (or a node on a shared PostgreSQL database, taking and
//! giving up accounts as the driver says), accounts whose server calls and updates travel over
//! stdin/stdout, and the application side, which checks every message against the workload,
//! tells the driver, and only then acknowledges it. It runs until it is killed.

use std::collections::HashMap;
use std::io::{BufReader, Stdout};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use secretchat::tl::Deserialize;
use secretchat::tl::api::enums as api;
use secretchat::{
    AccountId, BoxFuture, ChatConfig, ChatId, Engine, EngineConfig, Error, Event, Message,
    PgOptions, RpcError, ServerApi, Update,
};
use tokio::sync::{mpsc, oneshot};

use super::wire::{Down, Up, read_frame, write_frame};
use crate::simulate::send::send_item;
use crate::simulate::workload::{Item, Workload, parse_prefix};

/// One stream's queue of sends: (account, handle, index).
type StreamQueue = mpsc::UnboundedSender<(u64, u64, u32)>;

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<Result<Vec<u8>, RpcError>>>>>;

/// Frames to the driver; every write is flushed before it returns.
#[derive(Clone)]
struct Pipe(Arc<Mutex<Stdout>>);

impl Pipe {
    fn up(&self, u: &Up) {
        let mut out = match self.0.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        // The driver gone means this process is about to be killed: nothing to do.
        let _ = write_frame(&mut *out, &u.encode());
    }
}

/// An account's server, reached through the driver.
struct Remote {
    account: u64,
    pipe: Pipe,
    pending: Pending,
    next: Arc<AtomicU64>,
}

impl ServerApi for Remote {
    fn invoke(&self, request: Vec<u8>) -> BoxFuture<'static, Result<Vec<u8>, RpcError>> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        if let Ok(mut p) = self.pending.lock() {
            p.insert(id, tx);
        }
        self.pipe.up(&Up::Request(id, self.account, request));
        Box::pin(async move {
            rx.await
                .unwrap_or_else(|_| Err(RpcError::new(-503, "TIMEOUT")))
        })
    }
}

/// The engine settings of the crash test: short timers, so recovery after a restart is
/// seconds, not the defaults' minutes.
pub fn engine_config(at_rest_key: Option<[u8; 32]>) -> EngineConfig {
    let chat = ChatConfig {
        resend_retry_ms: 200,
        unhealthy_after: 50,
        retransmit_ms: 1_000,
        max_backoff_ms: 2_000,
        ..ChatConfig::default()
    };
    let mut b = EngineConfig::builder()
        .chat(chat)
        .ack_interval(Duration::from_millis(50))
        .difference_interval(Duration::from_millis(300));
    if let Some(key) = at_rest_key {
        b = b.at_rest_key(key);
    }
    b.build()
}

/// Where the engine process keeps its chats.
#[derive(Debug, Clone)]
pub enum ChildStore {
    /// RocksDB in the data directory; the two accounts are added at start.
    Embedded,
    /// A node on a shared PostgreSQL database; accounts come with [`Down::Take`].
    Shared(PgOptions),
}

/// Runs the engine process until stdin closes (or the process is killed).
///
/// # Errors
/// The engine failed to open.
pub async fn run(
    data_dir: &Path,
    store: ChildStore,
    work: Workload,
    at_rest_key: Option<[u8; 32]>,
) -> Result<(), String> {
    let config = engine_config(at_rest_key);
    let (engine, mut events) = match &store {
        ChildStore::Embedded => Engine::open(data_dir.join("engine"), config),
        ChildStore::Shared(db) => {
            Engine::open_postgres(data_dir.join("engine"), db.clone(), config)
        }
    }
    .map_err(|e| e.to_string())?;
    // Shared by the nodes of a run: an upload a killed node left is resumed by the next.
    let files = data_dir.join("files");
    std::fs::create_dir_all(&files).map_err(|e| e.to_string())?;
    let pipe = Pipe(Arc::new(Mutex::new(std::io::stdout())));
    let pending: Pending = Arc::default();
    let (cmd_tx, mut commands) = mpsc::unbounded_channel::<Down>();
    let (update_tx, mut updates) = mpsc::unbounded_channel::<(u64, Vec<u8>)>();
    let reader_pending = pending.clone();
    std::thread::spawn(move || {
        let mut stdin = BufReader::new(std::io::stdin());
        loop {
            let body = match read_frame(&mut stdin) {
                Ok(Some(b)) => b,
                Ok(None) => break,
                Err(e) => {
                    eprintln!("crash-engine: reading from the driver: {e}");
                    std::process::exit(3);
                }
            };
            match Down::decode(&body) {
                Some(Down::Reply(id, r)) => {
                    let tx = reader_pending.lock().ok().and_then(|mut p| p.remove(&id));
                    if let Some(tx) = tx {
                        let _ = tx.send(r.map_err(|(c, m)| RpcError::new(c, m)));
                    }
                }
                Some(Down::Update(a, b)) => {
                    let _ = update_tx.send((a, b));
                }
                Some(d) => {
                    let _ = cmd_tx.send(d);
                }
                None => {}
            }
        }
        // The driver is gone: stop.
        std::process::exit(0);
    });
    let accounts = Accounts {
        engine: engine.clone(),
        pipe: pipe.clone(),
        pending: pending.clone(),
        next: Arc::new(AtomicU64::new(1)),
    };
    let (took_tx, mut took) = mpsc::unbounded_channel::<(u64, Option<secretchat::UpdateFeed>)>();
    let mut feeds = HashMap::new();
    if matches!(store, ChildStore::Embedded) {
        for account in [1u64, 2] {
            let feed = accounts.add(account).await.map_err(|e| e.to_string())?;
            feeds.insert(account, feed);
        }
    }
    pipe.up(&Up::Hello);
    for account in feeds.keys().copied() {
        let e = engine.clone();
        tokio::spawn(async move {
            let _ = e.resume_uploads(AccountId(account)).await;
        });
    }
    let app = App {
        engine: engine.clone(),
        pipe: pipe.clone(),
        work,
        files: files.clone(),
    };
    tokio::spawn(async move {
        while let Some(e) = events.next().await {
            app.event(e).await;
        }
    });
    let mut streams: HashMap<(u32, u8), StreamQueue> = HashMap::new();
    loop {
        tokio::select! {
            Some((a, bytes)) = updates.recv() => {
                if let (Some(feed), Ok(u)) = (feeds.get(&a), api::Update::from_bytes(&bytes)) {
                    feed.push(u);
                }
            }
            Some((a, feed)) = took.recv() => match feed {
                Some(feed) => {
                    feeds.insert(a, feed);
                    pipe.up(&Up::Took(a));
                    let e = engine.clone();
                    tokio::spawn(async move {
                        let _ = e.resume_uploads(AccountId(a)).await;
                    });
                }
                None => {
                    feeds.remove(&a);
                    pipe.up(&Up::Released(a));
                }
            },
            Some(d) = commands.recv() => match d {
                Down::Take(a) => {
                    let (accounts, tx) = (accounts.clone(), took_tx.clone());
                    tokio::spawn(async move { accounts.take(a, tx).await });
                }
                Down::Release(a) => {
                    let (e, tx) = (engine.clone(), took_tx.clone());
                    tokio::spawn(async move {
                        match e.release_account(AccountId(a)).await {
                            Ok(()) => {
                                let _ = tx.send((a, None));
                            }
                            Err(err) => eprintln!("crash-engine: releasing {a}: {err}"),
                        }
                    });
                }
                Down::Setup(n) => {
                    for _ in 0..n {
                        let e = engine.clone();
                        tokio::spawn(async move { e.request_chat(AccountId(1), 2, 0).await });
                    }
                }
                Down::Send { account, handle, pair, dir, idx } => {
                    let tx = streams.entry((pair, dir)).or_insert_with(|| {
                        let (tx, rx) = mpsc::unbounded_channel();
                        let s = StreamSender { engine: engine.clone(), pipe: pipe.clone(), work, files: files.clone(), pair, dir };
                        tokio::spawn(s.run(rx));
                        tx
                    });
                    let _ = tx.send((account, handle, idx));
                }
                Down::Rekey(a, h) => {
                    let e = engine.clone();
                    tokio::spawn(async move { e.rekey(AccountId(a), ChatId(h)).await });
                }
                Down::Status(a, h) => {
                    let (e, p) = (engine.clone(), pipe.clone());
                    tokio::spawn(async move {
                        if let Ok(s) = e.diagnostics(AccountId(a), ChatId(h)).await {
                            p.up(&Up::Status(a, h, s.key_fingerprint.unwrap_or(0), s.rekeys, s.rekeying, s.seq));
                        }
                    });
                }
                Down::Reply(..) | Down::Update(..) => {}
            },
            else => return Ok(()),
        }
    }
}

/// Adds accounts to the engine, each with its server reached through the driver.
#[derive(Clone)]
struct Accounts {
    engine: Engine,
    pipe: Pipe,
    pending: Pending,
    next: Arc<AtomicU64>,
}

impl Accounts {
    /// `account`'s server, reached through the driver.
    fn remote(&self, account: u64) -> Arc<Remote> {
        Arc::new(Remote {
            account,
            pipe: self.pipe.clone(),
            pending: self.pending.clone(),
            next: self.next.clone(),
        })
    }

    async fn add(&self, account: u64) -> Result<secretchat::UpdateFeed, Error> {
        self.engine
            .add_account(AccountId(account), self.remote(account))
            .await
    }

    /// Takes `account` over (waiting while another node's lease on it runs); tells the main
    /// loop.
    async fn take(
        &self,
        account: u64,
        done: mpsc::UnboundedSender<(u64, Option<secretchat::UpdateFeed>)>,
    ) {
        let poll = Duration::from_millis(20);
        loop {
            let api = self.remote(account);
            match self.engine.take_over(AccountId(account), api, poll).await {
                Ok(feed) => {
                    let _ = done.send((account, Some(feed)));
                    return;
                }
                Err(e) => {
                    eprintln!("crash-engine: taking {account}: {e}");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }
}

/// Sends one stream's messages one after another (so the engine stores them in order).
struct StreamSender {
    engine: Engine,
    pipe: Pipe,
    work: Workload,
    files: PathBuf,
    pair: u32,
    dir: u8,
}

impl StreamSender {
    async fn run(self, mut rx: mpsc::UnboundedReceiver<(u64, u64, u32)>) {
        while let Some((account, handle, idx)) = rx.recv().await {
            let (p, d) = (self.pair as usize, usize::from(self.dir));
            // A file is kept after the send: an upload interrupted by a kill resumes from it.
            let r = send_item(
                &self.engine,
                (account, handle),
                &self.work,
                p,
                d,
                idx,
                &self.files,
                true,
            )
            .await;
            self.pipe.up(&match r {
                Ok(_) => Up::Accepted(self.pair, self.dir, idx),
                Err(e) => Up::SendFailed(self.pair, self.dir, idx, e),
            });
        }
    }
}

/// The application: checks, reports, then acknowledges.
#[derive(Clone)]
struct App {
    engine: Engine,
    pipe: Pipe,
    work: Workload,
    files: PathBuf,
}

impl App {
    async fn event(&self, e: Event) {
        let (account, chat) = (e.account, e.chat);
        let (a, h) = (account.0, chat.0);
        match e.update {
            Update::ChatRequested { .. } => {
                let engine = self.engine.clone();
                tokio::spawn(async move { engine.accept_chat(account, chat).await });
            }
            Update::ChatReady { .. } => {
                let (engine, pipe) = (self.engine.clone(), self.pipe.clone());
                tokio::spawn(async move {
                    for _ in 0..400 {
                        if let Ok(c) = engine.chat(account, chat).await {
                            if c.server_chat_id != 0 {
                                pipe.up(&Up::ChatReady(a, h, c.server_chat_id));
                                return;
                            }
                        }
                        tokio::time::sleep(Duration::from_millis(25)).await;
                    }
                });
            }
            Update::NewMessage(message) => {
                let Some(seq) = e.seq else { return };
                let text = message.text.clone();
                let item =
                    parse_prefix(&text).map(|(p, d, idx)| ((p, d, idx), self.work.item(p, d, idx)));
                let intact = match &item {
                    Some((_, Item::Text(t))) => *t == text && message.file.is_none(),
                    Some((_, Item::File(caption))) => *caption == text && message.file.is_some(),
                    None => false,
                };
                // Told at once (the order it came in), and before the acknowledgement: a kill
                // in between redelivers it.
                self.pipe.up(&Up::Delivered(a, h, seq, text, intact));
                if let (true, Some((at, Item::File(_)))) = (intact, item) {
                    // The file is fetched and checked off the event loop, as an application
                    // that keeps up would: a download waits for the database when it is out
                    // of reach, and the events behind it — an `AccountLost` among them — must
                    // not. Acknowledged once checked.
                    let app = self.clone();
                    tokio::spawn(async move {
                        match app.file_ok(account, chat, at, &message).await {
                            Some(true) => {}
                            Some(false) => app.pipe.up(&Up::FileBad(a, h, seq)),
                            // The account left this node meanwhile: not acknowledged here;
                            // the node that runs it delivers it again.
                            None => return,
                        }
                        app.acknowledge(seq);
                    });
                    return;
                }
            }
            Update::Rekeyed { .. } => self.pipe.up(&Up::Rekeyed(a, h)),
            // Stopped by the engine itself (its lease ran out or another node took it).
            Update::AccountLost => self.pipe.up(&Up::Released(a)),
            Update::ChatClosed(r) => {
                self.pipe.up(&Up::Closed(a, h, format!("{r:?}")));
            }
            _ => {}
        }
        if let Some(seq) = e.seq {
            self.acknowledge(seq);
        }
    }

    /// Acknowledges `seq` off the event loop, as an application that keeps up would: with
    /// the database out of reach an acknowledgement waits for it, and the events behind it —
    /// an `AccountLost` among them — must not.
    fn acknowledge(&self, seq: u64) {
        let (acked, pipe) = (self.engine.ack(seq), self.pipe.clone());
        tokio::spawn(async move {
            if acked.await.is_ok() {
                pipe.up(&Up::Acked(seq));
            }
        });
    }

    /// Downloads the attached file and compares it with the workload's bytes; `None` when
    /// the account left this node during the download (taken over, or handed over).
    async fn file_ok(
        &self,
        account: AccountId,
        chat: ChatId,
        (p, d, idx): (usize, usize, u32),
        message: &Message,
    ) -> Option<bool> {
        let Some(fref) = &message.file else {
            return Some(false);
        };
        // Named by process: after a hand-over two nodes may fetch one message at once (the
        // files directory is the run's, shared by its nodes).
        let dest = self
            .files
            .join(format!("in-{}-{p}-{d}-{idx}", std::process::id()));
        // A transport error leaves the download resumable: try again (faults are on).
        for _ in 0..50 {
            match self.engine.download(account, chat, fref, &dest).await {
                Ok(()) => {
                    let same =
                        std::fs::read(&dest).is_ok_and(|b| b == self.work.file_bytes(p, d, idx));
                    if !same {
                        eprintln!("crash-engine: file {p}:{d}:{idx} differs");
                    }
                    let _ = std::fs::remove_file(&dest);
                    return Some(same);
                }
                Err(Error::Rpc(_) | Error::Decode(_)) => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(Error::NoSuchAccount(_) | Error::Stopped | Error::Store(_)) => return None,
                Err(e) => {
                    eprintln!("crash-engine: downloading {p}:{d}:{idx}: {e}");
                    return Some(false);
                }
            }
        }
        Some(false)
    }
}
