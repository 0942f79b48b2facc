//! The host loop: requests in, answers and events out, until `close` or the end of input.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use secretchat::tl::api::enums as api;
use secretchat::tl::{DecodeError, Deserialize};
use secretchat::{AccountId, Engine, EventStream, RpcError, UpdateFeed};
use serde_json::{Map, Value, json};
use tokio::io::{AsyncBufRead, AsyncWrite};
use tokio::sync::mpsc;

use crate::json;
use crate::requests;
use crate::transport::Calls;
use crate::wire::{Fields, Line, WireError, read_line, write_lines};

/// How the host process behaves.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct HostOptions {
    /// How long an `invoke` waits for the host's answer before the engine treats it as a
    /// transport timeout (and retries as it would over a network). Default 60 s.
    pub invoke_timeout: Duration,
    /// Lines waiting to be written to the host; when full, events and invokes wait (the
    /// host reads too slowly). Default 1024.
    pub out_capacity: usize,
}

impl Default for HostOptions {
    fn default() -> Self {
        HostOptions {
            invoke_timeout: Duration::from_secs(60),
            out_capacity: 1024,
        }
    }
}

/// What the request handlers share.
#[derive(Clone)]
pub(crate) struct Host {
    pub engine: Engine,
    pub calls: Arc<Calls>,
    pub feeds: Arc<Mutex<HashMap<AccountId, UpdateFeed>>>,
    pub out: mpsc::Sender<String>,
    pub options: HostOptions,
}

impl Host {
    /// Writes one line (waiting while the output is full).
    pub(crate) async fn send(&self, v: Value) {
        let _ = self.out.send(v.to_string()).await;
    }

    /// Writes the answer to a request: its result, or an error, with the request's `@extra`.
    pub(crate) async fn answer(&self, extra: Option<Value>, result: Result<Value, WireError>) {
        let mut v = match result {
            Ok(v) => v,
            Err(e) => error(&e),
        };
        if let Some(x) = extra {
            v["@extra"] = x;
        }
        self.send(v).await;
    }
}

fn error(e: &WireError) -> Value {
    json!({"@type": "error", "code": e.code, "message": e.message})
}

/// Serves one host over `input` / `output` until it sends `close` or its input ends; then
/// shuts the engine down gracefully (answering the invokes it still makes while closing)
/// and writes `{"@type":"closed"}`.
///
/// # Errors
/// I/O errors writing to the host; the engine's shutdown error.
pub async fn serve<R, W>(
    engine: Engine,
    mut events: EventStream,
    input: R,
    output: W,
    options: HostOptions,
) -> Result<(), secretchat::Error>
where
    R: AsyncBufRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let (out, out_rx) = mpsc::channel::<String>(options.out_capacity.max(1));
    let writer = tokio::spawn(write_lines(output, out_rx));
    let host = Host {
        engine: engine.clone(),
        calls: Arc::new(Calls::default()),
        feeds: Arc::default(),
        out: out.clone(),
        options,
    };
    let event_out = out.clone();
    let event_task = tokio::spawn(async move {
        while let Some(e) = events.next().await {
            if event_out.send(json::event(&e).to_string()).await.is_err() {
                break;
            }
        }
    });
    // Lines are read on a task of their own, so the loop below can wait for a line and for
    // the shutdown at once without losing a half-read line.
    let (line_tx, mut lines) = mpsc::channel::<Line>(64);
    let reader = tokio::spawn(async move {
        let mut input = input;
        loop {
            match read_line(&mut input).await {
                Ok(Some(l)) => {
                    if line_tx.send(l).await.is_err() {
                        break;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "reading from the host failed");
                    break;
                }
            }
        }
    });

    // Serving.
    let mut closing = false;
    while let Some(line) = lines.recv().await {
        if dispatch(&host, line, false).await == Flow::Close {
            closing = true;
            break;
        }
    }
    if !closing {
        // The input ended: nobody can answer a call any more.
        host.calls.close();
    }
    // Closing: the engine finishes its stored steps; its last calls still get answers.
    let shutdown = engine.shutdown();
    tokio::pin!(shutdown);
    let result = loop {
        tokio::select! {
            r = &mut shutdown => break r,
            line = lines.recv(), if closing => match line {
                Some(l) => { dispatch(&host, l, true).await; }
                None => { host.calls.close(); closing = false; }
            },
        }
    };
    reader.abort();
    // Stored events not yet written come again at the next start; the stream itself ends
    // only with the last engine handle, so it is stopped here.
    event_task.abort();
    host.send(json!({"@type": "closed"})).await;
    drop(host);
    drop(out);
    let _ = writer.await;
    result
}

#[derive(Debug, PartialEq, Eq)]
enum Flow {
    Go,
    Close,
}

/// Handles one line. While `closing`, only the answers to calls and updates are taken.
async fn dispatch(host: &Host, line: Line, closing: bool) -> Flow {
    let m = match line {
        Line::Object(m) => m,
        Line::Bad(e) => {
            host.answer(None, Err(e)).await;
            return Flow::Go;
        }
    };
    let extra = m.get("@extra").cloned();
    let Some(kind) = m.get("@type").and_then(Value::as_str).map(str::to_owned) else {
        host.answer(extra, Err(WireError::bad("missing field `@type`")))
            .await;
        return Flow::Go;
    };
    let f = Fields(&m);
    let inline = match kind.as_str() {
        "invokeResult" => Some(answer_call(host, &f, true)),
        "invokeError" => Some(answer_call(host, &f, false)),
        "pushUpdate" => Some(push_update(host, &f)),
        "catchUp" => Some(catch_up(host, &f)),
        _ => None,
    };
    if let Some(r) = inline {
        // Answered only when refused: these lines are the host's answers themselves.
        if let Err(e) = r {
            host.answer(extra, Err(e)).await;
        }
        return Flow::Go;
    }
    if closing {
        let e = WireError {
            code: 503,
            message: "closing".into(),
        };
        host.answer(extra, Err(e)).await;
        return Flow::Go;
    }
    if kind == "close" {
        return Flow::Close;
    }
    if kind == "ack" && extra.is_none() {
        // Nothing could match an answer to it: queued now, stored on the engine's acker
        // thread, not answered (an `ack` with `@extra` is answered `ok` once stored).
        match f.seqs() {
            Ok(seqs) => drop(host.engine.ack_all(seqs)),
            Err(e) => host.answer(None, Err(e)).await,
        }
        return Flow::Go;
    }
    requests::handle(host, &kind, m, extra);
    Flow::Go
}

fn answer_call(host: &Host, f: &Fields<'_>, ok: bool) -> Result<(), WireError> {
    let id = f.u64("id")?;
    let answer = if ok {
        Ok(f.hex("tl")?)
    } else {
        Err(RpcError::new(f.i32("code")?, f.str("message")?))
    };
    // An unknown id is a late answer to a call that timed out: nothing waits for it.
    host.calls.answer(id, answer);
    Ok(())
}

/// The account's update feed, or 404.
fn feed(host: &Host, f: &Fields<'_>) -> Result<UpdateFeed, WireError> {
    let account = json::account(f)?;
    host.feeds
        .lock()
        .ok()
        .and_then(|feeds| feeds.get(&account).cloned())
        .ok_or_else(|| WireError {
            code: 404,
            message: format!("no account {account}"),
        })
}

/// The host's connection for the account closed and came back: updates pushed meanwhile
/// are lost, so the account asks for the difference at its next gap check.
fn catch_up(host: &Host, f: &Fields<'_>) -> Result<(), WireError> {
    feed(host, f)?.catch_up();
    Ok(())
}

fn push_update(host: &Host, f: &Fields<'_>) -> Result<(), WireError> {
    let feed = feed(host, f)?;
    let bytes = f.hex("tl")?;
    let update = match api::Update::from_bytes(&bytes) {
        Ok(u) => u,
        // An update of another kind (the host may forward everything): not ours.
        Err(
            DecodeError::UnexpectedConstructor { id, .. } | DecodeError::UnknownConstructor { id },
        ) if bytes.get(..4) == Some(&id.to_le_bytes()[..]) => return Ok(()),
        Err(e) => return Err(WireError::bad(format!("`tl`: {e}"))),
    };
    feed.push(update);
    Ok(())
}

/// The request's fields as a map (handlers own it across awaits).
pub(crate) type Request = Map<String, Value>;
