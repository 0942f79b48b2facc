//! A minimal MTProto 2.0 server on 127.0.0.1 for grammers' real sender, in front of the
//! project's simulated server.
//!
//! Each account has two pre-seeded authorization keys (its home DC 1, and DC 2 where the
//! simulator keeps files), so no key exchange runs; the endpoint knows a connection's account
//! and DC from its key. It speaks what grammers' sender speaks: `Full` framing, encrypted
//! messages both ways, containers both ways (every answer goes out in one with the
//! acknowledgements it owes), `msgs_ack`, `ping`/`ping_delay_disconnect`, `gzip_packed`,
//! `invokeWithLayer(initConnection(…))` with a `Config` answer, `updates.getState`, and
//! `auth.exportAuthorization`/`auth.importAuthorization` (DC 2 refuses everything else with
//! `401 AUTH_KEY_UNREGISTERED` until the account's authorization was imported there). Every
//! other call goes to the simulated server as the account's device; the simulator's updates
//! go out as `updateShort`/`updates` on the account's home connection; while it has none, a
//! new encrypted message pushed is lost, as on Telegram (see [`Push`]).
#![allow(dead_code)] // each test binary uses part of it

mod api;
mod session;
mod wire;

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use secretchat::UpdateFeed;
use secretchat::sim::{SimDevice, SimServer};
use secretchat::tl::Serialize as _;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, mpsc};

use session::{Conn, Out};
use wire::{Full, Key};

/// The account's home DC.
pub const HOME_DC: i32 = 1;
/// Where the simulator's files live (`encryptedFile.dc_id`).
pub const FILE_DC: i32 = 2;

const MSG_CONTAINER: u32 = 0x73f1f8dc;
const MSGS_ACK: u32 = 0x62d6b459;
const PING: u32 = 0x7abe77ec;
const PING_DELAY_DISCONNECT: u32 = 0xf3427b8c;
const PONG: u32 = 0x347773c5;
const GZIP_PACKED: u32 = 0x3072cfa1;
const RPC_RESULT: u32 = 0xf35c6d01;
const RPC_ERROR: u32 = 0x2144ca19;
const INVOKE_WITH_LAYER: u32 = 0xda9b0d0d;
const INIT_CONNECTION: u32 = 0xc1cd5ea9;
const UPDATE_SHORT: u32 = 0x78d4dec1;
const UPDATES: u32 = 0x74ae4240;
const VECTOR: u32 = 0x1cb5c415;

/// What the endpoint saw (for the tests' assertions).
#[derive(Debug, Default, Clone)]
pub struct Stats {
    /// TCP connections whose first message decrypted, by (account, DC).
    pub connections: HashMap<(usize, i32), u32>,
    /// Containers received.
    pub containers_in: u64,
    /// Message ids the client acknowledged.
    pub acks_in: u64,
    /// Pings answered.
    pub pings: u64,
    /// `invokeWithLayer` layers seen.
    pub layers: HashSet<i32>,
    /// `initConnection`s.
    pub init_connections: u64,
    /// Authorizations imported, by (account, DC).
    pub imports: Vec<(usize, i32)>,
    /// Calls refused on a DC the account had not imported its authorization into.
    pub unauthorized: u64,
    /// Calls the simulated server answered, by DC.
    pub calls: HashMap<i32, u64>,
    /// Calls the simulated server answered, by account and method.
    pub methods: HashMap<(usize, u32), u64>,
    /// Updates written to a home connection.
    pub updates_out: u64,
    /// Connections the endpoint closed on purpose.
    pub dropped: u64,
    /// Calls that ran with their reply lost (the connection closed instead).
    pub lost_replies: u64,
    /// Encrypted-message pushes lost for want of a connection.
    pub lost_pushes: u64,
    /// Home connections closed at once while the account was held.
    pub refused: u64,
}

struct Account {
    device: SimDevice,
    user: i64,
    /// The current home connection: its id and where its updates go.
    live: Option<(u64, mpsc::UnboundedSender<Push>, Arc<Notify>)>,
    /// Updates no connection could take yet (never an encrypted message: see [`Push`]).
    pending: VecDeque<Push>,
    imported: HashSet<i32>,
    exported: Vec<Vec<u8>>,
    /// The next call of this method runs, and its connection closes before the reply.
    lose_reply_of: Option<u32>,
    /// New home connections are closed at once (the network is down).
    held: bool,
}

struct Shared {
    keys: Vec<(Arc<Key>, usize, i32)>,
    accounts: Vec<Account>,
    stats: Stats,
    next_conn: u64,
}

/// An update on its way to a home connection. As on Telegram, a new encrypted message pushed
/// while the account has no connection is lost (`lossy`: the qts queue keeps it for
/// `updates.getDifference`); the chat-state updates wait for the next connection (Telegram
/// keeps them in the common update sequence, which the simulator does not model).
struct Push {
    body: Vec<u8>,
    lossy: bool,
}

/// The endpoint; it runs until the test's runtime ends.
#[derive(Clone)]
pub struct Endpoint {
    pub addr: SocketAddr,
    shared: Arc<Mutex<Shared>>,
}

/// One account's keys, to pre-seed its grammers session with.
pub struct AccountKeys {
    pub home: [u8; 256],
    pub file_dc: [u8; 256],
}

impl Endpoint {
    /// Listens on an ephemeral port of 127.0.0.1.
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let ep = Endpoint {
            addr: listener.local_addr().expect("addr"),
            shared: Arc::new(Mutex::new(Shared {
                keys: Vec::new(),
                accounts: Vec::new(),
                stats: Stats::default(),
                next_conn: 0,
            })),
        };
        let shared = ep.shared.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, shared.clone()));
            }
        });
        ep
    }

    /// Registers `device` as an account (index = order of registration), with fresh keys.
    pub fn add_account(&self, sim: &SimServer, device: SimDevice) -> AccountKeys {
        let keys = AccountKeys {
            home: std::array::from_fn(|_| rand::random()),
            file_dc: std::array::from_fn(|_| rand::random()),
        };
        let (feed, mut from_server) = UpdateFeed::channel();
        sim.connect(&device, feed);
        let index = {
            let mut s = self.lock();
            let index = s.accounts.len();
            s.keys.push((Arc::new(Key::new(keys.home)), index, HOME_DC));
            s.keys
                .push((Arc::new(Key::new(keys.file_dc)), index, FILE_DC));
            s.accounts.push(Account {
                user: device.user(),
                device,
                live: None,
                pending: VecDeque::new(),
                imported: HashSet::new(),
                exported: Vec::new(),
                lose_reply_of: None,
                held: false,
            });
            index
        };
        let shared = self.shared.clone();
        tokio::spawn(async move {
            let mut n = 0u32;
            while let Some(update) = from_server.recv().await {
                let Ok(bytes) = update.to_bytes() else {
                    continue;
                };
                n += 1;
                let lossy = matches!(
                    update,
                    secretchat::tl::api::enums::Update::NewEncryptedMessage(_)
                );
                let push = Push {
                    body: wrap_update(&bytes, n),
                    lossy,
                };
                let mut guard = shared.lock().expect("endpoint state");
                let s = &mut *guard;
                let a = &mut s.accounts[index];
                let unsent = match a.live.as_ref() {
                    Some((_, tx, _)) => tx.send(push).err().map(|e| e.0),
                    None => Some(push),
                };
                match unsent {
                    Some(p) if p.lossy => s.stats.lost_pushes += 1,
                    Some(p) => a.pending.push_back(p),
                    None => {}
                }
            }
        });
        keys
    }

    /// Closes the account's home connection, as a network failure would.
    pub fn drop_connection(&self, account: usize) -> bool {
        let mut s = self.lock();
        let Some((_, _, close)) = s.accounts[account].live.as_ref() else {
            return false;
        };
        close.notify_one();
        s.stats.dropped += 1;
        true
    }

    /// The account's next call of `method` runs on the simulated server, and the connection
    /// closes before its reply goes out.
    pub fn lose_next_reply(&self, account: usize, method: u32) {
        self.lock().accounts[account].lose_reply_of = Some(method);
    }

    /// While `held`, the account's new home connections close as soon as they open.
    pub fn hold(&self, account: usize, held: bool) {
        self.lock().accounts[account].held = held;
    }

    pub fn stats(&self) -> Stats {
        self.lock().stats.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().expect("endpoint state")
    }
}

/// The simulator's update inside `updateShort` or, every other time, `updates` (seq 0: no
/// ordering in the common sequence, as the server sends secret-chat updates).
fn wrap_update(update: &[u8], n: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(update.len() + 32);
    let date = 1_700_000_000i32 + n as i32;
    if n.is_multiple_of(2) {
        out.extend_from_slice(&UPDATE_SHORT.to_le_bytes());
        out.extend_from_slice(update);
        out.extend_from_slice(&date.to_le_bytes());
    } else {
        out.extend_from_slice(&UPDATES.to_le_bytes());
        for (len, item) in [(1u32, Some(update)), (0, None), (0, None)] {
            out.extend_from_slice(&VECTOR.to_le_bytes());
            out.extend_from_slice(&len.to_le_bytes());
            out.extend_from_slice(item.unwrap_or_default());
        }
        out.extend_from_slice(&date.to_le_bytes());
        out.extend_from_slice(&0i32.to_le_bytes());
    }
    out
}

async fn serve(stream: TcpStream, shared: Arc<Mutex<Shared>>) {
    let (mut rd, mut wr) = stream.into_split();
    let (frames_tx, mut frames) = mpsc::channel::<Vec<u8>>(16);
    // The reader on its own task: a read cut by `select!` would lose a partial frame.
    tokio::spawn(async move {
        let mut full = Full::default();
        while let Ok(f) = full.read(&mut rd).await {
            if frames_tx.send(f).await.is_err() {
                break;
            }
        }
    });
    let mut full = Full::default();
    let Some(first) = frames.recv().await else {
        return;
    };
    let Some((key, account, dc)) = find_key(&shared, &first) else {
        // Unknown key: the transport error a server sends, then the connection ends.
        let _ = tokio::io::AsyncWriteExt::write_all(&mut wr, &(-404i32).to_le_bytes()).await;
        return;
    };
    let (updates_tx, mut updates) = mpsc::unbounded_channel::<Push>();
    let close = Arc::new(Notify::new());
    let id = {
        let mut s = shared.lock().expect("endpoint state");
        if dc == HOME_DC && s.accounts[account].held {
            s.stats.refused += 1;
            return;
        }
        s.next_conn += 1;
        *s.stats.connections.entry((account, dc)).or_default() += 1;
        let id = s.next_conn;
        if dc == HOME_DC {
            let a = &mut s.accounts[account];
            for u in a.pending.drain(..) {
                let _ = updates_tx.send(u);
            }
            a.live = Some((id, updates_tx.clone(), close.clone()));
        }
        id
    };
    drop(updates_tx);
    let mut conn = Conn {
        id,
        key,
        account,
        dc,
        session_id: 0,
        last_msg_id: 0,
        content_sent: 0,
        acks_owed: Vec::new(),
    };
    let mut frame = Some(first);
    loop {
        let out = if let Some(f) = frame.take() {
            match conn.handle_frame(&shared, &f).await {
                Some(out) => out,
                None => break,
            }
        } else {
            tokio::select! {
                f = frames.recv() => match f {
                    Some(f) => { frame = Some(f); continue; }
                    None => break,
                },
                Some(u) = updates.recv() => {
                    shared.lock().expect("endpoint state").stats.updates_out += 1;
                    vec![Out { body: u.body, response: false, content: true }]
                }
                _ = close.notified() => break,
            }
        };
        if out.is_empty() {
            continue;
        }
        let plain = conn.pack(out);
        let sealed = conn.key.seal(plain);
        if full.write(&mut wr, &sealed).await.is_err() {
            break;
        }
    }
    // Updates this connection took but never wrote: the chat-state ones wait for the next
    // connection, in order; encrypted messages are lost.
    let mut s = shared.lock().expect("endpoint state");
    if s.accounts[account]
        .live
        .as_ref()
        .is_some_and(|(live, _, _)| *live == id)
    {
        s.accounts[account].live = None;
        let mut unsent = Vec::new();
        while let Ok(u) = updates.try_recv() {
            unsent.push(u);
        }
        let lost = unsent.iter().filter(|u| u.lossy).count() as u64;
        s.stats.lost_pushes += lost;
        let a = &mut s.accounts[account];
        for u in unsent.into_iter().rev().filter(|u| !u.lossy) {
            a.pending.push_front(u);
        }
    }
}

fn find_key(shared: &Mutex<Shared>, frame: &[u8]) -> Option<(Arc<Key>, usize, i32)> {
    let s = shared.lock().expect("endpoint state");
    s.keys
        .iter()
        .find(|(k, _, _)| frame.len() >= 8 && frame[..8] == k.id)
        .cloned()
}
