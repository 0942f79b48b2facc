//! [`Outbox`]: our messages the peer has not acknowledged yet, by raw out_seq_no.
//!
//! Entries are added in sequence order and leave from the front (the peer acknowledges a
//! prefix), so a sorted deque is enough — and small: a chat usually holds one or two entries,
//! which a `BTreeMap` stored in a 450-byte node (heaptrack, 100,000 chats: 91 MB of outbox
//! nodes, plus a new node for every acknowledgement's `split_off`). An empty outbox holds no
//! buffer.

use std::collections::VecDeque;

use super::types::OutboxEntry;

/// Unacknowledged outgoing messages, oldest first.
#[derive(Debug, Default, Clone)]
pub(super) struct Outbox {
    entries: VecDeque<(u32, OutboxEntry)>,
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
        match self.position(raw) {
            Ok(i) => {
                if let Some(slot) = self.entries.get_mut(i) {
                    slot.1 = entry;
                }
            }
            Err(i) if i == self.entries.len() => self.entries.push_back((raw, entry)),
            Err(i) => self.entries.insert(i, (raw, entry)),
        }
    }

    fn position(&self, raw: u32) -> Result<usize, usize> {
        // Appends are the common case: check the end first.
        match self.entries.back() {
            Some(&(last, _)) if last < raw => Err(self.entries.len()),
            None => Err(0),
            _ => self.entries.binary_search_by_key(&raw, |(r, _)| *r),
        }
    }

    /// Message `raw`, if unacknowledged.
    pub(super) fn get(&self, raw: u32) -> Option<&OutboxEntry> {
        let i = self.position(raw).ok()?;
        self.entries.get(i).map(|(_, e)| e)
    }

    /// Whether message `raw` is unacknowledged.
    pub(super) fn contains(&self, raw: u32) -> bool {
        self.position(raw).is_ok()
    }

    /// The newest entry.
    pub(super) fn last(&self) -> Option<&OutboxEntry> {
        self.entries.back().map(|(_, e)| e)
    }

    /// Every entry, oldest first, mutably.
    pub(super) fn iter_mut(&mut self) -> impl Iterator<Item = (u32, &mut OutboxEntry)> {
        self.entries.iter_mut().map(|(r, e)| (*r, e))
    }

    /// Removes the entries below `raw` (the peer has them), appending their numbers to `done`.
    /// Answers whether any went.
    pub(super) fn acknowledge_below(&mut self, raw: u32, done: &mut Vec<u32>) -> bool {
        let before = done.len();
        while let Some(&(r, _)) = self.entries.front() {
            if r >= raw {
                break;
            }
            done.push(r);
            self.entries.pop_front();
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

    /// Nothing unacknowledged.
    pub(super) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Forgets everything (the chat closed).
    pub(super) fn clear(&mut self) {
        self.entries = VecDeque::new();
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
        assert_eq!(o.len(), 5);
        assert_eq!(o.get(4).map(|e| e.random_id), Some(40), "replaced in place");
        assert!(o.contains(6) && !o.contains(8) && !o.contains(2));
        assert_eq!(o.last().map(|e| e.random_id), Some(7));
        let mut done = Vec::new();
        assert!(o.acknowledge_below(5, &mut done));
        assert_eq!(done, vec![3, 4]);
        assert!(!o.acknowledge_below(5, &mut done), "nothing more below 5");
        let order: Vec<u32> = o.iter_mut().map(|(r, _)| r).collect();
        assert_eq!(order, vec![5, 6, 7]);
        assert!(o.acknowledge_below(u32::MAX, &mut done));
        assert!(o.is_empty() && o.last().is_none());
        assert_eq!(done, vec![3, 4, 5, 6, 7]);
    }
}
