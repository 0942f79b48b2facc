//! Activating a sleeping chat: its records are read (in place on an embedded database; on the
//! loader's threads on a shared one, while what arrives for the chat waits here), its core is
//! restored and its actor started.

use actix::prelude::*;
use tokio::sync::oneshot;

use super::AccountActor;
use crate::protocol::chat::ChatCore;
use crate::runtime::chat::{ChatActor, ChatInput};
use crate::runtime::metrics::{Phase, PhaseClock};
use crate::runtime::workers::ChatLoader;
use crate::runtime::workers::LoadChat;
use crate::runtime::{EngineError, now_ms};
use crate::store::{StoreError, StoredChat};

/// How long a read of the database that failed waits before it is tried again.
pub(super) const READ_RETRY: std::time::Duration = std::time::Duration::from_millis(500);

/// Where a chat's activation stands.
pub(super) enum Activation {
    /// In memory.
    Ready(Addr<ChatActor>),
    /// Its records are being read: inputs for it go to [`Loading`].
    Loading,
}

/// A chat whose records are being read, and what waits for it.
#[derive(Default)]
pub(super) struct Loading {
    /// Inputs, in arrival order.
    pub inputs: Vec<ChatInput>,
    /// Callers that want the chat's actor (a status request).
    pub waiters: Vec<oneshot::Sender<Result<Addr<ChatActor>, EngineError>>>,
}

impl AccountActor {
    /// The chat actor for `handle` if it is in memory; otherwise starts its activation (at
    /// once on an embedded database).
    pub(super) fn activate(
        &mut self,
        handle: u64,
        ctx: &mut Context<Self>,
    ) -> Result<Activation, EngineError> {
        if let Some(a) = self.chats.get(&handle) {
            if a.connected() {
                return Ok(Activation::Ready(a.clone()));
            }
        }
        if self.loading.contains_key(&handle) {
            return Ok(Activation::Loading);
        }
        let Some(loader) = self.shared.loader.clone() else {
            let clock = PhaseClock::sample(Phase::Load);
            let stored = self.shared.store.load_chat(self.account, handle)?;
            return self
                .start_stored(handle, stored, clock, ctx)
                .map(Activation::Ready);
        };
        self.loading.insert(handle, Loading::default());
        self.read_chat(loader, handle, ctx);
        Ok(Activation::Loading)
    }

    /// Reads chat `handle`'s records on the loader's threads. A read the database failed
    /// (unreachable, timed out) is tried again after [`READ_RETRY`], with what waits for the
    /// chat kept: its updates are not acknowledged before they are stored, and a later read
    /// hands them over in order. Status requests waiting meanwhile get the error.
    fn read_chat(&mut self, loader: Addr<ChatLoader>, handle: u64, ctx: &mut Context<Self>) {
        let account = self.account;
        let retry = loader.clone();
        let read = async move { loader.send(LoadChat { account, handle }).await };
        ctx.spawn(read.into_actor(self).map(move |read, act, ctx| {
            let stored = match read {
                Ok(r) => r.map_err(EngineError::from),
                Err(_) => Err(EngineError::Stopped),
            };
            match stored {
                Err(e @ EngineError::Store(StoreError::Remote(_))) => {
                    let Some(waiting) = act.loading.get_mut(&handle) else {
                        return;
                    };
                    tracing::warn!(account = act.account, chat = handle, error = %e, "chat read failed; trying again");
                    for w in waiting.waiters.drain(..) {
                        let _ = w.send(Err(e.clone()));
                    }
                    ctx.run_later(READ_RETRY, move |act, ctx| act.read_chat(retry, handle, ctx));
                }
                stored => act.loaded(handle, stored, ctx),
            }
        }));
    }

    /// A chat's records were read: starts it and hands it what waited, in order; or fails
    /// what waited.
    fn loaded(
        &mut self,
        handle: u64,
        stored: Result<Option<StoredChat>, EngineError>,
        ctx: &mut Context<Self>,
    ) {
        let Some(waiting) = self.loading.remove(&handle) else {
            return;
        };
        self.released(waiting.inputs.len());
        let clock = PhaseClock::sample(Phase::Load);
        match stored.and_then(|s| self.start_stored(handle, s, clock, ctx)) {
            Ok(addr) => {
                for input in waiting.inputs {
                    addr.do_send(input);
                }
                for w in waiting.waiters {
                    let _ = w.send(Ok(addr.clone()));
                }
            }
            Err(e) => {
                tracing::warn!(account = self.account, chat = handle, error = %e, "chat could not be loaded");
                for input in waiting.inputs {
                    self.fail(handle, input);
                }
                for w in waiting.waiters {
                    let _ = w.send(Err(e.clone()));
                }
            }
        }
        // Its place in memory is taken or free again: let waiting chats in.
        if !self.admission.is_empty() {
            self.admit(false, ctx);
        }
    }

    /// Restores a chat from its records and starts its actor; what waited for it in admission
    /// goes first, so that nothing overtakes it.
    fn start_stored(
        &mut self,
        handle: u64,
        stored: Option<StoredChat>,
        clock: PhaseClock,
        ctx: &mut Context<Self>,
    ) -> Result<Addr<ChatActor>, EngineError> {
        let stored = stored.ok_or(EngineError::NoSuchChat(handle))?;
        let registry = self.shared.registry.clone();
        let (core, actions) = ChatCore::restore(
            self.shared.config.chat,
            &stored.state,
            stored.outbox,
            stored.waiting,
            |p, g| registry.get(p, g),
            now_ms(),
            &mut rand::rngs::OsRng,
        )?;
        self.shared.metrics.spent(Phase::Load, clock.elapsed());
        let addr = self.start_chat(handle, core, actions, None, false, ctx);
        for input in self.admission.take(handle) {
            addr.do_send(input);
        }
        Ok(addr)
    }

    /// Hands `inputs` to chat `handle`, activating it; `Err` gives them back when the chat
    /// cannot be had.
    pub(super) fn hand(
        &mut self,
        handle: u64,
        inputs: Vec<ChatInput>,
        ctx: &mut Context<Self>,
    ) -> Result<(), (EngineError, Vec<ChatInput>)> {
        match self.activate(handle, ctx) {
            Ok(Activation::Ready(addr)) => {
                self.last_seen.insert(handle, std::time::Instant::now());
                for input in inputs {
                    addr.do_send(input);
                }
                Ok(())
            }
            Ok(Activation::Loading) => {
                for input in inputs {
                    if !self.may_hold(input.ack) {
                        self.give_up(input);
                    } else if let Some(l) = self.loading.get_mut(&handle) {
                        l.inputs.push(input);
                    }
                }
                Ok(())
            }
            Err(e) => Err((e, inputs)),
        }
    }

    /// The chat's actor once it is in memory (a status request).
    pub(super) fn when_active(
        &mut self,
        handle: u64,
        ctx: &mut Context<Self>,
    ) -> oneshot::Receiver<Result<Addr<ChatActor>, EngineError>> {
        let (tx, rx) = oneshot::channel();
        match self.activate(handle, ctx) {
            Ok(Activation::Ready(addr)) => {
                let _ = tx.send(Ok(addr));
            }
            Ok(Activation::Loading) => {
                if let Some(l) = self.loading.get_mut(&handle) {
                    l.waiters.push(tx);
                }
            }
            Err(e) => {
                let _ = tx.send(Err(e));
            }
        }
        rx
    }
}
