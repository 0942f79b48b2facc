//! The engine's server calls, carried by the host: each becomes an `invoke` line, answered
//! by `invokeResult` or `invokeError` with the same id, in any order.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use secretchat::{AccountId, BoxFuture, RpcError, ServerApi};
use serde_json::json;
use tokio::sync::{mpsc, oneshot};

use crate::json::long;

type Answer = Result<Vec<u8>, RpcError>;

/// The calls waiting for the host, by id; shared by every account's [`HostApi`].
#[derive(Debug, Default)]
pub struct Calls {
    next: AtomicU64,
    pending: Mutex<HashMap<u64, oneshot::Sender<Answer>>>,
    /// The host is gone: new calls fail at once.
    closed: AtomicBool,
}

impl Calls {
    /// Hands the host's answer to the call `id`; false if no call waits under that id (it
    /// timed out, or the host made the id up).
    pub fn answer(&self, id: u64, answer: Answer) -> bool {
        let tx = self.pending.lock().ok().and_then(|mut p| p.remove(&id));
        tx.is_some_and(|tx| tx.send(answer).is_ok())
    }

    /// The host is gone: every waiting call and every later one fails as a transport error
    /// (the engine keeps what it stored and tries again after a restart).
    pub fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        if let Ok(mut p) = self.pending.lock() {
            for (_, tx) in p.drain() {
                let _ = tx.send(Err(gone()));
            }
        }
    }
}

fn gone() -> RpcError {
    RpcError::new(-503, "HOST_GONE")
}

/// One account's [`ServerApi`]: its calls go out as `invoke` lines.
#[derive(Debug)]
pub struct HostApi {
    /// The account.
    pub account: AccountId,
    /// The shared call table.
    pub calls: Arc<Calls>,
    /// Lines to the host.
    pub out: mpsc::Sender<String>,
    /// How long a call waits for its answer before it counts as a transport timeout.
    pub timeout: Duration,
}

impl ServerApi for HostApi {
    fn invoke(&self, request: Vec<u8>) -> BoxFuture<'static, Result<Vec<u8>, RpcError>> {
        self.call(request, None)
    }

    fn invoke_in_dc(
        &self,
        dc_id: i32,
        request: Vec<u8>,
    ) -> BoxFuture<'static, Result<Vec<u8>, RpcError>> {
        self.call(request, Some(dc_id))
    }
}

impl HostApi {
    /// One `invoke` line (with `dc_id` when the call names a data center), answered by id.
    fn call(
        &self,
        request: Vec<u8>,
        dc_id: Option<i32>,
    ) -> BoxFuture<'static, Result<Vec<u8>, RpcError>> {
        let calls = self.calls.clone();
        let out = self.out.clone();
        let (account, timeout) = (self.account, self.timeout);
        Box::pin(async move {
            if calls.closed.load(Ordering::SeqCst) {
                return Err(gone());
            }
            let id = calls.next.fetch_add(1, Ordering::Relaxed) + 1;
            let (tx, rx) = oneshot::channel();
            calls.pending.lock().map_err(|_| gone())?.insert(id, tx);
            let mut line = json!({
                "@type": "invoke",
                "id": long(id),
                "account": long(account.0),
                "tl": hex::encode(&request),
            });
            if let Some(dc) = dc_id {
                line["dc_id"] = dc.into();
            }
            let line = line.to_string();
            if out.send(line).await.is_err() {
                calls.answer(id, Err(gone()));
            }
            match tokio::time::timeout(timeout, rx).await {
                Ok(Ok(answer)) => answer,
                Ok(Err(_)) => Err(gone()),
                Err(_) => {
                    if let Ok(mut p) = calls.pending.lock() {
                        p.remove(&id);
                    }
                    Err(RpcError::new(-503, "TIMEOUT"))
                }
            }
        })
    }
}
