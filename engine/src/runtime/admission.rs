//! Admission of sleeping chats into memory under load.
//!
//! A chat in memory costs a few kilobytes (its actor, core, timers, queued work); an input
//! waiting for a sleeping chat costs its event. When more chats have work than
//! [`EngineConfig::max_loaded_chats`](super::EngineConfig::max_loaded_chats) allows in memory,
//! the inputs for the chats that are not loaded wait here, in arrival order per chat and chats
//! in the order they were first addressed, while the account asks its quietest loaded chats to
//! sleep; each chat that leaves memory lets the next waiting one in. An overloaded engine then
//! holds its backlog as events instead of as loaded chats: at a million chats with 100,000
//! active on two cores the backlog is tens of seconds of traffic either way, and only its form
//! decides the memory (docs/engine.md, "Admission").
//!
//! The limit is soft so that it can never deadlock: a chat that cannot sleep (a handshake
//! waiting for its peer, work in flight) keeps its place, and if no chat was admitted for
//! [`STALL`] while inputs wait, a batch is admitted regardless.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use super::chat::ChatInput;
use crate::protocol::chat::Event;

/// How long the queue may wait without any admission before a batch is let in regardless
/// (every loaded chat busy, or the slots freed by another account).
pub(super) const STALL: Duration = Duration::from_millis(500);

/// Chats admitted regardless of the limit when the queue stalled.
pub(super) const ADMIT_ON_STALL: usize = 256;

/// A loaded chat is not asked to make room until it was left alone this long (it has just
/// been addressed: its peer's answer may be on its way).
pub(super) const MIN_RESIDENCY: Duration = Duration::from_millis(100);

/// Chats with network input admitted per chat with only local commands, while both wait.
pub(super) const NETWORK_PER_LOCAL: u32 = 3;

/// A waiting chat's inputs, and whether any came from the network.
struct Waiting {
    inputs: Vec<ChatInput>,
    network: bool,
}

/// Inputs for chats waiting to be loaded, in two lanes: chats with input from the network
/// (messages, chat updates: work already in flight, whose qts hold the acknowledgement back)
/// go [`NETWORK_PER_LOCAL`] to one before chats with only the application's commands (new
/// work). Each lane is first come, first served; a chat's inputs stay in arrival order.
#[derive(Default)]
pub(super) struct Admission {
    waiting: HashMap<u64, Waiting>,
    /// Lane 0: chats with network input; lane 1: commands only (a chat that gets network
    /// input moves to lane 0, its lane-1 place is skipped).
    order: [VecDeque<u64>; 2],
    /// Network chats admitted since the last command-only one.
    streak: u32,
    /// The last admission (or when the queue became non-empty).
    last: Option<Instant>,
}

impl Admission {
    /// Whether inputs for `handle` are waiting (later ones must queue behind them).
    pub(super) fn holds(&self, handle: u64) -> bool {
        self.waiting.contains_key(&handle)
    }

    /// Queues `input` for `handle`.
    pub(super) fn push(&mut self, handle: u64, input: ChatInput, now: Instant) {
        if self.waiting.is_empty() {
            self.last = Some(now);
            // Only places of taken chats can be left.
            self.order.iter_mut().for_each(VecDeque::clear);
        }
        let network = !matches!(input.event, Event::Command(_));
        match self.waiting.get_mut(&handle) {
            Some(w) => {
                w.inputs.push(input);
                if network && !w.network {
                    w.network = true;
                    self.order[0].push_back(handle);
                }
            }
            None => {
                self.waiting.insert(
                    handle,
                    Waiting {
                        inputs: vec![input],
                        network,
                    },
                );
                self.order[usize::from(!network)].push_back(handle);
            }
        }
    }

    /// The next chat to load and its inputs: network lane first, [`NETWORK_PER_LOCAL`] to one.
    pub(super) fn next(&mut self, now: Instant) -> Option<(u64, Vec<ChatInput>)> {
        let first = usize::from(self.streak >= NETWORK_PER_LOCAL);
        for lane in [first, 1 - first] {
            while let Some(handle) = self.order[lane].pop_front() {
                // A place is current if the chat still waits in this lane.
                let current = self
                    .waiting
                    .get(&handle)
                    .is_some_and(|w| w.network == (lane == 0));
                if !current {
                    continue;
                }
                let Some(w) = self.waiting.remove(&handle) else {
                    continue;
                };
                self.streak = if lane == 0 { self.streak + 1 } else { 0 };
                self.last = Some(now);
                return Some((handle, w.inputs));
            }
        }
        None
    }

    /// Takes the inputs waiting for `handle` (it was loaded outside its turn).
    pub(super) fn take(&mut self, handle: u64) -> Vec<ChatInput> {
        // Its places in `order` are skipped by `next`.
        self.waiting
            .remove(&handle)
            .map(|w| w.inputs)
            .unwrap_or_default()
    }

    /// Chats waiting.
    pub(super) fn len(&self) -> usize {
        self.waiting.len()
    }

    /// Nothing waits.
    pub(super) fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }

    /// Inputs wait and nothing was admitted for [`STALL`].
    pub(super) fn stalled(&self, now: Instant) -> bool {
        !self.is_empty() && self.last.is_some_and(|t| now.duration_since(t) >= STALL)
    }
}

/// The `n` handles seen longest ago among `candidates` (handle, last seen), oldest first.
pub(super) fn quietest(mut candidates: Vec<(Instant, u64)>, n: usize) -> Vec<u64> {
    if candidates.len() > n {
        candidates.select_nth_unstable(n);
        candidates.truncate(n);
    }
    candidates.sort_unstable();
    candidates.into_iter().map(|(_, h)| h).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::chat::{Command, Outgoing, Timer};

    fn input() -> ChatInput {
        ChatInput::event(Event::Timer(Timer::Retransmit))
    }

    fn command() -> ChatInput {
        ChatInput::event(Event::Command(Command::Send(Box::new(Outgoing::text(
            1, "x",
        )))))
    }

    #[test]
    fn network_input_goes_three_to_one_before_commands_and_keeps_its_order() {
        let t = Instant::now();
        let mut a = Admission::default();
        for h in 1..=4 {
            a.push(h, command(), t); // commands only
        }
        for h in 11..=16 {
            a.push(h, input(), t); // network input
        }
        a.push(2, input(), t); // chat 2 now has network input too: it moves up
        let order: Vec<u64> = std::iter::from_fn(|| a.next(t).map(|(h, _)| h)).collect();
        assert_eq!(order, vec![11, 12, 13, 1, 14, 15, 16, 3, 2, 4]);
        assert!(a.is_empty());
    }

    #[test]
    fn a_moved_chat_keeps_its_inputs_in_arrival_order() {
        let t = Instant::now();
        let mut a = Admission::default();
        a.push(5, command(), t);
        a.push(5, input(), t);
        a.push(5, command(), t);
        let (h, inputs) = a.next(t).expect("chat 5");
        assert_eq!(h, 5);
        let kinds: Vec<bool> = inputs
            .iter()
            .map(|i| matches!(i.event, Event::Command(_)))
            .collect();
        assert_eq!(kinds, vec![true, false, true]);
        assert!(
            a.next(t).is_none(),
            "its stale command-lane place is skipped"
        );
    }

    #[test]
    fn chats_are_admitted_in_first_addressed_order_with_their_inputs_in_order() {
        let t = Instant::now();
        let mut a = Admission::default();
        a.push(7, input(), t);
        a.push(3, input(), t);
        a.push(7, input(), t);
        assert!(a.holds(7) && a.holds(3) && !a.holds(1));
        assert_eq!(a.len(), 2);
        let (h, inputs) = a.next(t).expect("first");
        assert_eq!((h, inputs.len()), (7, 2));
        assert!(!a.holds(7));
        let (h, inputs) = a.next(t).expect("second");
        assert_eq!((h, inputs.len()), (3, 1));
        assert!(a.next(t).is_none() && a.is_empty());
    }

    #[test]
    fn a_chat_taken_out_of_turn_loses_its_place() {
        let t = Instant::now();
        let mut a = Admission::default();
        a.push(1, input(), t);
        a.push(2, input(), t);
        assert_eq!(a.take(1).len(), 1);
        assert_eq!(a.len(), 1);
        assert_eq!(a.next(t).map(|(h, _)| h), Some(2));
        assert!(a.next(t).is_none());
        assert!(a.take(5).is_empty());
    }

    #[test]
    fn a_queue_without_admissions_stalls() {
        let t = Instant::now();
        let mut a = Admission::default();
        assert!(!a.stalled(t + STALL * 2), "an empty queue never stalls");
        a.push(1, input(), t);
        a.push(2, input(), t);
        assert!(!a.stalled(t + STALL / 2));
        assert!(a.stalled(t + STALL));
        let _ = a.next(t + STALL);
        assert!(
            !a.stalled(t + STALL + STALL / 2),
            "an admission resets the clock"
        );
    }

    #[test]
    fn quietest_picks_the_oldest() {
        let t = Instant::now();
        let c = (0..10u64)
            .map(|h| (t + Duration::from_millis(10 * (10 - h)), h))
            .collect();
        assert_eq!(quietest(c, 3), vec![9, 8, 7]);
        assert_eq!(quietest(vec![(t, 1)], 3), vec![1]);
    }
}
