//! The waiting queue for out-of-order messages (`seq_no.md`, "Proper handling of gaps").
//!
//! A message past a hole waits here, keyed by its raw out_seq_no. Each hole is asked for once
//! (one `decryptedMessageActionResend`); more messages past the same hole only queue. When the
//! hole fills, the queue drains in seq order. A second, separate hole while one is open is rare
//! enough that the spec allows aborting the chat; the queue is bounded (hostile peers).

use std::collections::BTreeMap;

/// Most messages one chat may hold waiting for a hole to fill.
pub const MAX_WAITING: usize = 1024;

/// Why the queue refuses a message: each means the chat should be closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GapError {
    /// More than [`MAX_WAITING`] messages wait.
    #[error("more than {MAX_WAITING} messages wait behind a hole")]
    QueueFull,
    /// A second hole opened while one is waiting to be filled.
    #[error("a second hole opened at raw out_seq_no {at} while one is open")]
    SecondHole {
        /// Where the new hole starts (raw).
        at: u32,
    },
}

/// What queueing a message asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum Queued {
    /// Send `decryptedMessageActionResend(start, end)` (wire values) for a new hole.
    RequestResend {
        /// Wire start.
        start: i32,
        /// Wire end.
        end: i32,
    },
    /// The hole was already requested: just wait.
    Waiting,
    /// Already queued (a duplicate): nothing to do.
    Duplicate,
}

/// One chat's waiting queue of messages `T` (the caller stores the opened payload or its bytes).
#[derive(Debug, Clone)]
pub struct WaitingQueue<T> {
    waiting: BTreeMap<u32, T>,
    /// The raw out_seq_no range requested for the open hole.
    requested: Option<(u32, u32)>,
}

impl<T> Default for WaitingQueue<T> {
    fn default() -> Self {
        Self {
            waiting: BTreeMap::new(),
            requested: None,
        }
    }
}

impl<T> WaitingQueue<T> {
    /// Queues message `raw_out` that arrived past a hole; `expected` is the next raw out_seq_no
    /// the chat expects and `(start, end)` the wire range `SeqNo::classify` computed.
    ///
    /// # Errors
    /// [`GapError::QueueFull`], [`GapError::SecondHole`]; the queue is unchanged then.
    pub fn push(
        &mut self,
        expected: u32,
        raw_out: u32,
        start: i32,
        end: i32,
        message: T,
    ) -> Result<Queued, GapError> {
        if self.waiting.contains_key(&raw_out) {
            return Ok(Queued::Duplicate);
        }
        if self.waiting.len() >= MAX_WAITING {
            return Err(GapError::QueueFull);
        }
        let action = match self.requested {
            None => {
                self.requested = Some((expected, raw_out.saturating_sub(1)));
                Queued::RequestResend { start, end }
            }
            Some((_, hi)) => {
                // Past the open hole there must be no second hole: everything between the hole's
                // end and this message must already be waiting.
                if let Some(at) = (hi + 1..raw_out).find(|r| !self.waiting.contains_key(r)) {
                    return Err(GapError::SecondHole { at });
                }
                Queued::Waiting
            }
        };
        self.waiting.insert(raw_out, message);
        Ok(action)
    }

    /// After the chat processed everything before `expected`, takes the queued messages that are
    /// now in order (`expected`, `expected + 1`, …), in order.
    pub fn drain_ready(&mut self, mut expected: u32) -> Vec<(u32, T)> {
        let mut out = Vec::new();
        while let Some(m) = self.waiting.remove(&expected) {
            out.push((expected, m));
            expected += 1;
        }
        // Drop duplicates of already-processed messages, and close the hole once filled.
        self.waiting.retain(|&k, _| k >= expected);
        if self.requested.is_some_and(|(_, hi)| expected > hi) {
            self.requested = None;
        }
        out
    }

    /// Whether a hole is open (MTProto 1.0 may still be needed for its messages).
    pub fn hole_open(&self) -> bool {
        self.requested.is_some()
    }

    /// How many messages wait.
    pub fn len(&self) -> usize {
        self.waiting.len()
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_request_per_hole_then_drain_in_order() {
        let mut q = WaitingQueue::default();
        // Expecting raw 1; raw 3 arrives (wire from the originator: 2·raw+1).
        assert_eq!(
            q.push(1, 3, 3, 5, "m3").unwrap(),
            Queued::RequestResend { start: 3, end: 5 }
        );
        assert_eq!(q.push(1, 4, 3, 7, "m4").unwrap(), Queued::Waiting);
        assert_eq!(q.push(1, 4, 3, 7, "m4 again").unwrap(), Queued::Duplicate);
        assert!(q.hole_open());
        // Raw 1 processed: nothing ready yet (2 missing).
        assert!(q.drain_ready(2).is_empty());
        // Raw 2 processed: 3 and 4 drain in order and the hole closes.
        assert_eq!(q.drain_ready(3), vec![(3, "m3"), (4, "m4")]);
        assert!(!q.hole_open() && q.is_empty());
    }

    #[test]
    fn second_hole_and_bound() {
        let mut q = WaitingQueue::default();
        assert!(matches!(
            q.push(1, 3, 3, 5, ()),
            Ok(Queued::RequestResend { .. })
        ));
        // raw 4 missing, raw 5 arrives: a second hole.
        assert_eq!(q.push(1, 5, 3, 9, ()), Err(GapError::SecondHole { at: 4 }));
        assert_eq!(q.len(), 1);
        let mut full = WaitingQueue::default();
        let _ = full.push(0, 1, 0, 0, ()).unwrap();
        for r in 2..MAX_WAITING as u32 + 1 {
            assert_eq!(full.push(0, r, 0, 0, ()).unwrap(), Queued::Waiting);
        }
        assert_eq!(
            full.push(0, MAX_WAITING as u32 + 1, 0, 0, ()),
            Err(GapError::QueueFull)
        );
    }
}
