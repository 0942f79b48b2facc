//! Catching up an account taken over on a shared database: its events stored before (by the
//! node that held it) are read from the inbox, page by page, and handed out before its new
//! ones. Each page is read on a thread of its own, never on the receiver's: the receiver may
//! be an application's only executor thread, and during a database outage a read waits up to
//! the request timeout. While a page is read, or after a read failed (until [`RETRY`] has
//! passed), nothing newer is handed out — except an `AccountLost` notice, which wakes the
//! receiver at once (an account lost to a database outage must not wait for that database).

use std::sync::{Arc, Mutex};
use std::task::Waker;

use super::{EngineEvent, Events};
use crate::store::{InboxEvent, StoreError};

/// How long the queue waits before it reads a taken-over account's earlier events again
/// after a failed read.
pub(super) const RETRY: std::time::Duration = std::time::Duration::from_millis(500);

/// What [`Events::catch_up`] did.
pub(super) enum CatchUp {
    /// Read a page into `page`.
    Page,
    /// Nothing to catch up.
    Nothing,
    /// A page is being read.
    Reading,
    /// The read failed: try again after [`RETRY`].
    Failed,
}

/// A page being read on its own thread: its answer, and the task to wake when it comes.
#[derive(Debug)]
pub(super) struct Reading {
    adoption: u64,
    slot: Arc<Mutex<Slot>>,
}

type Answer = Result<Vec<InboxEvent>, StoreError>;

#[derive(Debug, Default)]
struct Slot {
    answer: Option<Answer>,
    waker: Option<Waker>,
}

impl Reading {
    /// Arranges for `waker` to be woken when the answer comes; false if it came already.
    pub(super) fn wake_when_read(&self, waker: &Waker) -> bool {
        let Ok(mut slot) = self.slot.lock() else {
            return false;
        };
        if slot.answer.is_some() {
            return false;
        }
        slot.waker = Some(waker.clone());
        true
    }

    fn answer(&self) -> Option<Answer> {
        match self.slot.lock() {
            Ok(mut slot) => slot.answer.take(),
            Err(_) => Some(Err(StoreError::Remote("the read's answer was lost".into()))),
        }
    }
}

impl Events {
    /// Moves the catching-up on: takes the answer of the page being read (kept only if its
    /// adoption is still the one being read), or starts reading the next page.
    pub(super) fn catch_up(&mut self) -> CatchUp {
        let Some(store) = self.store.upgrade() else {
            return CatchUp::Nothing;
        };
        loop {
            if let Some(r) = &self.reading {
                let Some(answer) = r.answer() else {
                    return CatchUp::Reading;
                };
                let adoption = r.adoption;
                self.reading = None;
                let page = match answer {
                    Ok(p) => p,
                    Err(e) => {
                        tracing::warn!(error = %e, "reading a taken-over account's inbox failed; trying again");
                        return CatchUp::Failed;
                    }
                };
                let Ok(mut lag) = self.shared.lag.lock() else {
                    return CatchUp::Nothing;
                };
                let Some(c) = lag.catching.front_mut().filter(|c| c.adoption == adoption) else {
                    continue; // adopted again, or lost, meanwhile
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
                            kind: super::super::EventKind::App(event),
                        }),
                );
                return CatchUp::Page;
            }
            let Some((account, cursor, below, adoption)) =
                self.shared.lag.lock().ok().and_then(|lag| {
                    lag.catching
                        .front()
                        .map(|c| (c.account, c.cursor, c.below, c.adoption))
                })
            else {
                return CatchUp::Nothing;
            };
            let slot = Arc::new(Mutex::new(Slot::default()));
            let (answer_to, limit) = (slot.clone(), self.capacity);
            let spawned = std::thread::Builder::new()
                .name("secretchat-catch-up".into())
                .spawn(move || {
                    let answer = store.inbox_page_of(account, cursor, below, limit);
                    let waker = answer_to.lock().ok().and_then(|mut s| {
                        s.answer = Some(answer);
                        s.waker.take()
                    });
                    if let Some(w) = waker {
                        w.wake();
                    }
                });
            if spawned.is_err() {
                tracing::warn!("could not start a catch-up read; trying again");
                return CatchUp::Failed;
            }
            self.reading = Some(Reading { adoption, slot });
            return CatchUp::Reading;
        }
    }

    /// Has an `AccountLost` notice wake `waker` (the receiver waits on something other than
    /// the channel).
    pub(super) fn wake_on_notice(&self, waker: &Waker) {
        if let Ok(mut w) = self.shared.notice_waker.lock() {
            *w = Some(waker.clone());
        }
    }

    /// Wakes `waker` (the latest one given) at `at`: on a thread, not with a timer of the
    /// caller's runtime, which may have none; one thread per stall. False if none could be
    /// started.
    pub(super) fn wake_at(&mut self, at: std::time::Instant, waker: &std::task::Waker) -> bool {
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
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::atomic::Ordering;

    use super::super::tests::{event, store_event};
    use super::super::{Store, queue};
    use super::*;
    use crate::runtime::EventKind;
    use crate::store::StoreOptions;

    /// A shared-looking database over RocksDB whose per-account reads fail on demand.
    #[derive(Debug)]
    struct Flaky {
        inner: Arc<crate::store::rocks::Rocks>,
        fail: std::sync::atomic::AtomicBool,
        /// Per-account reads wait while this is set (a database that does not answer).
        hang: std::sync::atomic::AtomicBool,
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
            while self.hang.load(Ordering::SeqCst) {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
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

    /// A queue of 8 over a [`Flaky`] store in `dir`.
    fn flaky_queue(
        dir: &std::path::Path,
    ) -> (Arc<Flaky>, Arc<Store>, super::super::EventSink, Events) {
        let rocks = crate::store::rocks::Rocks::open(dir, Default::default()).unwrap();
        let flaky = Arc::new(Flaky {
            inner: rocks,
            fail: std::sync::atomic::AtomicBool::new(false),
            hang: std::sync::atomic::AtomicBool::new(false),
        });
        let store = Store::with_backend(flaky.clone(), StoreOptions::default()).unwrap();
        let (sink, events) = queue(&store, 8);
        (flaky, store, sink, events)
    }

    /// An account taken over whose earlier events cannot be read yet: its new events wait
    /// (none is handed out before the earlier ones), and once the read succeeds everything
    /// comes in order. (On the old code the new event came first.)
    #[test]
    fn a_failed_catch_up_read_lets_nothing_overtake_it() {
        let dir = tempfile::tempdir().unwrap();
        let (flaky, store, sink, mut events) = flaky_queue(dir.path());
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

    /// A database that does not answer the read of a taken-over account's earlier events
    /// holds neither the receiver's thread nor the notice that the account is lost: the
    /// notice comes at once, and the events the read was for are left to the account's next
    /// holder. (On the old code the receiver's thread waited inside the read.)
    #[test]
    fn an_unanswered_catch_up_read_holds_back_neither_the_receiver_nor_the_account_loss() {
        let dir = tempfile::tempdir().unwrap();
        let (flaky, store, sink, mut events) = flaky_queue(dir.path());
        assert!(events.try_recv().is_err());
        sink.adopting(1);
        store_event(&store, 1);
        flaky.hang.store(true, Ordering::SeqCst);
        sink.adopt(1, store.inbox_seq_floor());
        // The receiver, on a thread of its own: asks while the read hangs (and must not be
        // held), then waits in `recv`.
        let (tx, rx) = std::sync::mpsc::channel();
        let receiver = std::thread::spawn(move || {
            let _ = tx.send(events.try_recv().map(|e| e.kind).map_err(|_| ()));
            let rt = tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap();
            let got = rt.block_on(events.recv());
            let _ = tx.send(got.map(|e| e.kind).ok_or(()));
            events
        });
        let wait = std::time::Duration::from_secs(5);
        let asked = rx.recv_timeout(wait);
        if asked.is_err() {
            flaky.hang.store(false, Ordering::SeqCst);
        }
        assert_eq!(asked, Ok(Err(())), "try_recv waited for the database");
        std::thread::sleep(std::time::Duration::from_millis(100));
        sink.deliver(EngineEvent {
            seq: None,
            account: 1,
            chat: 0,
            kind: EventKind::AccountLost,
        });
        let got = rx.recv_timeout(wait);
        flaky.hang.store(false, Ordering::SeqCst);
        assert!(
            matches!(got, Ok(Ok(EventKind::AccountLost))),
            "the loss waited for the database: {got:?}"
        );
        // The hung read's page, once answered, is the next holder's: not handed out here.
        let mut events = receiver.join().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(events.try_recv().is_err(), "a lost account's earlier event");
        assert!(events.try_recv().is_err(), "a lost account's earlier event");
    }

    /// An inbox page read holds the queue's lock while the database does not answer: an
    /// `AccountLost` notice given meanwhile (by the engine's request loop) does not wait for
    /// it, and is handed out once the receiver is back. (On the old code the notice waited on
    /// the lock, holding up the request loop for as long as the read.)
    #[test]
    fn an_account_loss_does_not_wait_for_an_inbox_page_read() {
        let dir = tempfile::tempdir().unwrap();
        let (flaky, _store, sink, mut events) = flaky_queue(dir.path());
        // The queue starts behind (it reads the inbox from the start): that read hangs.
        flaky.hang.store(true, Ordering::SeqCst);
        let receiver = std::thread::spawn(move || {
            let got = events.try_recv().map(|e| e.kind);
            (events, got)
        });
        std::thread::sleep(std::time::Duration::from_millis(100));
        let (tx, rx) = std::sync::mpsc::channel();
        let engine_side = sink.clone();
        std::thread::spawn(move || {
            engine_side.deliver(EngineEvent {
                seq: None,
                account: 1,
                chat: 0,
                kind: EventKind::AccountLost,
            });
            let _ = tx.send(());
        });
        let delivered = rx.recv_timeout(std::time::Duration::from_secs(5));
        flaky.hang.store(false, Ordering::SeqCst);
        assert!(delivered.is_ok(), "the notice waited for the database");
        let (mut events, got) = receiver.join().unwrap();
        let got = got.or_else(|_| events.try_recv().map(|e| e.kind));
        assert!(matches!(got, Ok(EventKind::AccountLost)), "{got:?}");
    }
}
