//! The waiting queue for out-of-order messages (`seq_no.md`, "Proper handling of gaps").
//!
//! A message past a hole waits here, keyed by its raw out_seq_no. Each hole is asked for once
//! (one `decryptedMessageActionResend`); more messages past the same hole only queue. When the
//! hole fills, the queue drains in seq order. The spec allows aborting on a second simultaneous
//! hole; on a lossy network that happens all the time, so we keep several holes, each requested
//! once (docs/protocol.md). The queue is bounded (hostile peers).

use std::collections::BTreeMap;

/// Most messages one chat may hold waiting for holes to fill.
pub const MAX_WAITING: usize = 1024;

/// Why the queue refuses a message: it means the chat should be closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GapError {
    /// More than [`MAX_WAITING`] messages wait.
    #[error("more than {MAX_WAITING} messages wait behind a hole")]
    QueueFull,
}

/// What queueing a message asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum Queued {
    /// A new hole: ask for raw out_seq_no `lo..=hi` with `decryptedMessageActionResend`.
    RequestResend {
        /// First missing raw out_seq_no.
        lo: u32,
        /// Last missing raw out_seq_no.
        hi: u32,
    },
    /// The hole before it was already requested: just wait.
    Waiting,
    /// Already queued (a duplicate): nothing to do.
    Duplicate,
}

/// One chat's waiting queue of messages `T` (the caller stores the opened payload).
#[derive(Debug, Clone)]
pub struct WaitingQueue<T> {
    waiting: BTreeMap<u32, T>,
}

impl<T> Default for WaitingQueue<T> {
    fn default() -> Self {
        Self {
            waiting: BTreeMap::new(),
        }
    }
}

impl<T> WaitingQueue<T> {
    /// Queues message `raw_out` that arrived past a hole; `expected` is the next raw out_seq_no
    /// the chat expects.
    ///
    /// # Errors
    /// [`GapError::QueueFull`]; the queue is unchanged then.
    pub fn push(&mut self, expected: u32, raw_out: u32, message: T) -> Result<Queued, GapError> {
        if self.waiting.contains_key(&raw_out) {
            return Ok(Queued::Duplicate);
        }
        if self.waiting.len() >= MAX_WAITING {
            return Err(GapError::QueueFull);
        }
        // Everything up to the highest queued message has been asked for already; only a
        // message beyond it with missing ones in between opens a new hole.
        let frontier = self
            .waiting
            .last_key_value()
            .map_or(expected, |(&k, _)| k + 1)
            .max(expected);
        let action = if raw_out > frontier {
            Queued::RequestResend {
                lo: frontier,
                hi: raw_out - 1,
            }
        } else {
            Queued::Waiting
        };
        self.waiting.insert(raw_out, message);
        Ok(action)
    }

    /// After the chat processed everything before `expected`, takes the queued message that is
    /// now in order (`expected`), if any. Drops queued copies of already-processed messages.
    pub fn pop_ready(&mut self, expected: u32) -> Option<T> {
        while let Some(entry) = self.waiting.first_entry() {
            match (*entry.key()).cmp(&expected) {
                std::cmp::Ordering::Less => {
                    entry.remove();
                }
                std::cmp::Ordering::Equal => return Some(entry.remove()),
                std::cmp::Ordering::Greater => return None,
            }
        }
        None
    }

    /// The holes still open given the next expected raw out_seq_no: the missing raw ranges.
    pub fn holes(&self, expected: u32) -> Vec<(u32, u32)> {
        let mut out = Vec::new();
        let mut next = expected;
        for &k in self.waiting.keys() {
            if k > next {
                out.push((next, k - 1));
            }
            next = next.max(k + 1);
        }
        out
    }

    /// Whether a hole is open (some message waits).
    pub fn hole_open(&self) -> bool {
        !self.waiting.is_empty()
    }

    /// How many messages wait.
    pub fn len(&self) -> usize {
        self.waiting.len()
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }

    /// Whether message `raw_out` is queued.
    pub fn contains(&self, raw_out: u32) -> bool {
        self.waiting.contains_key(&raw_out)
    }

    /// Mutable access to a queued message (e.g. to mark a Resend as handled).
    pub fn get_mut(&mut self, raw_out: u32) -> Option<&mut T> {
        self.waiting.get_mut(&raw_out)
    }

    /// The queued messages in seq order (for persistence).
    pub fn iter(&self) -> impl Iterator<Item = (u32, &T)> {
        self.waiting.iter().map(|(&k, v)| (k, v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_request_per_hole_then_drain_in_order() {
        let mut q = WaitingQueue::default();
        // Expecting raw 1; raw 3 arrives.
        assert_eq!(
            q.push(1, 3, "m3").unwrap(),
            Queued::RequestResend { lo: 1, hi: 2 }
        );
        assert_eq!(q.push(1, 4, "m4").unwrap(), Queued::Waiting);
        assert_eq!(q.push(1, 4, "m4 again").unwrap(), Queued::Duplicate);
        assert_eq!(q.holes(1), vec![(1, 2)]);
        // Raw 1 processed: nothing ready yet (2 missing).
        assert_eq!(q.pop_ready(2), None);
        assert_eq!(q.holes(2), vec![(2, 2)]);
        // Raw 2 processed: 3 and 4 drain in order and the hole closes.
        assert_eq!(q.pop_ready(3), Some("m3"));
        assert_eq!(q.pop_ready(4), Some("m4"));
        assert!(!q.hole_open() && q.is_empty() && q.holes(5).is_empty());
    }

    #[test]
    fn second_hole_is_requested_once_and_bound_holds() {
        let mut q = WaitingQueue::default();
        assert_eq!(
            q.push(1, 3, ()).unwrap(),
            Queued::RequestResend { lo: 1, hi: 2 }
        );
        // raw 4 missing, raw 5 arrives: a second hole, asked for on its own.
        assert_eq!(
            q.push(1, 5, ()).unwrap(),
            Queued::RequestResend { lo: 4, hi: 4 }
        );
        // A message inside the first hole only waits.
        assert_eq!(q.push(1, 2, ()).unwrap(), Queued::Waiting);
        assert_eq!(q.holes(1), vec![(1, 1), (4, 4)]);
        let mut full = WaitingQueue::default();
        let _ = full.push(0, 1, ()).unwrap();
        for r in 2..MAX_WAITING as u32 + 1 {
            assert_eq!(full.push(0, r, ()).unwrap(), Queued::Waiting);
        }
        assert_eq!(
            full.push(0, MAX_WAITING as u32 + 1, ()),
            Err(GapError::QueueFull)
        );
        assert_eq!(full.len(), MAX_WAITING);
    }
}
