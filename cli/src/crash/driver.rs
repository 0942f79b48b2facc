//! The crash-test driver: owns the simulated server (it outlives every engine process), starts
//! the engine processes (one, or the nodes of a shared database), carries their server calls
//! and updates, drives traffic and re-keys, `kill -9`s (or, with two nodes, SIGSTOPs) them at
//! seeded random moments, has the other node take a stopped node's accounts over, restarts the
//! killed one, and at the end checks that every chat still works.

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
mod netns;
mod nodes;

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
    /// Which start this is: frames are tagged with it, so a reply never reaches a later
    /// process of the same node.
    generation: u64,
    reader: tokio::task::JoinHandle<()>,
}

async fn read_up(mut out: ChildStdout, generation: u64, tx: mpsc::UnboundedSender<(u64, Up)>) {
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
                if tx.send((generation, u)).is_err() {
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
    /// The run's data directory (each node's engine in a directory of its own in it).
    dir: std::path::PathBuf,
    /// The engine process of each node, while it runs.
    lives: Vec<Option<Life>>,
    /// Frames of every engine process, tagged with its generation.
    up_tx: mpsc::UnboundedSender<(u64, Up)>,
    up_rx: mpsc::UnboundedReceiver<(u64, Up)>,
    /// The node of each live generation.
    generations: HashMap<u64, usize>,
    next_generation: u64,
    /// The node running each account (index 0: account 1), as last confirmed.
    holder: [Option<usize>; 2],
    /// Per node: accounts that left it (taken while it was paused, or handed over). Its
    /// application may still report deliveries it took before (see
    /// `Checker::delivered_late`), and its sends for them may be refused (never accepted).
    leaving: Vec<HashSet<u64>>,
    /// The shared database's table prefix and the run's at-rest key file, with `store`.
    shared: Option<nodes::Shared>,
    /// Each node's network namespace, with `cut_share` (empty without).
    nets: Vec<netns::NodeNet>,
    /// The cut in progress: the node cut off, when, and the accounts it has not stopped yet.
    cut: Option<nodes::Cut>,
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
    let (up_tx, up_rx) = mpsc::unbounded_channel();
    let shared = match &opts.store {
        Some(url) => Some(nodes::Shared::prepare(url, &dir, opts).await?),
        None => None,
    };
    let mut nets = Vec::new();
    if let (true, Some(url)) = (opts.cut_share > 0.0, &opts.store) {
        for n in 0..opts.nodes {
            nets.push(netns::NodeNet::create(std::process::id() % 100_000, n, url).await?);
        }
    }
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
        dir: dir.clone(),
        lives: (0..opts.nodes).map(|_| None).collect(),
        up_tx,
        up_rx,
        generations: HashMap::new(),
        next_generation: 0,
        holder: [None; 2],
        leaving: vec![HashSet::new(); opts.nodes],
        shared,
        nets,
        cut: None,
    };
    let started = Instant::now();
    let outcome = d.drive(started, progress).await;
    for n in 0..d.lives.len() {
        d.stop(n).await;
    }
    if let Some(shared) = d.shared.take() {
        d.report.foreign_writes = shared.foreign_writes().await.unwrap_or(u64::MAX);
        shared.drop_tables().await;
    }
    outcome?;
    Ok(d.summary(started, true))
}

impl Driver<'_> {
    /// The run: engines up, chats set up, the kills, the final checks.
    async fn drive(
        &mut self,
        started: Instant,
        progress: &mut dyn FnMut(&CrashReport),
    ) -> Result<(), CrashError> {
        for n in 0..self.lives.len() {
            self.spawn(n).await?;
        }
        // The first node made the tables.
        if let Some(shared) = &self.shared {
            shared.install_audit().await?;
        }
        self.place_accounts().await?;
        let chats = self.opts.chats as u32;
        self.send_for(1, Down::Setup(chats));
        self.await_setup().await?;
        while self.report.kills < self.opts.kills {
            let lifetime = self
                .rng
                .gen_range(self.opts.life_ms.0..=self.opts.life_ms.1);
            let until = Instant::now() + Duration::from_millis(lifetime);
            self.traffic(until, true).await;
            self.revive().await?;
            if self.lives.len() == 1 {
                self.kill(0).await;
                self.spawn(0).await?;
                self.place_accounts().await?;
            } else {
                self.stop_a_node().await?;
            }
            self.revive().await?;
            progress(&self.summary(started, false));
        }
        self.finish().await;
        Ok(())
    }

    /// Sends `d` to node `n`'s engine process, if it runs.
    fn send_to(&self, n: usize, d: Down) {
        if let Some(Some(life)) = self.lives.get(n) {
            let _ = life.down.send(d.encode());
        }
    }

    /// Sends `d` to the node running `account`.
    fn send_for(&self, account: u64, d: Down) {
        if let Some(n) = self.holder[usize::from(account == 2)] {
            self.send_to(n, d);
        }
    }

    /// Connects account `i + 1`'s server feed to the node that runs it.
    fn connect_feed(&self, i: usize) {
        let Some(Some(life)) = self.holder[i].map(|n| self.lives.get(n).and_then(Option::as_ref))
        else {
            return;
        };
        let account = i as u64 + 1;
        let (feed, mut rx) = UpdateFeed::channel();
        self.sim.connect(&self.devices[i], feed);
        let down = life.down.clone();
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

    /// Starts node `n`'s engine process and waits for its hello.
    async fn spawn(&mut self, n: usize) -> Result<(), CrashError> {
        let t = Instant::now();
        let exe = match &self.opts.engine_exe {
            Some(p) => p.clone(),
            None => std::env::current_exe()?,
        };
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("engine{n}.log")))?;
        let mut cmd = match self.nets.get(n) {
            // `ip netns exec` execs the engine: the process is the engine's (for its signals).
            Some(net) => {
                let mut c = tokio::process::Command::new("ip");
                c.args(["netns", "exec", &net.ns.0]).arg(exe);
                c
            }
            None => tokio::process::Command::new(exe),
        };
        cmd.arg("crash-engine")
            .arg("--data-dir")
            .arg(&self.dir)
            .arg("--seed")
            .arg(self.opts.seed.to_string())
            .arg("--file-share")
            .arg(self.opts.file_share.to_string())
            .arg("--file-size")
            .arg(self.opts.file_size.to_string());
        let key_file = match &self.shared {
            Some(shared) => Some(shared.key_file.clone()),
            None => self.opts.at_rest_key_file.clone(),
        };
        if let Some(k) = key_file {
            cmd.arg("--at-rest-key-file").arg(k);
        }
        if let (Some(shared), Some(url)) = (&self.shared, &self.opts.store) {
            let url = match self.nets.get(n) {
                Some(net) => net.url(url),
                None => url.clone(),
            };
            cmd.arg("--store")
                .arg(url)
                .arg("--node")
                .arg(format!("node{n}"))
                .arg("--pg-prefix")
                .arg(&shared.prefix)
                .arg("--lease-ms")
                .arg(self.opts.lease_ms.to_string());
        }
        let mut child = cmd
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
        self.next_generation += 1;
        let generation = self.next_generation;
        let reader = tokio::spawn(read_up(stdout, generation, self.up_tx.clone()));
        self.generations.insert(generation, n);
        self.lives[n] = Some(Life {
            child,
            down,
            generation,
            reader,
        });
        // Requests come before the hello (adding an account fetches nothing, but resuming
        // chats may): serve them while waiting.
        let deadline = Instant::now() + OPEN_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.up_rx.recv()).await {
                Ok(Some((g, Up::Hello))) if g == generation => break,
                Ok(Some((g, u))) => self.handle(g, u).await,
                Ok(None) => return Err(CrashError::Engine("the engine process exited".into())),
                Err(_) => return Err(CrashError::Engine("the engine process never opened".into())),
            }
        }
        self.report.restart_ms_max = self
            .report
            .restart_ms_max
            .max(t.elapsed().as_millis() as u64);
        Ok(())
    }

    /// Gives the accounts nobody runs to nodes: on RocksDB both are the engine's from its
    /// start; on a shared database account 1 goes to node 0 and account 2 to the last node,
    /// each taken over (waiting out a dead process's lease).
    async fn place_accounts(&mut self) -> Result<(), CrashError> {
        if self.shared.is_none() {
            self.holder = [Some(0), Some(0)];
            self.connect_feed(0);
            self.connect_feed(1);
            return Ok(());
        }
        let last = self.lives.len() - 1;
        for (i, n) in [(0, 0), (1, last)] {
            if self.holder[i].is_none() {
                self.take(n, i as u64 + 1, Instant::now()).await?;
            }
        }
        Ok(())
    }

    async fn await_setup(&mut self) -> Result<(), CrashError> {
        let deadline = Instant::now() + OPEN_TIMEOUT;
        while self.pairs.iter().any(|p| p.iter().any(Option::is_none)) {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.up_rx.recv()).await {
                Ok(Some((g, u))) => self.handle(g, u).await,
                _ => return Err(CrashError::Engine("chats were never set up".into())),
            }
        }
        Ok(())
    }

    /// Serves the engine processes and drives traffic until `until`.
    async fn traffic(&mut self, until: Instant, sending: bool) {
        let mut tick = tokio::time::interval(Duration::from_millis(10));
        let mut last_rekey = Instant::now();
        while Instant::now() < until {
            tokio::select! {
                u = self.up_rx.recv() => {
                    if let Some((g, u)) = u {
                        self.handle(g, u).await;
                    }
                }
                _ = tick.tick() => {
                    self.check_alive().await;
                    if sending {
                        self.top_up();
                        if last_rekey.elapsed() >= Duration::from_millis(self.opts.rekey_every_ms) {
                            last_rekey = Instant::now();
                            let p = self.rng.gen_range(0..self.pairs.len());
                            if let (Some(h), Some(_)) = (self.pairs[p][0], self.holder[0]) {
                                self.rekeying.insert(p);
                                self.send_for(1, Down::Rekey(1, h));
                            }
                        }
                    }
                }
            }
        }
    }

    /// Keeps `window` sends in flight on every stream.
    fn top_up(&mut self) {
        for s in 0..self.in_flight.len() {
            // A stream whose sending account no node runs now waits for its take-over.
            if self.holder[s % 2].is_none() {
                continue;
            }
            // Like an application, do not run ahead of delivery without bound: accepted
            // is cheap (a local write), delivery takes the network and the peer.
            while self.in_flight[s] < self.opts.window
                && self.check.backlog(s) + self.in_flight[s] < self.opts.backlog
            {
                if self.send_next(s).is_none() {
                    break;
                }
            }
        }
    }

    /// Commands the stream's next message; returns its index.
    fn send_next(&mut self, s: usize) -> Option<u32> {
        let (pair, dir) = (s / 2, s % 2);
        let handle = self.pairs.get(pair)?[dir]?;
        self.holder[dir]?;
        let idx = self.check.command(s)?;
        if matches!(self.work.item(pair, dir, idx), Item::File(_)) {
            self.files_in_flight.insert((s, idx));
        }
        self.in_flight[s] += 1;
        self.send_for(
            dir as u64 + 1,
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

    /// An engine process that ended without being killed is a violation; it is restarted
    /// ([`Driver::revive`]) so the run can still report everything else.
    async fn check_alive(&mut self) {
        for n in 0..self.lives.len() {
            let exited = match self.lives[n].as_mut() {
                Some(life) => matches!(life.child.try_wait(), Ok(Some(_))),
                None => false,
            };
            if !exited {
                continue;
            }
            self.report.unexpected_exits += 1;
            self.violation(format!("engine process {n} exited on its own"));
            self.stop(n).await;
            self.lost_accounts_of(n);
        }
    }

    /// Restarts the engine processes that exited on their own and gives their accounts to
    /// nodes again.
    async fn revive(&mut self) -> Result<(), CrashError> {
        for n in 0..self.lives.len() {
            if self.lives[n].is_none() {
                self.spawn(n).await?;
            }
        }
        self.place_accounts().await
    }

    /// Kills node `n`'s process (SIGKILL) and takes the frames it wrote before.
    async fn kill(&mut self, n: usize) {
        self.stop(n).await;
        self.report.kills += 1;
        if !self.rekeying.is_empty() {
            self.report.kills_in_rekey += 1;
        }
        if !self.files_in_flight.is_empty() {
            self.report.kills_in_upload += 1;
        }
        self.lost_accounts_of(n);
    }

    /// Ends node `n`'s process (if it runs) and handles what it wrote before it ended.
    async fn stop(&mut self, n: usize) {
        let Some(mut life) = self.lives.get_mut(n).and_then(Option::take) else {
            return;
        };
        let _ = life.child.start_kill();
        let _ = life.child.wait().await;
        let _ = (&mut life.reader).await;
        // Frames written before the kill are queued: take them (its requests need no answer).
        while let Ok((g, u)) = self.up_rx.try_recv() {
            if !matches!(u, Up::Request(..)) || g != life.generation {
                self.handle(g, u).await;
            }
        }
        self.generations.remove(&life.generation);
    }

    /// Node `n` no longer runs its accounts: nobody does until another node takes them.
    fn lost_accounts_of(&mut self, n: usize) {
        for i in 0..2 {
            if self.holder[i] == Some(n) {
                self.holder[i] = None;
                self.reset_in_flight(i);
            }
        }
    }

    /// Unconfirmed sends of `account_index`'s streams are now "maybe": they arrive once or
    /// not at all.
    fn reset_in_flight(&mut self, account_index: usize) {
        for s in (account_index..self.in_flight.len()).step_by(2) {
            self.in_flight[s] = 0;
        }
        self.files_in_flight.retain(|(s, _)| s % 2 != account_index);
        if account_index == 0 {
            self.rekeying.clear();
        }
    }

    /// Handles a frame of the process of `generation`.
    async fn handle(&mut self, generation: u64, u: Up) {
        let node = self.generations.get(&generation).copied();
        match u {
            Up::Hello => {}
            Up::Request(id, account, body) => {
                let Some(n) = node else { return };
                let dev = &self.devices[usize::from(account == 2)];
                let r = dev.invoke(body).await.map_err(|e| (e.code, e.message));
                // Still the same process (a reply never reaches a later one).
                if self.lives[n]
                    .as_ref()
                    .is_some_and(|l| l.generation == generation)
                {
                    self.send_to(n, Down::Reply(id, r));
                }
            }
            Up::Took(account) | Up::Released(account) => {
                if let (Some(n), Up::Released(_)) = (node, &u) {
                    self.stopped_by_itself(n, account);
                }
                if let Some(n) = node {
                    self.node_changed(n, account, matches!(u, Up::Took(_)));
                }
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
                let s = p as usize * 2 + usize::from(d);
                if node.is_some_and(|n| self.leaving[n].contains(&(u64::from(d) + 1))) {
                    // A send for an account that left the node (taken from it while paused,
                    // or handed over): refused, so never accepted.
                    self.report.refused_sends += 1;
                    return;
                }
                self.report.send_failures += 1;
                if let Some(n) = self.in_flight.get_mut(s) {
                    *n = n.saturating_sub(1);
                }
                self.violation(format!("stream {s} message {idx}: send failed: {e}"));
            }
            Up::Delivered(account, handle, seq, text, intact)
                if node.is_some_and(|n| self.leaving[n].contains(&account)) =>
            {
                self.report.late_deliveries += 1;
                let Some(&(pair, side)) = self.side_of.get(&(account, handle)) else {
                    return;
                };
                if let Some((p, d, idx)) =
                    parse_prefix(&text).filter(|x| (x.0, x.1) == (pair, 1 - side))
                {
                    self.check.delivered_late(p * 2 + d, idx, seq, intact);
                }
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
            Up::FileBad(account, handle, seq) => {
                self.check.corrupted += 1;
                self.violation(format!(
                    "chat {account}/{handle}: the file of entry {seq} differs"
                ));
            }
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

    /// Node `n` took (`true`) or released `account`.
    fn node_changed(&mut self, n: usize, account: u64, took: bool) {
        let i = usize::from(account == 2);
        if took {
            self.holder[i] = Some(n);
            self.leaving[n].remove(&account);
            self.connect_feed(i);
        } else if self.holder[i] == Some(n) {
            self.holder[i] = None;
            self.reset_in_flight(i);
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
