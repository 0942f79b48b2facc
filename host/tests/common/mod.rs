//! A host process in-process: [`serve`] over a pipe, with a relay that carries its
//! `invoke`s to the simulated server (optionally reordering or failing them) and pushes the
//! server's updates back as `pushUpdate` lines.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

use secretchat::sim::{SimDevice, SimFaults, SimServer};
use secretchat::tl::Serialize;
use secretchat::{Engine, EngineConfig, ServerApi, UpdateFeed};
use secretchat_host::{HostOptions, serve};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, DuplexStream, WriteHalf};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// What the relay does with one invoke.
#[derive(Debug, Clone)]
pub enum Action {
    /// Carry it to the server and answer.
    Forward,
    /// Answer with this error instead.
    Fail(i32, &'static str),
    /// Never answer (the host's timeout fires).
    Ignore,
}

/// Decides per invoke: (account, method id) → action.
pub type Policy = Arc<Mutex<dyn FnMut(u64, u32) -> Action + Send>>;

pub fn forward_all() -> Policy {
    Arc::new(Mutex::new(|_, _| Action::Forward))
}

/// One running host.
pub struct HostProc {
    input: Arc<tokio::sync::Mutex<WriteHalf<DuplexStream>>>,
    /// Answers and events (everything but `invoke`).
    pub lines: mpsc::UnboundedReceiver<Value>,
    pub serving: JoinHandle<Result<(), secretchat::Error>>,
    relay: JoinHandle<()>,
    pushers: Vec<JoinHandle<()>>,
    next_extra: u64,
    backlog: std::collections::VecDeque<Value>,
    /// Invokes seen, by method id.
    pub invokes: Arc<Mutex<Vec<u32>>>,
}

pub const ALICE: u64 = 1;
pub const BOB: u64 = 2;

/// Starts a host on `dir` with accounts 1 and 2 (users 1 and 2 of `sim`); `reverse` answers
/// invokes that arrive together in reverse order.
pub async fn start(
    dir: &Path,
    sim: &Arc<SimServer>,
    policy: Policy,
    reverse: bool,
    options: HostOptions,
) -> HostProc {
    start_with(dir, sim, policy, reverse, options, EngineConfig::default()).await
}

/// [`start`] with an engine configuration of the test's.
pub async fn start_with(
    dir: &Path,
    sim: &Arc<SimServer>,
    policy: Policy,
    reverse: bool,
    options: HostOptions,
    config: EngineConfig,
) -> HostProc {
    let (engine, events) = Engine::open(dir, config).unwrap();
    let (host_side, test_side) = tokio::io::duplex(1 << 22);
    let (hr, hw) = tokio::io::split(host_side);
    let serving = tokio::spawn(serve(engine, events, BufReader::new(hr), hw, options));
    let (tr, tw) = tokio::io::split(test_side);
    let input = Arc::new(tokio::sync::Mutex::new(tw));
    let devices: HashMap<u64, SimDevice> = [ALICE, BOB]
        .into_iter()
        .map(|a| (a, sim.device(a as i64, 0)))
        .collect();
    let (lines_tx, lines) = mpsc::unbounded_channel();
    let invokes = Arc::new(Mutex::new(Vec::new()));
    let relay = tokio::spawn(relay(
        BufReader::new(tr),
        input.clone(),
        devices.clone(),
        policy,
        reverse,
        lines_tx,
        invokes.clone(),
    ));
    let mut pushers = Vec::new();
    for (account, device) in &devices {
        let (feed, mut rx) = UpdateFeed::channel();
        sim.connect(device, feed);
        let input = input.clone();
        let account = *account;
        pushers.push(tokio::spawn(async move {
            while let Some(u) = rx.recv().await {
                let line = json!({"@type": "pushUpdate", "account": account.to_string(), "tl": hex::encode(u.to_bytes().unwrap())});
                if write_line(&input, &line).await.is_err() {
                    break;
                }
            }
        }));
    }
    let mut h = HostProc {
        input,
        lines,
        serving,
        relay,
        pushers,
        next_extra: 0,
        backlog: std::collections::VecDeque::new(),
        invokes,
    };
    for a in [ALICE, BOB] {
        let r = h
            .request(json!({"@type": "addAccount", "account": a.to_string()}))
            .await;
        assert_eq!(r["@type"], "ok", "{r}");
    }
    h
}

async fn write_line(
    w: &tokio::sync::Mutex<WriteHalf<DuplexStream>>,
    v: &Value,
) -> std::io::Result<()> {
    let mut w = w.lock().await;
    w.write_all(format!("{v}\n").as_bytes()).await?;
    w.flush().await
}

#[allow(clippy::too_many_arguments)]
async fn relay(
    mut out: BufReader<tokio::io::ReadHalf<DuplexStream>>,
    input: Arc<tokio::sync::Mutex<WriteHalf<DuplexStream>>>,
    devices: HashMap<u64, SimDevice>,
    policy: Policy,
    reverse: bool,
    lines: mpsc::UnboundedSender<Value>,
    invokes: Arc<Mutex<Vec<u32>>>,
) {
    let mut held: Vec<Value> = Vec::new();
    loop {
        let mut line = String::new();
        let read = if reverse && !held.is_empty() {
            match tokio::time::timeout(Duration::from_millis(20), out.read_line(&mut line)).await {
                Ok(r) => r,
                Err(_) => {
                    // Quiet: answer what was held, newest first.
                    for inv in held.drain(..).rev() {
                        answer(&inv, &input, &devices, &policy, &invokes).await;
                    }
                    continue;
                }
            }
        } else {
            out.read_line(&mut line).await
        };
        match read {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let v: Value = serde_json::from_str(&line).expect("the host writes JSON lines");
        if v["@type"] == "invoke" {
            if reverse {
                held.push(v);
            } else {
                answer(&v, &input, &devices, &policy, &invokes).await;
            }
        } else if lines.send(v).is_err() {
            break;
        }
    }
}

async fn answer(
    inv: &Value,
    input: &Arc<tokio::sync::Mutex<WriteHalf<DuplexStream>>>,
    devices: &HashMap<u64, SimDevice>,
    policy: &Policy,
    invokes: &Arc<Mutex<Vec<u32>>>,
) {
    let account: u64 = inv["account"].as_str().unwrap().parse().unwrap();
    let tl = hex::decode(inv["tl"].as_str().unwrap()).unwrap();
    let method = u32::from_le_bytes(tl[..4].try_into().unwrap());
    invokes.lock().unwrap().push(method);
    let action = (policy.lock().unwrap())(account, method);
    let id = inv["id"].clone();
    let device = devices[&account].clone();
    let input = input.clone();
    tokio::spawn(async move {
        let reply = match action {
            Action::Ignore => return,
            Action::Fail(code, message) => {
                json!({"@type": "invokeError", "id": id, "code": code, "message": message})
            }
            Action::Forward => match device.invoke(tl).await {
                Ok(b) => json!({"@type": "invokeResult", "id": id, "tl": hex::encode(b)}),
                Err(e) => {
                    json!({"@type": "invokeError", "id": id, "code": e.code, "message": e.message})
                }
            },
        };
        let _ = write_line(&input, &reply).await;
    });
}

impl HostProc {
    /// Writes a raw line.
    pub async fn raw(&self, line: &str) {
        let mut w = self.input.lock().await;
        w.write_all(line.as_bytes()).await.unwrap();
        w.write_all(b"\n").await.unwrap();
        w.flush().await.unwrap();
    }

    /// Sends a request with a fresh `@extra` and waits for its answer; events seen meanwhile
    /// are kept for [`HostProc::event`].
    pub async fn request(&mut self, mut v: Value) -> Value {
        self.next_extra += 1;
        let extra = format!("t{}", self.next_extra);
        v["@extra"] = Value::String(extra.clone());
        write_line(&self.input, &v).await.unwrap();
        self.until(|l| l["@extra"] == extra.as_str()).await
    }

    /// The first line matching `f`, from those kept or the next ones (kept: the others),
    /// within 20 s.
    pub async fn until(&mut self, mut f: impl FnMut(&Value) -> bool) -> Value {
        if let Some(i) = self.backlog.iter().position(&mut f) {
            return self.backlog.remove(i).unwrap();
        }
        loop {
            let l = tokio::time::timeout(Duration::from_secs(20), self.lines.recv())
                .await
                .expect("a line within 20 s")
                .expect("the host runs");
            if f(&l) {
                return l;
            }
            self.backlog.push_back(l);
        }
    }

    /// Every line kept or arriving within `quiet` of the last one.
    pub async fn drain(&mut self, quiet: Duration) -> Vec<Value> {
        let mut all: Vec<Value> = self.backlog.drain(..).collect();
        while let Ok(Some(l)) = tokio::time::timeout(quiet, self.lines.recv()).await {
            all.push(l);
        }
        all
    }

    /// The next event of `@type` `kind` for `account`.
    pub async fn event(&mut self, kind: &str, account: u64) -> Value {
        let a = account.to_string();
        self.until(|l| l["@type"] == kind && l["account"] == a.as_str())
            .await
    }

    /// Sends `close` and waits for `closed` and the end of serving.
    pub async fn close(mut self) {
        self.raw(r#"{"@type":"close"}"#).await;
        self.until(|l| l["@type"] == "closed").await;
        self.serving.await.unwrap().unwrap();
        for p in &self.pushers {
            p.abort();
        }
        self.relay.abort();
    }
}

/// A server with no faults.
pub fn sim() -> Arc<SimServer> {
    SimServer::new(SimFaults::NONE, 1)
}

/// Opens a chat from Alice to Bob through the host; returns (Alice's chat, Bob's chat,
/// the key hash).
pub async fn open_chat(h: &mut HostProc) -> (String, String, String) {
    let created = h
        .request(json!({"@type": "createSecretChat", "account": "1", "user_id": "2", "access_hash": "0"}))
        .await;
    assert_eq!(created["@type"], "secretChat", "{created}");
    let alice_chat = created["id"].as_str().unwrap().to_owned();
    let req = h.event("updateSecretChatRequested", BOB).await;
    assert_eq!(req["user_id"], "1");
    let bob_chat = req["secret_chat_id"].as_str().unwrap().to_owned();
    let ok = h
        .request(json!({"@type": "acceptSecretChat", "account": "2", "secret_chat_id": bob_chat}))
        .await;
    assert_eq!(ok["@type"], "ok", "{ok}");
    let mut keys = Vec::new();
    while keys.len() < 2 {
        let e = h.until(|l| l["@type"] == "updateSecretChatReady").await;
        keys.push(e["key_hash"].as_str().unwrap().to_owned());
    }
    assert_eq!(keys[0], keys[1]);
    assert_eq!(keys[0].len(), 72);
    (alice_chat, bob_chat, keys.remove(0))
}
