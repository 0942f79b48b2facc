//! A deterministic two-party harness for the protocol core: two [`ChatCore`]s, a server stand-in
//! for the handshake, a lossy channel with a virtual clock and a seeded fault model (drop,
//! duplicate, reorder, delay), DH jobs run with a delay, timers, and checks on every step's
//! actions (nothing is sent before it was persisted).

#![allow(dead_code)]

pub mod model;
pub mod seal;
pub mod strict;

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::sync::{Arc, OnceLock};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use secretchat_engine::crypto::Side;
use secretchat_engine::crypto::dh::DhParams;
use secretchat_engine::crypto::prime::TELEGRAM_DH_PRIME;
use secretchat_engine::protocol::chat::{
    Action, AppEvent, Call, ChatConfig, ChatCore, Command, Event, Millis, OutboxEntry, Outgoing,
    Timer, WaitingEntry,
};
use secretchat_engine::protocol::dh_job::DhJob;
use secretchat_schema::api::{enums as api, types as api_types};
use secretchat_schema::e2e::enums as e2e;

/// The spec's prime with g = 3 and the fixed-base table, built once per test binary.
pub fn dh() -> Arc<DhParams> {
    static DH: OnceLock<Arc<DhParams>> = OnceLock::new();
    DH.get_or_init(|| {
        Arc::new(
            DhParams::new(&TELEGRAM_DH_PRIME, 3)
                .unwrap()
                .with_fixed_base(),
        )
    })
    .clone()
}

/// The wire bytes of every send call among `actions`.
pub fn sent(actions: &[Action]) -> Vec<Vec<u8>> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Call(c) => c.data().map(<[u8]>::to_vec),
            _ => None,
        })
        .collect()
}

/// The close reason delivered among `actions`, if any.
pub fn closed(actions: &[Action]) -> Option<secretchat_engine::protocol::chat::CloseReason> {
    actions.iter().find_map(|a| match a {
        Action::Deliver(AppEvent::ChatClosed(r)) => Some(r.clone()),
        _ => None,
    })
}

/// Fault rates (0.0..=1.0) and delays for the channel.
#[derive(Debug, Clone, Copy)]
pub struct Faults {
    pub drop: f64,
    pub duplicate: f64,
    pub reorder: f64,
    /// Base one-way latency.
    pub latency_ms: Millis,
    /// Extra delay for a reordered message (uniform up to this).
    pub reorder_ms: Millis,
}

impl Faults {
    pub const NONE: Faults = Faults {
        drop: 0.0,
        duplicate: 0.0,
        reorder: 0.0,
        latency_ms: 20,
        reorder_ms: 0,
    };
    pub const HARSH: Faults = Faults {
        drop: 0.1,
        duplicate: 0.1,
        reorder: 0.1,
        latency_ms: 20,
        reorder_ms: 400,
    };
}

/// Which party.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Who {
    A,
    B,
}

impl Who {
    pub fn other(self) -> Who {
        match self {
            Who::A => Who::B,
            Who::B => Who::A,
        }
    }
}

/// Something scheduled on the virtual clock.
#[derive(Debug)]
enum Job {
    Deliver(Who, Vec<u8>),
    Event(Who, EventKind),
    Dh(Who, Box<DhJob>),
}

#[derive(Debug)]
enum EventKind {
    Timer(Timer),
    Update(api::EncryptedChat),
    AlreadyAccepted,
}

/// One party: its core, what its application saw, and every wire it sent.
pub struct Party {
    pub core: Option<ChatCore>,
    pub events: Vec<AppEvent>,
    /// Wire bytes of outgoing messages the party persisted (outbox puts).
    pub persisted: std::collections::HashSet<Vec<u8>>,
    /// Every send call's data, in order.
    pub sent: Vec<Vec<u8>>,
    pub calls: Vec<Call>,
    /// Why incoming messages were refused.
    pub rejected: Vec<String>,
    /// What a store would hold: the last state record, the outbox and the waiting queue.
    pub stored_state: Option<Vec<u8>>,
    pub stored_outbox: BTreeMap<u32, OutboxEntry>,
    pub stored_waiting: BTreeMap<u32, WaitingEntry>,
    pub restarts: u32,
}

impl Party {
    fn new() -> Self {
        Party {
            core: None,
            events: Vec::new(),
            persisted: Default::default(),
            sent: Vec::new(),
            calls: Vec::new(),
            rejected: Vec::new(),
            stored_state: None,
            stored_outbox: BTreeMap::new(),
            stored_waiting: BTreeMap::new(),
            restarts: 0,
        }
    }

    pub fn core(&self) -> &ChatCore {
        self.core.as_ref().unwrap()
    }

    /// Texts of the ordinary messages delivered, in order.
    pub fn texts(&self) -> Vec<String> {
        self.events
            .iter()
            .filter_map(|e| match e {
                AppEvent::Message { message, .. } => Some(match message.as_ref() {
                    e2e::DecryptedMessage::DecryptedMessage73(m) => m.message.clone(),
                    e2e::DecryptedMessage::DecryptedMessage46(m) => m.message.clone(),
                    other => format!("{other:?}"),
                }),
                _ => None,
            })
            .collect()
    }

    /// Texts of the ordinary messages delivered, in order, with their server dates.
    pub fn dated(&self) -> Vec<(String, i32)> {
        let dates = self.events.iter().filter_map(|e| match e {
            AppEvent::Message { date, .. } => Some(*date),
            _ => None,
        });
        self.texts().into_iter().zip(dates).collect()
    }

    pub fn closed_reason(&self) -> Option<&secretchat_engine::protocol::chat::CloseReason> {
        self.events.iter().find_map(|e| match e {
            AppEvent::ChatClosed(r) => Some(r),
            _ => None,
        })
    }

    pub fn count(&self, f: impl Fn(&AppEvent) -> bool) -> usize {
        self.events.iter().filter(|e| f(e)).count()
    }
}

/// The server's date of a message delivered at `now` (the virtual clock is Unix time in ms).
pub fn server_date(now: Millis) -> i32 {
    i32::try_from(now / 1000).unwrap()
}

/// Rewrites (or drops, returning `None`) a wire on its way to `Who`.
pub type Tamper = Box<dyn FnMut(Who, Vec<u8>) -> Option<Vec<u8>>>;

/// The world: two parties, the channel, the clock.
pub struct World {
    pub now: Millis,
    pub faults: Faults,
    pub a: Party,
    pub b: Party,
    rng: StdRng,
    a_rng: StdRng,
    b_rng: StdRng,
    queue: BinaryHeap<Reverse<(Millis, u64, Who)>>,
    jobs: BTreeMap<u64, Job>,
    next: u64,
    /// Answer the participant's ChatRequested with Accept automatically.
    pub auto_accept: bool,
    /// Tamper hook: may rewrite (or drop, returning None) a wire on its way to `Who`.
    pub tamper: Option<Tamper>,
    pub config: ChatConfig,
    pub chat_id: i32,
    /// TDLib's receiver rules applied to every message either party sends (`strict.rs`); it
    /// learns every key from the DH jobs the harness runs.
    pub strict: strict::StrictReceiver,
    /// The server has accepted the chat (a repeated acceptEncryption is refused).
    accepted: bool,
    /// Lose the server's answer to the participant's acceptEncryption (the update to the
    /// originator still goes).
    pub lose_accept_answer: bool,
}

pub fn test_config() -> ChatConfig {
    ChatConfig {
        resend_retry_ms: 200,
        unhealthy_after: 5,
        retransmit_ms: 500,
        max_backoff_ms: 2_000,
        ..ChatConfig::default()
    }
}

impl World {
    pub fn new(seed: u64, faults: Faults) -> Self {
        World {
            now: 1_700_000_000_000,
            faults,
            a: Party::new(),
            b: Party::new(),
            rng: StdRng::seed_from_u64(seed),
            a_rng: StdRng::seed_from_u64(seed ^ 0xa),
            b_rng: StdRng::seed_from_u64(seed ^ 0xb),
            queue: BinaryHeap::new(),
            jobs: BTreeMap::new(),
            next: 0,
            auto_accept: true,
            tamper: None,
            config: test_config(),
            chat_id: 4242,
            strict: strict::StrictReceiver::new(),
            accepted: false,
            lose_accept_answer: false,
        }
    }

    pub fn party(&mut self, who: Who) -> &mut Party {
        match who {
            Who::A => &mut self.a,
            Who::B => &mut self.b,
        }
    }

    fn schedule(&mut self, at: Millis, who: Who, job: Job) {
        self.next += 1;
        self.jobs.insert(self.next, job);
        self.queue.push(Reverse((at, self.next, who)));
    }

    /// A opens the chat with B; runs until both are ready (or something closed).
    pub fn open(&mut self) {
        let actions = self.request_only();
        self.execute(Who::A, actions);
        self.run_until(|w| {
            (w.a.core.as_ref().is_some_and(|c| c.is_ready())
                && w.b.core.as_ref().is_some_and(|c| c.is_ready()))
                || w.a.closed_reason().is_some()
                || w.b.closed_reason().is_some()
        });
    }

    fn party_and_rng(&mut self, who: Who) -> (&mut Party, &mut StdRng) {
        match who {
            Who::A => (&mut self.a, &mut self.a_rng),
            Who::B => (&mut self.b, &mut self.b_rng),
        }
    }

    /// Starts the chat from A's side without running anything; the caller drives it.
    pub fn request_only(&mut self) -> Vec<Action> {
        let user = api::InputUser::InputUser(api_types::InputUser {
            user_id: 2,
            access_hash: 22,
        });
        let (core, actions) = ChatCore::request(self.config, user, 777);
        self.a.core = Some(core);
        actions
    }

    /// Simulates a crash and restart of `who`: its core is dropped and rebuilt from what it
    /// had stored; scheduled deliveries, timers and DH results stay in flight.
    pub fn restart(&mut self, who: Who) {
        let (now, config) = (self.now, self.config);
        let (party, rng) = self.party_and_rng(who);
        let Some(state) = party.stored_state.clone() else {
            return;
        };
        party.core = None;
        party.restarts += 1;
        let outbox = party
            .stored_outbox
            .iter()
            .map(|(k, v)| (*k, v.clone()))
            .collect();
        let waiting = party
            .stored_waiting
            .iter()
            .map(|(k, v)| (*k, v.clone()))
            .collect();
        let (core, actions) =
            ChatCore::restore(config, &state, outbox, waiting, |_, _| Some(dh()), now, rng)
                .unwrap();
        party.core = Some(core);
        self.execute(who, actions);
    }

    /// Feeds `event` to `who` now.
    pub fn feed(&mut self, who: Who, event: Event) {
        let now = self.now;
        let (party, rng) = self.party_and_rng(who);
        let Some(core) = party.core.as_mut() else {
            return;
        };
        let actions = core.handle(event, now, rng);
        self.execute(who, actions);
    }

    pub fn send_text(&mut self, who: Who, text: &str) {
        let id = self.rng.r#gen::<i64>();
        self.feed(
            who,
            Event::Command(Command::Send(Box::new(Outgoing::text(id, text)))),
        );
    }

    /// Executes actions a caller got from a core it built itself.
    pub fn feed_actions(&mut self, who: Who, actions: Vec<Action>) {
        self.execute(who, actions);
    }

    /// Executes one step's actions like an engine would, checking the persist-first rule.
    fn execute(&mut self, who: Who, actions: Vec<Action>) {
        let now = self.now;
        for action in actions {
            match action {
                Action::Persist(p) => {
                    let party = self.party(who);
                    for (raw, e) in &p.outbox_put {
                        party.persisted.insert(e.wire.clone());
                        // Through the stored form, as a real store would.
                        let back = OutboxEntry::from_bytes(&e.to_bytes().unwrap()).unwrap();
                        party.stored_outbox.insert(*raw, back);
                    }
                    for raw in &p.outbox_done {
                        party.stored_outbox.remove(raw);
                    }
                    for (raw, w) in &p.waiting_put {
                        let back = WaitingEntry::from_bytes(&w.to_bytes().unwrap()).unwrap();
                        party.stored_waiting.insert(*raw, back);
                    }
                    for raw in &p.waiting_done {
                        party.stored_waiting.remove(raw);
                    }
                    if p.closed {
                        party.stored_outbox.clear();
                        party.stored_waiting.clear();
                    }
                    let snap = party.core.as_ref().unwrap().snapshot();
                    party.stored_state = Some(snap.to_vec());
                }
                Action::NeedDhConfig => {
                    let random: Vec<u8> = (0..256).map(|_| self.rng.r#gen()).collect();
                    self.feed(
                        who,
                        Event::DhConfig {
                            params: dh(),
                            random,
                        },
                    );
                }
                Action::Compute(job) => {
                    let delay = self.rng.gen_range(1..30);
                    self.schedule(now + delay, who, Job::Dh(who, job));
                }
                Action::ArmTimer { timer, at } => {
                    self.schedule(at.max(now), who, Job::Event(who, EventKind::Timer(timer)));
                }
                Action::Deliver(e) => {
                    if std::env::var_os("HARNESS_TRACE").is_some() {
                        match &e {
                            AppEvent::Message { .. } => {}
                            other => eprintln!("{} {who:?} {other:?}", self.now),
                        }
                    }
                    let accept = self.auto_accept && matches!(e, AppEvent::ChatRequested { .. });
                    self.party(who).events.push(e);
                    if accept {
                        self.feed(who, Event::Command(Command::Accept));
                    }
                }
                Action::Rejected(e) => {
                    let t = self.now;
                    self.party(who).rejected.push(format!("{t}: {e:?}"));
                }
                Action::Call(call) => self.server(who, *call),
                other => panic!("unexpected action {other:?}"),
            }
        }
    }

    /// The server stand-in.
    fn server(&mut self, who: Who, call: Call) {
        let now = self.now;
        self.party(who).calls.push(call.clone());
        if let Some(data) = call.data() {
            assert!(
                self.party(who).persisted.contains(data),
                "{who:?} sent a message it had not persisted"
            );
            let side = match who {
                Who::A => Side::Originator,
                Who::B => Side::Participant,
            };
            self.strict.observe(side, data);
            self.party(who).sent.push(data.to_vec());
            self.transmit(who.other(), data.to_vec());
            return;
        }
        match call {
            Call::RequestEncryption(r) => {
                let waiting = api::EncryptedChat::Waiting(api_types::EncryptedChatWaiting {
                    id: self.chat_id,
                    access_hash: 99,
                    date: 1,
                    admin_id: 1,
                    participant_id: 2,
                });
                self.schedule(
                    now + 5,
                    Who::A,
                    Job::Event(Who::A, EventKind::Update(waiting)),
                );
                let req = api_types::EncryptedChatRequested {
                    folder_id: None,
                    id: self.chat_id,
                    access_hash: 98,
                    date: 1,
                    admin_id: 1,
                    participant_id: 2,
                    g_a: r.g_a,
                };
                let (core, actions) = ChatCore::requested(self.config, &req);
                self.b.core = Some(core);
                self.execute(Who::B, actions);
            }
            Call::AcceptEncryption(_) if self.accepted => {
                // A repeat (after a restart): the real server may refuse it.
                self.schedule(
                    now + 5,
                    Who::B,
                    Job::Event(Who::B, EventKind::AlreadyAccepted),
                );
            }
            Call::AcceptEncryption(acc) => {
                self.accepted = true;
                let chat = api::EncryptedChat::EncryptedChat(api_types::EncryptedChat {
                    id: self.chat_id,
                    access_hash: 99,
                    date: 1,
                    admin_id: 1,
                    participant_id: 2,
                    g_a_or_b: acc.g_b,
                    key_fingerprint: acc.key_fingerprint,
                });
                self.schedule(
                    now + 30,
                    Who::A,
                    Job::Event(Who::A, EventKind::Update(chat.clone())),
                );
                // The method's answer to the accepting side.
                if !self.lose_accept_answer {
                    self.schedule(now + 5, Who::B, Job::Event(Who::B, EventKind::Update(chat)));
                }
            }
            Call::DiscardEncryption(_) => {
                let gone = api::EncryptedChat::Discarded(api_types::EncryptedChatDiscarded {
                    history_deleted: false,
                    id: self.chat_id,
                });
                let other = who.other();
                self.schedule(now + 10, other, Job::Event(other, EventKind::Update(gone)));
            }
            other => panic!("unexpected call {other:?}"),
        }
    }

    /// Puts a message on the lossy channel towards `to`.
    pub fn transmit(&mut self, to: Who, wire: Vec<u8>) {
        let f = self.faults;
        if self.rng.gen_bool(f.drop) {
            return;
        }
        let copies = if self.rng.gen_bool(f.duplicate) { 2 } else { 1 };
        for _ in 0..copies {
            let mut at = self.now + f.latency_ms;
            if f.reorder_ms > 0 && self.rng.gen_bool(f.reorder) {
                at += self.rng.gen_range(1..=f.reorder_ms);
            }
            self.schedule(at, to, Job::Deliver(to, wire.clone()));
        }
    }

    /// Runs one scheduled job; false when nothing is left.
    pub fn step(&mut self) -> bool {
        let Some(Reverse((at, id, _))) = self.queue.pop() else {
            return false;
        };
        self.now = self.now.max(at);
        let Some(job) = self.jobs.remove(&id) else {
            return true;
        };
        match job {
            Job::Deliver(who, wire) => {
                let wire = match self.tamper.as_mut() {
                    Some(t) => match t(who, wire) {
                        Some(w) => w,
                        None => return true,
                    },
                    None => wire,
                };
                let date = server_date(self.now);
                self.feed(
                    who,
                    Event::Incoming {
                        wire,
                        file: None,
                        date,
                    },
                );
            }
            Job::Event(who, EventKind::Timer(t)) => self.feed(who, Event::Timer(t)),
            Job::Event(who, EventKind::Update(c)) => self.feed(who, Event::ChatUpdate(c)),
            Job::Event(who, EventKind::AlreadyAccepted) => self.feed(who, Event::AlreadyAccepted),
            Job::Dh(who, job) => {
                let out = job.run();
                if let Some(Ok(key)) = &out.shared {
                    self.strict.learn(key);
                }
                self.feed(who, Event::DhDone(Box::new(out)))
            }
        }
        true
    }

    /// Runs until `done` holds or the queue is empty; panics after a virtual hour of nothing.
    pub fn run_until(&mut self, done: impl Fn(&World) -> bool) {
        let deadline = self.now + 24 * 3_600_000;
        while !done(self) {
            assert!(self.step(), "nothing left to run: {}", self.describe());
            assert!(
                self.now < deadline,
                "no progress within a virtual day: {}",
                self.describe()
            );
        }
    }

    /// Runs everything scheduled up to `until`.
    pub fn run_to(&mut self, until: Millis) {
        while let Some(Reverse((at, _, _))) = self.queue.peek() {
            if *at > until {
                break;
            }
            self.step();
        }
        self.now = self.now.max(until);
    }

    /// Both sides' status and last events, for failure messages.
    pub fn describe(&self) -> String {
        let st = |p: &Party| {
            format!(
                "{:?} texts {} rejected {} (last {:?}) last events {:?}",
                p.core.as_ref().map(|c| c.status(self.now)),
                p.texts().len(),
                p.rejected.len(),
                p.rejected.iter().rev().take(3).collect::<Vec<_>>(),
                p.events.iter().rev().take(3).collect::<Vec<_>>()
            )
        };
        format!("\nA: {}\nB: {}", st(&self.a), st(&self.b))
    }

    /// Both sides agree: every message either sent was processed by the other, same key.
    pub fn settled(&self) -> bool {
        let (Some(a), Some(b)) = (self.a.core.as_ref(), self.b.core.as_ref()) else {
            return false;
        };
        let (sa, sb) = (a.status(self.now), b.status(self.now));
        sa.seq.0 == sb.seq.1
            && sb.seq.0 == sa.seq.1
            && sa.key_fingerprint == sb.key_fingerprint
            && !sa.rekeying
            && !sb.rekeying
            && sa.holes.is_empty()
            && sb.holes.is_empty()
    }
}
