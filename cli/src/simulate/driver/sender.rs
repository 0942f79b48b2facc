//! The senders: one task per direction of a running chat, keeping a few texts submitted ahead.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use secretchat::{AccountId, ChatId, Engine};
use tokio::sync::{Semaphore, mpsc};

use super::lock;
use crate::simulate::ledger::Ledger;
use crate::simulate::workload::Workload;

/// What the helper tasks tell the main loop.
pub(super) enum Note {
    /// A chat side's server id is known (it is ready).
    ChatId(u64, u64, i32),
    /// Sender of stream `s` finished after `n` messages.
    Finished(usize, u32),
    /// Sender of stream `s` could not send message `idx`.
    SendFailed(usize, u32, String),
    /// A downloaded file was checked.
    FileChecked(usize, usize, u32, Result<(), String>),
}

/// One direction of one chat.
pub(super) struct Sender {
    pub(super) engine: Engine,
    pub(super) from: (u64, u64),
    pub(super) pair: usize,
    pub(super) dir: usize,
    pub(super) n: u32,
    pub(super) work: Workload,
    pub(super) ledger: Arc<Mutex<Ledger>>,
    pub(super) window: Arc<Semaphore>,
    pub(super) notes: mpsc::UnboundedSender<Note>,
    pub(super) files_dir: PathBuf,
    pub(super) deadline: Option<Instant>,
}

/// Text messages a sender keeps submitted but not yet stored. Submitting in order and
/// collecting the answers later is how an application feeds a durable engine: the chat stores
/// what queued meanwhile in one write (and one fsync) instead of one per message.
const SUBMITTED_AHEAD: usize = 8;

/// A sender's submitted texts (index, the task that records the engine's "stored" answer).
type Ahead = VecDeque<(u32, tokio::task::JoinHandle<Result<(), String>>)>;

impl Sender {
    pub(super) async fn run(self) {
        let s = self.pair * 2 + self.dir;
        let mut ahead = Ahead::new();
        for idx in 0..self.n {
            if self.deadline.is_some_and(|d| Instant::now() >= d) {
                return self.finish(s, idx, ahead).await;
            }
            match self.window.acquire().await {
                Ok(p) => p.forget(),
                Err(_) => return,
            }
            lock(&self.ledger).sending(s, idx, Instant::now());
            if let Some(message) =
                crate::simulate::send::text_message(&self.work, self.pair, self.dir, idx)
            {
                let stored =
                    self.engine
                        .queue_message(AccountId(self.from.0), ChatId(self.from.1), message);
                let ledger = self.ledger.clone();
                ahead.push_back((
                    idx,
                    tokio::spawn(async move {
                        stored.await.map_err(|e| e.to_string())?;
                        lock(&ledger).sent(s, idx);
                        Ok(())
                    }),
                ));
                if ahead.len() >= SUBMITTED_AHEAD && !self.collect(s, &mut ahead, 1).await {
                    return;
                }
                continue;
            }
            // A file: what was submitted before it first, then the upload and its send.
            if !self.collect(s, &mut ahead, usize::MAX).await {
                return;
            }
            // Boxed: the file path's future (the upload) is large, and every running stream's task
            // would carry its size (4.8 KB of the 8.3 KB per chat measured with heaptrack).
            match Box::pin(self.send(idx)).await {
                Ok(_) => {
                    let mut l = lock(&self.ledger);
                    l.sent(s, idx);
                    l.files_sent += 1;
                }
                Err(e) => {
                    let _ = self.notes.send(Note::SendFailed(s, idx, e));
                    let _ = self.notes.send(Note::Finished(s, idx));
                    return;
                }
            }
        }
        self.finish(s, self.n, ahead).await
    }

    /// Waits for the first `n` submitted messages to be stored; on a failure reports it and
    /// answers false (the stream ends there).
    async fn collect(&self, s: usize, ahead: &mut Ahead, n: usize) -> bool {
        for _ in 0..n {
            let Some((idx, h)) = ahead.pop_front() else {
                return true;
            };
            let failed = match h.await {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(e),
                Err(e) => Some(e.to_string()),
            };
            if let Some(e) = failed {
                let _ = self.notes.send(Note::SendFailed(s, idx, e));
                let _ = self.notes.send(Note::Finished(s, idx));
                return false;
            }
        }
        true
    }

    /// The stream ends after `n` messages (once every submitted one is stored).
    async fn finish(&self, s: usize, n: u32, mut ahead: Ahead) {
        if self.collect(s, &mut ahead, usize::MAX).await {
            let _ = self.notes.send(Note::Finished(s, n));
        }
    }

    /// Sends message `idx`; returns whether it was a file.
    async fn send(&self, idx: u32) -> Result<bool, String> {
        crate::simulate::send::send_item(
            &self.engine,
            self.from,
            &self.work,
            self.pair,
            self.dir,
            idx,
            &self.files_dir,
            false,
        )
        .await
    }
}
