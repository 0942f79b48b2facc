//! The run's verification: every message sent is expected exactly once, in order, with
//! identical content, on the other side. Anything else is a violation the report names.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Most violations described in full (the counters count all).
const MAX_DESCRIBED: usize = 20;

/// One direction of one chat.
#[derive(Debug, Default, Clone)]
pub struct Stream {
    /// Messages handed to the engine (accepted for sending).
    pub sent: u32,
    /// Messages the sender will send in all (known once it finished).
    pub planned: Option<u32>,
    /// The next index the receiver must see.
    pub next: u32,
    /// Send time of messages not delivered yet.
    pending: HashMap<u32, Instant>,
}

/// What went wrong, with where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The chat (pair index).
    pub pair: usize,
    /// Direction: 0 initiator → participant, 1 back.
    pub dir: usize,
    /// The message index, if one is concerned.
    pub idx: Option<u32>,
    /// `lost`, `duplicated`, `misordered`, `corrupted`, `closed`, `inconsistent`, `send_failed`.
    pub kind: &'static str,
    /// Details.
    pub detail: String,
}

/// The counters and samples of a run.
#[derive(Debug)]
pub struct Ledger {
    /// Streams by `pair × 2 + dir`.
    pub streams: Vec<Stream>,
    /// Deliveries, in order and intact.
    pub delivered: u64,
    /// Deliveries of a message already delivered.
    pub duplicated: u64,
    /// Deliveries ahead of a missing earlier message.
    pub misordered: u64,
    /// Deliveries whose content differs from what was sent.
    pub corrupted: u64,
    /// End-to-end latencies (ms).
    pub latencies: Vec<f32>,
    /// Accept latencies (ms): send call → the engine accepted (stored) the message.
    pub accept_latencies: Vec<f32>,
    /// Deliveries per second since the start.
    pub per_second: Vec<u32>,
    /// Re-keys completed (both sides' `Rekeyed` events, halved at report time) per second.
    pub rekeys_per_second: Vec<u32>,
    /// Files accepted for sending.
    pub files_sent: u64,
    /// Files verified after download.
    pub files_verified: u64,
    /// Violations in detail (the first ones).
    pub violations: Vec<Violation>,
    /// Violations in all.
    pub violation_count: u64,
    /// Messages accepted for sending (kept as a sum: streams can number millions).
    sent_count: u64,
    /// Streams not yet complete (no plan yet, or short of it).
    incomplete: usize,
    started: Instant,
}

impl Ledger {
    /// A ledger for `pairs` chats.
    pub fn new(pairs: usize, started: Instant) -> Self {
        Self {
            streams: vec![Stream::default(); pairs * 2],
            delivered: 0,
            duplicated: 0,
            misordered: 0,
            corrupted: 0,
            latencies: Vec::new(),
            accept_latencies: Vec::new(),
            per_second: Vec::new(),
            rekeys_per_second: Vec::new(),
            files_sent: 0,
            files_verified: 0,
            violations: Vec::new(),
            violation_count: 0,
            sent_count: 0,
            incomplete: pairs * 2,
            started,
        }
    }

    fn second(&self, at: Instant) -> usize {
        at.saturating_duration_since(self.started).as_secs() as usize
    }

    fn bump(series: &mut Vec<u32>, second: usize) {
        if series.len() <= second {
            series.resize(second + 1, 0);
        }
        series[second] += 1;
    }

    /// Records a violation.
    pub fn violation(&mut self, v: Violation) {
        self.violation_count += 1;
        if self.violations.len() < MAX_DESCRIBED {
            self.violations.push(v);
        }
    }

    fn flag(&mut self, pair: usize, dir: usize, idx: Option<u32>, kind: &'static str, d: String) {
        self.violation(Violation {
            pair,
            dir,
            idx,
            kind,
            detail: d,
        });
    }

    /// Message `idx` of stream `s` is about to be handed to the engine.
    pub fn sending(&mut self, s: usize, idx: u32, at: Instant) {
        if let Some(st) = self.streams.get_mut(s) {
            st.pending.insert(idx, at);
        }
    }

    /// The engine accepted message `idx` of stream `s`.
    pub fn sent(&mut self, s: usize, idx: u32) {
        if let Some(st) = self.streams.get_mut(s) {
            st.sent += 1;
            self.sent_count += 1;
            if let Some(at) = st.pending.get(&idx) {
                self.accept_latencies
                    .push((at.elapsed().as_secs_f64() * 1e3) as f32);
            }
        }
    }

    /// The sender of stream `s` finished after `n` messages.
    pub fn finished(&mut self, s: usize, n: u32) {
        if let Some(st) = self.streams.get_mut(s) {
            if st.planned.is_none() {
                st.planned = Some(n);
                if st.next >= n {
                    self.incomplete -= 1;
                }
            }
        }
    }

    /// Counts stream `s` complete if this delivery completed it.
    fn check_complete(&mut self, s: usize, before: u32) {
        if let Some(st) = self.streams.get(s) {
            if let Some(p) = st.planned {
                if before < p && st.next >= p {
                    self.incomplete -= 1;
                }
            }
        }
    }

    /// A Rekeyed event arrived.
    pub fn rekeyed(&mut self, at: Instant) {
        let sec = self.second(at);
        Self::bump(&mut self.rekeys_per_second, sec);
    }

    /// The receiver of `pair`/`dir` got message `idx`; `intact`: its content is what was sent.
    /// Returns whether it was the expected next message (a delivery that frees a window slot).
    pub fn received(
        &mut self,
        pair: usize,
        dir: usize,
        idx: u32,
        intact: bool,
        at: Instant,
    ) -> bool {
        let s = pair * 2 + dir;
        let Some(st) = self.streams.get_mut(s) else {
            self.corrupted += 1;
            self.flag(
                pair,
                dir,
                Some(idx),
                "corrupted",
                "a message for a chat the run does not have".into(),
            );
            return false;
        };
        let next = st.next;
        if idx < next {
            self.duplicated += 1;
            self.flag(
                pair,
                dir,
                Some(idx),
                "duplicated",
                format!("delivered again (next expected {next})"),
            );
            return false;
        }
        if idx > next {
            // Resynchronize so one reorder is not counted for every later message.
            st.next = idx.saturating_add(1);
            st.pending.retain(|&i, _| i > idx);
            self.check_complete(s, next);
            self.misordered += 1;
            self.flag(
                pair,
                dir,
                Some(idx),
                "misordered",
                format!("arrived while {next} was still missing"),
            );
            return true;
        }
        st.next = idx.saturating_add(1);
        let sent_at = st.pending.remove(&idx);
        self.check_complete(s, next);
        if let Some(t) = sent_at {
            let ms = at.saturating_duration_since(t).as_secs_f64() * 1000.0;
            self.latencies.push(ms as f32);
        }
        if !intact {
            self.corrupted += 1;
            self.flag(
                pair,
                dir,
                Some(idx),
                "corrupted",
                "content differs from what was sent".into(),
            );
        }
        self.delivered += 1;
        let sec = self.second(at);
        Self::bump(&mut self.per_second, sec);
        true
    }

    /// A downloaded file was checked.
    pub fn file_checked(&mut self, pair: usize, dir: usize, idx: u32, ok: Result<(), String>) {
        match ok {
            Ok(()) => self.files_verified += 1,
            Err(e) => {
                self.corrupted += 1;
                self.flag(pair, dir, Some(idx), "corrupted", format!("file: {e}"));
            }
        }
    }

    /// Every sender finished and every stream got all it was sent.
    pub fn complete(&self) -> bool {
        self.incomplete == 0
    }

    /// Messages accepted for sending.
    pub fn sent_total(&self) -> u64 {
        self.sent_count
    }

    /// Sent but never delivered; records a `lost` violation for each stream short of its sends.
    pub fn settle_losses(&mut self) -> u64 {
        let mut lost = 0;
        let mut found = Vec::new();
        for (s, st) in self.streams.iter().enumerate() {
            if st.sent > st.next {
                let n = st.sent - st.next;
                lost += u64::from(n);
                found.push(Violation {
                    pair: s / 2,
                    dir: s % 2,
                    idx: Some(st.next),
                    kind: "lost",
                    detail: format!("{n} message(s) from index {} never arrived", st.next),
                });
            }
        }
        for v in found {
            self.violation(v);
        }
        lost
    }

    /// Latency percentiles (ms): p50, p90, p99, max.
    pub fn percentiles(&self) -> [f64; 4] {
        percentiles(&self.latencies)
    }

    /// Accept latency percentiles (ms): p50, p90, p99, max.
    pub fn accept_percentiles(&self) -> [f64; 4] {
        percentiles(&self.accept_latencies)
    }

    /// Time since the run started.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }
}

/// p50, p90, p99 and max of `v` (0 when empty).
fn percentiles(v: &[f32]) -> [f64; 4] {
    let mut v = v.to_vec();
    if v.is_empty() {
        return [0.0; 4];
    }
    v.sort_by(f32::total_cmp);
    let at = |q: f64| f64::from(v[((v.len() - 1) as f64 * q).round() as usize]);
    [at(0.5), at(0.9), at(0.99), at(1.0)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exactly_once_in_order_or_a_named_violation() {
        let t = Instant::now();
        let mut l = Ledger::new(2, t);
        for i in 0..4 {
            l.sending(0, i, t);
            l.sent(0, 0);
        }
        l.finished(0, 4);
        assert!(l.received(0, 0, 0, true, t));
        assert!(!l.received(0, 0, 0, true, t), "a duplicate");
        assert_eq!(l.duplicated, 1);
        assert!(l.received(0, 0, 2, true, t), "1 skipped");
        assert_eq!(l.misordered, 1);
        assert!(l.received(0, 0, 3, false, t));
        assert_eq!(l.corrupted, 1);
        assert_eq!(l.delivered, 2);
        assert!(!l.complete(), "stream 1..3 never finished");
        for s in 1..4 {
            l.finished(s, 0);
        }
        assert!(l.complete());
        assert_eq!(l.settle_losses(), 0);
        let kinds: Vec<_> = l.violations.iter().map(|v| v.kind).collect();
        assert_eq!(kinds, ["duplicated", "misordered", "corrupted"]);
    }

    #[test]
    fn losses_are_counted_per_stream() {
        let t = Instant::now();
        let mut l = Ledger::new(1, t);
        for i in 0..3 {
            l.sending(1, i, t);
            l.sent(1, 0);
        }
        l.received(0, 1, 0, true, t);
        assert_eq!(l.settle_losses(), 2);
        assert_eq!(l.violations[0].kind, "lost");
        assert_eq!(l.violations[0].pair, 0);
        assert_eq!(l.violations[0].dir, 1);
        assert_eq!(l.violations[0].idx, Some(1));
    }
}
