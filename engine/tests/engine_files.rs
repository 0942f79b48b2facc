//! Encrypted files end to end through the engine and the simulated server.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod engine_common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use engine_common::{config, user};
use secretchat_engine::protocol::chat::{AppEvent, Command};
use secretchat_engine::runtime::files::{FileError, FileRef, FileToSend};
use secretchat_engine::runtime::{Engine, EngineEvent, EventKind, Events};
use secretchat_engine::sim::{SimDevice, SimFaults, SimServer};
use secretchat_engine::transport::{BoxFuture, RpcError, ServerApi};

/// Fails `upload.saveFilePart`/`saveBigFilePart` with a non-retryable error after `limit`
/// parts (a crash in the middle of an upload), and counts the parts it let through.
struct CrashAfter {
    inner: SimDevice,
    limit: usize,
    parts: Arc<AtomicUsize>,
}

impl ServerApi for CrashAfter {
    fn invoke(&self, request: Vec<u8>) -> BoxFuture<'static, Result<Vec<u8>, RpcError>> {
        use secretchat_schema::Identifiable;
        use secretchat_schema::api::functions::upload as up;
        let id = u32::from_le_bytes(request[..4].try_into().unwrap());
        if id == up::SaveFilePart::CONSTRUCTOR_ID || id == up::SaveBigFilePart::CONSTRUCTOR_ID {
            if self.parts.load(Ordering::SeqCst) >= self.limit {
                return Box::pin(async { Err(RpcError::new(400, "TEST_CRASH")) });
            }
            self.parts.fetch_add(1, Ordering::SeqCst);
        }
        self.inner.invoke(request)
    }
}

struct Side {
    engine: Engine,
    rx: Events,
    events: Vec<EngineEvent>,
    account: u64,
}

impl Side {
    async fn pump(&mut self, wait: Duration) {
        let deadline = Instant::now() + wait;
        while let Ok(Some(e)) = tokio::time::timeout(
            deadline.saturating_duration_since(Instant::now()),
            self.rx.recv(),
        )
        .await
        {
            if let Some(s) = e.seq {
                self.engine.ack(s).unwrap();
            }
            self.events.push(e);
        }
    }

    fn files(&self) -> Vec<FileRef> {
        self.events
            .iter()
            .filter_map(|e| match &e.kind {
                EventKind::App(AppEvent::Message { message, file, .. }) => {
                    FileRef::from_message(message, file.as_ref())
                }
                _ => None,
            })
            .collect()
    }

    fn chat(&self, f: impl Fn(&AppEvent) -> bool) -> Option<u64> {
        self.events
            .iter()
            .find(|e| matches!(&e.kind, EventKind::App(a) if f(a)))
            .map(|e| e.chat)
    }
}

async fn side(
    dir: &std::path::Path,
    sim: &Arc<SimServer>,
    user: i64,
    api: Arc<dyn ServerApi>,
) -> Side {
    let (engine, rx) = Engine::open(dir, config()).unwrap();
    let feed = engine.add_account(user as u64, api).await.unwrap();
    sim.connect(&sim.device(user, 0), feed);
    Side {
        engine,
        rx,
        events: Vec::new(),
        account: user as u64,
    }
}

async fn open(a: &mut Side, b: &mut Side) -> (u64, u64) {
    let ha = a
        .engine
        .request_chat(a.account, user(b.account as i64))
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let hb = loop {
        b.pump(Duration::from_millis(50)).await;
        if let Some(h) = b.chat(|e| matches!(e, AppEvent::ChatRequested { .. })) {
            break h;
        }
        assert!(Instant::now() < deadline);
    };
    b.engine
        .command(b.account, hb, Command::Accept)
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while a
        .chat(|e| matches!(e, AppEvent::ChatReady { .. }))
        .is_none()
        || b.chat(|e| matches!(e, AppEvent::ChatReady { .. }))
            .is_none()
    {
        a.pump(Duration::from_millis(30)).await;
        b.pump(Duration::from_millis(30)).await;
        assert!(Instant::now() < deadline);
    }
    // Let the layers be announced both ways.
    a.pump(Duration::from_millis(200)).await;
    b.pump(Duration::from_millis(200)).await;
    (ha, hb)
}

fn content(size: usize, seed: u8) -> Vec<u8> {
    (0..size)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

async fn wait_files(b: &mut Side, n: usize) -> Vec<FileRef> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while b.files().len() < n {
        b.pump(Duration::from_millis(50)).await;
        assert!(
            Instant::now() < deadline,
            "only {} files arrived",
            b.files().len()
        );
    }
    b.files()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_of_every_boundary_size_round_trip() {
    let root = tempfile::tempdir().unwrap();
    // File calls see the fault model too: failed requests and lost replies are retried
    // (parts are idempotent, the file message is de-duplicated by random_id).
    let sim = SimServer::new(
        SimFaults {
            error: 0.05,
            lost_reply: 0.05,
            ..SimFaults::NONE
        },
        1,
    );
    let mut a = side(&root.path().join("a"), &sim, 1, Arc::new(sim.device(1, 0))).await;
    let mut b = side(&root.path().join("b"), &sim, 2, Arc::new(sim.device(2, 0))).await;
    let (ha, hb) = open(&mut a, &mut b).await;
    let part = 512 * 1024;
    let sizes = [0, 1, part, part + 1, 10 * 1024 * 1024 + 1];
    for (i, &size) in sizes.iter().enumerate() {
        let path = root.path().join(format!("in{i}"));
        std::fs::write(&path, content(size, i as u8)).unwrap();
        a.engine
            .send_file(
                a.account,
                ha,
                FileToSend::document(&path, "application/octet-stream"),
            )
            .await
            .unwrap();
    }
    let refs = wait_files(&mut b, sizes.len()).await;
    for (i, (f, &size)) in refs.iter().zip(&sizes).enumerate() {
        assert_eq!(f.size, size as u64);
        let out = root.path().join(format!("out{i}"));
        b.engine.download(b.account, hb, f, &out).await.unwrap();
        assert_eq!(
            std::fs::read(&out).unwrap(),
            content(size, i as u8),
            "size {size}"
        );
    }
    // Progress was reported for uploads and downloads.
    a.pump(Duration::from_millis(200)).await;
    b.pump(Duration::from_millis(200)).await;
    let progress = |s: &Side, up: bool| {
        s.events
            .iter()
            .filter(|e| matches!(e.kind, EventKind::FileProgress { upload, .. } if upload == up))
            .count()
    };
    assert!(progress(&a, true) >= 1 + 1 + 1 + 2 + 21);
    assert!(progress(&b, false) >= 21);
    // A wrong key is refused before anything is written; a tampered part is detected and the
    // partial output removed.
    let mut wrong = refs[3].clone();
    wrong.key.0[0] ^= 1;
    let out = root.path().join("wrong");
    assert!(matches!(
        b.engine.download(b.account, hb, &wrong, &out).await,
        Err(FileError::KeyMismatch)
    ));
    assert!(!out.exists());
    sim.tamper_file(refs[3].file.id, 100);
    let out = root.path().join("tampered");
    assert!(matches!(
        b.engine.download(b.account, hb, &refs[3], &out).await,
        Err(FileError::Corrupt)
    ));
    assert!(!out.exists(), "partial output removed");
    // Sizes that do not match the server's file are refused.
    let mut lying = refs[1].clone();
    lying.size = 100;
    assert!(matches!(
        b.engine
            .download(b.account, hb, &lying, &root.path().join("x"))
            .await,
        Err(FileError::SizeMismatch { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_interrupted_by_a_crash_resumes_from_the_last_stored_part() {
    let root = tempfile::tempdir().unwrap();
    let sim = SimServer::new(SimFaults::NONE, 2);
    let parts = Arc::new(AtomicUsize::new(0));
    let crashing = CrashAfter {
        inner: sim.device(1, 0),
        limit: 3,
        parts: parts.clone(),
    };
    let adir = root.path().join("a");
    let mut a = side(&adir, &sim, 1, Arc::new(crashing)).await;
    let mut b = side(&root.path().join("b"), &sim, 2, Arc::new(sim.device(2, 0))).await;
    let (ha, hb) = open(&mut a, &mut b).await;
    let size = 7 * 512 * 1024 + 333;
    let path = root.path().join("big");
    std::fs::write(&path, content(size, 9)).unwrap();
    let err = a
        .engine
        .send_file(a.account, ha, FileToSend::document(&path, "video/mp4"))
        .await;
    assert!(err.is_err(), "the transport failed after 3 parts");
    assert_eq!(parts.load(Ordering::SeqCst), 3);
    // Crash and restart on the same directory, with a working transport.
    drop(a);
    let counted = Arc::new(AtomicUsize::new(0));
    let healthy = CrashAfter {
        inner: sim.device(1, 0),
        limit: usize::MAX,
        parts: counted.clone(),
    };
    let a = side(&adir, &sim, 1, Arc::new(healthy)).await;
    assert_eq!(a.engine.resume_uploads(a.account).await.unwrap(), 1);
    assert_eq!(
        counted.load(Ordering::SeqCst),
        8 - 3,
        "only the missing parts were sent"
    );
    assert_eq!(
        a.engine.resume_uploads(a.account).await.unwrap(),
        0,
        "nothing left"
    );
    let refs = wait_files(&mut b, 1).await;
    let out = root.path().join("big.out");
    b.engine
        .download(b.account, hb, &refs[0], &out)
        .await
        .unwrap();
    assert_eq!(std::fs::read(&out).unwrap(), content(size, 9));
}

/// Lets the first file part through, then holds the others until `released` (an upload in
/// progress); counts the parts let through.
struct HoldParts {
    inner: SimDevice,
    passed: Arc<AtomicUsize>,
    released: Arc<AtomicBool>,
}

impl ServerApi for HoldParts {
    fn invoke(&self, request: Vec<u8>) -> BoxFuture<'static, Result<Vec<u8>, RpcError>> {
        use secretchat_schema::Identifiable;
        use secretchat_schema::api::functions::upload as up;
        let id = u32::from_le_bytes(request[..4].try_into().unwrap());
        if id != up::SaveFilePart::CONSTRUCTOR_ID && id != up::SaveBigFilePart::CONSTRUCTOR_ID {
            return self.inner.invoke(request);
        }
        let first = self.passed.fetch_add(1, Ordering::SeqCst) == 0;
        let (inner, released) = (self.inner.clone(), self.released.clone());
        Box::pin(async move {
            while !first && !released.load(Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            inner.invoke(request).await
        })
    }
}

/// A layer-73+ message's text.
fn text_of(m: &secretchat_schema::e2e::enums::DecryptedMessage) -> Option<&str> {
    match m {
        secretchat_schema::e2e::enums::DecryptedMessage::DecryptedMessage73(m) => Some(&m.message),
        _ => None,
    }
}

/// `resume_uploads` while an upload of this process is in progress (an account taken over, a
/// host resuming at start while the application already sends) leaves it to the sender:
/// run a second time, its message was sent twice (the crash test saw one message delivered
/// under two inbox entries).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resuming_leaves_an_upload_in_progress_to_its_sender() {
    let root = tempfile::tempdir().unwrap();
    let sim = SimServer::new(SimFaults::NONE, 2);
    let (passed, released) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicBool::new(false)),
    );
    let hold = HoldParts {
        inner: sim.device(1, 0),
        passed: passed.clone(),
        released: released.clone(),
    };
    let mut a = side(&root.path().join("a"), &sim, 1, Arc::new(hold)).await;
    let mut b = side(&root.path().join("b"), &sim, 2, Arc::new(sim.device(2, 0))).await;
    let (ha, _) = open(&mut a, &mut b).await;
    let path = root.path().join("doc");
    std::fs::write(&path, content(3 * 512 * 1024 + 5, 4)).unwrap();
    let (engine, account) = (a.engine.clone(), a.account);
    let file = FileToSend::document(&path, "application/pdf");
    let sending = tokio::spawn(async move { engine.send_file(account, ha, file).await });
    // The first part is through: the upload's record is stored, its other parts are held.
    let deadline = Instant::now() + Duration::from_secs(30);
    while passed.load(Ordering::SeqCst) < 2 {
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert!(Instant::now() < deadline, "the upload never started");
    }
    let engine = a.engine.clone();
    let resuming = tokio::spawn(async move { engine.resume_uploads(account).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    released.store(true, Ordering::SeqCst);
    assert_eq!(
        resuming.await.unwrap().unwrap(),
        0,
        "nothing was interrupted"
    );
    sending.await.unwrap().unwrap();
    assert_eq!(a.engine.resume_uploads(account).await.unwrap(), 0);
    // A text after it: once it arrived, so did every earlier message of the chat.
    a.engine.send_text(account, ha, "after").await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while b
        .chat(
            |e| matches!(e, AppEvent::Message { message, .. } if text_of(message) == Some("after")),
        )
        .is_none()
    {
        b.pump(Duration::from_millis(50)).await;
        assert!(Instant::now() < deadline, "the text never arrived");
    }
    assert_eq!(b.files().len(), 1, "the file's message arrived once");
}

/// Lets `allowed` `upload.getFile` calls through, then fails them (a transport dying mid-way);
/// counts the ones that passed.
struct GetFileGate {
    inner: SimDevice,
    allowed: Arc<AtomicUsize>,
    passed: Arc<AtomicUsize>,
    /// The DC of every call sent with `invoke_in_dc`.
    dcs: Arc<std::sync::Mutex<Vec<i32>>>,
}

impl ServerApi for GetFileGate {
    fn invoke(&self, request: Vec<u8>) -> BoxFuture<'static, Result<Vec<u8>, RpcError>> {
        use secretchat_schema::Identifiable;
        use secretchat_schema::api::functions::upload as up;
        let id = u32::from_le_bytes(request[..4].try_into().unwrap());
        if id == up::GetFile::CONSTRUCTOR_ID {
            if self.passed.load(Ordering::SeqCst) >= self.allowed.load(Ordering::SeqCst) {
                return Box::pin(async { Err(RpcError::new(400, "TEST_DISCONNECT")) });
            }
            self.passed.fetch_add(1, Ordering::SeqCst);
        }
        self.inner.invoke(request)
    }

    fn invoke_in_dc(
        &self,
        dc_id: i32,
        request: Vec<u8>,
    ) -> BoxFuture<'static, Result<Vec<u8>, RpcError>> {
        self.dcs.lock().unwrap().push(dc_id);
        self.invoke(request)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn downloads_resume_and_files_forward_without_reupload() {
    let root = tempfile::tempdir().unwrap();
    let sim = SimServer::new(SimFaults::NONE, 4);
    let allowed = Arc::new(AtomicUsize::new(2));
    let passed = Arc::new(AtomicUsize::new(0));
    let dcs = Arc::default();
    let gate = GetFileGate {
        inner: sim.device(2, 0),
        allowed: allowed.clone(),
        passed: passed.clone(),
        dcs: Arc::clone(&dcs),
    };
    let mut a = side(&root.path().join("a"), &sim, 1, Arc::new(sim.device(1, 0))).await;
    let mut b = side(&root.path().join("b"), &sim, 2, Arc::new(gate)).await;
    let (ha, hb) = open(&mut a, &mut b).await;
    let size = 5 * 512 * 1024 + 7;
    let path = root.path().join("f");
    std::fs::write(&path, content(size, 3)).unwrap();
    a.engine
        .send_file(a.account, ha, FileToSend::document(&path, "image/png"))
        .await
        .unwrap();
    let refs = wait_files(&mut b, 1).await;
    let out = root.path().join("f.out");
    // The transport dies after 2 parts: the error is a call error and the partial file stays.
    let err = b.engine.download(b.account, hb, &refs[0], &out).await;
    assert!(matches!(err, Err(FileError::Call(_))), "{err:?}");
    assert_eq!(std::fs::metadata(&out).unwrap().len(), 2 * 512 * 1024);
    // Again, with the transport back: only the 4 missing parts are fetched.
    allowed.store(usize::MAX, Ordering::SeqCst);
    b.engine
        .download(b.account, hb, &refs[0], &out)
        .await
        .unwrap();
    assert_eq!(passed.load(Ordering::SeqCst), 2 + 4);
    assert_eq!(std::fs::read(&out).unwrap(), content(size, 3));
    // Every part was asked of the DC the file is on (the simulator stores files on DC 2).
    assert_eq!(refs[0].file.dc_id, 2);
    assert_eq!(
        *dcs.lock().unwrap(),
        vec![2; 2 + 1 + 4],
        "2 parts, the refused one, 4"
    );
    // B forwards the file back to A: same server file, same key, no upload.
    let media = b
        .events
        .iter()
        .find_map(|e| match &e.kind {
            EventKind::App(AppEvent::Message { message, .. }) => match message.as_ref() {
                secretchat_schema::e2e::enums::DecryptedMessage::DecryptedMessage73(m) => {
                    m.media.clone()
                }
                _ => None,
            },
            _ => None,
        })
        .unwrap();
    b.engine
        .forward_file(b.account, hb, &refs[0], media)
        .await
        .unwrap();
    let back = wait_files(&mut a, 1).await;
    assert_eq!(back[0].file.id, refs[0].file.id);
    let out2 = root.path().join("f.back");
    a.engine
        .download(a.account, ha, &back[0], &out2)
        .await
        .unwrap();
    assert_eq!(std::fs::read(&out2).unwrap(), content(size, 3));
}

/// Peak resident memory of this process (VmHWM), in bytes.
fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kb * 1024
}

/// Reads `path` in 1 MiB chunks (bounded memory, whatever its size).
fn for_each_chunk(path: &std::path::Path, mut f: impl FnMut(&[u8])) {
    use std::io::Read;
    let mut file = std::fs::File::open(path).unwrap();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        f(&buf[..n]);
    }
}

/// A sparse 2.1 GiB file (above 2^31: the 64-bit document size), with a few non-zero bytes at
/// the edges and across 2^31, goes up and back down through the whole path without the engine
/// or the server holding it in memory: the server keeps the parts on disk and hashes what it
/// receives; the test hashes the expected ciphertext independently with the key and IV from
/// the message, then downloads and compares the result with the original chunk by chunk.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sparse_multi_gigabyte_file_streams_through_in_bounded_memory() {
    use secretchat_engine::crypto::file::{FileKey, PART_SIZE};
    use secretchat_engine::crypto::ige::Direction;
    use secretchat_engine::sim::FileKeeping;
    use sha2::{Digest, Sha256};
    use std::io::{Seek, SeekFrom, Write};
    let root = tempfile::tempdir().unwrap();
    let server_dir = root.path().join("server");
    std::fs::create_dir_all(&server_dir).unwrap();
    let sim = SimServer::new(SimFaults::NONE, 6);
    sim.set_file_keeping(FileKeeping::Disk(server_dir));
    let mut a = side(&root.path().join("a"), &sim, 1, Arc::new(sim.device(1, 0))).await;
    let mut b = side(&root.path().join("b"), &sim, 2, Arc::new(sim.device(2, 0))).await;
    let (ha, hb) = open(&mut a, &mut b).await;
    let size: u64 = (1 << 31) + 100 * 1024 * 1024 + 5;
    let path = root.path().join("sparse");
    {
        let mut f = std::fs::File::create(&path).unwrap();
        f.set_len(size).unwrap();
        for (at, bytes) in [
            (0, &b"head"[..]),
            ((1 << 31) - 2, b"across"),
            (size - 3, b"end"),
        ] {
            f.seek(SeekFrom::Start(at)).unwrap();
            f.write_all(bytes).unwrap();
        }
    }
    let before = peak_rss();
    a.engine
        .send_file(
            a.account,
            ha,
            FileToSend::document(&path, "application/x-sparse"),
        )
        .await
        .unwrap();
    let grew = peak_rss().saturating_sub(before);
    assert!(
        grew < 256 << 20,
        "upload: peak memory grew by {} MiB",
        grew >> 20
    );
    let refs = wait_files(&mut b, 1).await;
    assert_eq!(refs[0].size, size);
    assert_eq!(refs[0].file.size as u64, size.div_ceil(16) * 16);
    // The ciphertext the server must have: one IGE chain over the file, padded to 16.
    let key = FileKey {
        key: refs[0].key.clone(),
        iv: refs[0].iv.clone(),
    };
    let mut stream = key.stream(Direction::Encrypt);
    let mut h = Sha256::new();
    let mut pending: Vec<u8> = Vec::with_capacity(2 * PART_SIZE);
    let mut left = size;
    for_each_chunk(&path, |chunk| {
        pending.extend_from_slice(chunk);
        left -= chunk.len() as u64;
        while pending.len() >= PART_SIZE && (pending.len() > PART_SIZE || left > 0) {
            let mut part: Vec<u8> = pending.drain(..PART_SIZE).collect();
            stream.part(&mut part).unwrap();
            h.update(&part);
        }
    });
    stream.last_part(&mut pending).unwrap();
    h.update(&pending);
    let want: [u8; 32] = h.finalize().into();
    assert_eq!(sim.file_digest(refs[0].file.id), Some(want));
    // Down again, decrypted as a stream, into a file equal to the original.
    let out = root.path().join("sparse.out");
    let before = peak_rss();
    b.engine
        .download(b.account, hb, &refs[0], &out)
        .await
        .unwrap();
    let grew = peak_rss().saturating_sub(before);
    assert!(
        grew < 256 << 20,
        "download: peak memory grew by {} MiB",
        grew >> 20
    );
    assert_eq!(std::fs::metadata(&out).unwrap().len(), size);
    let digest = |p: &std::path::Path| {
        let mut h = Sha256::new();
        for_each_chunk(p, |c| h.update(c));
        <[u8; 32]>::from(h.finalize())
    };
    assert_eq!(digest(&out), digest(&path), "downloaded file differs");
}

/// Files between a peer that speaks layer 73 (an older client: documents have 32-bit sizes)
/// and one at layer 144: both directions use the layer-46 document constructor, each side
/// downloads what the other sent, and a file above 2 GiB for the old peer is refused before
/// anything is uploaded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_between_a_layer_73_and_a_layer_144_peer() {
    use secretchat_schema::e2e::enums::{DecryptedMessage, DecryptedMessageMedia};
    let root = tempfile::tempdir().unwrap();
    let sim = SimServer::new(SimFaults::NONE, 7);
    let mut a = side(&root.path().join("a"), &sim, 1, Arc::new(sim.device(1, 0))).await;
    let mut old_config = config();
    old_config.chat.layer = 73;
    let (engine, rx) = Engine::open(&root.path().join("b"), old_config).unwrap();
    let feed = engine
        .add_account(2, Arc::new(sim.device(2, 0)))
        .await
        .unwrap();
    sim.connect(&sim.device(2, 0), feed);
    let mut b = Side {
        engine,
        rx,
        events: Vec::new(),
        account: 2,
    };
    let (ha, hb) = open(&mut a, &mut b).await;
    assert_eq!(a.engine.status(1, ha).await.unwrap().negotiated_layer, 73);
    assert_eq!(b.engine.status(2, hb).await.unwrap().negotiated_layer, 73);
    let sizes = [3000usize, 512 * 1024 + 9];
    for (i, &n) in sizes.iter().enumerate() {
        let p = root.path().join(format!("a{i}"));
        std::fs::write(&p, content(n, 40 + i as u8)).unwrap();
        a.engine
            .send_file(1, ha, FileToSend::document(&p, "text/plain"))
            .await
            .unwrap();
        let p = root.path().join(format!("b{i}"));
        std::fs::write(&p, content(n, 80 + i as u8)).unwrap();
        b.engine
            .send_file(2, hb, FileToSend::document(&p, "text/plain"))
            .await
            .unwrap();
    }
    let to_b = wait_files(&mut b, 2).await;
    let to_a = wait_files(&mut a, 2).await;
    for s in [&a, &b] {
        let docs: Vec<bool> = s
            .events
            .iter()
            .filter_map(|e| match &e.kind {
                EventKind::App(AppEvent::Message { message, .. }) => match message.as_ref() {
                    DecryptedMessage::DecryptedMessage73(m) => m
                        .media
                        .as_ref()
                        .map(|md| matches!(md, DecryptedMessageMedia::Document46(_))),
                    _ => None,
                },
                _ => None,
            })
            .collect();
        assert_eq!(docs, vec![true, true], "layer-46 documents only");
    }
    for (i, &n) in sizes.iter().enumerate() {
        let out = root.path().join(format!("to_b{i}"));
        b.engine.download(2, hb, &to_b[i], &out).await.unwrap();
        assert_eq!(std::fs::read(&out).unwrap(), content(n, 40 + i as u8));
        let out = root.path().join(format!("to_a{i}"));
        a.engine.download(1, ha, &to_a[i], &out).await.unwrap();
        assert_eq!(std::fs::read(&out).unwrap(), content(n, 80 + i as u8));
    }
    // Above 2 GiB the old peer's 32-bit size cannot carry it: refused up front.
    let big = root.path().join("big");
    std::fs::File::create(&big)
        .unwrap()
        .set_len((1 << 31) + 1)
        .unwrap();
    let before = sim.file_bytes_received();
    assert!(matches!(
        a.engine
            .send_file(1, ha, FileToSend::document(&big, "application/x-big"))
            .await,
        Err(FileError::TooLarge(_))
    ));
    assert_eq!(sim.file_bytes_received(), before, "nothing uploaded");
}
