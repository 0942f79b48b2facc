//! `secretchat bench-host`: messages per second through two `secretchat host` processes, whose
//! calls and updates this process relays to a simulated server, against the same workload in
//! process (`simulate`), both measured in one run (docs/host.md, "Throughput").
//!
//! The workload is `simulate`'s with two accounts and no faults: each account starts `chats`
//! chats with the other; each chat carries `messages`, half each way, each direction keeping at
//! most `window` messages sent and not yet delivered. The relay checks what it counts: every
//! message arrives once and in order, or the run fails.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use secretchat::UpdateFeed;
use secretchat::sim::{SimFaults, SimServer};
use secretchat_host::wire::write_lines;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Child;
use tokio::sync::{Notify, Semaphore, mpsc};

use super::CliError;
use super::host::{forward_updates, relay_invoke};
use crate::simulate::{self, SimulateOptions};

/// The flags of `secretchat bench-host`.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchHostArgs {
    /// Chats each of the two accounts starts with the other.
    #[arg(long, default_value_t = 8)]
    pub chats: usize,
    /// Messages per chat, both directions together.
    #[arg(long, default_value_t = 1_000)]
    pub messages: usize,
    /// Messages each direction of a chat may have in flight (sent, not yet delivered).
    #[arg(long, default_value_t = 32)]
    pub window: usize,
    /// Store durability of both runs: `sync`, `group[:MS]` or `buffered` (as `simulate`).
    #[arg(long, default_value = "group")]
    pub durability: String,
    /// Skip the in-process run (the relayed figure only).
    #[arg(long)]
    pub relayed_only: bool,
    /// Write the figures as JSON here too.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// Runs both measurements and prints one JSON object; returns the exit status (1 when a
/// message was lost, repeated or misordered in either run).
pub fn run(args: &BenchHostArgs) -> u8 {
    match super::runtime().and_then(|rt| rt.block_on(bench(args))) {
        Ok(v) => {
            println!("{v}");
            if let Some(p) = &args.json {
                if !super::write_json(p, &v) {
                    return 2;
                }
            }
            0
        }
        Err(e) => {
            println!("{}", e.to_json());
            if e.kind == "bad_option" { 2 } else { 1 }
        }
    }
}

async fn bench(args: &BenchHostArgs) -> Result<Value, CliError> {
    if args.chats == 0 || args.messages < 2 || args.window == 0 || args.chats > 1024 {
        return Err(CliError::new(
            "bad_option",
            "--chats 1..=1024, --messages ≥ 2, --window ≥ 1",
        ));
    }
    let durability = super::simulate::durability(&args.durability)?;
    let base = if args.relayed_only {
        None
    } else {
        let opts = SimulateOptions {
            accounts: 2,
            chats: args.chats,
            messages: args.messages,
            file_share: 0.0,
            faults: SimFaults::NONE,
            durability,
            window: args.window,
            ..SimulateOptions::default()
        };
        let report = simulate::run(&opts, &mut |_| {})
            .await
            .map_err(|e| CliError::new("simulate_failed", e))?;
        if !report.ok() {
            return Err(CliError::new(
                "violation",
                "the in-process run did not verify",
            ));
        }
        Some(report.msgs_per_sec())
    };
    // The relay on one thread of its own, as a host application's event loop would be (and
    // without hand-offs between runtime workers, which cost it a thread wake-up per line).
    let a = args.clone();
    let relayed =
        std::thread::spawn(move || super::host::single_thread_runtime()?.block_on(relayed(&a)))
            .join()
            .map_err(|_| CliError::new("io", "the relay thread panicked"))??;
    let mut v = json!({
        "chats": 2 * args.chats,
        "messages_per_chat": args.messages,
        "window": args.window,
        "durability": args.durability,
        "relayed_msgs_per_sec": relayed.round(),
    });
    if let Some(b) = base {
        v["in_process_msgs_per_sec"] = json!(b.round());
        v["ratio"] = json!((relayed / b * 1000.0).round() / 1000.0);
    }
    Ok(v)
}

/// One host process and the relay's view of it.
struct HostProc {
    child: Child,
    lines: mpsc::Sender<String>,
}

/// What the relay tracks across both hosts.
#[derive(Default)]
struct Tally {
    /// Accounts whose `addAccount` was answered (their updates may flow from then on).
    added: usize,
    /// Ready chats per account (their ids, as the host names them).
    ready: HashMap<i64, Vec<String>>,
    /// The next index expected from each sending direction `"account:chat"`.
    next: HashMap<String, usize>,
    delivered: usize,
    violations: Vec<String>,
    /// The hosts were told to close (they refuse what comes after, such as late acks).
    closing: bool,
}

struct Shared {
    tally: Mutex<Tally>,
    /// Window permits per sending direction `"account:chat"`.
    windows: Mutex<HashMap<String, Arc<Semaphore>>>,
    changed: Notify,
}

impl Shared {
    fn window(&self, dir: &str, size: usize) -> Arc<Semaphore> {
        let mut w = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        w.entry(dir.to_owned())
            .or_insert_with(|| Arc::new(Semaphore::new(size)))
            .clone()
    }
}

async fn relayed(args: &BenchHostArgs) -> Result<f64, CliError> {
    let dir = tempfile::tempdir().map_err(|e| CliError::new("io", e))?;
    let sim = SimServer::new(SimFaults::NONE, 1);
    let shared = Arc::new(Shared {
        tally: Mutex::default(),
        windows: Mutex::default(),
        changed: Notify::new(),
    });
    let mut hosts = HashMap::new();
    for account in [1i64, 2] {
        let h = spawn_host(&dir.path().join(account.to_string()), &args.durability)?;
        let device = sim.device(account, 0);
        let (feed, updates) = UpdateFeed::channel();
        sim.connect(&device, feed);
        // The account's updates, as its host would get them from Telegram.
        tokio::spawn(forward_updates(
            updates,
            h.lines.clone(),
            "account",
            account,
        ));
        hosts.insert(account, h);
    }
    for (account, h) in &mut hosts {
        let stdout = h
            .child
            .stdout
            .take()
            .ok_or_else(|| CliError::new("io", "no stdout"))?;
        let (lines, device, shared) = (h.lines.clone(), sim.device(*account, 0), shared.clone());
        let window = args.window;
        tokio::spawn(async move {
            let mut reader = BufReader::new(stdout).lines();
            // Events are acknowledged a burst at a time: one `ack {seqs}` line once the lines
            // read so far are handled.
            let mut handled = Vec::new();
            while let Ok(Some(line)) = reader.next_line().await {
                // The two lines of every message, a call to relay and the message event, are
                // read without building a JSON tree; the others (a few per chat) are.
                match serde_json::from_str::<HotLine<'_>>(&line) {
                    Ok(HotLine {
                        kind: "invoke",
                        id: Some(id),
                        tl: Some(tl),
                        ..
                    }) => {
                        if let Ok(tl) = hex::decode(tl) {
                            let id = Value::String(id.to_owned());
                            relay_invoke(device.clone(), tl, id, None, lines.clone());
                        }
                    }
                    Ok(HotLine {
                        kind: "updateNewMessage",
                        seq: Some(seq),
                        message: Some(HotMessage { text: Some(text) }),
                        ..
                    }) => {
                        count_message(&shared, text, window);
                        handled.push(Value::String(seq.to_owned()));
                    }
                    _ => {
                        let Ok(v) = serde_json::from_str::<Value>(&line) else {
                            continue;
                        };
                        handled.extend(on_line(v, &lines, &device, &shared, window).await);
                    }
                }
                if !handled.is_empty() && reader.get_ref().buffer().is_empty() {
                    let ack = json!({"@type": "ack", "seqs": std::mem::take(&mut handled)});
                    let _ = lines.send(ack.to_string()).await;
                }
            }
        });
        let add = json!({"@type": "addAccount", "account": account.to_string(), "@extra": "added"});
        send(h, add).await?;
    }
    // A host takes an account's updates only once it has the account.
    wait_for(&shared, Duration::from_secs(60), |t| t.added == 2)
        .await
        .map_err(|()| CliError::new("timeout", "addAccount was not answered"))?;
    let per_dir = args.messages / 2;
    let total = 2 * args.chats * 2 * per_dir;
    for (account, peer) in [(1i64, 2i64), (2, 1)] {
        for _ in 0..args.chats {
            let req = json!({"@type": "createSecretChat", "account": account.to_string(), "user_id": peer.to_string(), "access_hash": "0"});
            send(&hosts[&account], req).await?;
        }
    }
    let want = 2 * args.chats;
    wait_for(&shared, Duration::from_secs(300), |t| {
        t.ready.get(&1).map_or(0, Vec::len) == want && t.ready.get(&2).map_or(0, Vec::len) == want
    })
    .await
    .map_err(|()| CliError::new("timeout", "the chats did not become ready"))?;

    let start = Instant::now();
    let ready = shared
        .tally
        .lock()
        .map(|t| t.ready.clone())
        .unwrap_or_default();
    for (account, chats) in ready {
        for chat in chats {
            let dir = format!("{account}:{chat}");
            let room = shared.window(&dir, args.window);
            let to_host = hosts[&account].lines.clone();
            tokio::spawn(async move {
                for i in 0..per_dir {
                    let Ok(permit) = room.acquire().await else {
                        return;
                    };
                    permit.forget();
                    let line = json!({"@type": "sendMessage", "account": account.to_string(), "secret_chat_id": chat, "text": format!("{dir}:{i}")});
                    if to_host.send(line.to_string()).await.is_err() {
                        return;
                    }
                }
            });
        }
    }
    let done = wait_for(&shared, Duration::from_secs(900), |t| {
        t.delivered >= total || !t.violations.is_empty()
    })
    .await;
    let elapsed = start.elapsed().as_secs_f64();
    if let Ok(mut t) = shared.tally.lock() {
        t.closing = true;
    }
    for (_, h) in hosts.iter_mut() {
        let _ = send(h, json!({"@type": "close"})).await;
    }
    for (_, mut h) in hosts {
        drop(h.lines);
        let _ = tokio::time::timeout(Duration::from_secs(60), h.child.wait()).await;
    }
    let t = shared
        .tally
        .lock()
        .map_err(|_| CliError::new("io", "poisoned"))?;
    if let Some(v) = t.violations.first() {
        return Err(CliError::new("violation", v));
    }
    done.map_err(|()| {
        CliError::new(
            "timeout",
            format!("{} of {total} messages delivered", t.delivered),
        )
    })?;
    Ok(total as f64 / elapsed)
}

fn spawn_host(data_dir: &Path, durability: &str) -> Result<HostProc, CliError> {
    let exe = std::env::current_exe().map_err(|e| CliError::new("io", e))?;
    let mut child = tokio::process::Command::new(exe)
        .arg("host")
        .arg("--data-dir")
        .arg(data_dir)
        .arg("--durability")
        .arg(durability)
        // The two hosts share the machine: each gets half of its cores for its pools.
        .arg("--threads")
        .arg(host_threads().to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| CliError::new("spawn", e))?;
    let stdin = child
        .stdin
        .take()
        .ok_or_else(|| CliError::new("io", "no stdin"))?;
    let (lines, rx) = mpsc::channel(4096);
    tokio::spawn(write_lines(stdin, rx));
    Ok(HostProc { child, lines })
}

/// Worker threads per host pool: half the cores (the in-process run has all of them for both
/// accounts, each host process serves one).
fn host_threads() -> usize {
    let cores = std::thread::available_parallelism().map_or(2, usize::from);
    (cores / 2).max(1)
}

async fn send(h: &HostProc, v: Value) -> Result<(), CliError> {
    h.lines
        .send(v.to_string())
        .await
        .map_err(|_| CliError::new("io", "the host process is gone"))
}

async fn wait_for(
    shared: &Shared,
    limit: Duration,
    done: impl Fn(&Tally) -> bool,
) -> Result<(), ()> {
    let deadline = Instant::now() + limit;
    loop {
        let notified = shared.changed.notified();
        if shared.tally.lock().map(|t| done(&t)).unwrap_or(true) {
            return Ok(());
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if tokio::time::timeout(left.min(Duration::from_secs(1)), notified)
            .await
            .is_err()
            && Instant::now() >= deadline
        {
            return Err(());
        }
    }
}

/// The fields of a host's line the relay needs on every message (strings without escapes
/// borrow from the line; a line that does not fit is read as a whole JSON value instead).
#[derive(serde::Deserialize)]
struct HotLine<'a> {
    #[serde(rename = "@type")]
    kind: &'a str,
    #[serde(default)]
    id: Option<&'a str>,
    #[serde(default)]
    tl: Option<&'a str>,
    #[serde(default)]
    seq: Option<&'a str>,
    #[serde(default, borrow)]
    message: Option<HotMessage<'a>>,
}

/// A message event's text.
#[derive(serde::Deserialize)]
struct HotMessage<'a> {
    #[serde(default)]
    text: Option<&'a str>,
}

/// Counts a delivered message (`"{direction}:{index}"`), checking its order, and opens its
/// direction's window by one.
fn count_message(shared: &Shared, text: &str, window: usize) {
    let (dir, i) = text.rsplit_once(':').unwrap_or_default();
    let i: usize = i.parse().unwrap_or(usize::MAX);
    if let Ok(mut t) = shared.tally.lock() {
        let next = t.next.entry(dir.to_owned()).or_default();
        if i == *next {
            *next += 1;
            t.delivered += 1;
        } else {
            let expected = *next;
            t.violations
                .push(format!("{dir}: got message {i}, expected {expected}"));
        }
    }
    shared.window(dir, window).add_permits(1);
    shared.changed.notify_waiters();
}

/// One line from a host: relay its calls, count its messages; returns the event's seq (to
/// acknowledge) when it is a stored event.
async fn on_line(
    v: Value,
    lines: &mpsc::Sender<String>,
    device: &secretchat::sim::SimDevice,
    shared: &Arc<Shared>,
    window: usize,
) -> Option<Value> {
    let str_of = |k: &str| {
        v.get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    match v.get("@type").and_then(Value::as_str).unwrap_or_default() {
        "invoke" => {
            if let Ok(tl) = hex::decode(str_of("tl")) {
                relay_invoke(device.clone(), tl, v["id"].clone(), None, lines.clone());
            }
            return None;
        }
        "ok" if v["@extra"] == "added" => {
            if let Ok(mut t) = shared.tally.lock() {
                t.added += 1;
            }
            shared.changed.notify_waiters();
        }
        "updateSecretChatRequested" => {
            let accept = json!({"@type": "acceptSecretChat", "account": str_of("account"), "secret_chat_id": str_of("secret_chat_id")});
            let _ = lines.send(accept.to_string()).await;
        }
        "updateSecretChatReady" => {
            let account = str_of("account").parse().unwrap_or(0);
            if let Ok(mut t) = shared.tally.lock() {
                t.ready
                    .entry(account)
                    .or_default()
                    .push(str_of("secret_chat_id"));
            }
            shared.changed.notify_waiters();
        }
        "updateNewMessage" => {
            let text = v["message"]["text"].as_str().unwrap_or_default();
            count_message(shared, text, window);
        }
        "error" => {
            if let Ok(mut t) = shared.tally.lock() {
                if !t.closing {
                    t.violations.push(format!("the host refused a line: {v}"));
                }
            }
            shared.changed.notify_waiters();
        }
        _ => {}
    }
    v.get("seq").filter(|s| s.is_string()).cloned()
}
