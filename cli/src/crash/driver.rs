//! The crash-test driver: owns the simulated server (it outlives every engine process), starts
//! the engine process, carries its server calls and updates, drives traffic and re-keys,
//! `kill -9`s it at seeded random moments, restarts it on the same data directory, and at the
//! end checks that every chat still works.

use std::collections::{HashMap, HashSet};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use secretchat::sim::{SimDevice, SimServer};
use secretchat::tl::Serialize;
use secretchat::{ServerApi, UpdateFeed};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, ChildStdout};
use tokio::sync::mpsc;

mod finish;

use super::check::Checker;
use super::wire::{Down, MAX_FRAME, Up};
use super::{CrashError, CrashOptions, CrashReport};
use crate::simulate::workload::{Item, Workload, parse_prefix};

/// How long the engine process may take to open (RocksDB recovery included).
const OPEN_TIMEOUT: Duration = Duration::from_secs(120);

/// One engine process and its pipes.
struct Life {
    child: Child,
    down: mpsc::UnboundedSender<Vec<u8>>,
    up: mpsc::UnboundedReceiver<Up>,
}

async fn read_up(mut out: ChildStdout, tx: mpsc::UnboundedSender<Up>) {
    loop {
        let mut len = [0u8; 4];
        if out.read_exact(&mut len).await.is_err() {
            return;
        }
        let n = u32::from_le_bytes(len) as usize;
        if n > MAX_FRAME {
            return;
        }
        let mut body = vec![0u8; n];
        if out.read_exact(&mut body).await.is_err() {
            return;
        }
        match Up::decode(&body) {
            Some(u) => {
                if tx.send(u).is_err() {
                    return;
                }
            }
            None => return,
        }
    }
}

struct Driver<'a> {
    opts: &'a CrashOptions,
    sim: Arc<SimServer>,
    devices: [SimDevice; 2],
    check: Checker,
    work: Workload,
    rng: StdRng,
    /// Per chat: (account 1's handle, account 2's handle), once ready.
    pairs: Vec<[Option<u64>; 2]>,
    by_chat_id: HashMap<i32, usize>,
    side_of: HashMap<(u64, u64), (usize, usize)>,
    /// Sends commanded in this life and not yet confirmed, per stream.
    in_flight: Vec<u32>,
    files_in_flight: HashSet<(usize, u32)>,
    rekeying: HashSet<usize>,
    statuses: HashMap<(u64, u64), (i64, u32, bool)>,
    report: CrashReport,
    /// The data directory (for restarts after an unexpected exit).
    dir: Option<std::path::PathBuf>,
}

/// Runs the crash test.
///
/// # Errors
/// [`CrashError`]: the engine process could not be started or never came up.
pub async fn run(
    opts: &CrashOptions,
    progress: &mut dyn FnMut(&CrashReport),
) -> Result<CrashReport, CrashError> {
    opts.validate()?;
    let tmp;
    let dir = match &opts.data_dir {
        Some(d) => d.clone(),
        None => {
            tmp = tempfile::tempdir()?;
            tmp.path().to_path_buf()
        }
    };
    std::fs::create_dir_all(&dir)?;
    let sim = SimServer::new(opts.faults, opts.seed);
    let devices = [sim.device(1, 0), sim.device(2, 0)];
    let chats = opts.chats;
    let mut d = Driver {
        opts,
        sim,
        devices,
        check: Checker::new(chats * 2),
        work: opts.workload(),
        rng: StdRng::seed_from_u64(opts.seed ^ 0xc4a5),
        pairs: vec![[None; 2]; chats],
        by_chat_id: HashMap::new(),
        side_of: HashMap::new(),
        in_flight: vec![0; chats * 2],
        files_in_flight: HashSet::new(),
        rekeying: HashSet::new(),
        statuses: HashMap::new(),
        report: CrashReport {
            chats,
            ..CrashReport::default()
        },
        dir: Some(dir.clone()),
    };
    let started = Instant::now();
    let mut life = d.spawn(&dir).await?;
    d.send(&life, Down::Setup(chats as u32));
    d.await_setup(&mut life).await?;
    while d.report.kills < opts.kills {
        let lifetime = d.rng.gen_range(opts.life_ms.0..=opts.life_ms.1);
        let until = Instant::now() + Duration::from_millis(lifetime);
        d.traffic(&mut life, until, true).await;
        d.kill(&mut life).await;
        progress(&d.summary(started, false));
        life = d.spawn(&dir).await?;
    }
    d.finish(&mut life).await;
    let _ = life.child.start_kill();
    let _ = life.child.wait().await;
    Ok(d.summary(started, true))
}

impl Driver<'_> {
    fn send(&self, life: &Life, d: Down) {
        let _ = life.down.send(d.encode());
    }

    /// Starts an engine process on `dir` and waits for its hello.
    async fn spawn(&mut self, dir: &std::path::Path) -> Result<Life, CrashError> {
        let t = Instant::now();
        let exe = match &self.opts.engine_exe {
            Some(p) => p.clone(),
            None => std::env::current_exe()?,
        };
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("engine.log"))?;
        let mut child = tokio::process::Command::new(exe)
            .arg("crash-engine")
            .arg("--data-dir")
            .arg(dir)
            .arg("--seed")
            .arg(self.opts.seed.to_string())
            .arg("--file-share")
            .arg(self.opts.file_share.to_string())
            .arg("--file-size")
            .arg(self.opts.file_size.to_string())
            .args(
                self.opts
                    .at_rest_key_file
                    .iter()
                    .flat_map(|p| [std::ffi::OsStr::new("--at-rest-key-file"), p.as_os_str()]),
            )
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()?;
        let (Some(mut stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err(CrashError::Engine("no pipes".into()));
        };
        let (down, mut down_rx) = mpsc::unbounded_channel::<Vec<u8>>();
        tokio::spawn(async move {
            while let Some(f) = down_rx.recv().await {
                if stdin.write_all(&f).await.is_err() {
                    return;
                }
            }
        });
        let (up_tx, up) = mpsc::unbounded_channel();
        tokio::spawn(read_up(stdout, up_tx));
        let mut life = Life { child, down, up };
        // Requests come before the hello (adding an account fetches nothing, but resuming
        // chats may): serve them while waiting.
        let deadline = Instant::now() + OPEN_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, life.up.recv()).await {
                Ok(Some(Up::Hello)) => break,
                Ok(Some(u)) => self.handle(&life, u).await,
                Ok(None) => return Err(CrashError::Engine("the engine process exited".into())),
                Err(_) => return Err(CrashError::Engine("the engine process never opened".into())),
            }
        }
        for (i, dev) in self.devices.iter().enumerate() {
            let (feed, mut rx) = UpdateFeed::channel();
            self.sim.connect(dev, feed);
            let down = life.down.clone();
            let account = i as u64 + 1;
            tokio::spawn(async move {
                while let Some(u) = rx.recv().await {
                    if let Ok(b) = u.to_bytes() {
                        if down.send(Down::Update(account, b).encode()).is_err() {
                            return;
                        }
                    }
                }
            });
        }
        self.report.restart_ms_max = self
            .report
            .restart_ms_max
            .max(t.elapsed().as_millis() as u64);
        Ok(life)
    }

    async fn await_setup(&mut self, life: &mut Life) -> Result<(), CrashError> {
        let deadline = Instant::now() + OPEN_TIMEOUT;
        while self.pairs.iter().any(|p| p.iter().any(Option::is_none)) {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, life.up.recv()).await {
                Ok(Some(u)) => self.handle(life, u).await,
                _ => return Err(CrashError::Engine("chats were never set up".into())),
            }
        }
        Ok(())
    }

    /// Serves the engine process and drives traffic until `until`.
    async fn traffic(&mut self, life: &mut Life, until: Instant, sending: bool) {
        let mut tick = tokio::time::interval(Duration::from_millis(10));
        let mut last_rekey = Instant::now();
        while Instant::now() < until {
            tokio::select! {
                u = life.up.recv() => match u {
                    Some(u) => self.handle(life, u).await,
                    None => {
                        self.died(life).await;
                        return;
                    }
                },
                _ = tick.tick() => {
                    if sending {
                        self.top_up(life);
                        if last_rekey.elapsed() >= Duration::from_millis(self.opts.rekey_every_ms) {
                            last_rekey = Instant::now();
                            let p = self.rng.gen_range(0..self.pairs.len());
                            if let Some(h) = self.pairs[p][0] {
                                self.rekeying.insert(p);
                                self.send(life, Down::Rekey(1, h));
                            }
                        }
                    }
                }
            }
        }
    }

    /// Keeps `window` sends in flight on every stream.
    fn top_up(&mut self, life: &Life) {
        for s in 0..self.in_flight.len() {
            // Like an application, do not run ahead of delivery without bound: accepted
            // is cheap (a local write), delivery takes the network and the peer.
            while self.in_flight[s] < self.opts.window
                && self.check.backlog(s) + self.in_flight[s] < self.opts.backlog
            {
                if self.send_next(life, s).is_none() {
                    break;
                }
            }
        }
    }

    /// Commands the stream's next message; returns its index.
    fn send_next(&mut self, life: &Life, s: usize) -> Option<u32> {
        let (pair, dir) = (s / 2, s % 2);
        let handle = self.pairs.get(pair)?[dir]?;
        let idx = self.check.command(s)?;
        if matches!(self.work.item(pair, dir, idx), Item::File(_)) {
            self.files_in_flight.insert((s, idx));
        }
        self.in_flight[s] += 1;
        self.send(
            life,
            Down::Send {
                account: dir as u64 + 1,
                handle,
                pair: pair as u32,
                dir: dir as u8,
                idx,
            },
        );
        Some(idx)
    }

    /// The engine process ended without being killed: a violation. It is restarted (the
    /// caller's next step serves the new one) so the run can still report everything else.
    async fn died(&mut self, life: &mut Life) {
        self.report.unexpected_exits += 1;
        let status = life.child.wait().await;
        self.violation(format!("the engine process exited on its own: {status:?}"));
        self.reset_in_flight();
        if let Some(dir) = self.dir.clone() {
            if let Ok(new) = self.spawn(&dir).await {
                *life = new;
            }
        }
    }

    async fn kill(&mut self, life: &mut Life) {
        let _ = life.child.start_kill();
        let _ = life.child.wait().await;
        // Frames written before the kill are still in the pipe: take them.
        while let Some(u) = life.up.recv().await {
            if !matches!(u, Up::Request(..)) {
                self.handle(life, u).await;
            }
        }
        self.report.kills += 1;
        if !self.rekeying.is_empty() {
            self.report.kills_in_rekey += 1;
        }
        if !self.files_in_flight.is_empty() {
            self.report.kills_in_upload += 1;
        }
        self.reset_in_flight();
    }

    /// Unconfirmed sends are now "maybe": they arrive once or not at all.
    fn reset_in_flight(&mut self) {
        self.in_flight.iter_mut().for_each(|n| *n = 0);
        self.files_in_flight.clear();
        self.rekeying.clear();
    }

    async fn handle(&mut self, life: &Life, u: Up) {
        match u {
            Up::Hello => {}
            Up::Request(id, account, body) => {
                let dev = &self.devices[usize::from(account == 2)];
                let r = dev.invoke(body).await.map_err(|e| (e.code, e.message));
                self.send(life, Down::Reply(id, r));
            }
            Up::ChatReady(account, handle, chat_id) => self.ready(account, handle, chat_id),
            Up::Accepted(p, d, idx) => {
                let s = p as usize * 2 + usize::from(d);
                self.check.confirmed(s, idx);
                self.files_in_flight.remove(&(s, idx));
                if let Some(n) = self.in_flight.get_mut(s) {
                    *n = n.saturating_sub(1);
                }
            }
            Up::SendFailed(p, d, idx, e) => {
                self.report.send_failures += 1;
                let s = p as usize * 2 + usize::from(d);
                if let Some(n) = self.in_flight.get_mut(s) {
                    *n = n.saturating_sub(1);
                }
                self.violation(format!("stream {s} message {idx}: send failed: {e}"));
            }
            Up::Delivered(account, handle, seq, text, intact) => {
                let Some(&(pair, side)) = self.side_of.get(&(account, handle)) else {
                    self.check.corrupted += 1;
                    self.violation(format!("a message on unknown chat {account}/{handle}"));
                    return;
                };
                let dir = 1 - side;
                match parse_prefix(&text) {
                    Some((p, d, idx)) if (p, d) == (pair, dir) => {
                        // A file whose send was not confirmed before a kill is an upload the
                        // restarted engine resumes: it is sent when it finishes, after
                        // messages accepted meanwhile, so its position is not checked.
                        let resumed = matches!(self.work.item(p, d, idx), Item::File(_));
                        self.check
                            .delivered(pair * 2 + dir, idx, seq, intact, resumed);
                    }
                    _ => {
                        self.check.corrupted += 1;
                        self.violation(format!("chat {pair}: unexpected text {text:.40?}"));
                    }
                }
            }
            Up::Acked(seq) => self.check.acked(seq),
            Up::Rekeyed(account, handle) => {
                self.report.rekeys += 1;
                if let Some(&(pair, _)) = self.side_of.get(&(account, handle)) {
                    self.rekeying.remove(&pair);
                }
            }
            Up::Closed(account, handle, reason) => {
                self.report.chats_closed += 1;
                self.violation(format!("chat {account}/{handle} closed: {reason}"));
            }
            Up::Status(account, handle, fp, rekeys, busy, _) => {
                self.statuses.insert((account, handle), (fp, rekeys, busy));
            }
        }
    }

    fn violation(&mut self, what: String) {
        if self.check.first_violation.is_none() {
            self.check.first_violation = Some(what);
        }
    }

    fn ready(&mut self, account: u64, handle: u64, chat_id: i32) {
        let side = usize::from(account == 2);
        if self.side_of.contains_key(&(account, handle)) {
            return;
        }
        let pair = match self.by_chat_id.get(&chat_id) {
            Some(&p) => p,
            None => {
                let Some(p) = self.pairs.iter().position(|p| p == &[None, None]) else {
                    return;
                };
                self.by_chat_id.insert(chat_id, p);
                p
            }
        };
        self.pairs[pair][side] = Some(handle);
        self.side_of.insert((account, handle), (pair, side));
    }

    /// The figures so far; before the end, confirmed messages not yet delivered are in
    /// flight, not lost.
    fn summary(&self, started: Instant, end: bool) -> CrashReport {
        let mut r = self.report.clone();
        r.messages = self.check.confirmed_total();
        r.delivered = self.check.delivered_total();
        r.lost = if end { self.check.outstanding() } else { 0 };
        r.in_flight = if end { 0 } else { self.check.outstanding() };
        r.duplicated = self.check.duplicated;
        r.misordered = self.check.misordered;
        r.corrupted = self.check.corrupted;
        r.first_violation = self
            .check
            .first_violation
            .clone()
            .or_else(|| self.check.first_lost().filter(|_| end));
        r.wall_s = started.elapsed().as_secs_f64();
        let st = self.sim.stats();
        r.server_dropped = st.dropped;
        r.server_duplicated = st.duplicated;
        r.server_errors = st.injected_errors;
        r
    }
}
