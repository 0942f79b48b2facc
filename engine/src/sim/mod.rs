//! An in-process simulated Telegram server for tests, examples and the simulator.
//!
//! Many users, several devices each. The secret-chat lifecycle (request → `encryptedChatRequested`
//! to every device of the peer → the first device to accept wins, the others get
//! `encryptedChatDiscarded`), per-device qts queues (`messages.receivedQueue` and
//! `updates.getDifference` remove acknowledged events; events older than 7 days expire),
//! `random_id` de-duplication of sends, uploaded file parts and downloads, and a seeded fault
//! model: updates dropped (they stay queued; `getDifference` recovers them), duplicated,
//! reordered and delayed; requests failing with transient errors or FLOOD_WAIT before they run,
//! or running and losing their reply. Chat-state updates (`updateEncryption`) are delayed but
//! never dropped (the real server resends them through the common update box, which the
//! simulator does not model).

mod delivery;
mod files;
mod methods;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use secretchat_schema::api::enums as api;

use crate::transport::{BoxFuture, RpcError, ServerApi, UpdateFeed};
use delivery::Delivery;
pub use files::FileKeeping;
use files::FileStore;

/// How long the server keeps unacknowledged queue events.
pub const QUEUE_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

/// The fault model (probabilities in 0..=1).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SimFaults {
    /// An encrypted-message update is not pushed (it stays in the queue).
    pub drop: f64,
    /// An update is pushed twice.
    pub duplicate: f64,
    /// An update is held back by up to `reorder_ms`.
    pub reorder: f64,
    /// Extra delay for a reordered update.
    pub reorder_ms: u64,
    /// Base delay of every update.
    pub latency_ms: u64,
    /// A request fails with `500 INTERNAL` before running.
    pub error: f64,
    /// A request fails with `420 FLOOD_WAIT_1` before running.
    pub flood: f64,
    /// A request runs but its reply is lost (`-503 TIMEOUT`).
    pub lost_reply: f64,
}

impl SimFaults {
    /// No faults, 1 ms latency.
    pub const NONE: SimFaults = SimFaults {
        drop: 0.0,
        duplicate: 0.0,
        reorder: 0.0,
        reorder_ms: 0,
        latency_ms: 1,
        error: 0.0,
        flood: 0.0,
        lost_reply: 0.0,
    };
}

impl Default for SimFaults {
    fn default() -> Self {
        Self::NONE
    }
}

#[derive(Default)]
struct Device {
    qts: i32,
    /// qts → (update, created at, ms since the server's epoch).
    queue: BTreeMap<i32, (api::Update, u64)>,
    feed: Option<UpdateFeed>,
    /// Replies to sends by random_id (the server de-duplicates).
    sent: HashMap<i64, Vec<u8>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChatState {
    Requested,
    Accepted(u32),
    Discarded,
}

struct Chat {
    admin: (i64, u32),
    participant: i64,
    access_hash: i64,
    g_a: Vec<u8>,
    state: ChatState,
}

struct State {
    rng: StdRng,
    faults: SimFaults,
    users: HashMap<i64, Vec<Device>>,
    chats: HashMap<i32, Chat>,
    next_chat: i32,
    /// requestEncryption de-duplication by (user, device, random_id).
    requests: HashMap<(i64, u32, i32), i32>,
    files: FileStore,
    clock_offset_ms: u64,
    started: std::time::Instant,
    stats: SimStats,
    /// Replies still to lose, by method constructor id (see [`SimServer::lose_replies`]).
    lose_replies: HashMap<u32, u32>,
}

/// Counters for reports and tests.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SimStats {
    /// Requests handled (including failed ones).
    pub requests: u64,
    /// Encrypted messages accepted for delivery.
    pub messages: u64,
    /// Updates dropped by the fault model.
    pub dropped: u64,
    /// Updates pushed twice.
    pub duplicated: u64,
    /// Requests failed by the fault model.
    pub injected_errors: u64,
    /// Sends answered from the random_id cache.
    pub deduplicated: u64,
    /// Queue events expired unacknowledged.
    pub expired: u64,
}

/// The simulated server.
pub struct SimServer {
    state: Mutex<State>,
    delivery: Delivery,
}

impl std::fmt::Debug for SimServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SimServer")
    }
}

/// One device (authorization) of a user: what an engine account talks to.
#[derive(Clone, Debug)]
pub struct SimDevice {
    server: Arc<SimServer>,
    user: i64,
    device: u32,
}

impl SimServer {
    /// A server with the given fault model, seeded.
    pub fn new(faults: SimFaults, seed: u64) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(State {
                rng: StdRng::seed_from_u64(seed),
                faults,
                users: HashMap::new(),
                chats: HashMap::new(),
                next_chat: 1000,
                requests: HashMap::new(),
                files: FileStore::new(),
                clock_offset_ms: 0,
                started: std::time::Instant::now(),
                stats: SimStats::default(),
                lose_replies: HashMap::new(),
            }),
            delivery: Delivery::start(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        match self.state.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Device `device` of user `user` (created on first use; devices are numbered from 0).
    pub fn device(self: &Arc<Self>, user: i64, device: u32) -> SimDevice {
        let mut s = self.lock();
        let devices = s.users.entry(user).or_default();
        while devices.len() <= device as usize {
            devices.push(Device::default());
        }
        SimDevice {
            server: self.clone(),
            user,
            device,
        }
    }

    /// Registers an accepted chat between `admin` and `participant` (each `(user, device)`)
    /// without a handshake: the server side of bulk provisioning. Returns `(chat_id,
    /// access_hash)`; both ends are then provisioned in their engines with one key.
    pub fn provision_chat(&self, admin: (i64, u32), participant: (i64, u32)) -> (i32, i64) {
        let mut s = self.lock();
        s.next_chat += 1;
        let chat_id = s.next_chat;
        let access_hash = s.rng.r#gen();
        s.chats.insert(
            chat_id,
            Chat {
                admin,
                participant: participant.0,
                access_hash,
                g_a: Vec::new(),
                state: ChatState::Accepted(participant.1),
            },
        );
        (chat_id, access_hash)
    }

    /// Changes the fault model (e.g. faults off for a final check).
    pub fn set_faults(&self, faults: SimFaults) {
        self.lock().faults = faults;
    }

    /// The next `n` calls of the method with constructor id `method` run but lose their reply
    /// (`-503 TIMEOUT`): a targeted lost answer for tests (e.g. `acceptEncryption`, whose
    /// repeat the server refuses).
    pub fn lose_replies(&self, method: u32, n: u32) {
        self.lock().lose_replies.insert(method, n);
    }

    /// Moves the server's clock forward (queue expiry).
    pub fn advance_clock(&self, by: Duration) {
        self.lock().clock_offset_ms += by.as_millis() as u64;
    }

    /// The counters so far.
    pub fn stats(&self) -> SimStats {
        self.lock().stats
    }

    /// Unacknowledged queue events of a device.
    pub fn queued(&self, user: i64, device: u32) -> usize {
        let s = self.lock();
        s.users
            .get(&user)
            .and_then(|d| d.get(device as usize))
            .map_or(0, |d| d.queue.len())
    }

    /// Whether uploaded file bytes are kept in memory (default) or only counted: benchmarks
    /// need no copy on the server side; such files cannot be downloaded.
    pub fn keep_file_data(&self, keep: bool) {
        self.set_file_keeping(if keep {
            FileKeeping::Memory
        } else {
            FileKeeping::CountOnly
        });
    }

    /// Where uploaded bytes go from now on ([`FileKeeping::Disk`]: multi-gigabyte files that
    /// are downloaded again, without the server holding them in memory).
    pub fn set_file_keeping(&self, keeping: FileKeeping) {
        self.lock().files.set_keeping(keeping);
    }

    /// SHA-256 of a finished upload's encrypted bytes (when its parts arrived in order): lets a
    /// test check a file the server did not keep.
    pub fn file_digest(&self, id: i64) -> Option<[u8; 32]> {
        self.lock().files.digest(id)
    }

    /// Encrypted file bytes received in parts so far (repeats included).
    pub fn file_bytes_received(&self) -> u64 {
        self.lock().files.bytes_in
    }

    /// Flips a byte of a stored file (tests: tampering on the server).
    pub fn tamper_file(&self, id: i64, offset: usize) {
        self.lock().files.tamper(id, offset as u64);
    }

    /// Connects a device's live updates to `feed` (replacing an earlier connection).
    pub fn connect(&self, device: &SimDevice, feed: UpdateFeed) {
        let mut s = self.lock();
        if let Some(d) = s.device_mut(device.user, device.device) {
            d.feed = Some(feed);
        }
    }
}

impl State {
    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64 + self.clock_offset_ms
    }

    fn date(&self) -> i32 {
        1_700_000_000 + (self.now_ms() / 1000) as i32
    }

    fn device_mut(&mut self, user: i64, device: u32) -> Option<&mut Device> {
        self.users.get_mut(&user)?.get_mut(device as usize)
    }

    fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && self.rng.gen_bool(p.min(1.0))
    }

    /// Pushes `update` to a device's live feed with the fault model. `droppable` updates stay
    /// queued server-side, so dropping the push is recoverable.
    fn push(
        &mut self,
        delivery: &Delivery,
        user: i64,
        device: u32,
        update: api::Update,
        droppable: bool,
    ) {
        let f = self.faults;
        if droppable && self.chance(f.drop) {
            self.stats.dropped += 1;
            return;
        }
        let copies = if self.chance(f.duplicate) {
            self.stats.duplicated += 1;
            2
        } else {
            1
        };
        for _ in 0..copies {
            let mut delay = f.latency_ms;
            if f.reorder_ms > 0 && self.chance(f.reorder) {
                delay += self.rng.gen_range(1..=f.reorder_ms);
            }
            let Some(feed) = self.device_mut(user, device).and_then(|d| d.feed.clone()) else {
                return;
            };
            delivery.schedule(feed, update.clone(), Duration::from_millis(delay));
        }
    }

    /// Queues an encrypted-message update for a device (with the next qts) and pushes it.
    fn enqueue(
        &mut self,
        delivery: &Delivery,
        user: i64,
        device: u32,
        message: api::EncryptedMessage,
    ) {
        let now = self.now_ms();
        let Some(d) = self.device_mut(user, device) else {
            return;
        };
        d.qts += 1;
        let qts = d.qts;
        let update = api::Update::NewEncryptedMessage(
            secretchat_schema::api::types::UpdateNewEncryptedMessage { message, qts },
        );
        d.queue.insert(qts, (update.clone(), now));
        self.stats.messages += 1;
        self.push(delivery, user, device, update, true);
    }

    /// Drops queue events older than [`QUEUE_TTL`].
    fn expire(&mut self, user: i64, device: u32) {
        let cutoff = self.now_ms().saturating_sub(QUEUE_TTL.as_millis() as u64);
        let Some(d) = self.device_mut(user, device) else {
            return;
        };
        // Events are queued in qts order with non-decreasing times: expire from the front
        // (a full `retain` on every request made the simulator quadratic in its queue).
        let mut gone = 0u64;
        while let Some(entry) = d.queue.first_entry() {
            if entry.get().1 >= cutoff {
                break;
            }
            entry.remove();
            gone += 1;
        }
        self.stats.expired += gone;
    }
}

impl ServerApi for SimDevice {
    fn invoke(&self, request: Vec<u8>) -> BoxFuture<'static, Result<Vec<u8>, RpcError>> {
        let answer = self.server.handle(self.user, self.device, &request);
        Box::pin(async move { answer })
    }
}

impl SimDevice {
    /// The user this device belongs to.
    pub fn user(&self) -> i64 {
        self.user
    }

    /// The device number.
    pub fn number(&self) -> u32 {
        self.device
    }
}
