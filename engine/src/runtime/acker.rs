//! The application's acknowledgements, written off the caller's thread: [`Acker::ack`] hands
//! sequence numbers to a thread of the engine that removes them from the inbox in batches
//! (one write for whatever queued meanwhile) and answers each caller once its write is stored.
//! At most [`MAX_PENDING`] acknowledgements wait at once; further callers wait
//! asynchronously for room.

use std::sync::Arc;
use std::sync::mpsc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};

use super::EngineError;
use crate::store::Store;

/// Acknowledgement requests waiting for the store at most.
pub const MAX_PENDING: usize = 4096;

enum Job {
    /// The seqs, the answer, and the room the request takes until it is answered.
    Ack(
        Vec<u64>,
        oneshot::Sender<Result<(), EngineError>>,
        OwnedSemaphorePermit,
    ),
    Stop,
}

/// The sending side (cloned with the engine handle).
#[derive(Clone)]
pub(crate) struct Acker {
    tx: mpsc::Sender<Job>,
    room: Arc<Semaphore>,
}

/// The writing thread, joined when the engine closes.
pub(crate) struct AckerThread {
    tx: mpsc::Sender<Job>,
    thread: std::thread::JoinHandle<()>,
}

impl AckerThread {
    /// Writes what was queued before, then ends the thread.
    pub(crate) fn stop(self) {
        let _ = self.tx.send(Job::Stop);
        let _ = self.thread.join();
    }
}

/// Starts the thread.
pub(crate) fn start(store: Arc<Store>) -> Result<(Acker, AckerThread), EngineError> {
    let (tx, rx) = mpsc::channel::<Job>();
    let thread = std::thread::Builder::new()
        .name("secretchat-acks".into())
        .spawn(move || run(&store, &rx))
        .map_err(|_| EngineError::Stopped)?;
    Ok((
        Acker {
            tx: tx.clone(),
            room: Arc::new(Semaphore::new(MAX_PENDING)),
        },
        AckerThread { tx, thread },
    ))
}

fn run(store: &Store, rx: &mpsc::Receiver<Job>) {
    let mut stop = false;
    while !stop {
        let Ok(first) = rx.recv() else {
            return;
        };
        let mut jobs = vec![first];
        jobs.extend(rx.try_iter());
        let mut acks = Vec::new();
        for job in jobs {
            match job {
                Job::Ack(s, answer, _room) => acks.push((s, answer)),
                Job::Stop => stop = true,
            }
        }
        if acks.is_empty() {
            continue;
        }
        let all: Vec<u64> = acks.iter().flat_map(|(s, _)| s.iter().copied()).collect();
        // The store's durability applies (fsynced in `Sync`); nothing waits for group commit.
        if store.ack_inbox(&all).is_ok() {
            for (_, answer) in acks {
                let _ = answer.send(Ok(()));
            }
        } else {
            // Each caller gets its own write and its own error.
            for (s, answer) in acks {
                let _ = answer.send(store.ack_inbox(&s).map(drop).map_err(EngineError::from));
            }
        }
    }
}

impl Acker {
    /// Removes `seqs` from the inbox; the future resolves once that is stored. Queued at once
    /// when there is room (the future need not be polled for the removal to happen);
    /// otherwise when the returned future is polled and room frees up.
    pub(crate) fn ack(
        &self,
        seqs: Vec<u64>,
    ) -> impl std::future::Future<Output = Result<(), EngineError>> + Send + 'static {
        let (answer, rx) = oneshot::channel();
        let later = match self.room.clone().try_acquire_owned() {
            Ok(room) => {
                let _ = self.tx.send(Job::Ack(seqs, answer, room));
                None
            }
            Err(_) => Some((seqs, answer, self.tx.clone(), self.room.clone())),
        };
        async move {
            if let Some((seqs, answer, tx, room)) = later {
                let room = room
                    .acquire_owned()
                    .await
                    .map_err(|_| EngineError::Stopped)?;
                tx.send(Job::Ack(seqs, answer, room))
                    .map_err(|_| EngineError::Stopped)?;
            }
            rx.await.map_err(|_| EngineError::Stopped)?
        }
    }
}
