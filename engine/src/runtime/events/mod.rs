//! The application's event queue: bounded, with the store as its overflow.
//!
//! Every event the application must acknowledge is in the store's inbox before it is queued
//! (see [`super::chat`]). So the queue never has to hold them all: when it is full, a stored
//! event is left in the inbox and the receiver reads it from there once it has drained what
//! was queued — in pages of the queue's capacity. Opening a database with a large
//! unacknowledged inbox works the same way: the receiver starts "behind" at sequence 0.
//!
//! Events that are not stored (file progress, typing, read receipts, send confirmations,
//! chat updates, errors) are dropped while the queue is full or behind, and counted
//! ([`Events::dropped`]); each of them is either repeated or readable on demand (a chat's
//! state with `Engine::status`).
//!
//! On a shared database a node hands out only its own accounts' events (one it lost or gave
//! up stops at once: its stored events stay for the node that holds it), and an account it
//! takes over brings the events stored for it before ([`EventSink::adopt`]): they are read
//! from the inbox, page by page, before the account's new ones.
//!
//! Memory is bounded by the capacity: the channel holds at most `capacity` events, a page at
//! most `capacity`, and the de-duplication window `4 × capacity` sequence numbers; besides,
//! one entry per account taken over.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use tokio::sync::mpsc;

use super::EngineEvent;
use crate::store::Store;
use catch_up::{CatchUp, Reading};

mod catch_up;

/// Where stored events stand between the engine and the receiver.
#[derive(Debug, Default)]
struct Lag {
    /// The lowest sequence number the channel could not take: from it on, stored events are
    /// read from the inbox until the receiver catches up.
    behind_from: Option<u64>,
    /// The next inbox sequence number the receiver reads while behind.
    cursor: u64,
    /// Stored events below the cursor that reached the queue only after the receiver had read
    /// past their position (sequence numbers are taken before the write that stores them, so
    /// two chats' writes can land out of order): handed out before the next page.
    late: VecDeque<EngineEvent>,
    /// Events of this run handed out from an inbox page before the engine delivered them
    /// (a chat's write lands, the page reads it, then the chat delivers): their delivery is
    /// dropped when it comes. Entries live only between those two moments.
    paged: HashSet<u64>,
    /// Events stored before this run have sequence numbers below this; they are never
    /// delivered, so pages do not record them in `paged`.
    run_floor: u64,
    /// Accounts taken over on a shared database, each with the bound below which its events
    /// were stored before: those are read by `catching`, never by the pages above.
    adopted: HashMap<u64, u64>,
    /// Accounts whose earlier events are still to be read.
    catching: VecDeque<Catch>,
    /// Numbers the adoptions (a page read without the lock is kept only if its adoption is
    /// still the one being read).
    adoptions: u64,
}

/// Notices kept while the queue is full, at most (one per account loss; beyond it the oldest
/// go, counted as dropped).
const MAX_NOTICES: usize = 4096;

/// An account's earlier events being read: from `cursor` up to (not including) `below`.
#[derive(Debug)]
struct Catch {
    account: u64,
    cursor: u64,
    below: u64,
    adoption: u64,
}

#[derive(Debug, Default)]
struct Shared {
    lag: Mutex<Lag>,
    dropped: AtomicU64,
    /// The receiver's task while it waits on something other than the channel (a catch-up
    /// read, or the pause after a failed one): an `AccountLost` notice wakes it.
    notice_waker: Mutex<Option<std::task::Waker>>,
    /// Notices that must not be dropped when the queue is full (`AccountLost`), handed out
    /// first; at most [`MAX_NOTICES`]. Apart from `lag`, whose lock an inbox page read holds:
    /// a notice never waits for the database.
    notices: Mutex<VecDeque<EngineEvent>>,
}

/// What the channel carries: an event, or a nudge to look at the inbox (the receiver may be
/// waiting on the channel when there is something to read there).
type Item = Option<EngineEvent>;

/// The engine's side of the queue (cloned into every actor that delivers).
#[derive(Debug, Clone)]
pub(crate) struct EventSink {
    tx: mpsc::Sender<Item>,
    shared: Arc<Shared>,
}

impl EventSink {
    /// Queues `event`. A stored event (with a `seq`) that does not fit stays in the inbox for
    /// the receiver to read; any other event that does not fit is dropped and counted.
    pub(crate) fn deliver(&self, event: EngineEvent) {
        if matches!(event.kind, super::EventKind::AccountLost) {
            self.notice(event);
            return;
        }
        let Ok(mut lag) = self.shared.lag.lock() else {
            return;
        };
        if let Some(s) = event.seq {
            if lag.paged.remove(&s) {
                return; // the receiver read it from the inbox already
            }
        }
        if lag.behind_from.is_some() {
            match event.seq {
                Some(s) if s < lag.cursor => lag.late.push_back(event),
                Some(_) => {}
                None => {
                    self.shared.dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
            return;
        }
        let seq = event.seq;
        match self.tx.try_send(Some(event)) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => match seq {
                Some(s) => {
                    lag.behind_from = Some(s);
                    lag.cursor = s;
                }
                None => {
                    self.shared.dropped.fetch_add(1, Ordering::Relaxed);
                }
            },
            // The receiver is gone: stored events come again at the next open.
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }

    /// An `AccountLost` notice: never dropped, and handed out ahead of everything (the
    /// account's other events are no longer this node's to hand out), even while a catch-up
    /// read waits or has failed, or an inbox page is being read: an account lost to a
    /// database outage must not wait for that database. Its earlier events, if still being
    /// caught up, are left for the node that holds it (unless a page read holds the queue's
    /// lock: then the catching-up goes on, and `Events::held` hides them).
    fn notice(&self, event: EngineEvent) {
        if let Ok(mut lag) = self.shared.lag.try_lock() {
            lag.catching.retain(|c| c.account != event.account);
        }
        if let Ok(mut notices) = self.shared.notices.lock() {
            notices.push_back(event);
            if notices.len() > MAX_NOTICES {
                notices.pop_front();
                self.shared.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
        if let Some(w) = self
            .shared
            .notice_waker
            .lock()
            .ok()
            .and_then(|mut w| w.take())
        {
            w.wake();
        }
        // A full channel needs no nudge: the receiver is not waiting on it.
        let _ = self.tx.try_send(None);
    }

    /// `account` is about to be taken over on a shared database: until [`EventSink::adopt`]
    /// gives its bound, none of its stored events is read by the pages (they are the
    /// adoption's to read).
    pub(crate) fn adopting(&self, account: u64) {
        if let Ok(mut lag) = self.shared.lag.lock() {
            lag.adopted.insert(account, u64::MAX);
        }
    }

    /// The take-over of `account` failed: its events are no longer set aside.
    pub(crate) fn adopt_abandoned(&self, account: u64) {
        if let Ok(mut lag) = self.shared.lag.lock() {
            if lag.adopted.get(&account) == Some(&u64::MAX) {
                lag.adopted.remove(&account);
            }
        }
    }

    /// `account` was taken over on a shared database: its events numbered below `below`
    /// (stored before, see `Store::adopt_inbox`) are read from the inbox and handed out
    /// before its new ones. Taking an account over again reads them again from the start.
    pub(crate) fn adopt(&self, account: u64, below: u64) {
        let Ok(mut lag) = self.shared.lag.lock() else {
            return;
        };
        lag.adopted.insert(account, below);
        lag.catching.retain(|c| c.account != account);
        lag.adoptions += 1;
        let adoption = lag.adoptions;
        lag.catching.push_back(Catch {
            account,
            cursor: 0,
            below,
            adoption,
        });
        drop(lag);
        // A full channel needs no nudge: the receiver is not waiting.
        let _ = self.tx.try_send(None);
    }
}

/// The stream of application events: unacknowledged ones from before a restart first, then
/// new ones as the engine stores them. Bounded: at most the configured capacity waits in
/// memory; stored events that do not fit are read back from the inbox, page by page.
#[derive(Debug)]
pub struct Events {
    rx: mpsc::Receiver<Item>,
    shared: Arc<Shared>,
    store: Weak<Store>,
    capacity: usize,
    /// A page read from the inbox, not handed out yet.
    page: VecDeque<EngineEvent>,
    /// Sequence numbers handed out from the channel lately: a page skips them (an event
    /// stored before the one that overflowed may have been queued after it).
    recent: VecDeque<u64>,
    /// The same numbers, for lookups while a page is read.
    recent_set: HashSet<u64>,
    /// A taken-over account's earlier events could not be read: nothing newer is handed out
    /// before this moment, when the read is tried again (its new events wait in the channel,
    /// or in the inbox once the channel is full, so none overtakes the earlier ones).
    stalled_until: Option<std::time::Instant>,
    /// The task to wake when a stall ends (set while a thread waits to wake it).
    retry_waker: Arc<Mutex<Option<std::task::Waker>>>,
    /// A page of a taken-over account's earlier events being read off the receiver's thread
    /// (nothing newer is handed out meanwhile).
    reading: Option<Reading>,
}

/// Creates a queue of `capacity` events that starts behind at sequence 0 (it reads the
/// unacknowledged inbox first).
pub(crate) fn queue(store: &Arc<Store>, capacity: usize) -> (EventSink, Events) {
    let capacity = capacity.max(1);
    let (tx, rx) = mpsc::channel(capacity);
    let shared = Arc::new(Shared {
        lag: Mutex::new(Lag {
            behind_from: Some(0),
            cursor: 0,
            late: VecDeque::new(),
            paged: HashSet::new(),
            run_floor: store.inbox_seq_floor(),
            adopted: HashMap::new(),
            catching: VecDeque::new(),
            adoptions: 0,
        }),
        dropped: AtomicU64::new(0),
        notice_waker: Mutex::default(),
        notices: Mutex::default(),
    });
    (
        EventSink {
            tx,
            shared: shared.clone(),
        },
        Events {
            rx,
            shared,
            store: Arc::downgrade(store),
            capacity,
            page: VecDeque::new(),
            recent: VecDeque::new(),
            recent_set: HashSet::new(),
            stalled_until: None,
            retry_waker: Arc::default(),
            reading: None,
        },
    )
}

impl Events {
    /// The next event; `None` once the engine has stopped and everything queued was read.
    pub async fn recv(&mut self) -> Option<EngineEvent> {
        std::future::poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// Polls for the next event (what [`Events::recv`] awaits): `Ready(None)` once the engine
    /// has stopped and everything queued was read.
    pub fn poll_recv(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<EngineEvent>> {
        loop {
            if let Some(e) = self.ready() {
                return std::task::Poll::Ready(Some(e));
            }
            if let Some(r) = &self.reading {
                self.wake_on_notice(cx.waker());
                if r.wake_when_read(cx.waker()) {
                    return std::task::Poll::Pending;
                }
                continue; // read meanwhile
            }
            if let Some(at) = self.stalled_until {
                self.wake_on_notice(cx.waker());
                if self.wake_at(at, cx.waker()) {
                    return std::task::Poll::Pending;
                }
                self.stalled_until = None;
                continue;
            }
            match self.rx.poll_recv(cx) {
                std::task::Poll::Ready(Some(Some(e))) => {
                    self.note(&e);
                    if self.held(&e) {
                        return std::task::Poll::Ready(Some(e));
                    }
                }
                // A nudge: look again.
                std::task::Poll::Ready(Some(None)) => {}
                std::task::Poll::Ready(None) => return std::task::Poll::Ready(None),
                std::task::Poll::Pending => return std::task::Poll::Pending,
            }
        }
    }

    /// The next event if one is ready now.
    ///
    /// # Errors
    /// [`mpsc::error::TryRecvError::Empty`] when none is ready,
    /// [`mpsc::error::TryRecvError::Disconnected`] once the engine has stopped.
    pub fn try_recv(&mut self) -> Result<EngineEvent, mpsc::error::TryRecvError> {
        loop {
            if let Some(e) = self.ready() {
                return Ok(e);
            }
            if self.stalled_until.is_some() || self.reading.is_some() {
                return Err(mpsc::error::TryRecvError::Empty);
            }
            if let Some(e) = self.rx.try_recv()? {
                self.note(&e);
                if self.held(&e) {
                    return Ok(e);
                }
            }
        }
    }

    /// Events that were not stored and were dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// An event available without waiting: from the current page, an account taken over,
    /// the channel, or the next inbox page when the queue is behind.
    fn ready(&mut self) -> Option<EngineEvent> {
        loop {
            if let Some(e) = self.page.pop_front() {
                if self.held(&e) {
                    return Some(e);
                }
                continue;
            }
            if let Some(notice) = self
                .shared
                .notices
                .lock()
                .ok()
                .and_then(|mut n| n.pop_front())
            {
                return Some(notice);
            }
            if let Some(at) = self.stalled_until {
                if std::time::Instant::now() < at {
                    return None;
                }
                self.stalled_until = None;
            }
            match self.catch_up() {
                CatchUp::Page => continue,
                CatchUp::Nothing => {}
                CatchUp::Reading => return None,
                CatchUp::Failed => {
                    self.stalled_until = Some(std::time::Instant::now() + catch_up::RETRY);
                    return None;
                }
            }
            match self.rx.try_recv() {
                Ok(Some(e)) => {
                    self.note(&e);
                    if self.held(&e) {
                        return Some(e);
                    }
                    continue;
                }
                Ok(None) => continue,
                Err(mpsc::error::TryRecvError::Empty | mpsc::error::TryRecvError::Disconnected) => {
                }
            }
            // Drained: catch up from the inbox if behind. The lock keeps the engine from
            // queueing while the page is read, so an empty page means caught up.
            let store = self.store.upgrade()?;
            let Ok(mut lag) = self.shared.lag.lock() else {
                return None;
            };
            lag.behind_from?;
            if !lag.late.is_empty() {
                self.page = std::mem::take(&mut lag.late);
                continue;
            }
            let from = lag.cursor;
            let page = match store.inbox_page(from, self.capacity) {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(error = %e, "reading the inbox failed");
                    return None;
                }
            };
            if page.is_empty() {
                lag.behind_from = None;
                return None;
            }
            for (seq, account, chat, event) in page {
                lag.cursor = seq + 1;
                let earlier = lag.adopted.get(&account).is_some_and(|below| seq < *below);
                if earlier || self.recent_set.contains(&seq) {
                    continue;
                }
                if seq >= lag.run_floor {
                    lag.paged.insert(seq);
                }
                self.page.push_back(EngineEvent {
                    seq: Some(seq),
                    account,
                    chat,
                    kind: super::EventKind::App(event),
                });
            }
        }
    }

    /// Whether `e`'s account is this node's: on a shared database, the events of an account
    /// it lost (or gave up) are not handed out from then on — the stored ones stay in the
    /// inbox for the node that holds it.
    fn held(&self, e: &EngineEvent) -> bool {
        matches!(e.kind, super::EventKind::AccountLost)
            || self.store.upgrade().is_none_or(|s| s.holds(e.account))
    }

    fn note(&mut self, e: &EngineEvent) {
        if let Some(seq) = e.seq {
            if self.recent.len() >= 4 * self.capacity {
                if let Some(old) = self.recent.pop_front() {
                    self.recent_set.remove(&old);
                }
            }
            self.recent.push_back(seq);
            self.recent_set.insert(seq);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::protocol::chat::{AppEvent, Persist};
    use crate::runtime::EventKind;
    use crate::store::{ChatWrite, StoreOptions};

    /// Stores one event for chat 1 the way a chat does; returns its sequence number.
    pub(super) fn store_event(store: &Store, layer: i32) -> u64 {
        let (_, seqs) = store
            .write_chat(&ChatWrite {
                account: 1,
                handle: 1,
                chat_id: 10,
                state: b"state",
                persist: &[Persist::default()],
                events: &[AppEvent::PeerLayer(layer)],
                qts: None,
                forget: &[],
            })
            .unwrap();
        seqs[0]
    }

    pub(super) fn event(seq: u64, layer: i32) -> EngineEvent {
        EngineEvent {
            seq: Some(seq),
            account: 1,
            chat: 1,
            kind: EventKind::App(AppEvent::PeerLayer(layer)),
        }
    }

    /// An `AccountLost` notice is kept when the queue is full (other unstored events are
    /// dropped then), and handed out.
    #[test]
    fn an_account_lost_notice_is_never_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
        let (sink, mut events) = queue(&store, 1);
        assert!(events.try_recv().is_err()); // caught up with the (empty) inbox
        let typing = |chat| EngineEvent {
            seq: None,
            account: 1,
            chat,
            kind: EventKind::Typing,
        };
        sink.deliver(typing(1)); // fills the queue
        sink.deliver(typing(2)); // dropped
        sink.deliver(EngineEvent {
            seq: None,
            account: 1,
            chat: 0,
            kind: EventKind::AccountLost,
        });
        assert_eq!(events.dropped(), 1);
        let got: Vec<_> = std::iter::from_fn(|| events.try_recv().ok())
            .map(|e| e.kind)
            .collect();
        assert!(
            matches!(got[..], [EventKind::AccountLost, EventKind::Typing]),
            "{got:?}"
        );
    }

    /// A chat's write lands, the receiver (catching up) reads it from the inbox, and only
    /// then does the chat deliver it: the receiver gets it once. (A crash test saw it twice.)
    #[test]
    fn an_event_read_from_the_inbox_before_its_delivery_comes_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
        let (sink, mut events) = queue(&store, 4);
        let seq = store_event(&store, 73);
        // Behind from the start: the receiver pages the inbox and finds it.
        let got = events.try_recv().unwrap();
        assert_eq!(got.seq, Some(seq));
        // Caught up: the next read finds nothing and leaves the inbox mode.
        assert!(events.try_recv().is_err());
        // The chat now delivers what it stored.
        sink.deliver(event(seq, 73));
        assert!(events.try_recv().is_err(), "delivered twice");
        // Later events still come through the queue.
        let next = store_event(&store, 100);
        sink.deliver(event(next, 100));
        assert_eq!(events.try_recv().unwrap().seq, Some(next));
    }
}
