//! A restartable engine per user on the simulated server, and the application side that
//! records and acknowledges every event (shared by the running-engine tests).

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{config, user};
use secretchat_engine::protocol::chat::{AppEvent, Command};
use secretchat_engine::runtime::{Engine, EngineEvent, EventKind, Events};
use secretchat_engine::sim::SimServer;
use secretchat_schema::e2e::enums as e2e;

/// Everything the application saw, acknowledging as it goes.
#[derive(Default)]
pub struct Seen {
    pub events: Vec<EngineEvent>,
}

impl Seen {
    pub fn texts(&self, account: u64, chat: u64) -> Vec<String> {
        self.events
            .iter()
            .filter(|e| e.account == account && e.chat == chat)
            .filter_map(|e| match &e.kind {
                EventKind::App(AppEvent::Message { message, .. }) => match message.as_ref() {
                    e2e::DecryptedMessage::DecryptedMessage73(m) => Some(m.message.clone()),
                    e2e::DecryptedMessage::DecryptedMessage46(m) => Some(m.message.clone()),
                    _ => None,
                },
                _ => None,
            })
            .collect()
    }

    pub fn find(&self, f: impl Fn(&EngineEvent) -> bool) -> Option<&EngineEvent> {
        self.events.iter().find(|e| f(e))
    }
}

/// Pulls events until `done` holds (acknowledging each), or panics after `limit`.
pub async fn pump(
    engine: &Engine,
    rx: &mut Events,
    seen: &mut Seen,
    limit: Duration,
    done: impl Fn(&Seen) -> bool,
) -> Result<(), String> {
    let deadline = Instant::now() + limit;
    while !done(seen) {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!(
                "timed out; last events: {:?}",
                seen.events.iter().rev().take(5).collect::<Vec<_>>()
            ));
        }
        if let Ok(Some(e)) =
            tokio::time::timeout(left.min(Duration::from_millis(200)), rx.recv()).await
        {
            if let Some(seq) = e.seq {
                engine.ack(seq).unwrap();
            }
            seen.events.push(e);
        }
    }
    Ok(())
}

pub fn ready(seen: &Seen, account: u64) -> Option<u64> {
    seen.find(|e| {
        e.account == account && matches!(e.kind, EventKind::App(AppEvent::ChatReady { .. }))
    })
    .map(|e| e.chat)
}

/// One user's engine on its own directory, restartable.
pub struct Node {
    pub dir: std::path::PathBuf,
    pub account: u64,
    pub device: secretchat_engine::sim::SimDevice,
    pub engine: Option<Engine>,
    pub rx: Option<Events>,
    pub seen: Seen,
}

impl Node {
    pub async fn start(&mut self, sim: &Arc<SimServer>) {
        self.start_with(sim, config()).await;
    }

    /// Opens the engine with `cfg` (replacing a running one).
    pub async fn start_with(
        &mut self,
        sim: &Arc<SimServer>,
        cfg: secretchat_engine::runtime::EngineConfig,
    ) {
        if let Some(e) = self.engine.take() {
            e.shutdown().await.unwrap();
        }
        self.rx = None;
        let (engine, rx) = Engine::open(&self.dir, cfg).unwrap();
        let feed = engine
            .add_account(self.account, Arc::new(self.device.clone()))
            .await
            .unwrap();
        sim.connect(&self.device, feed);
        self.engine = Some(engine);
        self.rx = Some(rx);
    }

    /// Drops the engine (its actors stop mid-flight) and reopens the same directory.
    pub async fn restart(&mut self, sim: &Arc<SimServer>) {
        self.start(sim).await;
    }

    pub fn engine(&self) -> &Engine {
        self.engine.as_ref().unwrap()
    }

    /// Drains available events for up to `wait`.
    pub async fn pump(&mut self, wait: Duration) {
        let engine = self.engine.clone().unwrap();
        let rx = self.rx.as_mut().unwrap();
        let _ = pump(&engine, rx, &mut self.seen, wait, |_| false).await;
    }
}

pub async fn node(sim: &Arc<SimServer>, root: &std::path::Path, user: i64, device: u32) -> Node {
    node_with(sim, root, user, device, config()).await
}

/// [`node`] with its own engine configuration from the first open.
pub async fn node_with(
    sim: &Arc<SimServer>,
    root: &std::path::Path,
    user: i64,
    device: u32,
    cfg: secretchat_engine::runtime::EngineConfig,
) -> Node {
    let mut n = Node {
        dir: root.join(format!("u{user}d{device}")),
        account: user as u64 * 10 + u64::from(device),
        device: sim.device(user, device),
        engine: None,
        rx: None,
        seen: Seen::default(),
    };
    n.start_with(sim, cfg).await;
    n
}

/// A fault-free simulated server (seeded) and the engines of users 1 and 2 (device 0) in a
/// fresh directory (kept alive by the returned guard).
pub async fn two_users(seed: u64) -> (tempfile::TempDir, Arc<SimServer>, Node, Node) {
    let dir = tempfile::tempdir().unwrap();
    let sim = SimServer::new(secretchat_engine::sim::SimFaults::NONE, seed);
    let a = node(&sim, dir.path(), 1, 0).await;
    let b = node(&sim, dir.path(), 2, 0).await;
    (dir, sim, a, b)
}

pub fn event_chat(seen: &Seen, f: impl Fn(&AppEvent) -> bool) -> Option<u64> {
    seen.find(|e| matches!(&e.kind, EventKind::App(a) if f(a)))
        .map(|e| e.chat)
}

/// The chats `b` was asked to join so far.
fn requested(b: &Node) -> Vec<u64> {
    b.seen
        .events
        .iter()
        .filter(|e| matches!(e.kind, EventKind::App(AppEvent::ChatRequested { .. })))
        .map(|e| e.chat)
        .collect()
}

/// Opens a chat from `a` to `b` (b accepts the new request, not an earlier one); returns the
/// two handles.
pub async fn open_chat(a: &mut Node, b: &mut Node, peer_user: i64) -> (u64, u64) {
    let before = requested(b);
    let ha = a
        .engine()
        .request_chat(a.account, user(peer_user))
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let hb = loop {
        b.pump(Duration::from_millis(50)).await;
        a.pump(Duration::from_millis(10)).await;
        if let Some(h) = requested(b).into_iter().find(|h| !before.contains(h)) {
            break h;
        }
        assert!(Instant::now() < deadline, "no request arrived");
    };
    b.engine()
        .command(b.account, hb, Command::Accept)
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        a.pump(Duration::from_millis(30)).await;
        b.pump(Duration::from_millis(30)).await;
        let ra =
            a.seen.events.iter().any(|e| {
                e.chat == ha && matches!(e.kind, EventKind::App(AppEvent::ChatReady { .. }))
            });
        let rb =
            b.seen.events.iter().any(|e| {
                e.chat == hb && matches!(e.kind, EventKind::App(AppEvent::ChatReady { .. }))
            });
        if ra && rb {
            return (ha, hb);
        }
        assert!(
            Instant::now() < deadline,
            "chat never became ready: a {:?}\nb {:?}",
            a.seen.events,
            b.seen.events
        );
    }
}
