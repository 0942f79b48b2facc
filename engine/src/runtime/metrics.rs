//! Engine-wide counters for operators and the simulator: recovery work (holes, Resend,
//! re-sends), rejected messages, store batches, the chats in memory and CPU time per
//! [`Phase`]. Updated by each chat actor after every step from its core's [`ChatCounters`];
//! reading them is a handful of atomic loads.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use crate::protocol::chat::ChatCounters;

/// The live counters (shared by the actors).
#[derive(Debug, Default)]
pub struct EngineMetrics {
    holes_opened: AtomicU64,
    holes_open: AtomicI64,
    resend_requests: AtomicU64,
    resent: AtomicU64,
    rejected: AtomicU64,
    batches: AtomicU64,
    dh_exponentiations: AtomicU64,
    chats_loaded: AtomicI64,
    chats_loaded_peak: AtomicI64,
    /// Nanoseconds per [`Phase`].
    spent: [AtomicU64; PHASES],
}

/// Where engine threads spend their CPU time (the thread's CPU clock around the work).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Chat steps: the protocol core, with each message's MTProto encryption or decryption.
    Protocol,
    /// DH exponentiations (handshakes and re-keys).
    Dh,
    /// Building a step's records and writing them to RocksDB (not the fsync wait).
    Store,
    /// File parts' encryption and decryption.
    Files,
    /// Loading sleeping chats: reading their records and restoring their state.
    Load,
}

/// How many [`Phase`]s there are.
const PHASES: usize = Phase::Load as usize + 1;

/// The calling thread's CPU time since [`PhaseClock::start`] (wall time would count the
/// time a thread waited preempted on a busy machine: the DH pool's measured 2x its CPU time).
/// Reading the thread's CPU clock is a system call (~1 µs here, 5% of the CPU per message at
/// scale when every step was timed), so frequent short work is sampled: [`PhaseClock::sample`]
/// times one call in [`SAMPLE_EVERY`] per thread and reports it scaled up.
pub(crate) struct PhaseClock {
    start: Option<cpu_time::ThreadTime>,
    weight: u32,
}

/// One in this many sampled calls is timed.
pub(crate) const SAMPLE_EVERY: u32 = 16;

thread_local! {
    /// Sampled calls per phase on this thread (one counter per phase: a shared one aliased
    /// with the alternation of steps and writes, and one phase was never timed).
    static SAMPLED: [std::cell::Cell<u32>; PHASES] =
        const { [const { std::cell::Cell::new(0) }; PHASES] };
}

impl PhaseClock {
    /// Times this call (long work: DH jobs, file parts).
    pub(crate) fn start() -> Self {
        Self {
            start: cpu_time::ThreadTime::try_now().ok(),
            weight: 1,
        }
    }

    /// Times one call of `phase` in [`SAMPLE_EVERY`] on this thread (short, frequent work).
    pub(crate) fn sample(phase: Phase) -> Self {
        let n = SAMPLED.with(|c| {
            let c = c.get(phase as usize)?;
            let n = c.get().wrapping_add(1);
            c.set(n);
            Some(n)
        });
        if n.is_some_and(|n| n % SAMPLE_EVERY == 0) {
            Self {
                start: cpu_time::ThreadTime::try_now().ok(),
                weight: SAMPLE_EVERY,
            }
        } else {
            Self {
                start: None,
                weight: 0,
            }
        }
    }

    /// CPU time since the start, scaled by the sampling (zero when this call was not timed or
    /// the clock is unavailable).
    pub(crate) fn elapsed(&self) -> Duration {
        self.start
            .as_ref()
            .and_then(|t| t.try_elapsed().ok())
            .map(|d| d * self.weight)
            .unwrap_or_default()
    }
}

/// Time spent per [`Phase`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PhaseTimes {
    /// See [`Phase::Protocol`].
    pub protocol: Duration,
    /// See [`Phase::Dh`].
    pub dh: Duration,
    /// See [`Phase::Store`].
    pub store: Duration,
    /// See [`Phase::Files`].
    pub files: Duration,
    /// See [`Phase::Load`].
    pub load: Duration,
}

/// A reading of [`EngineMetrics`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MetricsSnapshot {
    /// Holes in the peers' sequences that opened.
    pub holes_opened: u64,
    /// Holes open right now, over all chats in memory.
    pub holes_open: u64,
    /// Resend requests sent.
    pub resend_requests: u64,
    /// Stored messages sent again (Resend answers and tail retransmits).
    pub resent: u64,
    /// Incoming messages refused (bad MAC, replay, wrong chat…), state untouched.
    pub rejected: u64,
    /// Chat steps written to the store.
    pub batches: u64,
    /// 2048-bit DH exponentiations computed (handshakes and re-keys, including any wasted on
    /// an exchange that was aborted).
    pub dh_exponentiations: u64,
    /// Chat actors in memory right now (all accounts).
    pub chats_loaded: u64,
    /// The most chat actors that were in memory at once.
    pub chats_loaded_peak: u64,
    /// Time spent per phase.
    pub spent: PhaseTimes,
}

impl EngineMetrics {
    /// Adds a chat's growth since its last report, and the change in its open holes.
    pub(crate) fn add(&self, grew: ChatCounters, holes_before: usize, holes_now: usize) {
        let r = Ordering::Relaxed;
        if grew != ChatCounters::default() {
            self.holes_opened.fetch_add(grew.holes_opened, r);
            self.resend_requests.fetch_add(grew.resend_requests, r);
            self.resent.fetch_add(grew.resent, r);
        }
        if holes_before != holes_now {
            self.holes_open
                .fetch_add(holes_now as i64 - holes_before as i64, r);
        }
    }

    pub(crate) fn rejected(&self) {
        self.rejected.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn dh(&self, exponentiations: u64) {
        self.dh_exponentiations
            .fetch_add(exponentiations, Ordering::Relaxed);
    }

    /// Adds time spent in `phase`.
    pub(crate) fn spent(&self, phase: Phase, d: Duration) {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        if let Some(a) = self.spent.get(phase as usize) {
            a.fetch_add(ns, Ordering::Relaxed);
        }
    }

    fn spent_in(&self, phase: Phase) -> Duration {
        Duration::from_nanos(
            self.spent
                .get(phase as usize)
                .map_or(0, |a| a.load(Ordering::Relaxed)),
        )
    }

    /// A chat actor started (`+1`) or stopped (`-1`).
    pub(crate) fn loaded(&self, change: i64) {
        let now = self.chats_loaded.fetch_add(change, Ordering::Relaxed) + change;
        self.chats_loaded_peak.fetch_max(now, Ordering::Relaxed);
    }

    /// Chat actors in memory now.
    pub(crate) fn loaded_now(&self) -> usize {
        self.chats_loaded.load(Ordering::Relaxed).max(0) as usize
    }

    pub(crate) fn batch(&self) {
        self.batches.fetch_add(1, Ordering::Relaxed);
    }

    /// The current values.
    pub fn snapshot(&self) -> MetricsSnapshot {
        let r = Ordering::Relaxed;
        MetricsSnapshot {
            holes_opened: self.holes_opened.load(r),
            holes_open: self.holes_open.load(r).max(0) as u64,
            resend_requests: self.resend_requests.load(r),
            resent: self.resent.load(r),
            rejected: self.rejected.load(r),
            batches: self.batches.load(r),
            dh_exponentiations: self.dh_exponentiations.load(r),
            chats_loaded: self.chats_loaded.load(r).max(0) as u64,
            chats_loaded_peak: self.chats_loaded_peak.load(r).max(0) as u64,
            spent: PhaseTimes {
                protocol: self.spent_in(Phase::Protocol),
                dh: self.spent_in(Phase::Dh),
                store: self.spent_in(Phase::Store),
                files: self.spent_in(Phase::Files),
                load: self.spent_in(Phase::Load),
            },
        }
    }
}
