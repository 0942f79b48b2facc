//! Sequence numbers (`seq_no.md`).
//!
//! Raw counters start at `(out, in) = (0, 0)` and go up by one per message sent / received and
//! processed. On the wire each is `2·raw + x`, with `x` from the table in the spec:
//!
//! | message sent by…          | in_seq_no x | out_seq_no x |
//! |---------------------------|-------------|--------------|
//! | the chat's originator     | 0           | 1            |
//! | the other participant     | 1           | 0            |
//!
//! [`SeqNo::classify`] checks a received pair without changing anything (a rejected message
//! leaves the state untouched); [`SeqNo::accept`] advances once the message was processed in
//! order. Wrong parity and impossible `in_seq_no` values are errors that must close the chat.

use crate::crypto::Side;

/// Why a received sequence number must abort the chat.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SeqError {
    /// `in_seq_no` or `out_seq_no` has the wrong parity (a mirrored message) or is negative.
    #[error("sequence number {value} has the wrong parity or sign")]
    Parity {
        /// The wire value.
        value: i32,
    },
    /// `in_seq_no` went down.
    #[error("in_seq_no went back from {previous} to {got} (raw)")]
    InSeqDecreased {
        /// Highest raw in_seq_no seen.
        previous: u32,
        /// The raw value received.
        got: u32,
    },
    /// `in_seq_no` acknowledges messages we never sent.
    #[error("in_seq_no {got} (raw) acknowledges more than the {sent} messages we sent")]
    InSeqFromFuture {
        /// The raw value received.
        got: u32,
        /// How many messages we sent.
        sent: u32,
    },
    /// A counter would leave the range the wire `int` can carry.
    #[error("sequence number overflow")]
    Overflow,
    /// A Resend request with a bad range (wrong parity, reversed, or for messages never sent).
    #[error("resend request {start}..={end} is invalid")]
    BadResend {
        /// Wire start.
        start: i32,
        /// Wire end.
        end: i32,
    },
}

/// What to do with a received message, by its `out_seq_no`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum Received {
    /// The next expected message: process it, then [`SeqNo::accept`] it.
    InOrder {
        /// The raw in_seq_no it carries (for [`SeqNo::accept`]).
        peer_in: u32,
    },
    /// Already received (`out_seq_no ≤ C`): drop it without looking at its contents.
    Duplicate,
    /// Messages are missing before it: queue it and ask for `start..=end` (wire values, ready
    /// for `decryptedMessageActionResend`).
    Gap {
        /// First missing out_seq_no (wire).
        start: i32,
        /// Last missing out_seq_no (wire).
        end: i32,
        /// The raw out_seq_no of this message (its place in the waiting queue).
        raw_out: u32,
    },
}

/// One chat's sequence-number state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeqNo {
    side: Side,
    /// Raw number of messages sent (the next outgoing raw out_seq_no).
    sent: u32,
    /// Raw number of messages received and processed in order (`C + 1`).
    received: u32,
    /// Highest raw in_seq_no the peer has sent us.
    peer_in: u32,
}

/// The largest raw counter whose wire form `2·raw + 1` fits an `i32`.
const MAX_RAW: u32 = (i32::MAX as u32 - 1) / 2;

fn wire(raw: u32, x: u32) -> Result<i32, SeqError> {
    if raw > MAX_RAW {
        return Err(SeqError::Overflow);
    }
    i32::try_from(2 * raw + x).map_err(|_| SeqError::Overflow)
}

fn unwire(value: i32, x: u32) -> Result<u32, SeqError> {
    u32::try_from(value)
        .ok()
        .filter(|v| v & 1 == x)
        .map(|v| v >> 1)
        .ok_or(SeqError::Parity { value })
}

impl SeqNo {
    /// A fresh chat; `side` is ours.
    pub fn new(side: Side) -> Self {
        Self {
            side,
            sent: 0,
            received: 0,
            peer_in: 0,
        }
    }

    /// Restores stored counters.
    pub fn from_parts(side: Side, sent: u32, received: u32, peer_in: u32) -> Self {
        Self {
            side,
            sent,
            received,
            peer_in,
        }
    }

    /// `(sent, received, peer_in)` raw, for storage.
    pub fn parts(&self) -> (u32, u32, u32) {
        (self.sent, self.received, self.peer_in)
    }

    /// `(in_x, out_x)` for messages sent by `sender`.
    fn x(sender: Side) -> (u32, u32) {
        match sender {
            Side::Originator => (0, 1),
            Side::Participant => (1, 0),
        }
    }

    /// The wire `out_seq_no` of the peer's raw message `raw` (for a Resend request).
    ///
    /// # Errors
    /// [`SeqError::Overflow`].
    pub fn peer_out_wire(&self, raw: u32) -> Result<i32, SeqError> {
        wire(raw, Self::x(self.side.peer()).1)
    }

    /// The raw position of a peer message with wire `out_seq_no`.
    ///
    /// # Errors
    /// [`SeqError::Parity`] for a negative value or the wrong parity.
    pub fn peer_out_raw(&self, out_seq_no: i32) -> Result<u32, SeqError> {
        unwire(out_seq_no, Self::x(self.side.peer()).1)
    }

    /// Assigns `(in_seq_no, out_seq_no)` (wire values) to a new outgoing message and counts it.
    /// Assign at creation and never change them (resends reuse the stored bytes).
    ///
    /// # Errors
    /// [`SeqError::Overflow`] (state unchanged).
    pub fn next_outgoing(&mut self) -> Result<(i32, i32), SeqError> {
        let (in_x, out_x) = Self::x(self.side);
        let pair = (wire(self.received, in_x)?, wire(self.sent, out_x)?);
        self.sent += 1;
        Ok(pair)
    }

    /// Classifies a received `(in_seq_no, out_seq_no)` (wire values). Does not change state.
    ///
    /// # Errors
    /// [`SeqError::Parity`], [`SeqError::InSeqFromFuture`], and for an in-order message
    /// [`SeqError::InSeqDecreased`]: each must abort the chat.
    pub fn classify(&self, in_seq_no: i32, out_seq_no: i32) -> Result<Received, SeqError> {
        let (in_x, out_x) = Self::x(self.side.peer());
        let peer_in = unwire(in_seq_no, in_x)?;
        let raw_out = unwire(out_seq_no, out_x)?;
        if peer_in > self.sent {
            return Err(SeqError::InSeqFromFuture {
                got: peer_in,
                sent: self.sent,
            });
        }
        Ok(match raw_out.cmp(&self.received) {
            std::cmp::Ordering::Less => Received::Duplicate,
            std::cmp::Ordering::Equal => {
                if peer_in < self.peer_in {
                    return Err(SeqError::InSeqDecreased {
                        previous: self.peer_in,
                        got: peer_in,
                    });
                }
                Received::InOrder { peer_in }
            }
            std::cmp::Ordering::Greater => Received::Gap {
                start: wire(self.received, out_x)?,
                end: out_seq_no - 2,
                raw_out,
            },
        })
    }

    /// Counts an in-order message as processed.
    ///
    /// # Errors
    /// [`SeqError::Overflow`] (state unchanged).
    pub fn accept(&mut self, peer_in: u32) -> Result<(), SeqError> {
        if self.received >= MAX_RAW {
            return Err(SeqError::Overflow);
        }
        self.received += 1;
        self.peer_in = self.peer_in.max(peer_in);
        Ok(())
    }

    /// The raw out_seq_no range of our messages a peer's `decryptedMessageActionResend`
    /// asks for.
    ///
    /// # Errors
    /// [`SeqError::BadResend`] for wrong parity, a reversed range or messages never sent
    /// (the spec: a request we cannot satisfy aborts the chat).
    pub fn resend_range(
        &self,
        start: i32,
        end: i32,
    ) -> Result<std::ops::RangeInclusive<u32>, SeqError> {
        let (_, out_x) = Self::x(self.side);
        let bad = SeqError::BadResend { start, end };
        let (s, e) = (
            unwire(start, out_x).map_err(|_| bad)?,
            unwire(end, out_x).map_err(|_| bad)?,
        );
        if s > e || e >= self.sent {
            return Err(bad);
        }
        Ok(s..=e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parity_follows_the_table() {
        // seq_no.md: the originator's first message has out_seq_no 0+1, the participant's 0+0.
        let mut a = SeqNo::new(Side::Originator);
        let mut b = SeqNo::new(Side::Participant);
        assert_eq!(a.next_outgoing().unwrap(), (0, 1));
        assert_eq!(a.next_outgoing().unwrap(), (0, 3));
        assert_eq!(b.next_outgoing().unwrap(), (1, 0));
        // B receives A's first message (in 0, out 1): in order.
        assert_eq!(b.classify(0, 1).unwrap(), Received::InOrder { peer_in: 0 });
        // Mirrored: B's own message reflected back to B has the wrong parity.
        assert_eq!(b.classify(1, 0), Err(SeqError::Parity { value: 1 }));
        assert_eq!(b.classify(-2, 1), Err(SeqError::Parity { value: -2 }));
    }

    #[test]
    fn duplicates_gaps_and_resend_range() {
        let mut b = SeqNo::new(Side::Participant);
        assert!(matches!(
            b.classify(0, 1).unwrap(),
            Received::InOrder { .. }
        ));
        b.accept(0).unwrap();
        assert_eq!(b.classify(0, 1).unwrap(), Received::Duplicate);
        // A's raw 1 and 2 are missing, raw 3 (wire 7) arrives: ask for wire 3..=5.
        assert_eq!(
            b.classify(0, 7).unwrap(),
            Received::Gap {
                start: 3,
                end: 5,
                raw_out: 3
            }
        );
        // The state did not move.
        assert_eq!(b.parts(), (0, 1, 0));
    }

    #[test]
    fn in_seq_no_checks() {
        let mut a = SeqNo::new(Side::Originator);
        a.next_outgoing().unwrap();
        // From the participant in_seq_no is 2·raw + 1, out_seq_no 2·raw. B acknowledges 2 of our messages but we sent 1.
        assert_eq!(
            a.classify(5, 0),
            Err(SeqError::InSeqFromFuture { got: 2, sent: 1 })
        );
        assert_eq!(a.classify(3, 0).unwrap(), Received::InOrder { peer_in: 1 });
        a.accept(1).unwrap();
        // Next message claims it saw none of ours: in_seq_no went back.
        assert_eq!(
            a.classify(1, 2),
            Err(SeqError::InSeqDecreased {
                previous: 1,
                got: 0
            })
        );
    }

    #[test]
    fn resend_requests_are_validated() {
        let mut a = SeqNo::new(Side::Originator);
        for _ in 0..3 {
            a.next_outgoing().unwrap();
        }
        assert_eq!(a.resend_range(1, 5).unwrap(), 0..=2);
        assert!(a.resend_range(0, 5).is_err()); // wrong parity
        assert!(a.resend_range(5, 1).is_err()); // reversed
        assert!(a.resend_range(1, 7).is_err()); // never sent
    }

    /// Two peers exchanging in any interleaving: every delivered message is in order, and each
    /// side's in_seq_no never exceeds what the other sent.
    #[test]
    fn random_conversations_stay_in_order() {
        let mut state = 0x1234_5678_u64;
        for _ in 0..200 {
            let (mut a, mut b) = (SeqNo::new(Side::Originator), SeqNo::new(Side::Participant));
            let (mut to_b, mut to_a) = (
                std::collections::VecDeque::new(),
                std::collections::VecDeque::new(),
            );
            for _ in 0..50 {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                match state >> 62 {
                    0 => to_b.push_back(a.next_outgoing().unwrap()),
                    1 => to_a.push_back(b.next_outgoing().unwrap()),
                    2 => {
                        if let Some((i, o)) = to_b.pop_front() {
                            let Received::InOrder { peer_in } = b.classify(i, o).unwrap() else {
                                panic!("not in order")
                            };
                            b.accept(peer_in).unwrap();
                        }
                    }
                    _ => {
                        if let Some((i, o)) = to_a.pop_front() {
                            let Received::InOrder { peer_in } = a.classify(i, o).unwrap() else {
                                panic!("not in order")
                            };
                            a.accept(peer_in).unwrap();
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn overflow_is_an_error_not_a_wrap() {
        let mut s = SeqNo::from_parts(Side::Originator, MAX_RAW + 1, 0, 0);
        assert_eq!(s.next_outgoing(), Err(SeqError::Overflow));
        assert_eq!(s.parts().0, MAX_RAW + 1);
    }
}
