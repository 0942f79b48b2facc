//! What the crash test verifies, kept by the driver (which is never killed).
//!
//! Per stream (one direction of one chat) the driver knows which messages it asked for
//! (`commanded`) and which of those the engine confirmed as accepted (`confirmed`: stored, so
//! they must arrive). A message commanded but not confirmed before a kill may or may not have
//! been stored: it may arrive once or not at all. Deliveries carry the engine's inbox sequence
//! number: the same entry delivered again before its acknowledgement was confirmed is the
//! expected redelivery after a crash; anything else arriving twice is a duplicate.
//!
//! - **lost**: confirmed, never delivered;
//! - **duplicated**: delivered under two inbox entries, or delivered again after its
//!   acknowledgement was confirmed;
//! - **misordered**: a first delivery at or below the stream's last one;
//! - **corrupted**: content that is not the workload's, or a message never commanded.
//!
//! With `CRASH_TRACE` set, every violation is also printed to stderr as it is found.

use std::collections::{BTreeSet, HashMap, HashSet};

/// One stream's bookkeeping.
#[derive(Debug, Default, Clone)]
struct Stream {
    commanded: u32,
    confirmed: BTreeSet<u32>,
    delivered: HashMap<u32, u64>,
    last: Option<u32>,
    /// Confirmed and not yet delivered.
    backlog: u32,
}

/// The verdict of a run so far.
#[derive(Debug, Default, Clone)]
pub struct Checker {
    streams: Vec<Stream>,
    /// Inbox seq → (stream, idx) of every delivery seen.
    by_seq: HashMap<u64, (usize, u32)>,
    acked: HashSet<u64>,
    /// Duplicates seen.
    pub duplicated: u64,
    /// Misordered first deliveries.
    pub misordered: u64,
    /// Wrong content or never commanded.
    pub corrupted: u64,
    /// The first violation, named.
    pub first_violation: Option<String>,
}

impl Checker {
    /// A checker for `streams` streams.
    pub fn new(streams: usize) -> Self {
        Self {
            streams: vec![Stream::default(); streams],
            ..Self::default()
        }
    }

    fn flag(&mut self, what: String) {
        if std::env::var_os("CRASH_TRACE").is_some() {
            eprintln!("violation: {what}");
        }
        if self.first_violation.is_none() {
            self.first_violation = Some(what);
        }
    }

    /// The next index to command on `stream` (and records it as commanded).
    pub fn command(&mut self, stream: usize) -> Option<u32> {
        let s = self.streams.get_mut(stream)?;
        let idx = s.commanded;
        s.commanded += 1;
        Some(idx)
    }

    /// Confirmed messages of `stream` not delivered yet.
    pub fn backlog(&self, stream: usize) -> u32 {
        self.streams.get(stream).map_or(0, |s| s.backlog)
    }

    /// How many messages of `stream` were commanded.
    pub fn commanded(&self, stream: usize) -> u32 {
        self.streams.get(stream).map_or(0, |s| s.commanded)
    }

    /// The engine confirmed message `idx` of `stream` as accepted.
    pub fn confirmed(&mut self, stream: usize, idx: u32) {
        if let Some(s) = self.streams.get_mut(stream) {
            if s.confirmed.insert(idx) && !s.delivered.contains_key(&idx) {
                s.backlog += 1;
            }
        }
    }

    /// A delivery to the application; returns whether it was a first delivery. A `resumable`
    /// message (a file upload) that was not confirmed may arrive after later ones: the
    /// restarted engine finishes the upload and sends it then.
    pub fn delivered(
        &mut self,
        stream: usize,
        idx: u32,
        seq: u64,
        intact: bool,
        resumable: bool,
    ) -> bool {
        let Some(s) = self.streams.get(stream) else {
            self.corrupted += 1;
            self.flag(format!("delivery on unknown stream {stream}"));
            return false;
        };
        if let Some(&(st, i)) = self.by_seq.get(&seq) {
            if (st, i) != (stream, idx) {
                self.corrupted += 1;
                self.flag(format!("inbox entry {seq} changed content"));
                return false;
            }
            if self.acked.contains(&seq) {
                self.duplicated += 1;
                self.flag(format!(
                    "stream {stream} message {idx}: delivered again after its acknowledgement"
                ));
            }
            return false;
        }
        if let Some(first) = s.delivered.get(&idx) {
            let first = *first;
            self.duplicated += 1;
            self.flag(format!(
                "stream {stream} message {idx}: delivered under inbox entries {first} and {seq}"
            ));
            self.by_seq.insert(seq, (stream, idx));
            return false;
        }
        let (commanded, last) = (s.commanded, s.last);
        let late_upload = resumable && !s.confirmed.contains(&idx);
        self.by_seq.insert(seq, (stream, idx));
        if idx >= commanded || !intact {
            self.corrupted += 1;
            self.flag(format!(
                "stream {stream} message {idx}: {}",
                if intact {
                    "never sent"
                } else {
                    "content differs"
                }
            ));
        }
        if last.is_some_and(|l| idx <= l) && !late_upload {
            self.misordered += 1;
            self.flag(format!(
                "stream {stream} message {idx} arrived after message {}",
                last.unwrap_or_default()
            ));
        }
        if let Some(s) = self.streams.get_mut(stream) {
            if s.confirmed.contains(&idx) {
                s.backlog = s.backlog.saturating_sub(1);
            }
            s.delivered.insert(idx, seq);
            if !late_upload {
                s.last = Some(s.last.map_or(idx, |l| l.max(idx)));
            }
        }
        true
    }

    /// A delivery a node's application took before its account left the node (taken over
    /// while the node was paused, or handed over) and reported after: it counts (the taking node may never deliver it, if
    /// the paused one acknowledged it first), but where it stands against the deliveries and
    /// acknowledgements reported meanwhile is unknown, so neither is checked. Delivered under
    /// two inbox entries is still a duplicate.
    pub fn delivered_late(&mut self, stream: usize, idx: u32, seq: u64, intact: bool) {
        if self.by_seq.contains_key(&seq) {
            return;
        }
        let Some(s) = self.streams.get_mut(stream) else {
            self.corrupted += 1;
            self.flag(format!("delivery on unknown stream {stream}"));
            return;
        };
        if let Some(first) = s.delivered.get(&idx).copied() {
            self.duplicated += 1;
            self.flag(format!(
                "stream {stream} message {idx}: delivered under inbox entries {first} and {seq}"
            ));
            return;
        }
        if s.confirmed.contains(&idx) {
            s.backlog = s.backlog.saturating_sub(1);
        }
        s.delivered.insert(idx, seq);
        let bad = idx >= s.commanded || !intact;
        self.by_seq.insert(seq, (stream, idx));
        if bad {
            self.corrupted += 1;
            self.flag(format!(
                "stream {stream} message {idx}: late delivery differs"
            ));
        }
    }

    /// The application's acknowledgement of inbox entry `seq` was confirmed.
    pub fn acked(&mut self, seq: u64) {
        self.acked.insert(seq);
    }

    /// Confirmed messages not delivered (yet).
    pub fn outstanding(&self) -> u64 {
        self.streams
            .iter()
            .map(|s| {
                s.confirmed
                    .iter()
                    .filter(|i| !s.delivered.contains_key(i))
                    .count() as u64
            })
            .sum()
    }

    /// Every message confirmed anywhere (the "messages" figure).
    pub fn confirmed_total(&self) -> u64 {
        self.streams.iter().map(|s| s.confirmed.len() as u64).sum()
    }

    /// Messages delivered (first deliveries).
    pub fn delivered_total(&self) -> u64 {
        self.streams.iter().map(|s| s.delivered.len() as u64).sum()
    }

    /// Whether message `idx` of `stream` was confirmed and delivered.
    pub fn is_confirmed_and_delivered(&self, stream: usize, idx: u32) -> bool {
        self.streams
            .get(stream)
            .is_some_and(|s| s.confirmed.contains(&idx) && s.delivered.contains_key(&idx))
    }

    /// Names the first lost message, if any (at the end of a run).
    pub fn first_lost(&self) -> Option<String> {
        self.streams.iter().enumerate().find_map(|(n, s)| {
            s.confirmed
                .iter()
                .find(|i| !s.delivered.contains_key(i))
                .map(|i| format!("stream {n} message {i}: accepted, never delivered"))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redelivery_before_the_ack_is_fine_after_it_is_a_duplicate() {
        let mut c = Checker::new(2);
        for _ in 0..3 {
            c.command(0);
        }
        c.confirmed(0, 0);
        c.confirmed(0, 1);
        assert!(c.delivered(0, 0, 10, true, false));
        assert!(
            !c.delivered(0, 0, 10, true, false),
            "same entry again, not acked yet"
        );
        assert_eq!(c.duplicated, 0);
        c.acked(10);
        c.delivered(0, 0, 10, true, false);
        assert_eq!(c.duplicated, 1, "again after the ack");
        c.delivered(0, 0, 11, true, false);
        assert_eq!(c.duplicated, 2, "a second inbox entry for one message");
        assert_eq!(c.outstanding(), 1);
        assert_eq!(c.backlog(0), 1);
        assert!(c.first_lost().is_some_and(|m| m.contains("message 1")));
    }

    #[test]
    fn unconfirmed_may_be_skipped_but_order_and_content_are_checked() {
        let mut c = Checker::new(1);
        for _ in 0..4 {
            c.command(0);
        }
        c.confirmed(0, 0);
        c.confirmed(0, 2);
        assert!(c.delivered(0, 0, 1, true, false));
        assert!(
            c.delivered(0, 2, 2, true, false),
            "1 was never confirmed: skipping it is fine"
        );
        assert_eq!((c.misordered, c.corrupted, c.outstanding()), (0, 0, 0));
        c.delivered(0, 1, 3, true, false);
        assert_eq!(c.misordered, 1, "1 after 2");
        c.delivered(0, 3, 4, false, false);
        assert_eq!(c.corrupted, 1);
        c.delivered(0, 9, 5, true, false);
        assert_eq!(c.corrupted, 2, "never commanded");
        assert!(c.first_violation.is_some());
    }
}
