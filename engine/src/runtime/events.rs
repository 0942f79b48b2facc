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
    /// Notices that must not be dropped when the queue is full (`AccountLost`), handed out
    /// first; at most [`MAX_NOTICES`].
    notices: VecDeque<EngineEvent>,
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
        let Ok(mut lag) = self.shared.lag.lock() else {
            return;
        };
        if let Some(s) = event.seq {
            if lag.paged.remove(&s) {
                return; // the receiver read it from the inbox already
            }
        }
        if matches!(event.kind, super::EventKind::AccountLost) {
            // Never dropped: queued when there is room, else kept for the receiver.
            if lag.behind_from.is_some() || !lag.notices.is_empty() {
                lag.notices.push_back(event);
            } else if let Err(mpsc::error::TrySendError::Full(Some(e))) =
                self.tx.try_send(Some(event))
            {
                lag.notices.push_back(e);
            }
            if lag.notices.len() > MAX_NOTICES {
                lag.notices.pop_front();
                self.shared.dropped.fetch_add(1, Ordering::Relaxed);
            }
            return;
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
}

/// How long the queue waits before it reads a taken-over account's earlier events again
/// after a failed read.
const CATCH_UP_RETRY: std::time::Duration = std::time::Duration::from_millis(500);

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
            notices: VecDeque::new(),
        }),
        dropped: AtomicU64::new(0),
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
            if let Some(at) = self.stalled_until {
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
            if self.stalled_until.is_some() {
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
                .lag
                .lock()
                .ok()
                .and_then(|mut lag| lag.notices.pop_front())
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
                Ok(true) => continue,
                Ok(false) => {}
                Err(()) => {
                    self.stalled_until = Some(std::time::Instant::now() + CATCH_UP_RETRY);
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

    /// Wakes `waker` (the latest one given) at `at`: on a thread, not with a timer of the
    /// caller's runtime, which may have none; one thread per stall. False if none could be
    /// started.
    fn wake_at(&mut self, at: std::time::Instant, waker: &std::task::Waker) -> bool {
        let Ok(mut slot) = self.retry_waker.lock() else {
            return false;
        };
        let armed = slot.is_some();
        *slot = Some(waker.clone());
        drop(slot);
        if armed {
            return true;
        }
        let retry_waker = self.retry_waker.clone();
        let spawned = std::thread::Builder::new()
            .name("secretchat-events-retry".into())
            .spawn(move || {
                std::thread::sleep(at.saturating_duration_since(std::time::Instant::now()));
                if let Some(w) = retry_waker.lock().ok().and_then(|mut w| w.take()) {
                    w.wake();
                }
            });
        if spawned.is_err() {
            if let Ok(mut slot) = self.retry_waker.lock() {
                *slot = None;
            }
            return false;
        }
        true
    }

    /// Whether `e`'s account is this node's: on a shared database, the events of an account
    /// it lost (or gave up) are not handed out from then on — the stored ones stay in the
    /// inbox for the node that holds it.
    fn held(&self, e: &EngineEvent) -> bool {
        matches!(e.kind, super::EventKind::AccountLost)
            || self.store.upgrade().is_none_or(|s| s.holds(e.account))
    }

    /// Reads the next page of an account taken over into `page`; whether it read any. The
    /// read runs without the lock (a database round trip must not hold up every chat that
    /// delivers meanwhile); its page is kept only if that adoption is still the one read.
    /// `Err` when the read failed.
    fn catch_up(&mut self) -> Result<bool, ()> {
        let Some(store) = self.store.upgrade() else {
            return Ok(false);
        };
        loop {
            let Some((account, cursor, below, adoption)) =
                self.shared.lag.lock().ok().and_then(|lag| {
                    lag.catching
                        .front()
                        .map(|c| (c.account, c.cursor, c.below, c.adoption))
                })
            else {
                return Ok(false);
            };
            let page = match store.inbox_page_of(account, cursor, below, self.capacity) {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(error = %e, "reading a taken-over account's inbox failed; trying again");
                    return Err(());
                }
            };
            let Ok(mut lag) = self.shared.lag.lock() else {
                return Ok(false);
            };
            let Some(c) = lag.catching.front_mut().filter(|c| c.adoption == adoption) else {
                continue; // adopted again meanwhile: read the new adoption
            };
            let Some(last) = page.last() else {
                lag.catching.pop_front();
                continue;
            };
            c.cursor = last.0 + 1;
            drop(lag);
            self.page.extend(
                page.into_iter()
                    .map(|(seq, account, chat, event)| EngineEvent {
                        seq: Some(seq),
                        account,
                        chat,
                        kind: super::EventKind::App(event),
                    }),
            );
            return Ok(true);
        }
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
    fn store_event(store: &Store, layer: i32) -> u64 {
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

    fn event(seq: u64, layer: i32) -> EngineEvent {
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

    /// A shared-looking database over RocksDB whose per-account reads fail on demand.
    #[derive(Debug)]
    struct Flaky {
        inner: Arc<crate::store::rocks::Rocks>,
        fail: std::sync::atomic::AtomicBool,
    }

    impl crate::store::backend::Backend for Flaky {
        fn get(
            &self,
            family: crate::store::backend::Family,
            key: &[u8],
        ) -> Result<Option<Vec<u8>>, crate::store::StoreError> {
            self.inner.get(family, key)
        }
        fn range(
            &self,
            family: crate::store::backend::Family,
            from: &[u8],
            to: Option<&[u8]>,
            limit: usize,
        ) -> Result<Vec<crate::store::KeyValue>, crate::store::StoreError> {
            self.inner.range(family, from, to, limit)
        }
        fn range_of(
            &self,
            _: &[u64],
            family: crate::store::backend::Family,
            from: &[u8],
            to: Option<&[u8]>,
            limit: usize,
        ) -> Result<Vec<crate::store::KeyValue>, crate::store::StoreError> {
            if self.fail.load(Ordering::SeqCst) {
                return Err(crate::store::StoreError::Remote("cut off".into()));
            }
            self.inner.range(family, from, to, limit)
        }
        fn held_accounts(&self) -> Option<Vec<u64>> {
            Some(vec![1])
        }
        fn last_key(
            &self,
            family: crate::store::backend::Family,
        ) -> Result<Option<Vec<u8>>, crate::store::StoreError> {
            self.inner.last_key(family)
        }
        fn write(
            &self,
            batch: crate::store::backend::Batch,
            mode: crate::store::backend::WriteMode,
        ) -> Result<crate::store::backend::Ticket, crate::store::StoreError> {
            self.inner.write(batch, mode)
        }
        fn synced(
            &self,
            ticket: crate::store::backend::Ticket,
        ) -> crate::store::backend::Synced<'_> {
            self.inner.synced(ticket)
        }
        fn flush(&self) -> Result<(), crate::store::StoreError> {
            self.inner.flush()
        }
        fn erase(
            &self,
            family: crate::store::backend::Family,
            ranges: Option<&[crate::store::backend::KeyRange]>,
        ) -> Result<(), crate::store::StoreError> {
            self.inner.erase(family, ranges)
        }
        fn disk_size(&self) -> u64 {
            self.inner.disk_size()
        }
    }

    /// An account taken over whose earlier events cannot be read yet: its new events wait
    /// (none is handed out before the earlier ones), and once the read succeeds everything
    /// comes in order. (On the old code the new event came first.)
    #[test]
    fn a_failed_catch_up_read_lets_nothing_overtake_it() {
        let dir = tempfile::tempdir().unwrap();
        let rocks = crate::store::rocks::Rocks::open(dir.path(), Default::default()).unwrap();
        let flaky = Arc::new(Flaky {
            inner: rocks,
            fail: std::sync::atomic::AtomicBool::new(false),
        });
        let store = Store::with_backend(flaky.clone(), StoreOptions::default()).unwrap();
        let (sink, mut events) = queue(&store, 8);
        assert!(events.try_recv().is_err()); // caught up with the (empty) inbox
        // Account 1 is being taken over; two events were stored for it before.
        sink.adopting(1);
        let earlier = [store_event(&store, 1), store_event(&store, 2)];
        let below = store.inbox_seq_floor();
        sink.adopt(1, below);
        // The read of the earlier events fails, and a new event arrives meanwhile.
        flaky.fail.store(true, Ordering::SeqCst);
        let new = store_event(&store, 3);
        sink.deliver(event(new, 3));
        assert!(
            events.try_recv().is_err(),
            "an event was handed out before the account's earlier ones"
        );
        flaky.fail.store(false, Ordering::SeqCst);
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let got: Vec<_> = rt.block_on(async {
            let mut got = Vec::new();
            for _ in 0..3 {
                got.push(events.recv().await.unwrap().seq.unwrap());
            }
            got
        });
        assert_eq!(got, [earlier[0], earlier[1], new]);
    }
}
