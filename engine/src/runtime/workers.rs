//! Worker pools and shared services: [`RekeyActor`] (DH exponentiations off the chat threads),
//! [`FileCryptor`] (file parts), [`ChatLoader`] (chat records read from a database over the
//! network), [`DhConfigActor`] (the DH config per account, with safe-prime verdicts kept in the
//! store).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use actix::prelude::*;

use super::metrics::{EngineMetrics, Phase, PhaseClock};
use crate::crypto::dh::{DhError, DhParams};
use crate::crypto::file::FileStream;
use crate::crypto::prime::is_safe_prime;
use crate::protocol::dh_config::{DhConfigCache, DhConfigError};
use crate::protocol::dh_job::{DhJob, DhOutput};
use crate::store::Store;
use crate::transport::ServerApi;

/// Runs DH jobs on a thread pool (`SyncArbiter`); their time goes to the engine metrics.
#[derive(Debug, Default)]
pub struct RekeyActor(pub Arc<EngineMetrics>);

impl Actor for RekeyActor {
    type Context = SyncContext<Self>;
}

/// Run one DH job.
#[derive(Message)]
#[rtype(result = "DhOutput")]
pub struct RunJob(pub Box<DhJob>);

impl Handler<RunJob> for RekeyActor {
    type Result = MessageResult<RunJob>;
    fn handle(&mut self, msg: RunJob, _: &mut SyncContext<Self>) -> Self::Result {
        let t = PhaseClock::start();
        let out = msg.0.run();
        self.0.spent(Phase::Dh, t.elapsed());
        MessageResult(out)
    }
}

/// Reads chat records (and the index) on a thread pool, so that a database round trip never holds an account's
/// thread (only on a shared database: an embedded one answers in microseconds, read in place).
#[derive(Debug)]
pub struct ChatLoader(pub Arc<Store>);

impl Actor for ChatLoader {
    type Context = SyncContext<Self>;
}

/// Read one chat's records.
#[derive(Message)]
#[rtype(result = "Result<Option<crate::store::StoredChat>, crate::store::StoreError>")]
pub struct LoadChat {
    /// The account.
    pub account: u64,
    /// The chat's handle.
    pub handle: u64,
}

impl Handler<LoadChat> for ChatLoader {
    type Result = Result<Option<crate::store::StoredChat>, crate::store::StoreError>;
    fn handle(&mut self, msg: LoadChat, _: &mut SyncContext<Self>) -> Self::Result {
        self.0.load_chat(msg.account, msg.handle)
    }
}

/// Find the chat of a server chat id in the index ([`Store::find_chat`]).
#[derive(Message)]
#[rtype(result = "Result<Option<u64>, crate::store::StoreError>")]
pub struct FindChat {
    /// The account.
    pub account: u64,
    /// The server's chat id.
    pub chat_id: i32,
}

impl Handler<FindChat> for ChatLoader {
    type Result = Result<Option<u64>, crate::store::StoreError>;
    fn handle(&mut self, msg: FindChat, _: &mut SyncContext<Self>) -> Self::Result {
        self.0.find_chat(msg.account, msg.chat_id)
    }
}

/// Encrypts or decrypts file parts on a thread pool; the IGE chain state travels with each part.
#[derive(Debug, Default)]
pub struct FileCryptor(pub Arc<EngineMetrics>);

impl Actor for FileCryptor {
    type Context = SyncContext<Self>;
}

/// Process one part (the last one is padded to 16 bytes when encrypting).
#[derive(Message)]
#[rtype(result = "Result<(FileStream, Vec<u8>), crate::crypto::CryptoError>")]
pub struct CryptPart {
    /// The chain state.
    pub stream: FileStream,
    /// The part.
    pub data: Vec<u8>,
    /// Whether it is the last part.
    pub last: bool,
}

impl Handler<CryptPart> for FileCryptor {
    type Result = Result<(FileStream, Vec<u8>), crate::crypto::CryptoError>;
    fn handle(&mut self, mut msg: CryptPart, _: &mut SyncContext<Self>) -> Self::Result {
        let t = PhaseClock::start();
        let r = if msg.last {
            msg.stream.last_part(&mut msg.data)
        } else {
            msg.stream.part(&mut msg.data)
        };
        self.0.spent(Phase::Files, t.elapsed());
        r?;
        Ok((msg.stream, msg.data))
    }
}

/// `(p, g)`.
type ParamsKey = (Vec<u8>, i32);

/// Validated parameters shared by every chat using them (one set, `DhParams::tuned`, per `(p, g)`).
#[derive(Default, Debug)]
pub struct ParamsRegistry {
    by_p: Mutex<HashMap<ParamsKey, Arc<DhParams>>>,
}

impl ParamsRegistry {
    /// The shared parameters for `(p, g)`; built (not re-validated: the store is trusted) on
    /// first use.
    pub fn get(&self, p: &[u8], g: i32) -> Option<Arc<DhParams>> {
        if let Some(v) = self.get_built(p, g) {
            return Some(v);
        }
        Some(self.share(DhParams::new(p, i64::from(g)).ok()?))
    }

    /// The shared parameters equal to `params` (same `p` and `g`): the ones already built, or
    /// these set up for many exchanges ([`DhParams::tuned`]).
    fn share(&self, params: DhParams) -> Arc<DhParams> {
        let key = (params.p_bytes().to_vec(), params.g() as i32);
        if let Ok(map) = self.by_p.lock() {
            if let Some(v) = map.get(&key) {
                return v.clone();
            }
        }
        let built = Arc::new(params.tuned());
        self.insert(&built);
        built
    }

    /// The shared parameters for `(p, g)` if already built.
    fn get_built(&self, p: &[u8], g: i32) -> Option<Arc<DhParams>> {
        self.by_p.lock().ok()?.get(&(p.to_vec(), g)).cloned()
    }

    fn insert(&self, params: &Arc<DhParams>) {
        if let Ok(mut map) = self.by_p.lock() {
            map.insert(
                (params.p_bytes().to_vec(), params.g() as i32),
                params.clone(),
            );
        }
    }
}

/// Serves the DH config per account: asks the server with the cached version, validates new
/// primes once per database.
pub struct DhConfigActor {
    store: Arc<Store>,
    registry: Arc<ParamsRegistry>,
    caches: HashMap<u64, DhConfigCache>,
    /// Held while a new prime is checked: concurrent first requests (every new chat asks at
    /// once) wait for one check instead of each running its own.
    checking: Arc<tokio::sync::Mutex<()>>,
}

impl DhConfigActor {
    /// A new service.
    pub fn new(store: Arc<Store>, registry: Arc<ParamsRegistry>) -> Self {
        Self {
            store,
            registry,
            caches: HashMap::new(),
            checking: Arc::default(),
        }
    }
}

impl Actor for DhConfigActor {
    type Context = Context<Self>;
}

/// Why no config could be had.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigError {
    /// The server's config failed validation: the handshake must fail.
    Invalid(DhError),
    /// The server could not be reached (after retries): ask again later.
    Unavailable,
}

/// Get a fresh config (parameters + server randomness) for `account`.
#[derive(Message)]
#[rtype(result = "Result<(Arc<DhParams>, Vec<u8>), ConfigError>")]
pub struct GetConfig {
    /// The account.
    pub account: u64,
    /// Its server.
    pub api: Arc<dyn ServerApi>,
}

impl Handler<GetConfig> for DhConfigActor {
    type Result = ResponseActFuture<Self, Result<(Arc<DhParams>, Vec<u8>), ConfigError>>;

    fn handle(&mut self, msg: GetConfig, _: &mut Context<Self>) -> Self::Result {
        let cache = self.caches.entry(msg.account).or_insert_with(|| {
            let mut c = DhConfigCache::default();
            if let Ok(Some((version, g, p))) = self.store.dh_config(msg.account) {
                if self.store.prime_verdict(&p).ok().flatten() == Some(true) {
                    if let Some(params) = self.registry.get(&p, g) {
                        c.restore(version, params);
                    }
                }
            }
            c
        });
        let request = cache.request();
        let api = msg.api.clone();
        let account = msg.account;
        let verdicts = self.store.clone();
        let checking = self.checking.clone();
        let registry = self.registry.clone();
        Box::pin(
            async move {
                let answer = super::call_retrying(&*api, &request).await;
                // A prime not seen before is checked on a blocking thread first (a 2048-bit
                // safe-prime test must not stall the actors sharing this one).
                // The parameters are set up there too (`DhParams::tuned`: without OpenSSL a
                // fixed-base table of ~7,700 multiplications), once per (p, g) for every account.
                if let Ok(secretchat_schema::api::enums::messages::DhConfig::DhConfig(c)) = &answer
                {
                    let _one_at_a_time = checking.lock().await;
                    let (p, g) = (c.p.clone(), c.g);
                    let known = registry.get_built(&p, g).is_some();
                    if !known {
                        let seed = rand::random::<u64>();
                        let _ = tokio::task::spawn_blocking(move || {
                            if verdict(&verdicts, &p, seed) {
                                let _ = registry.get(&p, g);
                            }
                        })
                        .await;
                    }
                }
                answer
            }
            .into_actor(self)
            .map(move |answer, act, _| {
                let answer = answer.map_err(|_| ConfigError::Unavailable)?;
                let store = act.store.clone();
                let cache = act.caches.entry(account).or_default();
                let registry = act.registry.clone();
                let fresh = cache
                    .apply_with(
                        answer,
                        |p| verdict(&store, p, rand::random()),
                        |params| registry.share(params),
                    )
                    .map_err(|e| match e {
                        DhConfigError::Invalid(e) => ConfigError::Invalid(e),
                        _ => ConfigError::Unavailable,
                    })?;
                if fresh.changed {
                    act.registry.insert(&fresh.params);
                    let _ = store.set_dh_config(
                        account,
                        cache.version(),
                        fresh.params.g() as i32,
                        &fresh.params.p_bytes(),
                    );
                }
                Ok((fresh.params, fresh.random))
            }),
        )
    }
}

/// The stored safe-prime verdict for `p`, or the check's (then stored: once per database).
fn verdict(store: &Store, p: &[u8], seed: u64) -> bool {
    if let Ok(Some(v)) = store.prime_verdict(p) {
        return v;
    }
    let v = is_safe_prime(p, seed);
    let _ = store.set_prime_verdict(p, v);
    v
}
