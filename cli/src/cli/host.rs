//! `secretchat host` (the engine behind JSON lines, docs/host.md) and `secretchat sim-server`
//! (the simulated Telegram server behind JSON lines, for testing hosts without Telegram).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use secretchat::sim::{SimDevice, SimFaults, SimServer};
use secretchat::tl::Serialize;
use secretchat::{Engine, EngineConfig, ServerApi, UpdateFeed};
use secretchat_host::wire::{Fields, Line, WireError, read_line, write_lines};
use secretchat_host::{HostOptions, serve};
use serde_json::{Value, json};
use tokio::io::BufReader;
use tokio::sync::mpsc;

use super::{CliError, log_to_stderr, runtime};

/// The flags of `secretchat host`.
#[derive(Debug, Clone, clap::Args)]
pub struct HostArgs {
    /// The engine's database directory (created if missing).
    #[arg(long)]
    pub data_dir: PathBuf,
    /// Store durability: `sync`, `group[:MS]` or `buffered` (as `simulate`).
    #[arg(long, default_value = "group")]
    pub durability: String,
    /// Seal the database at rest with the key in this file (32 bytes, or 64 hex digits).
    #[arg(long)]
    pub at_rest_key_file: Option<PathBuf>,
    /// Serve one client on this unix socket (`unix:PATH`) instead of stdin/stdout.
    #[arg(long)]
    pub listen: Option<String>,
    /// How long an `invoke` waits for the host's answer, ms (then it counts as a timeout
    /// and the engine retries as over a network).
    #[arg(long, default_value_t = 60_000)]
    pub invoke_timeout_ms: u64,
    /// How often received encrypted messages are acknowledged to the server
    /// (`messages.receivedQueue`), ms.
    #[arg(long, default_value_t = 200)]
    pub ack_interval_ms: u64,
    /// How often the engine checks for a gap in the secret-chat queue; one that outlived an
    /// interval is fetched with `updates.getDifference`, ms.
    #[arg(long, default_value_t = 5_000)]
    pub difference_interval_ms: u64,
    /// With no gap seen, how often the engine polls `updates.getDifference` anyway, ms (for a
    /// lost push that left no gap; on Telegram a minute or more).
    #[arg(long, default_value_t = 5_000)]
    pub idle_difference_interval_ms: u64,
    /// Threads of each of the engine's worker pools (chats, DH, files); default: one per
    /// core. Several host processes on one machine share its cores: give each its share.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub threads: Option<u16>,
}

/// The flags of `secretchat sim-server`.
#[derive(Debug, Clone, clap::Args)]
pub struct SimServerArgs {
    /// Probability that an update push is dropped (the engine's gap recovery runs).
    #[arg(long, default_value_t = 0.0)]
    pub drop: f64,
    /// Seed of the faults.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

/// Runs `secretchat host` until the client closes; returns the exit status.
pub fn host(args: &HostArgs) -> u8 {
    log_to_stderr();
    match host_inner(args) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("{}", e.to_json());
            2
        }
    }
}

/// The engine's configuration these flags describe.
///
/// # Errors
/// `bad_option` for a bad durability; `at_rest_key` for an unreadable key file.
pub fn engine_config(args: &HostArgs) -> Result<EngineConfig, CliError> {
    let ms = Duration::from_millis;
    let mut config = EngineConfig::builder()
        .durability(super::simulate::durability(&args.durability)?)
        .ack_interval(ms(args.ack_interval_ms.max(1)))
        .difference_interval(ms(args.difference_interval_ms.max(1)))
        .idle_difference_interval(ms(args.idle_difference_interval_ms.max(1)));
    if let Some(n) = args.threads {
        let n = usize::from(n);
        config = config.chat_threads(n).dh_threads(n).file_threads(n);
    }
    if let Some(path) = &args.at_rest_key_file {
        let key = secretchat::read_key_file(path).map_err(|e| CliError::new("at_rest_key", e))?;
        config = config.at_rest_key(key);
    }
    Ok(config.build())
}

fn host_inner(args: &HostArgs) -> Result<(), CliError> {
    let config = engine_config(args)?;
    let mut options = HostOptions::default();
    options.invoke_timeout = Duration::from_millis(args.invoke_timeout_ms);
    // The protocol loop (reading, dispatching, writing lines) on one thread: the engine runs
    // on its own pools, and a line handed between two runtime workers cost a thread wake-up
    // each time (the relayed benchmark ran 1.15x faster on one, docs/host.md "Throughput").
    let rt = single_thread_runtime()?;
    let result = rt.block_on(async {
        let (engine, events) =
            Engine::open(&args.data_dir, config).map_err(|e| CliError::new("open", e))?;
        let done = match &args.listen {
            None => {
                let (input, output) = stdio();
                serve(engine, events, input, output, options).await
            }
            Some(spec) => {
                let path = spec
                    .strip_prefix("unix:")
                    .ok_or_else(|| CliError::new("usage", "--listen unix:PATH"))?;
                let _ = std::fs::remove_file(path);
                let listener =
                    tokio::net::UnixListener::bind(path).map_err(|e| CliError::new("listen", e))?;
                let (stream, _) = listener
                    .accept()
                    .await
                    .map_err(|e| CliError::new("listen", e))?;
                let (r, w) = stream.into_split();
                serve(engine, events, BufReader::new(r), w, options).await
            }
        };
        done.map_err(|e| CliError::new("shutdown", e))
    });
    // stdin is read on a blocking thread that only returns at the end of input; the host
    // may keep its end open after `closed` (waiting for the exit), so do not wait for it.
    rt.shutdown_background();
    result
}

/// A current-thread runtime with I/O and timers.
pub(super) fn single_thread_runtime() -> Result<tokio::runtime::Runtime, CliError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::new("runtime", e))
}

type Input = Box<dyn tokio::io::AsyncBufRead + Unpin + Send>;
type Output = Box<dyn tokio::io::AsyncWrite + Unpin + Send>;

/// stdin and stdout for the JSON lines. When they are pipes (a host process's usual case),
/// they are read and written as non-blocking pipes on the runtime's reactor; tokio's
/// `stdin()`/`stdout()` run every read and write on the blocking thread pool, a thread
/// hand-off per line that cost more than the engine's own work per message (measured with
/// `secretchat bench-host`, docs/host.md). Anything else (a file, a terminal) uses those.
fn stdio() -> (Input, Output) {
    use std::os::fd::AsFd;
    use tokio::net::unix::pipe;
    let pipe_in = std::io::stdin()
        .as_fd()
        .try_clone_to_owned()
        .and_then(|fd| pipe::Receiver::from_file(std::fs::File::from(fd)));
    let input: Input = match pipe_in {
        Ok(rx) => Box::new(BufReader::with_capacity(64 * 1024, rx)),
        Err(_) => Box::new(BufReader::new(tokio::io::stdin())),
    };
    let pipe_out = std::io::stdout()
        .as_fd()
        .try_clone_to_owned()
        .and_then(|fd| pipe::Sender::from_file(std::fs::File::from(fd)));
    let output: Output = match pipe_out {
        Ok(tx) => Box::new(tx),
        Err(_) => Box::new(tokio::io::stdout()),
    };
    (input, output)
}

/// Runs `secretchat sim-server` until stdin closes; returns the exit status.
///
/// Lines in: `{"@type":"connect","user":U}` (a device for user U; its updates start
/// flowing), `{"@type":"invoke","user":U,"id":I,"tl":HEX}`. Lines out: the answers
/// `invokeResult {user, id, tl}` / `invokeError {user, id, code, message}` (a host's
/// answer shape, plus `user`), `pushUpdate {user, tl}` for every update of a connected user,
/// `ok` for `connect` and `error` for bad input (with `@extra` as given).
pub fn sim_server(args: &SimServerArgs) -> u8 {
    log_to_stderr();
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("{}", e.to_json());
            return 2;
        }
    };
    rt.block_on(sim_server_inner(args));
    0
}

async fn sim_server_inner(args: &SimServerArgs) {
    let faults = SimFaults {
        drop: args.drop,
        ..SimFaults::NONE
    };
    let sim = SimServer::new(faults, args.seed);
    let (out, out_rx) = mpsc::channel::<String>(1024);
    let (mut input, stdout) = stdio();
    let writer = tokio::spawn(write_lines(stdout, out_rx));
    let devices: Arc<Mutex<HashMap<i64, SimDevice>>> = Arc::default();
    let mut forwarders = tokio::task::JoinSet::new();
    while let Ok(Some(line)) = read_line(&mut input).await {
        let m = match line {
            Line::Object(m) => m,
            Line::Bad(e) => {
                let _ = out.send(error(&e, None)).await;
                continue;
            }
        };
        let extra = m.get("@extra").cloned();
        if let Err(e) = sim_request(&sim, &devices, &out, &m, &mut forwarders).await {
            let _ = out.send(error(&e, extra)).await;
        }
    }
    // The forwarders hold the output open; the input's end is the end.
    forwarders.shutdown().await;
    drop(out);
    let _ = writer.await;
}

fn error(e: &WireError, extra: Option<Value>) -> String {
    let mut v = json!({"@type": "error", "code": e.code, "message": e.message});
    if let Some(x) = extra {
        v["@extra"] = x;
    }
    v.to_string()
}

async fn sim_request(
    sim: &Arc<SimServer>,
    devices: &Arc<Mutex<HashMap<i64, SimDevice>>>,
    out: &mpsc::Sender<String>,
    m: &serde_json::Map<String, Value>,
    forwarders: &mut tokio::task::JoinSet<()>,
) -> Result<(), WireError> {
    let f = Fields(m);
    let user = f.i64("user")?;
    match f.str("@type")? {
        "connect" => {
            let device = sim.device(user, 0);
            let (feed, rx) = UpdateFeed::channel();
            sim.connect(&device, feed);
            if let Ok(mut d) = devices.lock() {
                d.insert(user, device);
            }
            forwarders.spawn(forward_updates(rx, out.clone(), "user", user));
            let mut v = json!({"@type": "ok"});
            if let Some(x) = m.get("@extra") {
                v["@extra"] = x.clone();
            }
            let _ = out.send(v.to_string()).await;
        }
        "invoke" => {
            let id = f.value("id").cloned().unwrap_or(Value::Null);
            let tl = f.hex("tl")?;
            let device = devices
                .lock()
                .ok()
                .and_then(|d| d.get(&user).cloned())
                .ok_or_else(|| WireError {
                    code: 404,
                    message: format!("user {user} is not connected"),
                })?;
            relay_invoke(device, tl, id, Some(user), out.clone());
        }
        other => return Err(WireError::bad(format!("unknown @type `{other}`"))),
    }
    Ok(())
}

/// Forwards a simulated device's updates as `pushUpdate {KEY: id, tl}` lines until either end
/// closes (`key` is `user` for `sim-server`, `account` for a host).
pub(super) async fn forward_updates(
    mut updates: tokio::sync::mpsc::UnboundedReceiver<secretchat::tl::api::enums::Update>,
    out: mpsc::Sender<String>,
    key: &'static str,
    id: i64,
) {
    while let Some(u) = updates.recv().await {
        let Ok(bytes) = u.to_bytes() else { continue };
        let mut line = json!({"@type": "pushUpdate", "tl": hex::encode(bytes)});
        line[key] = Value::String(id.to_string());
        if out.send(line.to_string()).await.is_err() {
            break;
        }
    }
}

/// Runs `tl` on the simulated `device` and writes the answer line (`invokeResult` or
/// `invokeError` with the call's `id`, and `user` when given) to `out`, on a task of its own.
pub(super) fn relay_invoke(
    device: SimDevice,
    tl: Vec<u8>,
    id: Value,
    user: Option<i64>,
    out: mpsc::Sender<String>,
) {
    tokio::spawn(async move {
        let mut line = match device.invoke(tl).await {
            Ok(bytes) => json!({"@type": "invokeResult", "id": id, "tl": hex::encode(bytes)}),
            Err(e) => {
                json!({"@type": "invokeError", "id": id, "code": e.code, "message": e.message})
            }
        };
        if let Some(user) = user {
            line["user"] = Value::String(user.to_string());
        }
        let _ = out.send(line.to_string()).await;
    });
}
