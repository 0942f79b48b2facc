//! [`AccountActor`]: one per account. Routes updates to chat actors (activating chats from the
//! store on demand, see `runtime/admission.rs`), starts new chats, and acknowledges the account's qts
//! queue (the QueueAcker role, bookkeeping in `runtime/queue.rs`): `messages.receivedQueue(max_qts)`
//! only up to the highest qts whose message — and every one before it — is durably stored,
//! batched every `ack_interval`. Missed updates are fetched with `updates.getDifference` from
//! the stored qts.

use std::collections::HashMap;
use std::sync::Arc;

use actix::prelude::*;
use secretchat_schema::api::enums as api;
use secretchat_schema::api::functions::{messages as m, updates as u};

use super::admission::Admission;
use super::chat::{ChatActor, ChatInput, GetStatus};
use super::queue::{Live, MessageKey, QtsQueue};
use super::{AckToken, EngineError, Reply, Shared, call_retrying, now_ms};
use crate::protocol::chat::{Action, ChatCore, ChatStatus, Command, Event};
use crate::transport::ServerApi;
use lookup::Lookup;

mod difference;
mod held;
mod load;
mod lookup;
mod memory;

/// One account (one authorization on the server).
pub struct AccountActor {
    pub(super) account: u64,
    pub(super) api: Arc<dyn ServerApi>,
    pub(super) shared: Arc<Shared>,
    chats: HashMap<u64, Addr<ChatActor>>,
    /// Where the account's qts queue stands.
    queue: QtsQueue,
    /// When the last `updates.getDifference` was asked for (the idle poll waits
    /// `idle_difference_interval` after it).
    last_difference: Option<std::time::Instant>,
    updates: Option<tokio::sync::mpsc::UnboundedReceiver<api::Update>>,
    /// The transport's requests to catch up (see `UpdateFeed::catch_up`).
    catch_up: Option<tokio::sync::mpsc::Receiver<()>>,
    /// Updates for chat ids not (yet) known: our own new chat's id is learned from the
    /// requestEncryption answer, which can arrive after the peer's first updates.
    orphans: Vec<(std::time::Instant, i32, Event, Option<AckToken>)>,
    /// When each active chat was last addressed.
    last_seen: HashMap<u64, std::time::Instant>,
    /// Chats asked to stop: inputs for them wait here until they answer.
    stopping: HashMap<u64, Vec<ChatInput>>,
    /// Chats whose records are being read, and what waits for them (`load.rs`).
    loading: HashMap<u64, load::Loading>,
    /// The account's qts position is being stored (acknowledged to the server once durable).
    qts_writing: bool,
    /// Chats with pending work still to resume after a restart (paced, see `Resume`).
    resume: std::collections::VecDeque<u64>,
    /// Sleeping chats' earliest timers (ms, handle): a chat is loaded again when its timer is
    /// due (its tail retransmit, a Resend retry, the key's age) — 16 bytes instead of an actor
    /// kept in memory until then.
    alarms: std::collections::BinaryHeap<std::cmp::Reverse<(u64, u64)>>,
    /// Inputs for sleeping chats waiting for room in memory (see `runtime/admission.rs`).
    admission: Admission,
    /// Server chat id → handle of chats in memory: found in the store's index (an index entry
    /// never changes: no store read per incoming message), or started in this run with their
    /// first record perhaps not written yet (see `lookup.rs`).
    indexed: HashMap<i32, u64>,
    /// Server chat ids whose index entry is being read, and what waits for it, in order.
    resolving: HashMap<i32, Vec<lookup::Waiting>>,
    /// Inputs waiting in `loading` and `resolving` (bounded, see `held.rs`).
    held: usize,
    /// Inputs given up for want of room there (for the log).
    given_up: u64,
}

/// Most updates held for unknown chats.
const MAX_ORPHANS: usize = 1024;
/// How long an update for an unknown chat is held before it is considered not ours.
const ORPHAN_TTL: std::time::Duration = std::time::Duration::from_secs(60);

impl AccountActor {
    pub(super) fn new(
        account: u64,
        api: Arc<dyn ServerApi>,
        shared: Arc<Shared>,
        updates: tokio::sync::mpsc::UnboundedReceiver<api::Update>,
        catch_up: tokio::sync::mpsc::Receiver<()>,
    ) -> Self {
        Self {
            account,
            api,
            shared,
            chats: HashMap::new(),
            indexed: HashMap::new(),
            queue: QtsQueue::default(),
            last_difference: None,
            updates: Some(updates),
            catch_up: Some(catch_up),
            orphans: Vec::new(),
            resolving: HashMap::new(),
            held: 0,
            given_up: 0,
            last_seen: HashMap::new(),
            resume: std::collections::VecDeque::new(),
            alarms: std::collections::BinaryHeap::new(),
            stopping: HashMap::new(),
            loading: HashMap::new(),
            qts_writing: false,
            admission: Admission::default(),
        }
    }
}

/// An update from the transport.
#[derive(Message)]
#[rtype(result = "()")]
struct Incoming(api::Update);

/// The transport reconnected: fetch the difference at the next gap check.
#[derive(Message)]
#[rtype(result = "()")]
struct CatchUp;

impl Handler<CatchUp> for AccountActor {
    type Result = ();
    fn handle(&mut self, _: CatchUp, _: &mut Context<Self>) {
        // The idle poll is due at once (`get_difference`), whatever the last one's age.
        self.last_difference = None;
    }
}

/// A chat stored (and made durable) the step that consumed an update.
#[derive(Message)]
#[rtype(result = "()")]
pub(super) struct Processed(pub AckToken);

/// Start a chat with a user; answers the new chat's handle.
#[derive(Message)]
#[rtype(result = "Result<u64, EngineError>")]
pub(super) struct RequestChat(pub api::InputUser);

/// A command for a chat, answered once stored. Sent with `do_send` (the mailbox is unbounded
/// for it), so commands reach the chat in the order they were submitted.
#[derive(Message)]
#[rtype(result = "()")]
pub(super) struct ChatCommand(pub u64, pub Command, pub Reply, pub Option<Box<[u8]>>);

/// A chat's status.
#[derive(Message)]
#[rtype(result = "Result<ChatStatus, EngineError>")]
pub(super) struct Status(pub u64);

/// Activate the chats that have work pending (unacknowledged outbox, holes) after a restart.
#[derive(Message)]
#[rtype(result = "()")]
pub(super) struct Resume(pub Vec<u64>);

#[derive(Message)]
#[rtype(result = "()")]
struct Tick;

/// Stop the account: answers its loaded chats (for the caller to halt) and stops.
#[derive(Message)]
#[rtype(result = "Vec<Addr<ChatActor>>")]
pub(super) struct Halt;

impl Handler<Halt> for AccountActor {
    type Result = MessageResult<Halt>;
    fn handle(&mut self, _: Halt, ctx: &mut Context<Self>) -> Self::Result {
        ctx.stop();
        MessageResult(self.chats.drain().map(|(_, a)| a).collect())
    }
}

impl Actor for AccountActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // Learn where the queue stands before handling updates.
        let stored = self.shared.store.qts(self.account).ok().flatten();
        let api = self.api.clone();
        ctx.wait(
            async move {
                match stored {
                    Some(q) => Some(q),
                    None => call_retrying(&*api, &u::GetState {}).await.ok().map(|s| {
                        let api::updates::State::State(s) = s;
                        s.qts
                    }),
                }
            }
            .into_actor(self)
            .map(|q, act, _| {
                act.queue.start(q.unwrap_or(0));
            }),
        );
        if let Some(mut rx) = self.updates.take() {
            let me = ctx.address();
            actix::spawn(async move {
                // `do_send`, not `try_send`: the mailbox is bounded (16), and a full one
                // must not end this loop (every later live update would then wait for the
                // next getDifference). The feed itself is the queue.
                while let Some(u) = rx.recv().await {
                    if !me.connected() {
                        return;
                    }
                    me.do_send(Incoming(u));
                }
            });
        }
        if let Some(mut rx) = self.catch_up.take() {
            let me = ctx.address();
            actix::spawn(async move {
                while rx.recv().await.is_some() && me.connected() {
                    me.do_send(CatchUp);
                }
            });
        }
        let every = self.shared.config.ack_interval;
        ctx.run_interval(every, |_, ctx| ctx.notify(Tick));
        let diff_every = self.shared.config.difference_interval;
        ctx.run_interval(diff_every, |act, ctx| act.get_difference(ctx));
        let sweep = (self.shared.config.idle_after / 2).max(std::time::Duration::from_millis(50));
        ctx.run_interval(sweep, |act, ctx| act.sweep_idle(ctx));
    }
}

impl AccountActor {
    fn start_chat(
        &mut self,
        handle: u64,
        core: ChatCore,
        initial: Vec<Action>,
        done: Option<Reply>,
        new: bool,
        ctx: &mut Context<Self>,
    ) -> Addr<ChatActor> {
        // Counted here, not when the actor starts on its thread: admission decisions made
        // before it runs must see it.
        self.shared.metrics.loaded(1);
        // A new chat is announced after its first step; a loaded one when it changes.
        let announced = (!new).then(|| core.summary());
        let actor = ChatActor {
            account: self.account,
            handle,
            core,
            shared: self.shared.clone(),
            api: self.api.clone(),
            owner: ctx.address(),
            initial,
            initial_done: done,
            in_flight: 0,
            announced,
            reported: Default::default(),
            step: Default::default(),
        };
        let arbiter = self.shared.arbiter(handle);
        let addr = ChatActor::start_in_arbiter(&arbiter, move |_| actor);
        self.chats.insert(handle, addr.clone());
        self.last_seen.insert(handle, std::time::Instant::now());
        addr
    }

    /// Routes an update for server chat `chat_id`; `since` is when it first arrived if it
    /// was held for an unknown chat before.
    fn route(
        &mut self,
        chat_id: i32,
        event: Event,
        ack: Option<AckToken>,
        since: Option<std::time::Instant>,
        ctx: &mut Context<Self>,
    ) {
        match self.known_chat(chat_id, ack, ctx) {
            Lookup::Known(h) => self.route_to(h, event, ack, ctx),
            Lookup::Unknown => self.orphan(chat_id, event, ack, since),
            Lookup::Pending => {
                self.wait_for_lookup(chat_id, lookup::Waiting::Input(event, ack, since))
            }
        }
    }

    /// Holds an update for an unknown chat (and its acknowledgement) until the chat is known.
    fn orphan(
        &mut self,
        chat_id: i32,
        event: Event,
        ack: Option<AckToken>,
        since: Option<std::time::Instant>,
    ) {
        if self.orphans.len() >= MAX_ORPHANS {
            let (_, _, _, old) = self.orphans.remove(0);
            if let Some(a) = old {
                self.processed(a);
            }
        }
        let since = since.unwrap_or_else(std::time::Instant::now);
        self.orphans.push((since, chat_id, event, ack));
    }

    /// Hands an update to chat `handle`.
    fn route_to(
        &mut self,
        handle: u64,
        event: Event,
        ack: Option<AckToken>,
        ctx: &mut Context<Self>,
    ) {
        let input = ChatInput {
            event,
            ack,
            done: None,
            forget: None,
        };
        if let Err(input) = self.deliver(handle, input, ctx) {
            self.fail(handle, input);
        }
    }

    /// Hands `input` to chat `handle`: waits while the chat is stopping, activates it from the
    /// store if it sleeps (or queues it for admission when memory is full). Gives the input
    /// back if the chat does not exist.
    fn deliver(
        &mut self,
        handle: u64,
        input: ChatInput,
        ctx: &mut Context<Self>,
    ) -> Result<(), ChatInput> {
        if let Some(buffer) = self.stopping.get_mut(&handle) {
            buffer.push(input);
            return Ok(());
        }
        if self.loading.contains_key(&handle) {
            if !self.may_hold(input.ack) {
                self.give_up(input);
            } else if let Some(loading) = self.loading.get_mut(&handle) {
                loading.inputs.push(input);
            }
            return Ok(());
        }
        let loaded = self.chats.get(&handle).is_some_and(|a| a.connected());
        if self.admission.holds(handle) || (!loaded && self.full()) {
            self.admission
                .push(handle, input, std::time::Instant::now());
            return Ok(());
        }
        self.hand(handle, vec![input], ctx)
            .map_err(|(_, mut back)| back.remove(0))
    }

    fn on_update(&mut self, update: api::Update, ctx: &mut Context<Self>) {
        match update {
            api::Update::NewEncryptedMessage(m) => {
                let Live::Route { gap } = self.queue.live(m.qts, message_key(&m.message)) else {
                    return; // stored, on its way, or before the queue is known
                };
                if gap {
                    // A gap in qts: fetch what we missed soon.
                    ctx.run_later(self.shared.config.ack_interval, |act, ctx| {
                        act.get_difference(ctx)
                    });
                }
                self.route_message(m.message, Some(AckToken::Qts(m.qts)), ctx);
            }
            api::Update::Encryption(e) => self.on_chat(e.chat, ctx),
            api::Update::EncryptedMessagesRead(r) => self.notify(
                r.chat_id,
                super::EventKind::MessagesRead {
                    max_date: r.max_date,
                    date: r.date,
                },
                ctx,
            ),
            api::Update::EncryptedChatTyping(t) => {
                self.notify(t.chat_id, super::EventKind::Typing, ctx)
            }
        }
    }

    /// Hands the application an event about server chat `chat_id` that needs no chat step
    /// (read receipts, typing); dropped when the chat is not ours.
    fn notify(&mut self, chat_id: i32, kind: super::EventKind, ctx: &mut Context<Self>) {
        match self.known_chat(chat_id, None, ctx) {
            Lookup::Known(chat) => self.notify_chat(chat, kind),
            Lookup::Unknown => {}
            Lookup::Pending => self.wait_for_lookup(chat_id, lookup::Waiting::Notify(kind)),
        }
    }

    /// Hands the application an event about chat `chat` that needs no chat step.
    fn notify_chat(&mut self, chat: u64, kind: super::EventKind) {
        self.shared.events.deliver(super::EngineEvent {
            seq: None,
            account: self.account,
            chat,
            kind,
        });
    }

    fn route_message(
        &mut self,
        message: api::EncryptedMessage,
        ack: Option<AckToken>,
        ctx: &mut Context<Self>,
    ) {
        let (chat_id, wire, file, date) = match message {
            api::EncryptedMessage::EncryptedMessage(m) => {
                let file = match m.file {
                    api::EncryptedFile::Empty(_) => None,
                    f => Some(f),
                };
                (m.chat_id, m.bytes, file, m.date)
            }
            api::EncryptedMessage::Service(m) => (m.chat_id, m.bytes, None, m.date),
        };
        self.route(
            chat_id,
            Event::Incoming { wire, file, date },
            ack,
            None,
            ctx,
        );
    }

    fn on_chat(&mut self, chat: api::EncryptedChat, ctx: &mut Context<Self>) {
        if let api::EncryptedChat::Requested(req) = &chat {
            match self.known_chat(req.id, None, ctx) {
                Lookup::Known(_) => return, // a repeated request
                Lookup::Pending => {
                    let id = req.id;
                    self.wait_for_lookup(id, lookup::Waiting::Requested(chat));
                    return;
                }
                Lookup::Unknown => {}
            }
            self.start_requested(req, ctx);
            return;
        }
        let id = match &chat {
            api::EncryptedChat::Empty(c) => c.id,
            api::EncryptedChat::Waiting(c) => c.id,
            api::EncryptedChat::Requested(c) => c.id,
            api::EncryptedChat::EncryptedChat(c) => c.id,
            api::EncryptedChat::Discarded(c) => c.id,
        };
        self.route(id, Event::ChatUpdate(chat), None, None, ctx);
    }

    /// Starts a chat the peer requested, whose id is no chat of ours.
    fn start_requested(
        &mut self,
        req: &secretchat_schema::api::types::EncryptedChatRequested,
        ctx: &mut Context<Self>,
    ) {
        let Ok(handle) = self.shared.store.new_handle() else {
            return;
        };
        // The chat's first write stores its record, its index entry and the request event
        // in one batch (lookup.rs); until then the id is known in memory.
        self.remember_new_chat(req.id, handle);
        let (core, actions) = ChatCore::requested(self.shared.config.chat, req);
        self.start_chat(handle, core, actions, None, true, ctx);
    }

    fn processed(&mut self, a: AckToken) {
        match a {
            AckToken::Qts(q) => self.queue.stored(q),
            AckToken::Difference => self.queue.batch_message_stored(),
        }
    }
}

/// The de-duplication key of a message.
fn message_key(m: &api::EncryptedMessage) -> MessageKey {
    match m {
        api::EncryptedMessage::EncryptedMessage(m) => (m.chat_id, m.random_id),
        api::EncryptedMessage::Service(m) => (m.chat_id, m.random_id),
    }
}

/// Active chats of the account (for reports and tests).
#[derive(Message)]
#[rtype(result = "usize")]
pub(super) struct ActiveChats;

impl Handler<ActiveChats> for AccountActor {
    type Result = usize;
    fn handle(&mut self, _: ActiveChats, _: &mut Context<Self>) -> usize {
        self.chats.values().filter(|a| a.connected()).count()
    }
}

impl Handler<Incoming> for AccountActor {
    type Result = ();
    fn handle(&mut self, msg: Incoming, ctx: &mut Context<Self>) {
        self.on_update(msg.0, ctx);
    }
}

impl Handler<Processed> for AccountActor {
    type Result = ();
    fn handle(&mut self, msg: Processed, ctx: &mut Context<Self>) {
        self.processed(msg.0);
        // A stored difference slice: fetch the rest now.
        if let Some(m) = self.queue.next_slice() {
            self.fetch_difference(m, ctx);
        }
    }
}

impl AccountActor {
    /// Routes held updates whose chat is now known; gives up on old ones (not our chat).
    fn retry_orphans(&mut self, ctx: &mut Context<Self>) {
        for (since, chat_id, event, ack) in std::mem::take(&mut self.orphans) {
            if since.elapsed() > ORPHAN_TTL {
                if let Some(a) = ack {
                    self.processed(a);
                }
            } else {
                // Known now, or held again (looked up once more meanwhile on a shared database).
                self.route(chat_id, event, ack, Some(since), ctx);
            }
        }
    }
}

impl Handler<Tick> for AccountActor {
    type Result = ();
    fn handle(&mut self, _: Tick, ctx: &mut Context<Self>) {
        if !self.admission.is_empty() {
            // Room freed by other accounts' chats, or a stall (every loaded chat busy).
            let stalled = self.admission.stalled(std::time::Instant::now());
            self.admit(stalled, ctx);
            self.relieve(ctx);
        }
        let now = now_ms();
        while let Some(&std::cmp::Reverse((at, handle))) = self.alarms.peek() {
            if at > now {
                break;
            }
            self.alarms.pop();
            if !self.chats.contains_key(&handle) {
                self.resume.push_back(handle);
            }
        }
        if !self.resume.is_empty() {
            self.resume_some(ctx);
        }
        if !self.orphans.is_empty() {
            self.retry_orphans(ctx);
        }
        if let (false, Some(mark)) = (self.qts_writing, self.queue.to_acknowledge()) {
            // Stored first (durably), then acknowledged to the server; the account goes on
            // meanwhile (on a shared database the write is a round trip), one such write at a
            // time so that the stored position only moves forward.
            let Ok(ticket) = self.shared.store.submit_qts(self.account, mark) else {
                return;
            };
            self.qts_writing = true;
            let store = self.shared.store.clone();
            let stored = async move { store.synced(ticket).await };
            ctx.spawn(stored.into_actor(self).map(move |stored, act, _| {
                act.qts_writing = false;
                if stored.is_err() {
                    return;
                }
                act.queue.acknowledged(mark);
                tracing::trace!(account = act.account, max_qts = mark, "receivedQueue");
                let api = act.api.clone();
                actix::spawn(async move {
                    let _ = call_retrying(&*api, &m::ReceivedQueue { max_qts: mark }).await;
                });
            }));
        }
    }
}

impl Handler<RequestChat> for AccountActor {
    type Result = ResponseFuture<Result<u64, EngineError>>;
    fn handle(&mut self, msg: RequestChat, ctx: &mut Context<Self>) -> Self::Result {
        let handle = match self.shared.store.new_handle() {
            Ok(h) => h,
            Err(e) => return Box::pin(async move { Err(e.into()) }),
        };
        let random_id = rand::random::<i32>();
        let (core, actions) = ChatCore::request(self.shared.config.chat, msg.0, random_id);
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.start_chat(handle, core, actions, Some(tx), true, ctx);
        // The handle is returned once the new chat is stored.
        Box::pin(async move {
            rx.await.map_err(|_| EngineError::Stopped)??;
            Ok(handle)
        })
    }
}

impl Handler<ChatCommand> for AccountActor {
    type Result = ();
    fn handle(&mut self, msg: ChatCommand, ctx: &mut Context<Self>) {
        let ChatCommand(handle, command, reply, forget) = msg;
        // Answered once stored ("accepted" means a restart cannot lose it); a dropped answer
        // (the chat stopped on a store failure) reads as `Stopped`.
        let input = ChatInput {
            event: Event::Command(command),
            ack: None,
            done: Some(reply),
            forget,
        };
        if let Err(input) = self.deliver(handle, input, ctx) {
            self.fail(handle, input);
        }
    }
}

impl Handler<Status> for AccountActor {
    type Result = ResponseFuture<Result<ChatStatus, EngineError>>;
    fn handle(&mut self, msg: Status, ctx: &mut Context<Self>) -> Self::Result {
        let active = self.when_active(msg.0, ctx);
        Box::pin(async move {
            let addr = active.await.map_err(|_| EngineError::Stopped)??;
            addr.send(GetStatus).await.map_err(|_| EngineError::Stopped)
        })
    }
}
