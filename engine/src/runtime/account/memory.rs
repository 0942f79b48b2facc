//! Which chats are in memory: idle chats asked to sleep, admission of waiting chats when memory
//! is full (`runtime/admission.rs`), sleeping chats resumed after a restart.

use actix::prelude::*;

use super::{AccountActor, Resume};
use crate::runtime::EngineError;
use crate::runtime::admission;
use crate::runtime::chat::{ChatInput, TryStop};

impl AccountActor {
    /// Asks chats idle for longer than `idle_after` to stop (they refuse while they have work
    /// in flight); their records stay in the store and they are activated again when addressed.
    pub(super) fn sweep_idle(&mut self, ctx: &mut Context<Self>) {
        self.forget_indexed();
        let idle_after = self.shared.config.idle_after;
        let idle: Vec<u64> = self
            .last_seen
            .iter()
            .filter(|(h, t)| t.elapsed() > idle_after && !self.stopping.contains_key(h))
            .map(|(h, _)| *h)
            .collect();
        for handle in idle {
            self.ask_to_stop(handle, ctx);
        }
    }

    /// Sends [`TryStop`] to a loaded chat; its inputs wait in `stopping` until it answers.
    pub(super) fn ask_to_stop(&mut self, handle: u64, ctx: &mut Context<Self>) {
        let Some(addr) = self.chats.get(&handle).cloned() else {
            self.last_seen.remove(&handle);
            return;
        };
        self.stopping.insert(handle, Vec::new());
        let me = ctx.address();
        actix::spawn(async move {
            let answer = addr.send(TryStop).await.unwrap_or(Some(None));
            me.do_send(StopAnswer {
                handle,
                stopped: answer.is_some(),
                wake: answer.flatten(),
            });
        });
    }

    /// Memory holds as many chats as allowed (counting those being read).
    pub(super) fn full(&self) -> bool {
        self.shared.metrics.loaded_now() + self.loading.len() >= self.shared.config.max_loaded_chats
    }

    /// Loads waiting chats while there is room (or a batch regardless when `force`) and hands
    /// them their inputs; a chat that no longer exists fails its inputs.
    pub(super) fn admit(&mut self, force: bool, ctx: &mut Context<Self>) {
        let mut forced = if force { admission::ADMIT_ON_STALL } else { 0 };
        let now = std::time::Instant::now();
        while !self.admission.is_empty() {
            if self.full() {
                if forced == 0 {
                    return;
                }
                forced -= 1;
            }
            let Some((handle, inputs)) = self.admission.next(now) else {
                return;
            };
            if let Err((e, inputs)) = self.hand(handle, inputs, ctx) {
                tracing::warn!(account = self.account, chat = handle, error = %e, "chat could not be loaded");
                for input in inputs {
                    self.fail(handle, input);
                }
            }
        }
    }

    /// An input for a chat that cannot be loaded: its qts counts as handled (the update is
    /// not deliverable), its command answers why.
    pub(super) fn fail(&mut self, handle: u64, input: ChatInput) {
        if let Some(a) = input.ack {
            self.processed(a);
        }
        if let Some(d) = input.done {
            let _ = d.send(Err(EngineError::NoSuchChat(handle)));
        }
    }

    /// While inputs wait for admission, asks the chats left alone longest to sleep (those
    /// that cannot refuse and keep their place).
    pub(super) fn relieve(&mut self, ctx: &mut Context<Self>) {
        let want = self.admission.len().min(MAX_STOPPING);
        let n = want.saturating_sub(self.stopping.len());
        if n == 0 {
            return;
        }
        let now = std::time::Instant::now();
        let candidates = self
            .last_seen
            .iter()
            .filter(|(h, t)| {
                now.duration_since(**t) >= admission::MIN_RESIDENCY
                    && !self.stopping.contains_key(h)
            })
            .map(|(h, t)| (*t, *h))
            .collect();
        for handle in admission::quietest(candidates, n) {
            self.ask_to_stop(handle, ctx);
        }
    }
}

/// A chat answered [`TryStop`].
#[derive(Message)]
#[rtype(result = "()")]
struct StopAnswer {
    handle: u64,
    stopped: bool,
    /// When a stopped chat's earliest timer is due.
    wake: Option<u64>,
}

impl Handler<StopAnswer> for AccountActor {
    type Result = ();
    fn handle(&mut self, msg: StopAnswer, ctx: &mut Context<Self>) {
        let waiting = self.stopping.remove(&msg.handle).unwrap_or_default();
        if msg.stopped {
            self.chats.remove(&msg.handle);
            self.last_seen.remove(&msg.handle);
            if let Some(at) = msg.wake {
                self.alarms.push(std::cmp::Reverse((at, msg.handle)));
            }
            self.admit(false, ctx);
        } else {
            self.last_seen.insert(msg.handle, std::time::Instant::now());
        }
        for input in waiting {
            if let Err(input) = self.deliver(msg.handle, input, ctx) {
                self.fail(msg.handle, input);
            }
        }
    }
}

impl Handler<Resume> for AccountActor {
    type Result = ();
    fn handle(&mut self, msg: Resume, ctx: &mut Context<Self>) {
        // Paced: a few hundred per tick, so that chats addressed after a restart are served
        // at once instead of after every pending chat was restored (100,000 pending chats took
        // 36 s before the first message was served, measured).
        self.resume.extend(msg.0);
        self.resume_some(ctx);
    }
}

/// Chats with pending work resumed per tick after a restart.
const RESUME_PER_TICK: usize = 256;

/// Chats asked to sleep at once to make room for waiting ones.
const MAX_STOPPING: usize = 2_048;

impl AccountActor {
    pub(super) fn resume_some(&mut self, ctx: &mut Context<Self>) {
        for _ in 0..RESUME_PER_TICK {
            if self.full() {
                return; // the rest on a later tick
            }
            let Some(h) = self.resume.pop_front() else {
                return;
            };
            let _ = self.activate(h, ctx);
        }
    }
}
