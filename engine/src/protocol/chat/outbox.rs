//! [`Outbox`]: our messages the peer has not acknowledged yet, by raw out_seq_no.
//!
//! Entries are added in sequence order and leave from the front (the peer acknowledges a
//! prefix), so a sorted deque is enough — and small: a chat usually holds one or two entries,
//! which a `BTreeMap` stored in a 450-byte node (heaptrack, 100,000 chats: 91 MB of outbox
//! nodes, plus a new node for every acknowledgement's `split_off`). An empty outbox holds no
//! buffer. Each entry remembers (in memory only) when it was last sent again, so that repeated
//! Resend requests cost one re-send per pace interval, not one per request.

use std::collections::VecDeque;

use super::types::{Millis, OutboxEntry};

/// Unacknowledged outgoing messages, oldest first: `(raw out_seq_no, entry, last re-sent at)`.
#[derive(Debug, Default, Clone)]
pub(super) struct Outbox {
    entries: VecDeque<(u32, OutboxEntry, Option<Millis>)>,
    /// The wire bytes held.
    bytes: usize,
}

impl Outbox {
    /// From stored entries (in any order; a repeated number keeps the last).
    pub(super) fn from_entries(entries: Vec<(u32, OutboxEntry)>) -> Self {
        let mut out = Self::default();
        for (raw, e) in entries {
            out.insert(raw, e);
        }
        out
    }

    /// Adds (or replaces) message `raw`.
    pub(super) fn insert(&mut self, raw: u32, entry: OutboxEntry) {
        if self.entries.is_empty() {
            self.entries.reserve_exact(1);
        }
        self.bytes += entry.wire.len();
        match self.position(raw) {
            Ok(i) => {
                if let Some(slot) = self.entries.get_mut(i) {
                    self.bytes -= slot.1.wire.len();
                    slot.1 = entry;
                    // Other bytes: not sent again yet.
                    slot.2 = None;
                }
            }
            Err(i) if i == self.entries.len() => self.entries.push_back((raw, entry, None)),
            Err(i) => self.entries.insert(i, (raw, entry, None)),
        }
    }

    fn position(&self, raw: u32) -> Result<usize, usize> {
        // Appends are the common case: check the end first.
        match self.entries.back() {
            Some(&(last, _, _)) if last < raw => Err(self.entries.len()),
            None => Err(0),
            _ => self.entries.binary_search_by_key(&raw, |(r, _, _)| *r),
        }
    }

    /// Message `raw`, if unacknowledged.
    pub(super) fn get(&self, raw: u32) -> Option<&OutboxEntry> {
        let i = self.position(raw).ok()?;
        self.entries.get(i).map(|(_, e, _)| e)
    }

    /// Whether message `raw` is unacknowledged.
    #[cfg(test)]
    pub(super) fn contains(&self, raw: u32) -> bool {
        self.position(raw).is_ok()
    }

    /// Whether every message `lo..=hi` is unacknowledged (two lookups: the entries are
    /// numbered without gaps, as they are sent).
    pub(super) fn covers(&self, lo: u32, hi: u32) -> bool {
        match (self.position(lo), self.position(hi)) {
            (Ok(a), Ok(b)) => b >= a && (b - a) as u64 == u64::from(hi - lo),
            _ => false,
        }
    }

    /// Message `raw` to send again at `now`, unless it went out again less than `pace` ago
    /// (then `None`); marks it sent.
    pub(super) fn resend_due(
        &mut self,
        raw: u32,
        now: Millis,
        pace: Millis,
    ) -> Option<&OutboxEntry> {
        let i = self.position(raw).ok()?;
        let (_, entry, at) = self.entries.get_mut(i)?;
        // Within the pace (a clock that stepped back counts as due).
        if at.is_some_and(|t| now >= t && now < t.saturating_add(pace)) {
            return None;
        }
        *at = Some(now);
        Some(entry)
    }

    /// The newest entry, marked as sent again at `now`.
    pub(super) fn resend_last(&mut self, now: Millis) -> Option<&OutboxEntry> {
        let (_, entry, at) = self.entries.back_mut()?;
        *at = Some(now);
        Some(entry)
    }

    /// The newest entry.
    #[cfg(test)]
    pub(super) fn last(&self) -> Option<&OutboxEntry> {
        self.entries.back().map(|(_, e, _)| e)
    }

    /// Every entry, oldest first (replace one with [`Outbox::insert`], which keeps the byte
    /// count).
    pub(super) fn iter(&self) -> impl Iterator<Item = (u32, &OutboxEntry)> {
        self.entries.iter().map(|(r, e, _)| (*r, e))
    }

    /// Removes the entries below `raw` (the peer has them), appending their numbers to `done`.
    /// Answers whether any went.
    pub(super) fn acknowledge_below(&mut self, raw: u32, done: &mut Vec<u32>) -> bool {
        let before = done.len();
        while let Some(&(r, _, _)) = self.entries.front() {
            if r >= raw {
                break;
            }
            done.push(r);
            if let Some((_, e, _)) = self.entries.pop_front() {
                self.bytes -= e.wire.len();
            }
        }
        if self.entries.is_empty() {
            self.entries = VecDeque::new();
        }
        done.len() > before
    }

    /// Unacknowledged messages.
    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }

    /// The wire bytes of the unacknowledged messages.
    pub(super) fn bytes(&self) -> usize {
        self.bytes
    }

    /// Nothing unacknowledged.
    pub(super) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Forgets everything (the chat closed).
    pub(super) fn clear(&mut self) {
        self.entries = VecDeque::new();
        self.bytes = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: i64) -> OutboxEntry {
        OutboxEntry {
            random_id: id,
            wire: vec![id as u8],
            in_seq_no: 0,
            out_seq_no: 0,
            service: false,
            file: None,
            silent: false,
        }
    }

    #[test]
    fn keeps_order_and_acknowledges_a_prefix() {
        let mut o = Outbox::from_entries(vec![(5, entry(5)), (3, entry(3)), (4, entry(4))]);
        o.insert(7, entry(7));
        o.insert(6, entry(6));
        o.insert(4, entry(40));
        assert_eq!((o.len(), o.bytes()), (5, 5));
        assert_eq!(o.get(4).map(|e| e.random_id), Some(40), "replaced in place");
        assert!(o.contains(6) && !o.contains(8) && !o.contains(2));
        assert_eq!(o.last().map(|e| e.random_id), Some(7));
        let mut done = Vec::new();
        assert!(o.acknowledge_below(5, &mut done));
        assert_eq!(done, vec![3, 4]);
        assert!(!o.acknowledge_below(5, &mut done), "nothing more below 5");
        let order: Vec<u32> = o.iter().map(|(r, _)| r).collect();
        assert_eq!(order, vec![5, 6, 7]);
        assert!(o.acknowledge_below(u32::MAX, &mut done));
        assert!(o.is_empty() && o.last().is_none());
        assert_eq!(o.bytes(), 0);
        assert_eq!(done, vec![3, 4, 5, 6, 7]);
    }

    #[test]
    fn covers_only_whole_ranges_and_paces_resends() {
        let mut o = Outbox::from_entries((3..=7).map(|r| (r, entry(r.into()))).collect());
        assert!(o.covers(3, 7) && o.covers(4, 4) && o.covers(5, 6));
        assert!(!o.covers(2, 4) && !o.covers(6, 8) && !o.covers(7, 5));
        let mut done = Vec::new();
        o.acknowledge_below(5, &mut done);
        assert!(!o.covers(4, 6) && o.covers(5, 7));
        // Sent again at 1,000: not again before 1,500 with a 500 ms pace.
        assert!(o.resend_due(6, 1_000, 500).is_some());
        assert!(o.resend_due(6, 1_499, 500).is_none());
        assert!(
            o.resend_due(5, 1_499, 500).is_some(),
            "each entry has its own pace"
        );
        assert!(o.resend_due(6, 1_500, 500).is_some());
        assert!(o.resend_due(9, 9_999, 500).is_none(), "not held");
        assert_eq!(o.resend_last(2_000).map(|e| e.random_id), Some(7));
        assert!(
            o.resend_due(7, 2_100, 500).is_none(),
            "the tail re-send counts too"
        );
        assert!(
            o.resend_due(7, 1_000, 500).is_some(),
            "a clock that went back: due"
        );
    }

    #[test]
    fn bytes_follow_replacements_of_other_sizes() {
        let sized = |n: usize| OutboxEntry {
            wire: vec![0; n],
            ..entry(1)
        };
        let mut o = Outbox::default();
        o.insert(0, sized(100));
        o.insert(1, sized(200));
        assert_eq!(o.bytes(), 300);
        assert!(o.resend_due(1, 10, 1_000).is_some());
        o.insert(1, sized(260));
        assert_eq!(o.bytes(), 360);
        assert!(
            o.resend_due(1, 20, 1_000).is_some(),
            "new bytes: not paced away"
        );
        o.insert(0, sized(40));
        assert_eq!(o.bytes(), 300);
        let mut done = Vec::new();
        o.acknowledge_below(2, &mut done);
        assert_eq!((o.bytes(), o.len()), (0, 0));
    }
}
