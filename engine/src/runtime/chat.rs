//! [`ChatActor`]: owns one [`ChatCore`] and executes its actions in order — persist (one batch,
//! waiting for durability), then the application events and the qts acknowledgement, then the
//! server calls one after another (a chat's sends never overtake each other), DH jobs on the
//! pool, timers. It is the only writer of its chat's records.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use secretchat_schema::Serialize;
use secretchat_schema::api::enums as api;
use secretchat_schema::api::types as api_types;

use super::account::{AccountActor, Processed};
use super::trace::{ActionLine, EventLine, call_name};
use super::workers::{ConfigError, GetConfig, RunJob};
use super::{AckToken, EngineEvent, EventKind, Shared, now_ms};
use crate::protocol::chat::{Action, Call, ChatCore, ChatCounters, Event, Persist};
use crate::store::ChatWrite;
use crate::transport::{ErrorClass, RpcError, ServerApi};

/// One chat.
pub struct ChatActor {
    pub(super) account: u64,
    pub(super) handle: u64,
    pub(super) core: ChatCore,
    pub(super) shared: Arc<Shared>,
    pub(super) api: Arc<dyn ServerApi>,
    pub(super) owner: Addr<AccountActor>,
    /// Actions from creation/restore, executed when the actor starts.
    pub(super) initial: Vec<Action>,
    /// Told once the initial actions are stored.
    pub(super) initial_done: Option<tokio::sync::oneshot::Sender<()>>,
    /// DH jobs and config requests not answered yet.
    pub(super) in_flight: usize,
    /// The core's counters as last added to the engine metrics, and its open holes then.
    pub(super) reported: (ChatCounters, usize),
}

/// Stop if there is nothing in flight (answers whether it stopped). A stopped chat is
/// activated from the store when next addressed; its week-long key-age check then happens on
/// the next message.
#[derive(Message)]
#[rtype(result = "bool")]
pub struct TryStop;

impl Handler<TryStop> for ChatActor {
    type Result = bool;
    fn handle(&mut self, _: TryStop, ctx: &mut Context<Self>) -> bool {
        let quiet = self.in_flight == 0 && self.core.can_sleep();
        if quiet {
            ctx.stop();
        }
        quiet
    }
}

impl Actor for ChatActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let initial = std::mem::take(&mut self.initial);
        let done = self.initial_done.take();
        self.run(initial, None, done, ctx);
    }
}

/// An event for the chat, and what its processing acknowledges.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ChatInput {
    /// The event.
    pub event: Event,
    /// The qts (or difference batch) this completes once stored.
    pub ack: Option<AckToken>,
    /// Told once the step is durably stored (commands: "accepted" means stored).
    pub done: Option<tokio::sync::oneshot::Sender<()>>,
}

/// Ask for the chat's status.
#[derive(Message)]
#[rtype(result = "crate::protocol::chat::ChatStatus")]
pub struct GetStatus;

impl Handler<GetStatus> for ChatActor {
    type Result = MessageResult<GetStatus>;
    fn handle(&mut self, _: GetStatus, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.core.status(now_ms()))
    }
}

impl Handler<ChatInput> for ChatActor {
    type Result = ();
    fn handle(&mut self, msg: ChatInput, ctx: &mut Context<Self>) {
        tracing::trace!(
            account = self.account,
            chat = self.handle,
            event = ?EventLine(&msg.event),
            "chat event"
        );
        let actions = self
            .core
            .handle(msg.event, now_ms(), &mut rand::rngs::OsRng);
        self.run(actions, msg.ack, msg.done, ctx);
    }
}

impl ChatActor {
    fn run(
        &mut self,
        actions: Vec<Action>,
        ack: Option<AckToken>,
        done: Option<tokio::sync::oneshot::Sender<()>>,
        ctx: &mut Context<Self>,
    ) {
        let counters = self.core.counters();
        let holes = self.core.holes_open();
        let (was, holes_before) = self.reported;
        self.shared
            .metrics
            .add(counters.since(&was), holes_before, holes);
        self.reported = (counters, holes);
        let mut persist: Option<Box<Persist>> = None;
        let mut events = Vec::new();
        let mut calls = Vec::new();
        let me = ctx.address();
        for a in actions {
            tracing::trace!(
                account = self.account,
                chat = self.handle,
                action = ?ActionLine(&a),
                "chat action"
            );
            match a {
                Action::Persist(p) => persist = Some(p),
                Action::Deliver(e) => events.push(e),
                Action::Call(c) => calls.push(*c),
                Action::ArmTimer { timer, at } => {
                    // +1 ms: the clock is read in whole milliseconds.
                    let delay = Duration::from_millis(at.saturating_sub(now_ms()) + 1);
                    ctx.notify_later(
                        ChatInput {
                            event: Event::Timer(timer),
                            ack: None,
                            done: None,
                        },
                        delay,
                    );
                }
                Action::Compute(job) => {
                    self.in_flight += 1;
                    let pool = self.shared.rekey.clone();
                    let me = me.clone();
                    actix::spawn(async move {
                        if let Ok(out) = pool.send(RunJob(job)).await {
                            me.do_send(ChatInput {
                                event: Event::DhDone(Box::new(out)),
                                ack: None,
                                done: None,
                            });
                        }
                    });
                }
                Action::NeedDhConfig => {
                    self.in_flight += 1;
                    let svc = self.shared.dh_config.clone();
                    let (account, api, me) = (self.account, self.api.clone(), me.clone());
                    actix::spawn(async move {
                        loop {
                            match svc
                                .send(GetConfig {
                                    account,
                                    api: api.clone(),
                                })
                                .await
                            {
                                Ok(Ok((params, random))) => {
                                    me.do_send(ChatInput {
                                        event: Event::DhConfig { params, random },
                                        ack: None,
                                        done: None,
                                    });
                                    return;
                                }
                                Ok(Err(ConfigError::Invalid(e))) => {
                                    me.do_send(ChatInput {
                                        event: Event::DhConfigFailed(e),
                                        ack: None,
                                        done: None,
                                    });
                                    return;
                                }
                                Ok(Err(ConfigError::Unavailable)) => {
                                    tokio::time::sleep(Duration::from_secs(1)).await;
                                }
                                Err(_) => return,
                            }
                        }
                    });
                }
                Action::Rejected(e) => {
                    tracing::debug!(account = self.account, chat = self.handle, error = %e, "message rejected");
                    self.shared.metrics.rejected();
                }
            }
        }
        let ticket = if persist.is_some() || !events.is_empty() {
            let empty = Persist::default();
            let state = self.core.snapshot();
            let w = ChatWrite {
                account: self.account,
                handle: self.handle,
                chat_id: self.core.chat_id(),
                state: &state,
                persist: persist.as_deref().unwrap_or(&empty),
                events: &events,
                qts: None,
            };
            self.shared.metrics.batch();
            match self.shared.store.write_chat(&w) {
                Ok(t) => Some(t),
                Err(e) => {
                    tracing::warn!(account = self.account, chat = self.handle, error = %e, "store write failed; chat stopped");
                    // Nothing may be sent or acknowledged that was not stored: stop the chat.
                    // It restarts from its last stored state when next addressed.
                    let _ = self.shared.events.send(EngineEvent {
                        seq: None,
                        account: self.account,
                        chat: self.handle,
                        kind: EventKind::Error(format!("store: {e}")),
                    });
                    ctx.stop();
                    return;
                }
            }
        } else {
            None
        };
        let shared = self.shared.clone();
        let api = self.api.clone();
        let owner = self.owner.clone();
        let (account, handle) = (self.account, self.handle);
        let fut = async move {
            let mut seqs = Vec::new();
            if let Some((ticket, s)) = ticket {
                shared.store.synced(ticket).await;
                seqs = s;
            }
            for (seq, e) in seqs.into_iter().zip(events) {
                let _ = shared.events.send(EngineEvent {
                    seq: Some(seq),
                    account,
                    chat: handle,
                    kind: EventKind::App(e),
                });
            }
            if let Some(a) = ack {
                owner.do_send(Processed(a));
            }
            if let Some(d) = done {
                let _ = d.send(());
            }
            for c in calls {
                execute(&*api, &shared, &me, account, handle, c).await;
            }
        };
        ctx.wait(fut.into_actor(self));
    }
}

/// Executes one server call with retries, feeding results back into the chat.
async fn execute(
    api: &dyn ServerApi,
    shared: &Shared,
    me: &Addr<ChatActor>,
    account: u64,
    handle: u64,
    c: Call,
) {
    let (bytes, returns_chat, chat_id) = match &c {
        Call::RequestEncryption(r) => (r.to_bytes(), true, 0),
        Call::AcceptEncryption(r) => {
            let api::InputEncryptedChat::InputEncryptedChat(p) = &r.peer;
            (r.to_bytes(), true, p.chat_id)
        }
        Call::DiscardEncryption(r) => (r.to_bytes(), false, r.chat_id),
        Call::SendEncrypted(r) => (r.to_bytes(), false, chat_of(&r.peer)),
        Call::SendEncryptedService(r) => (r.to_bytes(), false, chat_of(&r.peer)),
        Call::SendEncryptedFile(r) => (r.to_bytes(), false, chat_of(&r.peer)),
    };
    let Ok(bytes) = bytes else {
        return;
    };
    tracing::debug!(
        account,
        chat = handle,
        method = call_name(&c),
        bytes = bytes.len(),
        "call"
    );
    match super::invoke_retrying(api, bytes).await {
        Ok(answer) if returns_chat => {
            if let Ok(chat) =
                <api::EncryptedChat as secretchat_schema::Deserialize>::from_bytes(&answer)
            {
                me.do_send(ChatInput {
                    event: Event::ChatUpdate(chat),
                    ack: None,
                    done: None,
                });
            }
        }
        Ok(_) => {}
        Err(e) if e.class() == ErrorClass::ChatGone && !matches!(c, Call::DiscardEncryption(_)) => {
            me.do_send(ChatInput {
                event: Event::ChatUpdate(api::EncryptedChat::Discarded(
                    api_types::EncryptedChatDiscarded {
                        history_deleted: false,
                        id: chat_id,
                    },
                )),
                ack: None,
                done: None,
            });
        }
        Err(e) => report(shared, account, handle, &e),
    }
}

fn chat_of(p: &api::InputEncryptedChat) -> i32 {
    let api::InputEncryptedChat::InputEncryptedChat(p) = p;
    p.chat_id
}

fn report(shared: &Shared, account: u64, chat: u64, e: &RpcError) {
    tracing::warn!(account, chat, error = %e, "call failed");
    let _ = shared.events.send(EngineEvent {
        seq: None,
        account,
        chat,
        kind: EventKind::Error(format!("server: {e}")),
    });
}
