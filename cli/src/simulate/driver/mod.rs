//! Drives one simulation: accounts, chats, senders, the application side that checks and
//! acknowledges every event, and the final consistency check.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use secretchat::sim::{FileKeeping, SimServer};
use secretchat::{AccountId, ChatId, Engine, Event, EventStream, FileRef, Message, Update};
use tokio::sync::{Semaphore, mpsc};

use super::ledger::{Ledger, Violation};
use super::report::Report;
use super::workload::{Item, Workload, parse_prefix};
use super::{Live, SimulateError, SimulateOptions};

mod sender;
mod settle;
mod setup;

use sender::{Note, Sender};
use settle::restart_probe;
use setup::{DataDir, dir_size, ends};

#[derive(Debug, Clone, Default)]
struct Pair {
    /// (account, handle) of the initiator and the participant.
    sides: [Option<(u64, u64)>; 2],
    chat_id: i32,
    started: bool,
}

/// Chats started per progress tick (250 ms) at most: 100,000 chats started in one instant
/// loaded 200,000 chat actors one after another while their commands, updates and sends piled
/// up behind them (the memory peak of the million-chat run); a ramp of 8,000 a second reaches
/// `--active` within seconds when the chats are slower than that, as at scale they are.
const STARTS_PER_TICK: usize = 2_000;

fn lock(l: &Mutex<Ledger>) -> MutexGuard<'_, Ledger> {
    match l.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

struct Driver {
    opts: SimulateOptions,
    work: Workload,
    engine: Engine,
    ledger: Arc<Mutex<Ledger>>,
    /// Send windows of the running chats' streams.
    windows: HashMap<usize, Arc<Semaphore>>,
    pairs: Vec<Pair>,
    /// Chats ready but not started (at most `limit` run at once).
    queue: VecDeque<usize>,
    running: usize,
    /// Chats that may still start before the next tick.
    start_budget: usize,
    /// The most chats running at once.
    peak_running: usize,
    limit: usize,
    /// (account, handle) → (pair, side).
    side_of: HashMap<(u64, u64), (usize, usize)>,
    /// Server chat id → pair (from the initiator).
    by_chat_id: HashMap<i32, usize>,
    /// Participant sides whose chat id no initiator reported yet.
    early: HashMap<i32, (u64, u64)>,
    ready: usize,
    rekey_events: u64,
    downloads: usize,
    notes: mpsc::UnboundedSender<Note>,
    files_dir: PathBuf,
    deadline: Option<Instant>,
    /// Why a chat's status could not be read (for the report).
    status_errors: HashMap<usize, String>,
}

/// Runs a simulation; `tick` is called about four times a second with live figures.
///
/// # Errors
/// [`SimulateError`] for bad options or an engine that cannot start; everything that goes wrong
/// with messages is in the [`Report`].
pub async fn run(
    opts: &SimulateOptions,
    tick: &mut dyn FnMut(&Live),
) -> Result<Report, SimulateError> {
    opts.validate()?;
    let opts = &opts.sealed_for_store();
    let dir = DataDir::new(opts.data_dir.as_deref())?;
    let engine_dir = dir.path.join("engine");
    let files_dir = dir.path.join("files");
    std::fs::create_dir_all(&files_dir)?;
    let sim = SimServer::new(opts.faults, opts.seed);
    let expected_file_bytes =
        (opts.pairs() * opts.messages) as f64 * opts.file_share * opts.file_size as f64;
    if expected_file_bytes > 256.0 * 1024.0 * 1024.0 {
        let server_dir = dir.path.join("server-files");
        std::fs::create_dir_all(&server_dir)?;
        sim.set_file_keeping(FileKeeping::Disk(server_dir));
    }
    let started = Instant::now();
    let cpu_start = super::cpu_seconds();
    let (engine, mut events) = setup::open_engine(opts, &engine_dir)?;
    for a in 1..=opts.accounts as u64 {
        let device = sim.device(a as i64, 0);
        let feed = engine
            .add_account(AccountId(a), Arc::new(device.clone()))
            .await?;
        sim.connect(&device, feed);
    }
    let (notes, mut inbox) = mpsc::unbounded_channel();
    let pairs = opts.pairs();
    let mut d = Driver {
        opts: opts.clone(),
        work: Workload {
            seed: opts.seed,
            file_share: opts.file_share,
            file_size: opts.file_size,
        },
        engine: engine.clone(),
        ledger: Arc::new(Mutex::new(Ledger::new(pairs, started))),
        windows: HashMap::new(),
        pairs: vec![Pair::default(); pairs],
        queue: VecDeque::new(),
        running: 0,
        start_budget: STARTS_PER_TICK,
        peak_running: 0,
        limit: opts.active.unwrap_or(usize::MAX).max(1),
        side_of: HashMap::new(),
        by_chat_id: HashMap::new(),
        early: HashMap::new(),
        ready: 0,
        rekey_events: 0,
        downloads: 0,
        notes,
        files_dir,
        deadline: None,
        status_errors: HashMap::new(),
    };
    let provision_start = Instant::now();
    if opts.active.is_some() {
        d.provision(&sim)?;
    } else {
        // All at once (each request waits for its DH config and g^a; one after another
        // they took 10 ms each before the first chat could start).
        let requests: Vec<_> = (0..pairs)
            .map(|p| {
                let (a, b) = ends(opts, p);
                let engine = engine.clone();
                (
                    a,
                    tokio::spawn(
                        async move { engine.request_chat(AccountId(a), b as i64, 0).await },
                    ),
                )
            })
            .collect();
        for (p, (a, request)) in requests.into_iter().enumerate() {
            let handle = request.await.map_err(|_| secretchat::Error::Stopped)??.0;
            d.pairs[p].sides[0] = Some((a, handle));
            d.side_of.insert((a, handle), (p, 0));
        }
    }
    let provision_s = provision_start.elapsed().as_secs_f64();
    if d.deadline.is_none() {
        d.deadline = opts.duration.map(|t| Instant::now() + t);
    }
    let mut ticker = tokio::time::interval(Duration::from_millis(250));
    let mut last_progress = (Instant::now(), 0u64);
    loop {
        tokio::select! {
            e = events.next() => match e {
                Some(e) => {
                    d.events(e, &mut events);
                    // Checked here too, not only on the tick: the run's wall time ends with
                    // its last delivery, not up to 250 ms later.
                    if d.complete() {
                        break;
                    }
                }
                None => break,
            },
            Some(n) = inbox.recv() => d.note(n),
            _ = ticker.tick() => {
                if d.deadline.is_some_and(|t| Instant::now() >= t) {
                    d.expire_queue();
                }
                d.refill_starts();
                let live = d.live(started);
                tick(&live);
                let moved = live.delivered + live.chats_ready as u64;
                if moved != last_progress.1 {
                    last_progress = (Instant::now(), moved);
                }
                if d.complete() || last_progress.0.elapsed() > opts.stall {
                    break;
                }
            }
        }
    }
    let traffic_s = started.elapsed().as_secs_f64();
    let cpu_s = super::cpu_seconds() - cpu_start;
    let cpu_split = engine.metrics().spent;
    let statuses = d.settle(&mut events, &mut inbox).await;
    let consistency = d.check(&statuses);
    let live = d.live(started);
    tick(&live);
    let metrics = engine.metrics();
    let db_bytes = dir_size(&engine_dir);
    let key_erasures = engine.key_erasures();
    let rekeys = statuses
        .iter()
        .map(|(_, a, b)| match (a, b) {
            (Some(a), Some(b)) => u64::from(a.rekeys.min(b.rekeys)),
            _ => 0,
        })
        .sum();
    let probe = d.pairs.first().cloned().unwrap_or_default();
    let ready = d.ready;
    let d_peak = d.peak_running;
    let (ledger, work) = (d.ledger.clone(), d.work);
    drop(d);
    drop(events);
    let commit_latency = engine.commit_latency();
    engine.shutdown().await?;
    let restart_s = restart_probe(opts, &engine_dir, &sim, &probe, &ledger, work).await?;
    if let (Some(url), None) = (&opts.store, &opts.data_dir) {
        // A run in a temporary directory leaves nothing behind in the database either.
        let mut db = secretchat::PgOptions::new(url.clone());
        db.prefix = setup::table_prefix(&engine_dir);
        if let Err(e) = secretchat::drop_postgres_tables(&db) {
            tracing::warn!(error = %e, "could not drop the run's tables");
        }
    }
    let mut ledger = lock(&ledger);
    let lost = ledger.settle_losses();
    let mut report = Report::build(
        opts,
        &mut ledger,
        super::report::Figures {
            lost,
            rekeys,
            resends: metrics.resent,
            holes: metrics.holes_opened,
            resend_requests: metrics.resend_requests,
            rejected: metrics.rejected,
            dh_exponentiations: metrics.dh_exponentiations,
            wall_s: traffic_s,
            cpu_s,
            peak_rss_bytes: super::peak_rss(),
            db_bytes,
            key_erasures,
            chats_ready: ready,
            server: sim.stats(),
            restart_s,
            provision_s,
            active_peak: d_peak,
            loaded_peak: metrics.chats_loaded_peak,
            cpu_split,
        },
        consistency,
    );
    drop(ledger);
    report.commit_latency = commit_latency;
    if opts.floor {
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
        report.floor = Some(super::floor::measure(
            report.messages_delivered,
            pairs as u64,
            rekeys,
            opts.durability,
            &dir.path,
            threads,
        )?);
    }
    Ok(report)
}

impl Driver {
    fn live(&self, started: Instant) -> Live {
        let l = lock(&self.ledger);
        let m = self.engine.metrics();
        Live {
            elapsed_s: started.elapsed().as_secs_f64(),
            sent: l.sent_total(),
            delivered: l.delivered,
            planned: (self.opts.pairs() * self.opts.messages) as u64,
            chats_ready: self.ready,
            chats: self.opts.pairs(),
            rekey_events: self.rekey_events,
            holes_open: m.holes_open,
            loaded: m.chats_loaded,
            violations: l.violation_count,
        }
    }

    fn violation(&self, pair: usize, dir: usize, idx: Option<u32>, kind: &'static str, d: String) {
        lock(&self.ledger).violation(Violation {
            pair,
            dir,
            idx,
            kind,
            detail: d,
        });
    }

    /// The application side: checks `first` and whatever else is waiting (up to a few
    /// hundred), then acknowledges them together (one store write).
    fn events(&mut self, first: Event, events: &mut EventStream) {
        let mut acks = Vec::new();
        acks.extend(self.event(first));
        while acks.len() < 512 {
            match events.try_next() {
                Some(e) => acks.extend(self.event(e)),
                None => break,
            }
        }
        // Queued at once (the future need not be awaited): one store write, on the engine's
        // thread.
        drop(self.engine.ack_all(acks));
    }

    /// Checks one event; answers its inbox sequence number, to acknowledge.
    fn event(&mut self, e: Event) -> Option<u64> {
        let key = (e.account.0, e.chat.0);
        match &e.update {
            Update::ChatRequested { .. } => {
                let engine = self.engine.clone();
                tokio::spawn(async move {
                    let _ = engine.accept_chat(e.account, e.chat).await;
                });
            }
            Update::ChatReady { .. } => {
                let (engine, notes) = (self.engine.clone(), self.notes.clone());
                tokio::spawn(async move {
                    for _ in 0..200 {
                        if let Ok(c) = engine.chat(e.account, e.chat).await {
                            if c.server_chat_id != 0 {
                                let _ = notes.send(Note::ChatId(key.0, key.1, c.server_chat_id));
                                return;
                            }
                        }
                        tokio::time::sleep(Duration::from_millis(25)).await;
                    }
                });
            }
            Update::NewMessage(m) => self.message(key, m),
            Update::Rekeyed { .. } => {
                self.rekey_events += 1;
                lock(&self.ledger).rekeyed(Instant::now());
            }
            Update::ChatClosed(reason) => {
                let (pair, side) = self.side_of.get(&key).copied().unwrap_or((usize::MAX, 0));
                self.violation(pair, side, None, "closed", format!("chat closed: {reason}"));
            }
            _ => {}
        }
        e.seq
    }

    fn message(&mut self, key: (u64, u64), message: &Message) {
        let now = Instant::now();
        let Some(&(pair, side)) = self.side_of.get(&key) else {
            self.violation(
                usize::MAX,
                0,
                None,
                "corrupted",
                "a message on an unknown chat".into(),
            );
            return;
        };
        // The stream into the participant (side 1) is direction 0.
        let dir = 1 - side;
        let text = message.text.as_str();
        let Some((p, d, idx)) = parse_prefix(text) else {
            lock(&self.ledger).corrupted += 1;
            self.violation(
                pair,
                dir,
                None,
                "corrupted",
                format!("unparsable text {:.40?}", text),
            );
            return;
        };
        if (p, d) != (pair, dir) {
            lock(&self.ledger).corrupted += 1;
            self.violation(
                pair,
                dir,
                Some(idx),
                "corrupted",
                format!("belongs to chat {p}/{d}"),
            );
            return;
        }
        let intact = match self.work.item(pair, dir, idx) {
            Item::Text(t) => t == text && message.media.is_none(),
            Item::File(caption) => {
                let ok = caption == text;
                if ok {
                    self.download(key, pair, dir, idx, message.file.clone());
                }
                ok
            }
        };
        let fresh = lock(&self.ledger).received(pair, dir, idx, intact, now);
        if fresh {
            if let Some(w) = self.windows.get(&(pair * 2 + dir)) {
                w.add_permits(1);
            }
            self.maybe_done(pair);
        }
    }

    /// A running chat whose both streams are complete makes room for the next one.
    fn maybe_done(&mut self, pair: usize) {
        let done = {
            let l = lock(&self.ledger);
            (0..2).all(|d| {
                let st = &l.streams[pair * 2 + d];
                st.planned.is_some_and(|p| st.next >= p)
            })
        };
        if done && self.windows.remove(&(pair * 2)).is_some() {
            self.windows.remove(&(pair * 2 + 1));
            self.running = self.running.saturating_sub(1);
            self.start_queued();
        }
    }

    /// `--duration` is over: chats still waiting to start send nothing.
    fn expire_queue(&mut self) {
        let mut l = lock(&self.ledger);
        for pair in self.queue.drain(..) {
            l.finished(pair * 2, 0);
            l.finished(pair * 2 + 1, 0);
        }
    }

    /// Every chat ready, every stream complete, every download checked.
    fn complete(&self) -> bool {
        self.ready == self.pairs.len() && lock(&self.ledger).complete() && self.downloads == 0
    }

    /// Starts queued chats while fewer than `limit` run.
    fn start_queued(&mut self) {
        while self.running < self.limit && self.start_budget > 0 {
            let Some(pair) = self.queue.pop_front() else {
                return;
            };
            self.running += 1;
            self.start_budget -= 1;
            self.peak_running = self.peak_running.max(self.running);
            self.start(pair);
        }
    }

    /// A progress tick: the start budget refills (scale mode ramps up to `--active` at
    /// [`STARTS_PER_TICK`] chats per tick instead of starting them all in one instant).
    fn refill_starts(&mut self) {
        self.start_budget = STARTS_PER_TICK;
        self.start_queued();
    }

    /// Starts the two senders of `pair`.
    fn start(&mut self, pair: usize) {
        let per = self.opts.messages;
        let counts = [per.div_ceil(2) as u32, (per / 2) as u32];
        for (dir, n) in counts.into_iter().enumerate() {
            let Some(from) = self.pairs[pair].sides[dir] else {
                continue;
            };
            let window = Arc::new(Semaphore::new(self.opts.window));
            self.windows.insert(pair * 2 + dir, window.clone());
            let s = Sender {
                engine: self.engine.clone(),
                from,
                pair,
                dir,
                n,
                work: self.work,
                ledger: self.ledger.clone(),
                window,
                notes: self.notes.clone(),
                files_dir: self.files_dir.clone(),
                deadline: self.deadline,
            };
            tokio::spawn(s.run());
        }
    }

    fn download(
        &mut self,
        key: (u64, u64),
        pair: usize,
        dir: usize,
        idx: u32,
        file: Option<FileRef>,
    ) {
        let notes = self.notes.clone();
        let Some(fref) = file else {
            let _ = notes.send(Note::FileChecked(
                pair,
                dir,
                idx,
                Err("no file attached".into()),
            ));
            self.downloads += 1;
            return;
        };
        self.downloads += 1;
        let engine = self.engine.clone();
        let work = self.work;
        let dest = self.files_dir.join(format!("in-{pair}-{dir}-{idx}"));
        tokio::spawn(async move {
            let r = match engine
                .download(AccountId(key.0), ChatId(key.1), &fref, &dest)
                .await
            {
                Ok(()) => match std::fs::read(&dest) {
                    Ok(b) if b == work.file_bytes(pair, dir, idx) => Ok(()),
                    Ok(b) => Err(format!("{} bytes differ from what was sent", b.len())),
                    Err(e) => Err(e.to_string()),
                },
                Err(e) => Err(e.to_string()),
            };
            let _ = std::fs::remove_file(&dest);
            let _ = notes.send(Note::FileChecked(pair, dir, idx, r));
        });
    }

    fn note(&mut self, n: Note) {
        match n {
            Note::ChatId(account, handle, chat_id) => self.chat_id(account, handle, chat_id),
            Note::Finished(s, n) => {
                lock(&self.ledger).finished(s, n);
                self.maybe_done(s / 2);
            }
            Note::SendFailed(s, idx, e) => {
                self.violation(s / 2, s % 2, Some(idx), "send_failed", e);
            }
            Note::FileChecked(pair, dir, idx, r) => {
                self.downloads = self.downloads.saturating_sub(1);
                lock(&self.ledger).file_checked(pair, dir, idx, r);
            }
        }
    }

    fn chat_id(&mut self, account: u64, handle: u64, chat_id: i32) {
        let pair = match self.side_of.get(&(account, handle)) {
            Some(&(p, 0)) => {
                self.pairs[p].chat_id = chat_id;
                self.by_chat_id.insert(chat_id, p);
                if let Some(b) = self.early.remove(&chat_id) {
                    self.pairs[p].sides[1] = Some(b);
                    self.side_of.insert(b, (p, 1));
                }
                p
            }
            Some(_) => return,
            None => match self.by_chat_id.get(&chat_id) {
                Some(&p) => {
                    self.pairs[p].sides[1] = Some((account, handle));
                    self.side_of.insert((account, handle), (p, 1));
                    p
                }
                None => {
                    self.early.insert(chat_id, (account, handle));
                    return;
                }
            },
        };
        // Both sides are ready once both reported (each reports at its ChatReady).
        let pr = &self.pairs[pair];
        if pr.started || pr.sides[1].is_none() || pr.chat_id == 0 {
            return;
        }
        self.pairs[pair].started = true;
        self.ready += 1;
        self.queue.push_back(pair);
        self.start_queued();
    }
}
