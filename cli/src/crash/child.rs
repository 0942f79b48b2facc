//! The engine process of the crash test (`secretchat crash-engine`, started by the driver):
//! the real engine on a data directory, two accounts whose server calls and updates travel over
//! stdin/stdout, and the application side, which checks every message against the workload,
//! tells the driver, and only then acknowledges it. It runs until it is killed.

use std::collections::HashMap;
use std::io::{BufReader, Stdout};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use secretchat::engine::protocol::chat::{AppEvent, Command};
use secretchat::engine::runtime::files::FileRef;
use secretchat::engine::runtime::{Engine, EngineConfig, EngineEvent, EventKind};
use secretchat::engine::transport::{BoxFuture, RpcError, ServerApi};
use secretchat::schema::Deserialize;
use secretchat::schema::api::enums as api;
use tokio::sync::{mpsc, oneshot};

use super::wire::{Down, Up, read_frame, write_frame};
use crate::simulate::send::send_item;
use crate::simulate::workload::{Item, Workload, parse_prefix, text_of, user};

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
    let mut c = EngineConfig::default();
    c.store.at_rest_key = at_rest_key;
    c.chat.resend_retry_ms = 200;
    c.chat.unhealthy_after = 50;
    c.chat.retransmit_ms = 1_000;
    c.chat.max_backoff_ms = 2_000;
    c.ack_interval = Duration::from_millis(50);
    c.difference_interval = Duration::from_millis(300);
    c
}

/// Runs the engine process until stdin closes (or the process is killed).
///
/// # Errors
/// The engine failed to open.
pub async fn run(
    data_dir: &Path,
    work: Workload,
    at_rest_key: Option<[u8; 32]>,
) -> Result<(), String> {
    let (engine, mut events) = Engine::open(&data_dir.join("engine"), engine_config(at_rest_key))
        .map_err(|e| e.to_string())?;
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
    let next = Arc::new(AtomicU64::new(1));
    let mut feeds = HashMap::new();
    for account in [1u64, 2] {
        let api = Remote {
            account,
            pipe: pipe.clone(),
            pending: pending.clone(),
            next: next.clone(),
        };
        let feed = engine
            .add_account(account, Arc::new(api))
            .await
            .map_err(|e| e.to_string())?;
        feeds.insert(account, feed);
    }
    pipe.up(&Up::Hello);
    for account in [1u64, 2] {
        let e = engine.clone();
        tokio::spawn(async move {
            let _ = e.resume_uploads(account).await;
        });
    }
    let app = App {
        engine: engine.clone(),
        pipe: pipe.clone(),
        work,
        files: files.clone(),
    };
    tokio::spawn(async move {
        while let Some(e) = events.recv().await {
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
            Some(d) = commands.recv() => match d {
                Down::Setup(n) => {
                    for _ in 0..n {
                        let e = engine.clone();
                        tokio::spawn(async move { e.request_chat(1, user(2)).await });
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
                    tokio::spawn(async move { e.command(a, h, Command::Rekey).await });
                }
                Down::Status(a, h) => {
                    let (e, p) = (engine.clone(), pipe.clone());
                    tokio::spawn(async move {
                        if let Ok(s) = e.status(a, h).await {
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
struct App {
    engine: Engine,
    pipe: Pipe,
    work: Workload,
    files: PathBuf,
}

impl App {
    async fn event(&self, e: EngineEvent) {
        let (a, h) = (e.account, e.chat);
        match e.kind {
            EventKind::App(AppEvent::ChatRequested { .. }) => {
                let engine = self.engine.clone();
                tokio::spawn(async move { engine.accept(a, h).await });
            }
            EventKind::App(AppEvent::ChatReady { .. }) => {
                let (engine, pipe) = (self.engine.clone(), self.pipe.clone());
                tokio::spawn(async move {
                    for _ in 0..400 {
                        if let Ok(s) = engine.status(a, h).await {
                            if s.chat_id != 0 {
                                pipe.up(&Up::ChatReady(a, h, s.chat_id));
                                return;
                            }
                        }
                        tokio::time::sleep(Duration::from_millis(25)).await;
                    }
                });
            }
            EventKind::App(AppEvent::Message { message, file }) => {
                let Some(seq) = e.seq else { return };
                let text = text_of(&message).unwrap_or("").to_owned();
                let intact = match parse_prefix(&text) {
                    Some((p, d, idx)) => match self.work.item(p, d, idx) {
                        Item::Text(t) => t == text && file.is_none(),
                        Item::File(caption) => {
                            caption == text && self.file_ok(a, h, (p, d, idx), &message, file).await
                        }
                    },
                    None => false,
                };
                // Told before the acknowledgement: a kill in between redelivers it.
                self.pipe.up(&Up::Delivered(a, h, seq, text, intact));
            }
            EventKind::App(AppEvent::Rekeyed(_)) => self.pipe.up(&Up::Rekeyed(a, h)),
            EventKind::App(AppEvent::ChatClosed(r)) => {
                self.pipe.up(&Up::Closed(a, h, format!("{r:?}")));
            }
            _ => {}
        }
        if let Some(seq) = e.seq {
            if self.engine.ack(seq).is_ok() {
                self.pipe.up(&Up::Acked(seq));
            }
        }
    }

    /// Downloads the attached file and compares it with the workload's bytes.
    async fn file_ok(
        &self,
        a: u64,
        h: u64,
        (p, d, idx): (usize, usize, u32),
        message: &secretchat::schema::e2e::enums::DecryptedMessage,
        file: Option<api::EncryptedFile>,
    ) -> bool {
        let Some(fref) = FileRef::from_message(message, file.as_ref()) else {
            return false;
        };
        let dest = self.files.join(format!("in-{p}-{d}-{idx}"));
        // A transport error leaves the download resumable: try again (faults are on).
        for _ in 0..50 {
            match self.engine.download(a, h, &fref, &dest).await {
                Ok(()) => {
                    let same =
                        std::fs::read(&dest).is_ok_and(|b| b == self.work.file_bytes(p, d, idx));
                    let _ = std::fs::remove_file(&dest);
                    return same;
                }
                Err(secretchat::engine::runtime::files::FileError::Call(_)) => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(_) => return false,
            }
        }
        false
    }
}
