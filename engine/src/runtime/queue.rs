//! [`QtsQueue`]: the account's position in its qts queue (the QueueAcker role, without I/O).
//!
//! The server may be acknowledged (`messages.receivedQueue(max_qts)`) only up to the
//! **watermark**: the highest qts such that it and every qts before it is durably stored.
//! Live updates carry their qts; `updates.getDifference` batches do not (a batch says only
//! "everything up to `state.qts`"), so they are counted as a whole.
//!
//! Two rules keep recovery fast under load (docs/engine.md, "The qts queue"):
//! - Messages of a batch that arrived live — stored, or still on their way to their chat — are
//!   not routed again: the live messages are remembered by (chat id, random id) until the
//!   watermark passes them (a fixed-size memory forgot them under a backlog of tens of seconds,
//!   and every forgotten one was decrypted again).
//! - Once a batch's own messages are stored, every qts up to its `state.qts` is stored except
//!   those still in flight: the **floor**. The watermark advances over the floor, stopping at
//!   in-flight qts. (Before, the batch re-routed the in-flight copies and waited for them: a
//!   dropped update was recovered only after the whole backlog ahead of it.)

use std::collections::{BTreeSet, HashMap, VecDeque};

/// Live messages remembered at most (beyond the watermark), bounding memory against a server
/// whose qts never closes a gap; a forgotten one is only routed again (the chat drops the copy).
pub(super) const MAX_RECENT: usize = 256 * 1024;

/// A message's de-duplication key: (chat id, random id).
pub(super) type MessageKey = (i32, i64);

/// What to do with a live update.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Live {
    /// Stored or on its way already.
    Skip,
    /// Route it; `gap` means qts were skipped (fetch the difference soon).
    Route {
        /// An earlier qts is missing.
        gap: bool,
    },
}

/// The account's qts bookkeeping.
#[derive(Debug, Default)]
pub(super) struct QtsQueue {
    /// See the module docs (None until the stored or server position is known).
    watermark: Option<i32>,
    /// The highest qts acknowledged to the server.
    acked: i32,
    /// Stored qts beyond the watermark.
    done: BTreeSet<i32>,
    /// Routed live qts not stored yet.
    in_flight: BTreeSet<i32>,
    /// Every qts at or below this that is not in flight is stored (see the module docs).
    floor: i32,
    /// The watermark at the last difference tick while a qts gap was open.
    gap_mark: Option<i32>,
    /// Outstanding difference batch: messages still to store, its `state.qts`.
    batch: Option<(usize, i32)>,
    /// Routed live qts given up before they were stored (see [`QtsQueue::give_up`]): the
    /// difference is fetched while any is left beyond the watermark.
    given_up: BTreeSet<i32>,
    /// That batch was a slice: there is more to fetch once it is stored.
    more: bool,
    /// Live messages beyond the watermark → qts.
    recent: HashMap<MessageKey, i32>,
    recent_order: VecDeque<(i32, MessageKey)>,
}

impl QtsQueue {
    /// The position is known: `qts` is stored and acknowledged.
    pub(super) fn start(&mut self, qts: i32) {
        self.watermark = Some(qts);
        self.acked = qts;
        self.floor = qts;
    }

    /// The watermark, once known.
    #[cfg(test)]
    pub(super) fn watermark(&self) -> Option<i32> {
        self.watermark
    }

    /// A live `updateNewEncryptedMessage`.
    pub(super) fn live(&mut self, qts: i32, key: MessageKey) -> Live {
        let Some(mark) = self.watermark else {
            return Live::Skip; // not started yet: the difference will bring it
        };
        if qts <= mark || self.done.contains(&qts) || self.in_flight.contains(&qts) {
            return Live::Skip;
        }
        // qts comes from the server: compare without overflow.
        let ahead = self.in_flight.len() + self.given_up.len();
        let gap = i64::from(qts) > i64::from(mark) + 1 + ahead as i64;
        self.given_up.remove(&qts);
        self.in_flight.insert(qts);
        self.remember(key, qts);
        Live::Route { gap }
    }

    fn remember(&mut self, key: MessageKey, qts: i32) {
        if self.recent.insert(key, qts).is_none() {
            self.recent_order.push_back((qts, key));
            if self.recent_order.len() > MAX_RECENT {
                if let Some((_, old)) = self.recent_order.pop_front() {
                    self.recent.remove(&old);
                }
            }
        }
    }

    /// A live message was stored (or could not be delivered: it counts as handled).
    pub(super) fn stored(&mut self, qts: i32) {
        self.in_flight.remove(&qts);
        self.done.insert(qts);
        self.advance();
    }

    /// One message of the outstanding batch was stored.
    pub(super) fn batch_message_stored(&mut self) {
        if let Some((left, upto)) = &mut self.batch {
            *left = left.saturating_sub(1);
            if *left == 0 {
                let upto = *upto;
                self.batch = None;
                self.floor = self.floor.max(upto);
            }
        }
        self.advance();
    }

    /// A live message was given up before it was stored (dropped while too much waited for
    /// the database): it is neither stored nor in flight, so the watermark stops before it,
    /// and the difference is fetched at each check until a batch brings it again. (Still
    /// counted with those in flight when telling a gap: the next message is not one.)
    pub(super) fn give_up(&mut self, qts: i32) {
        if self.in_flight.remove(&qts) {
            self.given_up.insert(qts);
            if self.given_up.len() > MAX_RECENT {
                // Past the bound the newest is forgotten: the older ones keep the fetch due.
                self.given_up.pop_last();
            }
        }
    }

    /// Moves the watermark over stored qts and over the floor (stopping at in-flight qts).
    /// Steps over runs, never one qts at a time across a server-supplied range.
    fn advance(&mut self) {
        let Some(mut mark) = self.watermark else {
            return;
        };
        while let Some(next) = mark.checked_add(1) {
            if self.done.remove(&next) {
                mark = next;
                continue;
            }
            if next <= self.floor && !self.in_flight.contains(&next) {
                // Up to the next in-flight qts (or the floor).
                mark = match self.in_flight.range(next..).next() {
                    Some(&q) if q <= self.floor => q - 1,
                    _ => self.floor,
                };
                continue;
            }
            break;
        }
        // Everything at or below the watermark is done. (A `retain` here scanned the whole
        // set on every message: quadratic while a gap held the watermark back.)
        if self.done.first().is_some_and(|&q| q <= mark) {
            self.done = self.done.split_off(&mark.saturating_add(1));
        }
        if self.given_up.first().is_some_and(|&q| q <= mark) {
            self.given_up = self.given_up.split_off(&mark.saturating_add(1));
        }
        while self.recent_order.front().is_some_and(|&(q, _)| q <= mark) {
            if let Some((_, key)) = self.recent_order.pop_front() {
                self.recent.remove(&key);
            }
        }
        self.watermark = Some(mark);
    }

    /// The periodic check: the qts to fetch the difference from, if it is time. Normally only
    /// when nothing is in flight (what is in flight comes back); but a gap (stored qts beyond
    /// the watermark) that outlived a whole interval without the watermark moving is a lost
    /// update, and only the difference closes it. With nothing in flight and no gap, the fetch
    /// is only a poll for what the stream may have lost silently: made when `idle` says the
    /// (longer) idle interval has passed.
    pub(super) fn due(&mut self, idle: bool) -> Option<i32> {
        let mark = self.watermark?;
        if self.batch.is_some() {
            return None;
        }
        if !self.given_up.is_empty() {
            self.gap_mark = None;
            return Some(mark);
        }
        if self.in_flight.is_empty() && self.done.is_empty() && !idle {
            return None;
        }
        if !self.in_flight.is_empty() {
            let stuck = !self.done.is_empty() && self.gap_mark == Some(mark);
            self.gap_mark = (!self.done.is_empty()).then_some(mark);
            if !stuck {
                return None;
            }
        }
        self.gap_mark = None;
        Some(mark)
    }

    /// A difference answer for a request made at watermark `mark`: returns the messages to
    /// route (those never seen live), each to be reported with
    /// [`QtsQueue::batch_message_stored`]. `more` marks a slice.
    pub(super) fn batch<T>(
        &mut self,
        mark: i32,
        messages: Vec<T>,
        upto: i32,
        more: bool,
        key: impl Fn(&T) -> MessageKey,
    ) -> Vec<T> {
        if messages.is_empty() || self.watermark != Some(mark) || self.batch.is_some() {
            return Vec::new();
        }
        // Seen live and stored or still on its way: not routed again (one that was given up
        // is neither).
        let seen = |q: &i32| *q <= mark || self.done.contains(q) || self.in_flight.contains(q);
        let fresh: Vec<T> = messages
            .into_iter()
            .filter(|m| !self.recent.get(&key(m)).is_some_and(seen))
            .collect();
        self.more = more;
        if fresh.is_empty() {
            self.floor = self.floor.max(upto);
            self.advance();
        } else {
            self.batch = Some((fresh.len(), upto));
        }
        fresh
    }

    /// After a stored slice: the qts to fetch the rest from, once.
    pub(super) fn next_slice(&mut self) -> Option<i32> {
        if self.batch.is_none() && std::mem::take(&mut self.more) {
            self.watermark
        } else {
            None
        }
    }

    /// The qts to acknowledge to the server now (the watermark moved since the last one).
    pub(super) fn to_acknowledge(&self) -> Option<i32> {
        self.watermark.filter(|&m| m > self.acked)
    }

    /// `qts` was stored as the account's position and acknowledged.
    pub(super) fn acknowledged(&mut self, qts: i32) {
        self.acked = self.acked.max(qts);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: i64) -> MessageKey {
        (1, n)
    }

    #[test]
    fn live_messages_advance_the_watermark_in_order() {
        let mut q = QtsQueue::default();
        assert_eq!(q.live(1, key(1)), Live::Skip, "not started");
        q.start(10);
        assert_eq!(q.live(10, key(10)), Live::Skip, "already acknowledged");
        assert_eq!(q.live(11, key(11)), Live::Route { gap: false });
        assert_eq!(q.live(11, key(11)), Live::Skip, "a duplicate");
        assert_eq!(q.live(12, key(12)), Live::Route { gap: false });
        q.stored(12);
        assert_eq!(q.watermark(), Some(10), "11 is not stored yet");
        q.stored(11);
        assert_eq!(q.watermark(), Some(12));
        assert_eq!(q.to_acknowledge(), Some(12));
        q.acknowledged(12);
        assert_eq!(q.to_acknowledge(), None);
    }

    #[test]
    fn a_batch_skips_live_messages_and_its_floor_stops_at_in_flight_ones() {
        let mut q = QtsQueue::default();
        q.start(0);
        // 1 stored, 2 dropped by the server, 3 in flight, 4 stored.
        for n in [1, 3, 4] {
            assert!(matches!(q.live(n, key(n.into())), Live::Route { .. }));
        }
        q.stored(1);
        q.stored(4);
        assert_eq!(q.watermark(), Some(1));
        assert_eq!(
            q.due(false),
            None,
            "first tick: the gap may close by itself"
        );
        assert_eq!(q.due(false), Some(1), "second tick without progress: fetch");
        let fresh = q.batch(1, vec![2i64, 3, 4], 4, false, |&n| key(n));
        assert_eq!(fresh, vec![2], "only the message never seen live");
        q.batch_message_stored();
        assert_eq!(q.watermark(), Some(2), "3 is still in flight");
        q.stored(3);
        assert_eq!(q.watermark(), Some(4));
    }

    #[test]
    fn an_idle_queue_is_polled_only_at_the_idle_interval_but_a_gap_at_once() {
        let mut q = QtsQueue::default();
        q.start(3);
        assert_eq!(
            q.due(false),
            None,
            "nothing missing: no poll before the idle interval"
        );
        assert_eq!(q.due(true), Some(3), "the idle poll");
        // 5 stored, 4 never came (nothing in flight): a gap, fetched without waiting.
        assert!(matches!(q.live(5, key(5)), Live::Route { gap: true }));
        q.stored(5);
        assert_eq!(q.due(false), Some(3));
    }

    #[test]
    fn the_floor_jumps_over_a_huge_range_at_once() {
        let mut q = QtsQueue::default();
        q.start(0);
        assert!(matches!(q.live(5, key(5)), Live::Route { gap: true }));
        let fresh = q.batch(0, vec![1i64], i32::MAX, false, |&n| key(n));
        assert_eq!(fresh.len(), 1);
        q.batch_message_stored();
        assert_eq!(q.watermark(), Some(4), "stops before the in-flight 5");
        q.stored(5);
        assert_eq!(q.watermark(), Some(i32::MAX), "no overflow past the end");
    }

    #[test]
    fn stale_answers_and_slices() {
        let mut q = QtsQueue::default();
        q.start(5);
        assert!(
            q.batch(4, vec![1i64], 9, false, |&n| key(n)).is_empty(),
            "stale"
        );
        let fresh = q.batch(5, vec![6i64, 7], 7, true, |&n| key(n));
        assert_eq!(fresh.len(), 2);
        assert_eq!(q.next_slice(), None, "not stored yet");
        assert_eq!(q.due(true), None, "one batch at a time");
        q.batch_message_stored();
        q.batch_message_stored();
        assert_eq!(q.watermark(), Some(7));
        assert_eq!(q.next_slice(), Some(7));
        assert_eq!(q.next_slice(), None, "once");
    }

    #[test]
    fn a_live_message_given_up_is_fetched_again_and_holds_the_watermark_back() {
        let mut q = QtsQueue::default();
        q.start(0);
        for n in 1..=2 {
            assert!(matches!(q.live(n, key(n.into())), Live::Route { .. }));
        }
        q.stored(1);
        q.give_up(2);
        assert!(
            matches!(q.live(3, key(3)), Live::Route { gap: false }),
            "the given-up 2 is not a gap"
        );
        q.stored(3);
        assert_eq!(q.watermark(), Some(1), "2 is not stored");
        assert_eq!(q.due(false), Some(1), "fetched at the next check");
        let fresh = q.batch(1, vec![2i64, 3], 3, false, |&n| key(n));
        assert_eq!(
            fresh,
            vec![2],
            "the given-up message is routed again, 3 is not"
        );
        assert_eq!(q.due(false), None, "not while the batch is stored");
        q.batch_message_stored();
        assert_eq!(q.watermark(), Some(3));
        assert_eq!(q.due(false), None, "nothing left to fetch");
    }

    #[test]
    fn a_given_up_message_is_fetched_at_every_check_until_stored() {
        let mut q = QtsQueue::default();
        q.start(0);
        assert!(matches!(q.live(1, key(1)), Live::Route { gap: false }));
        assert_eq!(q.due(false), None, "in flight: it comes back by itself");
        q.give_up(1);
        assert_eq!(q.due(false), Some(0), "given up: no idle wait");
        assert_eq!(q.due(false), Some(0), "and again while it is not back");
        assert!(
            matches!(q.live(1, key(1)), Live::Route { gap: false }),
            "pushed again: routed again"
        );
        assert_eq!(q.due(false), None, "in flight again");
        q.stored(1);
        assert_eq!(q.watermark(), Some(1));
    }

    #[test]
    fn remembered_messages_are_forgotten_once_the_watermark_passes_them() {
        let mut q = QtsQueue::default();
        q.start(0);
        for n in 1..=100 {
            let _ = q.live(n, key(n.into()));
        }
        for n in 1..=100 {
            q.stored(n);
        }
        assert_eq!(q.watermark(), Some(100));
        assert!(q.recent.is_empty() && q.recent_order.is_empty());
    }
}
