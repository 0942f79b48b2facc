//! [`ChatActor`]: owns one [`ChatCore`] and executes its actions in order — persist (one batch,
//! waiting for durability), then the application events and the qts acknowledgement, then the
//! server calls one after another (a chat's sends never overtake each other), DH jobs on the
//! pool, timers. It is the only writer of its chat's records.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use secretchat_schema::Serialize;
use secretchat_schema::api::enums as api;
use secretchat_schema::api::types as api_types;

use super::account::{AccountActor, Processed};
use super::metrics::{Phase, PhaseClock};
use super::trace::{ActionLine, EventLine, call_name};
use super::workers::{ConfigError, GetConfig, RunJob};
use super::{AckToken, EngineEvent, EventKind, Reply, Shared, now_ms};
use crate::protocol::chat::{
    Action, AppEvent, Call, ChatCore, ChatCounters, ChatSummary, Command, Event, Persist,
    ServiceAction, Timer,
};
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
    pub(super) initial_done: Option<Reply>,
    /// DH jobs and config requests not answered yet.
    pub(super) in_flight: usize,
    /// What the application was last told of the chat ([`EventKind::ChatUpdated`]); `None`
    /// for a new chat, announced after its first step.
    pub(super) announced: Option<ChatSummary>,
    /// The core's counters as last added to the engine metrics, and its open holes then.
    pub(super) reported: (ChatCounters, usize),
    /// Queued inputs, the step in progress, armed timers.
    pub(super) step: StepState,
}

/// Stop if there is nothing in flight. Answers `None` when it refused, otherwise when it must
/// be woken (its earliest timer, if any: the account loads it again then). A stopped chat is
/// also activated from the store when next addressed.
#[derive(Message)]
#[rtype(result = "Option<Option<u64>>")]
pub struct TryStop;

impl Handler<TryStop> for ChatActor {
    type Result = Option<Option<u64>>;
    fn handle(&mut self, _: TryStop, ctx: &mut Context<Self>) -> Self::Result {
        let quiet = self.in_flight == 0 && self.step.idle() && self.core.can_sleep();
        if !quiet {
            return None;
        }
        ctx.stop();
        Some(self.core.next_wake())
    }
}

impl Actor for ChatActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let initial = std::mem::take(&mut self.initial);
        let done = self.initial_done.take();
        let mut batch = Batch::default();
        self.collect(initial, None, done, &mut batch, ctx);
        self.execute(batch, ctx);
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        // Counted in by the account when it created the actor.
        self.shared.metrics.loaded(-1);
    }
}

/// Stop now, whatever is in flight (its account is being removed). A step being stored is
/// not interrupted: writes happen inside the actor's handlers.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Halt;

impl Handler<Halt> for ChatActor {
    type Result = ();
    fn handle(&mut self, _: Halt, ctx: &mut Context<Self>) {
        ctx.stop();
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
    pub done: Option<Reply>,
    /// A metadata record removed in the same write as this input's step: an upload's record
    /// goes with the step that stores its message, so a crash can neither lose the message
    /// nor have it sent again by [`Engine::resume_uploads`](crate::runtime::Engine::resume_uploads).
    pub forget: Option<Box<[u8]>>,
}

impl ChatInput {
    /// An event that acknowledges nothing and answers no one.
    pub fn event(event: Event) -> Self {
        ChatInput {
            event,
            ack: None,
            done: None,
            forget: None,
        }
    }
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
        self.step.queued.push(msg);
        if !self.step.busy {
            self.step_queued(ctx);
        }
    }
}

/// At most this many inputs go into one step's write (bounds the batch and keeps one busy chat
/// from holding its thread).
const MAX_INPUTS_PER_STEP: usize = 128;

/// A chat's pipeline between its core and the store.
#[derive(Default)]
pub(super) struct StepState {
    /// Inputs that arrived while the last step was being stored; the next step takes them
    /// together (one state record, one write, one durability wait).
    queued: Vec<ChatInput>,
    /// A step is being stored (its calls then go to `calls`).
    busy: bool,
    /// The scheduled firing of each armed timer. Re-arming replaces the firing: a chat re-arms
    /// its retransmit timer on every acknowledgement, and actix polls every pending item of an
    /// actor on each wake-up, so stale firings made each step slower.
    timers: Vec<(Timer, SpawnHandle)>,
    /// The server chat id already written to the index.
    indexed: i32,
    /// The stored steps' server calls not sent yet, in step order. They run one after another
    /// (a chat's sends never overtake each other: the spec's `invokeAfterMsgs` chain) behind
    /// the steps: the chat goes on with its next step meanwhile, so a send waiting out a server
    /// error does not hold up the chat's incoming messages.
    calls: VecDeque<Call>,
    /// One of them is being executed.
    calling: bool,
    /// The application's sends held back, in order, while the core does not accept sends (the
    /// peer has not acknowledged enough of ours: [`ChatCore::accepts_sends`]). Their `done`
    /// answers wait with them: that is the application's backpressure. Network input and the
    /// commands that manage the chat keep flowing; each acknowledgement may release them.
    held: VecDeque<ChatInput>,
}

impl StepState {
    /// Nothing queued, held, being stored, or waiting to be sent (a chat with calls pending
    /// does not stop: its next activation's calls could overtake them).
    pub(super) fn idle(&self) -> bool {
        !self.busy
            && self.queued.is_empty()
            && self.held.is_empty()
            && self.calls.is_empty()
            && !self.calling
    }
}

/// Whether `event` is an application command that waits while the peer acknowledges
/// nothing: a message or a service action. Not a delete (seq_no.md: the unacknowledged copies
/// are rewritten at once), nor the commands that manage the chat (accept, decline, re-key,
/// close: they must get through a full outbox).
fn held_back(event: &Event) -> bool {
    use crate::protocol::chat::{Command, ServiceAction};
    match event {
        Event::Command(Command::Send(_)) => true,
        Event::Command(Command::Service(s)) => !matches!(s, ServiceAction::Delete(_)),
        _ => false,
    }
}

/// What the inputs of one step asked for, executed together.
#[derive(Default)]
struct Batch {
    persist: Vec<Persist>,
    events: Vec<AppEvent>,
    calls: Vec<Call>,
    acks: Vec<AckToken>,
    done: Vec<Reply>,
    /// Metadata records removed with the step ([`ChatInput::forget`]).
    forget: Vec<Vec<u8>>,
}

impl ChatActor {
    /// A step could not be stored (or never became durable): nothing may be sent or
    /// acknowledged that was not stored, so the chat stops. It restarts from its last stored
    /// state when next addressed.
    fn store_failed(&mut self, e: &crate::store::StoreError, ctx: &mut Context<Self>) {
        tracing::warn!(account = self.account, chat = self.handle, error = %e, "store write failed; chat stopped");
        self.shared.events.deliver(EngineEvent {
            seq: None,
            account: self.account,
            chat: self.handle,
            kind: EventKind::StoreFailed(e.to_string()),
        });
        ctx.stop();
    }

    /// Runs every queued input (up to [`MAX_INPUTS_PER_STEP`]) through the core, then stores and
    /// executes what they asked for as one step.
    fn step_queued(&mut self, ctx: &mut Context<Self>) {
        // Taken, not drained: a quiet chat keeps no queue buffer.
        let inputs: Vec<ChatInput> = if self.step.queued.len() <= MAX_INPUTS_PER_STEP {
            std::mem::take(&mut self.step.queued)
        } else {
            self.step.queued.drain(..MAX_INPUTS_PER_STEP).collect()
        };
        let mut batch = Batch::default();
        let started = PhaseClock::sample(Phase::Protocol);
        for msg in inputs {
            // Sends keep their order: once one is held, the later ones wait behind it.
            if held_back(&msg.event) && (!self.step.held.is_empty() || !self.core.accepts_sends()) {
                self.step.held.push_back(msg);
                continue;
            }
            if let Event::Command(Command::Service(ServiceAction::Delete(ids))) = &msg.event {
                // A held message the application deletes is never sent.
                let (gone, kept) = std::mem::take(&mut self.step.held)
                    .into_iter()
                    .partition(|h| matches!(&h.event, Event::Command(Command::Send(m)) if ids.contains(&m.random_id)));
                self.step.held = kept;
                batch
                    .done
                    .extend(gone.into_iter().filter_map(|h: ChatInput| h.done));
            }
            self.run_input(msg, &mut batch, ctx);
            // An acknowledgement (or a close) may have made room for held sends.
            while !self.step.held.is_empty() && self.core.accepts_sends() {
                if let Some(held) = self.step.held.pop_front() {
                    self.run_input(held, &mut batch, ctx);
                }
            }
        }
        if self.step.held.is_empty() {
            self.step.held = VecDeque::new();
        }
        self.shared
            .metrics
            .spent(Phase::Protocol, started.elapsed());
        self.execute(batch, ctx);
    }

    /// One input through the core; its actions join the step.
    fn run_input(&mut self, msg: ChatInput, batch: &mut Batch, ctx: &mut Context<Self>) {
        if matches!(
            msg.event,
            Event::DhDone(_) | Event::DhConfig { .. } | Event::DhConfigFailed(_)
        ) {
            // The answer to a job or config request counted in `in_flight`.
            self.in_flight = self.in_flight.saturating_sub(1);
        }
        tracing::trace!(
            account = self.account,
            chat = self.handle,
            event = ?EventLine(&msg.event),
            "chat event"
        );
        let actions = self
            .core
            .handle(msg.event, now_ms(), &mut rand::rngs::OsRng);
        batch.forget.extend(msg.forget.map(Vec::from));
        self.collect(actions, msg.ack, msg.done, batch, ctx);
    }

    /// Sorts one input's actions into the step; timers and DH work start at once.
    fn collect(
        &mut self,
        actions: Vec<Action>,
        ack: Option<AckToken>,
        done: Option<Reply>,
        batch: &mut Batch,
        ctx: &mut Context<Self>,
    ) {
        batch.acks.extend(ack);
        batch.done.extend(done);
        for a in actions {
            tracing::trace!(
                account = self.account,
                chat = self.handle,
                action = ?ActionLine(&a),
                "chat action"
            );
            match a {
                Action::Persist(p) => batch.persist.push(*p),
                Action::Deliver(e) => batch.events.push(e),
                Action::Call(c) => batch.calls.push(*c),
                Action::ArmTimer { timer, at } => self.arm(timer, at, ctx),
                Action::Compute(job) => {
                    self.in_flight += 1;
                    let pool = self.shared.rekey.clone();
                    let shared = self.shared.clone();
                    let me = ctx.address();
                    actix::spawn(async move {
                        if let Ok(out) = pool.send(RunJob(job)).await {
                            let exps =
                                u64::from(out.public.is_some()) + u64::from(out.shared.is_some());
                            shared.metrics.dh(exps);
                            me.do_send(ChatInput::event(Event::DhDone(Box::new(out))));
                        }
                    });
                }
                Action::NeedDhConfig => {
                    self.in_flight += 1;
                    let svc = self.shared.dh_config.clone();
                    let (account, api, me) = (self.account, self.api.clone(), ctx.address());
                    actix::spawn(async move {
                        loop {
                            let ask = GetConfig {
                                account,
                                api: api.clone(),
                            };
                            let event = match svc.send(ask).await {
                                Ok(Ok((params, random))) => Event::DhConfig { params, random },
                                Ok(Err(ConfigError::Invalid(e))) => Event::DhConfigFailed(e),
                                Ok(Err(ConfigError::Unavailable)) => {
                                    tokio::time::sleep(Duration::from_secs(1)).await;
                                    continue;
                                }
                                Err(_) => return,
                            };
                            me.do_send(ChatInput::event(event));
                            return;
                        }
                    });
                }
                Action::Rejected(e) => {
                    tracing::debug!(account = self.account, chat = self.handle, error = %e, "message rejected");
                    self.shared.metrics.rejected();
                }
            }
        }
    }

    /// Starts the next queued server call unless one is running; each call's end starts the
    /// next. (A future per call rather than a task per chat: an idle chat holds no task.)
    fn next_call(&mut self, ctx: &mut Context<Self>) {
        if self.step.calling {
            return;
        }
        let Some(call) = self.step.calls.pop_front() else {
            return;
        };
        if self.step.calls.is_empty() {
            // Nor a call buffer (a few hundred bytes per chat at 100,000 chats).
            self.step.calls = VecDeque::new();
        }
        self.step.calling = true;
        let (api, shared, me) = (self.api.clone(), self.shared.clone(), ctx.address());
        let (account, handle) = (self.account, self.handle);
        let fut = async move { execute(&*api, &shared, &me, account, handle, call).await };
        ctx.spawn(fut.into_actor(self).map(|(), act, ctx| {
            act.step.calling = false;
            act.next_call(ctx);
        }));
    }

    /// Schedules a timer's firing, replacing its previous one.
    fn arm(&mut self, timer: Timer, at: u64, ctx: &mut Context<Self>) {
        // +1 ms: the clock is read in whole milliseconds.
        let delay = Duration::from_millis(at.saturating_sub(now_ms()) + 1);
        let handle = ctx.notify_later(ChatInput::event(Event::Timer(timer)), delay);
        let timers = &mut self.step.timers;
        match timers.iter_mut().find(|(t, _)| *t == timer) {
            Some((_, old)) => {
                ctx.cancel_future(std::mem::replace(old, handle));
            }
            None => timers.push((timer, handle)),
        }
    }

    /// Stores the step (state record, outbox/waiting changes, application events: one batch),
    /// then — once durable — delivers the events, reports the qts as stored, answers the
    /// commands and queues the server calls behind earlier ones. Inputs arriving meanwhile
    /// queue for the next step.
    fn execute(&mut self, batch: Batch, ctx: &mut Context<Self>) {
        let counters = self.core.counters();
        let holes = self.core.holes_open();
        let (was, holes_before) = self.reported;
        self.shared
            .metrics
            .add(counters.since(&was), holes_before, holes);
        self.reported = (counters, holes);
        let Batch {
            persist,
            events,
            calls,
            acks,
            done,
            forget,
        } = batch;
        let ticket = if !persist.is_empty() || !events.is_empty() || !forget.is_empty() {
            let started = PhaseClock::sample(Phase::Store);
            let state = self.core.snapshot();
            let chat_id = self.core.chat_id();
            let w = ChatWrite {
                account: self.account,
                handle: self.handle,
                chat_id: if chat_id == self.step.indexed {
                    0
                } else {
                    chat_id
                },
                state: &state,
                persist: &persist,
                events: &events,
                qts: None,
                forget: &forget,
            };
            self.shared.metrics.batch();
            let written = self.shared.store.write_chat(&w);
            self.shared.metrics.spent(Phase::Store, started.elapsed());
            match written {
                Ok(t) => {
                    self.step.indexed = chat_id;
                    Some(t)
                }
                Err(e) => {
                    self.store_failed(&e, ctx);
                    return;
                }
            }
        } else {
            None
        };
        let summary = self.core.summary();
        let changed = match &self.announced {
            Some(was) => super::model::shown_changed(was, &summary),
            None => true,
        };
        let update = changed.then(|| {
            self.announced = Some(summary);
            let status = self.core.status(now_ms());
            let chat =
                super::model::SecretChat::from_status(super::model::ChatId(self.handle), &status);
            EngineEvent {
                seq: None,
                account: self.account,
                chat: self.handle,
                kind: EventKind::ChatUpdated(Box::new(chat)),
            }
        });
        let shared = self.shared.clone();
        let owner = self.owner.clone();
        let (account, handle) = (self.account, self.handle);
        let fut = async move {
            let mut seqs = Vec::new();
            if let Some((ticket, s)) = ticket {
                if let Err(e) = shared.store.synced(ticket).await {
                    // Never durable (the account was fenced off): nothing that depends on it
                    // happens.
                    for d in done {
                        let _ = d.send(Err(e.clone().into()));
                    }
                    return Err(e);
                }
                seqs = s;
            }
            // The chat's new form before the events that changed it (a ready chat is
            // announced before its first message).
            if let Some(u) = update {
                shared.events.deliver(u);
            }
            for (seq, e) in seqs.into_iter().zip(events) {
                shared.events.deliver(EngineEvent {
                    seq: Some(seq),
                    account,
                    chat: handle,
                    kind: EventKind::App(e),
                });
            }
            for a in acks {
                owner.do_send(Processed(a));
            }
            for d in done {
                let _ = d.send(Ok(()));
            }
            Ok(())
        };
        self.step.busy = true;
        ctx.spawn(fut.into_actor(self).map(|stored, act, ctx| {
            if let Err(e) = stored {
                act.store_failed(&e, ctx);
                return;
            }
            // Stored: queue the calls (steps are stored one after another, so their calls
            // queue in order).
            act.step.calls.extend(calls);
            act.next_call(ctx);
            act.step.busy = false;
            if !act.step.queued.is_empty() {
                act.step_queued(ctx);
            }
        }));
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
        Ok(answer) if sent_message(&c).is_some() => {
            let date = match <api::messages::SentEncryptedMessage as secretchat_schema::Deserialize>::from_bytes(&answer) {
                Ok(api::messages::SentEncryptedMessage::SentEncryptedMessage(s)) => s.date,
                Ok(api::messages::SentEncryptedMessage::SentEncryptedFile(s)) => s.date,
                Err(_) => return,
            };
            if let Some(random_id) = sent_message(&c) {
                shared.events.deliver(EngineEvent {
                    seq: None,
                    account,
                    chat: handle,
                    kind: EventKind::MessageSent { random_id, date },
                });
            }
        }
        Ok(answer) if returns_chat => {
            if let Ok(chat) =
                <api::EncryptedChat as secretchat_schema::Deserialize>::from_bytes(&answer)
            {
                me.do_send(ChatInput::event(Event::ChatUpdate(chat)));
            }
        }
        Ok(_) => {}
        // Our earlier accept or another device's won: not a lost chat. The core waits for the
        // proof (a peer message under our key) or the server's discard.
        Err(e)
            if matches!(c, Call::AcceptEncryption(_))
                && e.message == "ENCRYPTION_ALREADY_ACCEPTED" =>
        {
            me.do_send(ChatInput::event(Event::AlreadyAccepted));
        }
        Err(e) if e.class() == ErrorClass::ChatGone && !matches!(c, Call::DiscardEncryption(_)) => {
            me.do_send(ChatInput::event(Event::ChatUpdate(
                api::EncryptedChat::Discarded(api_types::EncryptedChatDiscarded {
                    history_deleted: false,
                    id: chat_id,
                }),
            )));
        }
        Err(e) => report(shared, account, handle, &c, e),
    }
}

/// The random id of an ordinary message a call sends (service messages are the protocol's).
fn sent_message(c: &Call) -> Option<i64> {
    match c {
        Call::SendEncrypted(r) => Some(r.random_id),
        Call::SendEncryptedFile(r) => Some(r.random_id),
        _ => None,
    }
}

fn chat_of(p: &api::InputEncryptedChat) -> i32 {
    let api::InputEncryptedChat::InputEncryptedChat(p) = p;
    p.chat_id
}

fn report(shared: &Shared, account: u64, chat: u64, c: &Call, error: RpcError) {
    tracing::warn!(account, chat, error = %error, "call failed");
    let random_id = match c {
        Call::SendEncryptedService(r) => Some(r.random_id),
        other => sent_message(other),
    };
    shared.events.deliver(EngineEvent {
        seq: None,
        account,
        chat,
        kind: EventKind::CallFailed {
            method: call_name(c),
            random_id,
            error,
        },
    });
}
