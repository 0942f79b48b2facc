//! The adversarial suite: hostile servers and peers, one named case each. Every case asserts a
//! typed error and an unchanged chat state, or the abort the spec requires (closed with a typed
//! reason, keys dropped, nothing left behind).
//!
//! The chat under attack is an originator core provisioned with a known key; "mallory" holds
//! the same key and the participant's side, so it can build any message — including ones our
//! own sealing code would never produce, with an independent MTProto 2.0 sealer below.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../engine/tests/harness/mod.rs"]
mod harness;

use harness::seal::seal_raw;
use harness::{closed, sent};

use rand::SeedableRng;
use rand::rngs::StdRng;
use secretchat_engine::crypto::CryptoError;
use secretchat_engine::crypto::dh::{DhError, DhParams};
use secretchat_engine::crypto::message::{self, MAX_WIRE};
use secretchat_engine::crypto::prime::{TELEGRAM_DH_PRIME, is_safe_prime};
use secretchat_engine::crypto::{AuthKey, Side};
use secretchat_engine::protocol::chat::{
    Action, AppEvent, Call, ChatCore, ChatStatus, CloseReason, Command, Event, Outgoing,
};
use secretchat_engine::protocol::dh_config::{DhConfigCache, DhConfigError};
use secretchat_engine::protocol::layer::{LayerState, OUR_LAYER, Payload, text_message};
use secretchat_engine::protocol::rekey::RekeyError;
use secretchat_engine::protocol::seq_no::{Received, SeqError, SeqNo};
use secretchat_engine::protocol::session::Session;
use secretchat_schema::api::{enums as api, types as api_types};
use secretchat_schema::e2e::{enums as e2e, types as e2e_t};
use secretchat_schema::{Deserialize, Serialize};

const T0: u64 = 1_700_000_000_000;

/// A key with distinct bytes (a constant key would make x = 0 and x = 8 the same).
fn key() -> AuthKey {
    let mut k = [0u8; 256];
    for (i, b) in k.iter_mut().enumerate() {
        *b = (i as u8).wrapping_mul(7).wrapping_add(3);
    }
    AuthKey::new(k)
}

struct Chat {
    core: ChatCore,
    mallory: Session,
    rng: StdRng,
    /// TDLib's receiver rules on everything the core sends.
    strict: harness::strict::StrictReceiver,
}

fn chat() -> Chat {
    let core = ChatCore::provisioned(
        harness::test_config(),
        Side::Originator,
        7,
        77,
        key(),
        harness::dh(),
        OUR_LAYER,
        T0,
    )
    .0;
    let mallory = Session::from_parts(
        key(),
        Vec::new(),
        Side::Participant,
        SeqNo::new(Side::Participant),
        LayerState::from_parts(OUR_LAYER, Some(0), OUR_LAYER),
    );
    Chat {
        core,
        mallory,
        rng: StdRng::seed_from_u64(3),
        strict: harness::strict::StrictReceiver::one_way(&key()),
    }
}

fn text(s: &str) -> e2e::DecryptedMessage {
    text_message(OUR_LAYER, 3, 0, s.into(), vec![])
}

fn service(action: e2e::DecryptedMessageAction) -> e2e::DecryptedMessage {
    e2e::DecryptedMessage::Service23(e2e_t::DecryptedMessageService23 {
        random_id: 5,
        action,
    })
}

impl Chat {
    fn feed(&mut self, e: Event) -> Vec<Action> {
        if let Event::DhDone(o) = &e {
            if let Some(Ok(k)) = &o.shared {
                self.strict.learn(k);
            }
        }
        let actions = self.core.handle(e, T0, &mut self.rng);
        for wire in sent(&actions) {
            self.strict.observe(Side::Originator, &wire);
        }
        actions
    }
    fn status(&self) -> ChatStatus {
        self.core.status(T0)
    }
    fn incoming(&mut self, wire: Vec<u8>) -> Vec<Action> {
        self.feed(Event::Incoming {
            wire,
            file: None,
            date: 0,
        })
    }
    fn core_sends(&mut self, s: &str) -> Vec<u8> {
        let a = self.feed(Event::Command(Command::Send(Box::new(Outgoing::text(
            1, s,
        )))));
        sent(&a).pop().unwrap()
    }
    fn mallory_reads(&mut self, wire: &[u8]) -> Payload {
        let o = self.mallory.open(wire, None).unwrap();
        if let Some(Received::InOrder { peer_in }) = o.received {
            self.mallory.accept(peer_in).unwrap();
        }
        o.payload
    }
    fn mallory_sends(&mut self, m: e2e::DecryptedMessage) -> Vec<Action> {
        let wire = self.mallory.seal(m, &mut self.rng).unwrap().wire;
        self.incoming(wire)
    }
    fn mallory_sends_at(&mut self, m: e2e::DecryptedMessage, i: i32, o: i32) -> Vec<Action> {
        let wire = self
            .mallory
            .seal_at(m, i, o, None, &mut self.rng)
            .unwrap()
            .wire;
        self.incoming(wire)
    }
}

/// If `a` holds a DH job, runs it and returns what the core does with the result; else `a`.
fn after_job(a: Vec<Action>, mut feed: impl FnMut(Event) -> Vec<Action>) -> Vec<Action> {
    let mut rest = Vec::new();
    let mut job = None;
    for x in a {
        match x {
            Action::Compute(j) if job.is_none() => job = Some(j),
            other => rest.push(other),
        }
    }
    match job {
        Some(j) => feed(Event::DhDone(Box::new(j.run()))),
        None => rest,
    }
}

/// A rejection: exactly one `Rejected` action and the state as before.
fn assert_rejected(c: &mut Chat, wire: Vec<u8>) {
    let before = c.status();
    let a = c.incoming(wire);
    assert!(matches!(a.as_slice(), [Action::Rejected(_)]), "{a:?}");
    assert_eq!(c.status(), before, "state untouched");
}

/// The spec's abort: closed with `reason`, discardEncryption called, keys dropped, nothing
/// left, later input ignored.
fn assert_aborted(c: &mut Chat, a: &[Action], reason: CloseReason) {
    assert_eq!(closed(a), Some(reason));
    assert!(
        a.iter()
            .any(|a| matches!(a, Action::Call(x) if matches!(**x, Call::DiscardEncryption(_))))
    );
    let st = c.status();
    assert_eq!(st.phase, "closed");
    assert_eq!(st.key_fingerprint, None);
    assert_eq!((st.unacknowledged, st.holes.len()), (0, 0));
    assert!(
        c.mallory_sends(text("late")).is_empty(),
        "closed stays closed"
    );
}

/// A valid layered payload (what mallory's next message would carry).
fn payload_bytes(c: &mut Chat) -> Vec<u8> {
    let s = c.mallory.seal(text("p"), &mut c.rng).unwrap();
    let d = message::decrypt_v2(&key(), Side::Participant, &s.wire).unwrap();
    d.payload
}

/// Plaintext = length prefix `len` ‖ payload ‖ `pad` bytes of padding.
fn framed(len: i32, payload: &[u8], pad: usize) -> Vec<u8> {
    let mut pt = len.to_le_bytes().to_vec();
    pt.extend_from_slice(payload);
    pt.extend(std::iter::repeat_n(0xa5u8, pad));
    pt
}

// ---------------------------------------------------------------- DH parameters

/// Applies a server `dhConfig` to an empty cache with the real safe-prime check.
fn apply_config(p: Vec<u8>, g: i32) -> (Result<(), DhConfigError>, DhConfigCache) {
    let mut cache = DhConfigCache::default();
    let answer = api::messages::DhConfig::DhConfig(api_types::messages::DhConfig {
        g,
        p,
        version: 3,
        random: vec![1; 256],
    });
    let r = cache.apply(answer, |p| is_safe_prime(p, 99)).map(|_| ());
    (r, cache)
}

fn assert_config_refused(p: Vec<u8>, g: i32, want: DhError) {
    let (r, cache) = apply_config(p, g);
    assert_eq!(r, Err(DhConfigError::Invalid(want)));
    assert!(
        cache.params().is_none() && cache.version() == 0,
        "cache unchanged"
    );
}

#[test]
fn p_not_prime() {
    let mut p = TELEGRAM_DH_PRIME.to_vec();
    p[255] = p[255].wrapping_add(2); // odd, top bit kept, composite
    // g = 4: no residue condition, so only the primality test can refuse it.
    assert_config_refused(p, 4, DhError::NotSafePrime);
}

/// A 2048-bit prime ≡ 1 (mod 4), so (p−1)/2 is even: prime but not safe. Found with a
/// Miller–Rabin search (40 rounds, Python `pow`) from a seeded random start.
const PRIME_1_MOD_4: &str = "c4df4e0e8eb5140f16f4488157241955b91dddd91389b372a341738c837a7935bef7e268ffe976ab60581ccace1d62e05b4c8012ede7bd0cffb88309fadb890859001ac9406329bc65b00a2d35d148805071950eadec6f117d836e77af67d461e4163207d094499602f0ee99731c94521919e93ad11745ad498893101c593af514aa4e719d3c7dec00a61f933d6c51e370eb9a0a96263ae6c5e818fac0433cbd7dabe929c4a334bfc6cd75e9bb049a79d7a7a3cc8c3d5f169293de8fc88b28756bad6be28e7aa6e99f19950499dd251de512148239292d22e255accb1a466884f3f49249dc28ff90a5aec7978306d03bf38b2ffc80a4df5a51c9bc701e7eb2fd";

#[test]
fn p_minus_1_half_not_prime() {
    // g = 4 has no residue condition, so only the safe-prime test can refuse it.
    assert_config_refused(
        hex::decode(PRIME_1_MOD_4).unwrap(),
        4,
        DhError::NotSafePrime,
    );
}

#[test]
fn p_of_2047_bits() {
    let mut p = TELEGRAM_DH_PRIME.to_vec();
    p[0] &= 0x7f;
    assert_config_refused(p, 3, DhError::PrimeSize);
}

#[test]
fn p_of_2049_bits() {
    let mut p = vec![1u8];
    p.extend_from_slice(&TELEGRAM_DH_PRIME);
    assert_config_refused(p, 3, DhError::PrimeSize);
}

#[test]
fn g_outside_2_to_7() {
    for g in [-1, 0, 1, 8, 1 << 30] {
        assert_config_refused(
            TELEGRAM_DH_PRIME.to_vec(),
            g,
            DhError::GeneratorRange(i64::from(g)),
        );
    }
}

#[test]
fn g_failing_the_quadratic_residue_rule() {
    // For Telegram's p, g = 3 is the served generator; some other g fails its residue rule.
    let failing: Vec<i64> = (2..=7)
        .filter(|&g| {
            matches!(
                DhParams::new(&TELEGRAM_DH_PRIME, g),
                Err(DhError::GeneratorResidue { .. })
            )
        })
        .collect();
    assert!(!failing.is_empty(), "some g in 2..=7 fails for this p");
    for g in failing {
        let (r, cache) = apply_config(TELEGRAM_DH_PRIME.to_vec(), g as i32);
        assert!(matches!(
            r,
            Err(DhConfigError::Invalid(DhError::GeneratorResidue { .. }))
        ));
        assert!(cache.params().is_none());
    }
}

fn p_minus(k: &[u8]) -> Vec<u8> {
    // p − k for small big-endian k, byte-wise.
    let mut out = TELEGRAM_DH_PRIME.to_vec();
    let mut borrow = 0i32;
    for i in (0..256).rev() {
        let sub = i32::from(*k.get(k.len().wrapping_sub(256 - i)).unwrap_or(&0)) + borrow;
        let mut v = i32::from(out[i]) - if 256 - i <= k.len() { sub } else { borrow };
        borrow = 0;
        if v < 0 {
            v += 256;
            borrow = 1;
        }
        out[i] = v as u8;
    }
    out
}

/// 2^bit as 256 big-endian bytes.
fn power_of_two(bit: usize) -> Vec<u8> {
    let mut v = vec![0u8; 256];
    v[255 - bit / 8] = 1 << (bit % 8);
    v
}

fn assert_public_refused(v: Vec<u8>) {
    let dh = harness::dh();
    assert_eq!(dh.check_public(&v).err(), Some(DhError::PublicRange));
    // And through the protocol: a re-key request carrying it is the spec's abort.
    let mut c = chat();
    let a = c.mallory_sends(service(e2e::DecryptedMessageAction::RequestKey(
        e2e_t::DecryptedMessageActionRequestKey {
            exchange_id: 1,
            g_a: v,
        },
    )));
    assert_aborted(
        &mut c,
        &a,
        CloseReason::Rekey(RekeyError::Dh(DhError::PublicRange)),
    );
}

#[test]
fn g_a_equal_to_1() {
    let mut one = vec![0u8; 256];
    one[255] = 1;
    assert_public_refused(one);
}

#[test]
fn g_a_equal_to_p_minus_1() {
    assert_public_refused(p_minus(&[1]));
}

#[test]
fn g_a_below_2_pow_1984() {
    let mut v = power_of_two(1984);
    // 2^1984 − 1: all ones below bit 1984.
    v = {
        let mut x = vec![0u8; 256];
        for (i, b) in x.iter_mut().enumerate() {
            if i >= 256 - 1984 / 8 {
                *b = 0xff;
            }
        }
        let _ = &mut v;
        x
    };
    assert_public_refused(v);
}

#[test]
fn g_a_above_p_minus_2_pow_1984() {
    // p − 2^1984 + 1.
    let mut k = power_of_two(1984);
    k[255] = 0xff; // 2^1984 − 1 … then p − (2^1984 − 1) = p − 2^1984 + 1
    for b in k.iter_mut().skip(256 - 1984 / 8) {
        *b = 0xff;
    }
    k[256 - 1984 / 8 - 1] = 0;
    assert_public_refused(p_minus(&k));
}

#[test]
fn g_b_out_of_range_at_the_handshake() {
    // The participant's g_b = 1 in encryptedChat: the handshake is discarded.
    let mut rng = StdRng::seed_from_u64(1);
    let user = api::InputUser::InputUser(api_types::InputUser {
        user_id: 2,
        access_hash: 3,
    });
    let (mut core, _) = ChatCore::request(harness::test_config(), user, 5);
    let a = core.handle(
        Event::DhConfig {
            params: harness::dh(),
            random: vec![7; 256],
        },
        T0,
        &mut rng,
    );
    let job = a
        .into_iter()
        .find_map(|a| match a {
            Action::Compute(j) => Some(j),
            _ => None,
        })
        .unwrap();
    core.handle(Event::DhDone(Box::new(job.run())), T0, &mut rng);
    let a = core.handle(
        Event::ChatUpdate(api::EncryptedChat::EncryptedChat(
            api_types::EncryptedChat {
                id: 9,
                access_hash: 1,
                date: 1,
                admin_id: 1,
                participant_id: 2,
                g_a_or_b: vec![1],
                key_fingerprint: 0,
            },
        )),
        T0,
        &mut rng,
    );
    assert_eq!(closed(&a), Some(CloseReason::Dh(DhError::PublicRange)));
    assert!(core.is_closed());
}

// ---------------------------------------------------------------- key fingerprints

#[test]
fn key_fingerprint_mismatch_at_accept() {
    // The participant side: our g_b and key are computed, the server's encryptedChat
    // confirms, but the originator's announced fingerprint (in the request flow, the
    // originator checks it) differs: covered at the originator.
    let mut rng = StdRng::seed_from_u64(1);
    let dh = harness::dh();
    let user = api::InputUser::InputUser(api_types::InputUser {
        user_id: 2,
        access_hash: 3,
    });
    let (mut core, _) = ChatCore::request(harness::test_config(), user, 5);
    let a = core.handle(
        Event::DhConfig {
            params: dh.clone(),
            random: vec![7; 256],
        },
        T0,
        &mut rng,
    );
    let job = a
        .into_iter()
        .find_map(|a| match a {
            Action::Compute(j) => Some(j),
            _ => None,
        })
        .unwrap();
    let a = core.handle(Event::DhDone(Box::new(job.run())), T0, &mut rng);
    let g_a = a
        .iter()
        .find_map(|a| match a {
            Action::Call(c) => match &**c {
                Call::RequestEncryption(r) => Some(r.g_a.clone()),
                _ => None,
            },
            _ => None,
        })
        .unwrap();
    let b = [0x33u8; 256];
    let right = dh.shared_key(&g_a, &b).unwrap().fingerprint();
    let a = core.handle(
        Event::ChatUpdate(api::EncryptedChat::EncryptedChat(
            api_types::EncryptedChat {
                id: 9,
                access_hash: 1,
                date: 1,
                admin_id: 1,
                participant_id: 2,
                g_a_or_b: dh.public(&b).to_vec(),
                key_fingerprint: right ^ 1,
            },
        )),
        T0,
        &mut rng,
    );
    let a = after_job(a, |e| core.handle(e, T0, &mut rng));
    assert_eq!(closed(&a), Some(CloseReason::FingerprintMismatch));
    assert!(core.is_closed());
}

/// We start a re-key; mallory reads our RequestKey and returns it.
fn our_rekey_request(c: &mut Chat) -> e2e_t::DecryptedMessageActionRequestKey {
    let a = c.feed(Event::Command(Command::Rekey));
    let a = after_job(a, |e| c.feed(e));
    let req = sent(&a).pop().expect("a RequestKey sent");
    let Payload::Layered(l) = c.mallory_reads(&req) else {
        panic!("layered")
    };
    let e2e::DecryptedMessage::Service23(s) = l.message else {
        panic!("service")
    };
    let e2e::DecryptedMessageAction::RequestKey(r) = s.action else {
        panic!("request")
    };
    r
}

/// Mallory answers our re-key request; returns the exchange id and mallory's new key.
fn rekey_to_commit(c: &mut Chat) -> (i64, AuthKey) {
    let r = our_rekey_request(c);
    let dh = harness::dh();
    let b = [0x44u8; 256];
    let new_key = dh.shared_key(&r.g_a, &b).unwrap();
    let a = c.mallory_sends(service(e2e::DecryptedMessageAction::AcceptKey(
        e2e_t::DecryptedMessageActionAcceptKey {
            exchange_id: r.exchange_id,
            g_b: dh.public(&b).to_vec(),
            key_fingerprint: new_key.fingerprint(),
        },
    )));
    let _ = after_job(a, |e| c.feed(e));
    (r.exchange_id, new_key)
}

#[test]
fn key_fingerprint_mismatch_at_rekey_accept() {
    let mut c = chat();
    let r = our_rekey_request(&mut c);
    let dh = harness::dh();
    let b = [0x44u8; 256];
    let a = c.mallory_sends(service(e2e::DecryptedMessageAction::AcceptKey(
        e2e_t::DecryptedMessageActionAcceptKey {
            exchange_id: r.exchange_id,
            g_b: dh.public(&b).to_vec(),
            key_fingerprint: dh.shared_key(&r.g_a, &b).unwrap().fingerprint() ^ 1,
        },
    )));
    let a = after_job(a, |e| c.feed(e));
    assert!(matches!(
        closed(&a),
        Some(CloseReason::Rekey(RekeyError::FingerprintMismatch { .. }))
    ));
    assert_eq!(c.status().phase, "closed");
}

#[test]
fn key_fingerprint_mismatch_at_rekey_commit() {
    // Mallory requests; we accept; mallory commits with a wrong fingerprint: abort.
    let mut c = chat();
    let dh = harness::dh();
    let a_secret = [0x21u8; 256];
    let a = c.mallory_sends(service(e2e::DecryptedMessageAction::RequestKey(
        e2e_t::DecryptedMessageActionRequestKey {
            exchange_id: 42,
            g_a: dh.public(&a_secret).to_vec(),
        },
    )));
    let a = after_job(a, |e| c.feed(e));
    for w in sent(&a) {
        c.mallory_reads(&w);
    }
    assert!(c.status().rekeying);
    let a = c.mallory_sends(service(e2e::DecryptedMessageAction::CommitKey(
        e2e_t::DecryptedMessageActionCommitKey {
            exchange_id: 42,
            key_fingerprint: 12345,
        },
    )));
    assert!(
        matches!(
            closed(&a),
            Some(CloseReason::Rekey(RekeyError::FingerprintMismatch { .. }))
        ),
        "{a:?}"
    );
    assert_eq!(c.status().phase, "closed");
}

// ---------------------------------------------------------------- the message layer

#[test]
fn msg_key_mismatch() {
    let mut c = chat();
    let mut w = c.mallory.seal(text("x"), &mut c.rng).unwrap().wire;
    w[10] ^= 1;
    assert_eq!(
        message::decrypt_v2(&key(), Side::Participant, &w).err(),
        Some(CryptoError::MsgKeyMismatch)
    );
    assert_rejected(&mut c, w);
}

#[test]
fn wrong_auth_key_fingerprint() {
    let mut c = chat();
    let mut w = c.mallory.seal(text("x"), &mut c.rng).unwrap().wire;
    w[0] ^= 1;
    assert_rejected(&mut c, w);
}

#[test]
fn ciphertext_not_a_multiple_of_16() {
    let mut c = chat();
    let mut w = c.mallory.seal(text("x"), &mut c.rng).unwrap().wire;
    w.pop();
    assert!(matches!(
        message::decrypt_v2(&key(), Side::Participant, &w),
        Err(CryptoError::BadWireLength { .. })
    ));
    assert_rejected(&mut c, w);
}

#[test]
fn ciphertext_shorter_than_40_bytes() {
    let mut c = chat();
    let w = c.mallory.seal(text("x"), &mut c.rng).unwrap().wire;
    assert_rejected(&mut c, w[..39].to_vec());
    assert_rejected(&mut c, w[..24].to_vec());
}

#[test]
fn empty_ciphertext() {
    let mut c = chat();
    assert_rejected(&mut c, Vec::new());
}

#[test]
fn length_prefix_past_the_end() {
    let mut c = chat();
    let p = payload_bytes(&mut c);
    let pt = framed(p.len() as i32 + 64, &p, 16 - (4 + p.len()) % 16 + 16);
    let w = seal_raw(&key(), 8, &pt);
    assert!(matches!(
        message::decrypt_v2(&key(), Side::Participant, &w),
        Err(CryptoError::BadLengthPrefix { .. })
    ));
    assert_rejected(&mut c, w);
}

#[test]
fn length_prefix_negative() {
    let mut c = chat();
    let p = payload_bytes(&mut c);
    let pt = framed(-4, &p, 16 - (4 + p.len()) % 16 + 16);
    assert_rejected(&mut c, seal_raw(&key(), 8, &pt));
}

#[test]
fn length_prefix_not_a_multiple_of_4() {
    let mut c = chat();
    let p = payload_bytes(&mut c);
    let pt = framed(p.len() as i32 - 1, &p, 16 - (4 + p.len()) % 16 + 16);
    let w = seal_raw(&key(), 8, &pt);
    assert!(message::decrypt_v2(&key(), Side::Participant, &w).is_err());
    assert_rejected(&mut c, w);
}

/// A plaintext (a multiple of 16 bytes) whose length prefix leaves exactly `pad` bytes of
/// padding: the payload is extended with zero bytes up to the declared length (which is
/// unaligned when `pad` is not a multiple of 4: no aligned message has such padding).
fn with_padding(c: &mut Chat, pad: usize) -> Vec<u8> {
    let p = payload_bytes(c);
    let total = (4 + p.len() + pad).div_ceil(16) * 16;
    let declared = total - 4 - pad;
    let mut body = p;
    body.resize(declared, 0);
    seal_raw(&key(), 8, &framed(declared as i32, &body, pad))
}

#[test]
fn padding_of_0_bytes() {
    let mut c = chat();
    let w = with_padding(&mut c, 0);
    assert!(matches!(
        message::decrypt_v2(&key(), Side::Participant, &w),
        Err(CryptoError::BadPadding { .. })
    ));
    assert_rejected(&mut c, w);
}

#[test]
fn padding_of_11_bytes() {
    let mut c = chat();
    let w = with_padding(&mut c, 11);
    assert!(message::decrypt_v2(&key(), Side::Participant, &w).is_err());
    assert_rejected(&mut c, w);
}

#[test]
fn padding_of_1025_bytes() {
    let mut c = chat();
    let w = with_padding(&mut c, 1025);
    assert!(message::decrypt_v2(&key(), Side::Participant, &w).is_err());
    assert_rejected(&mut c, w);
}

#[test]
fn padding_of_2048_bytes() {
    let mut c = chat();
    let w = exact_with_padding(&mut c, 2048);
    assert!(matches!(
        message::decrypt_v2(&key(), Side::Participant, &w),
        Err(CryptoError::BadPadding { .. })
    ));
    assert_rejected(&mut c, w);
}

/// A real message (exact TL, no trailing bytes) framed with exactly `pad` bytes of padding
/// (`pad` a multiple of 4): the text is lengthened until the sizes fit.
fn exact_with_padding(c: &mut Chat, pad: usize) -> Vec<u8> {
    for n in 1..64 {
        let before = *c.mallory.seq();
        let s = c.mallory.seal(text(&"q".repeat(n)), &mut c.rng).unwrap();
        let d = message::decrypt_v2(&key(), Side::Participant, &s.wire).unwrap();
        if (4 + d.payload.len() + pad).is_multiple_of(16) {
            return seal_raw(&key(), 8, &framed(d.payload.len() as i32, &d.payload, pad));
        }
        // Not this one: forget its sequence number.
        c.mallory = Session::from_parts(
            key(),
            Vec::new(),
            Side::Participant,
            before,
            LayerState::from_parts(OUR_LAYER, Some(0), OUR_LAYER),
        );
    }
    panic!("no text length fits padding {pad}")
}

#[test]
fn padding_of_12_and_1024_bytes_is_accepted() {
    // The control for the four cases above: the bounds themselves are legal.
    for pad in [12, 1024] {
        let mut c = chat();
        let w = exact_with_padding(&mut c, pad);
        let a = c.incoming(w);
        assert!(
            a.iter()
                .any(|a| matches!(a, Action::Deliver(AppEvent::Message { .. }))),
            "padding {pad}: {a:?}"
        );
    }
}

#[test]
fn wrong_x_a_message_mirrored_back() {
    let mut c = chat();
    // Our own message (x = 0) fed back to us.
    let ours = c.core_sends("mine");
    assert_rejected(&mut c, ours);
}

#[test]
fn an_old_key_after_the_switch() {
    let mut c = chat();
    let old_wire = {
        // A message under the first key, held back.
        let mut m = Session::from_parts(
            key(),
            Vec::new(),
            Side::Participant,
            SeqNo::new(Side::Participant),
            LayerState::from_parts(OUR_LAYER, Some(0), OUR_LAYER),
        );
        m.seal(text("stale"), &mut c.rng).unwrap().wire
    };
    let (_, new_key) = rekey_to_commit(&mut c);
    assert_eq!(c.status().key_fingerprint, Some(new_key.fingerprint()));
    // Everything before the switch is in, so the old key is gone: its message is refused.
    for _ in 0..3 {
        let mut m = Session::from_parts(
            new_key.clone(),
            Vec::new(),
            Side::Participant,
            *c.mallory.seq(),
            LayerState::from_parts(OUR_LAYER, Some(0), OUR_LAYER),
        );
        let w = m.seal(text("new"), &mut c.rng).unwrap().wire;
        c.mallory = m;
        c.incoming(w);
    }
    assert_rejected(&mut c, old_wire);
}

/// An MTProto 1.0 wire from mallory at its next sequence numbers (not counted), with the
/// envelope layer `layer`.
fn mallory_v1(c: &Chat, layer: i32, m: e2e::DecryptedMessage) -> Vec<u8> {
    let mut seq = *c.mallory.seq();
    let (in_seq_no, out_seq_no) = seq.next_outgoing().unwrap();
    let envelope = e2e_t::DecryptedMessageLayer {
        random_bytes: vec![3; 15],
        layer,
        in_seq_no,
        out_seq_no,
        message: m,
    };
    harness::seal::seal_v1(&key(), &envelope)
}

#[test]
fn a_v1_message_on_a_v2_chat() {
    let mut c = chat();
    // The chat is at layer 144 and mallory has sent 2.0 already.
    c.mallory_sends(text("v2 first"));
    // A 1.0 message after the peer's switch, even under an old layer's envelope.
    let w = mallory_v1(&c, 46, text_message(46, 3, 0, "v1 after".into(), vec![]));
    assert_rejected(&mut c, w);
}

#[test]
fn a_v1_message_claiming_layer_73_or_more() {
    // No 2.0 message yet, but the envelope says 144: TDLib refuses exactly this ("MTProto 1.0
    // encryption is forbidden for this layer"), and so do we.
    let mut c = chat();
    let w = mallory_v1(&c, OUR_LAYER, text("v1 under 144"));
    assert_rejected(&mut c, w);
    // The control: the same bytes from an old peer's layer are accepted.
    let w = mallory_v1(&c, 46, text_message(46, 3, 0, "v1 under 46".into(), vec![]));
    let a = c.incoming(w);
    assert!(
        a.iter()
            .any(|a| matches!(a, Action::Deliver(AppEvent::Message { .. }))),
        "{a:?}"
    );
}

// ---------------------------------------------------------------- sequence numbers

#[test]
fn out_seq_no_parity_wrong() {
    let mut c = chat();
    // The participant's out_seq_no must be even.
    let a = c.mallory_sends_at(text("odd out"), 1, 1);
    assert_aborted(&mut c, &a, CloseReason::Seq(SeqError::Parity { value: 1 }));
}

#[test]
fn in_seq_no_parity_wrong() {
    let mut c = chat();
    // The participant's in_seq_no must be odd.
    let a = c.mallory_sends_at(text("even in"), 0, 0);
    assert!(matches!(
        closed(&a),
        Some(CloseReason::Seq(SeqError::Parity { .. }))
    ));
}

#[test]
fn out_seq_no_replay() {
    let mut c = chat();
    let w = c.mallory.seal(text("once"), &mut c.rng).unwrap().wire;
    let a = c.incoming(w.clone());
    assert!(
        a.iter()
            .any(|a| matches!(a, Action::Deliver(AppEvent::Message { .. })))
    );
    let before = c.status();
    let a = c.incoming(w);
    assert!(
        !a.iter()
            .any(|a| matches!(a, Action::Deliver(AppEvent::Message { .. }))),
        "never delivered twice"
    );
    assert_eq!(c.status(), before);
}

#[test]
fn in_seq_no_going_back() {
    let mut c = chat();
    c.core_sends("one");
    c.core_sends("two");
    assert!(closed(&c.mallory_sends_at(text("acks 2"), 5, 0)).is_none());
    let a = c.mallory_sends_at(text("acks 1"), 3, 2);
    assert_aborted(
        &mut c,
        &a,
        CloseReason::Seq(SeqError::InSeqDecreased {
            previous: 2,
            got: 1,
        }),
    );
}

#[test]
fn in_seq_no_beyond_what_we_sent() {
    let mut c = chat();
    let a = c.mallory_sends_at(text("from the future"), 3, 0);
    assert_aborted(
        &mut c,
        &a,
        CloseReason::Seq(SeqError::InSeqFromFuture { got: 1, sent: 0 }),
    );
}

fn resend(start: i32, end: i32) -> e2e::DecryptedMessage {
    service(e2e::DecryptedMessageAction::Resend(
        e2e_t::DecryptedMessageActionResend {
            start_seq_no: start,
            end_seq_no: end,
        },
    ))
}

#[test]
fn resend_for_messages_we_no_longer_hold() {
    let mut c = chat();
    let w0 = c.core_sends("zero");
    c.mallory_reads(&w0);
    assert!(closed(&c.mallory_sends(text("got it"))).is_none());
    assert_eq!(c.status().unacknowledged, 0);
    let a = c.mallory_sends(resend(1, 1));
    assert_aborted(
        &mut c,
        &a,
        CloseReason::ResendUnsatisfiable { lo: 0, hi: 0 },
    );
}

#[test]
fn resend_asking_for_100k_messages() {
    let mut c = chat();
    c.core_sends("one");
    let a = c.mallory_sends(resend(1, 200_001));
    assert_aborted(
        &mut c,
        &a,
        CloseReason::Seq(SeqError::BadResend {
            start: 1,
            end: 200_001,
        }),
    );
}

/// The same Resend, 10,000 times (mallory never acknowledges anything): each of our five
/// messages goes out again once per pace interval, not once per request; the chat stays
/// ready, and the next interval answers again.
#[test]
fn the_same_resend_ten_thousand_times() {
    let mut c = chat();
    for i in 0..5 {
        c.core_sends(&format!("m{i}"));
    }
    let mut resent = 0;
    for _ in 0..10_000 {
        let a = c.mallory_sends(resend(1, 9));
        assert!(closed(&a).is_none(), "{a:?}");
        resent += sent(&a).len();
    }
    assert_eq!(resent, 5, "one re-send per message within the pace");
    let st = c.status();
    assert_eq!((st.phase, st.unacknowledged), ("ready", 5));
    assert_eq!(st.counters.resends_paced, 5 * 9_999);
    let wire = c.mallory.seal(resend(1, 9), &mut c.rng).unwrap().wire;
    let later = T0 + harness::test_config().resend_retry_ms;
    let a = c.core.handle(
        Event::Incoming {
            wire,
            file: None,
            date: 0,
        },
        later,
        &mut c.rng,
    );
    assert_eq!(sent(&a).len(), 5, "a retry after the pace is answered");
}

/// A Resend for more messages than TDLib would ever ask for (it refuses more than 1001 at
/// once): the first 1001 go out again; the chat stays ready.
#[test]
fn a_resend_longer_than_a_real_client_asks_is_capped() {
    let mut c = chat();
    for i in 0..1_500 {
        c.core_sends(&format!("m{i}"));
    }
    let a = c.mallory_sends(resend(1, 2 * 1_499 + 1));
    assert!(closed(&a).is_none());
    assert_eq!(sent(&a).len(), 1_001);
    assert_eq!(c.status().phase, "ready");
}

/// A Resend that arrives past a hole while the waiting queue is full is still answered
/// (seq_no.md: a Resend is interpreted on receipt); the message itself is not kept.
#[test]
fn a_resend_behind_a_full_waiting_queue_is_answered() {
    let mut c = chat();
    for i in 0..3 {
        c.core_sends(&format!("m{i}"));
    }
    let _lost = c.mallory.seal(text("lost"), &mut c.rng).unwrap();
    let first = c.mallory_sends(text("past the hole"));
    assert_eq!(sent(&first).len(), 1, "one Resend for the hole");
    for i in 1..secretchat_engine::protocol::gaps::MAX_WAITING {
        c.mallory_sends(text(&format!("q{i}")));
    }
    let a = c.mallory_sends(resend(1, 5));
    assert_eq!(sent(&a).len(), 3, "{a:?}");
    assert!(closed(&a).is_none());
}

/// A peer that never acknowledges (its in_seq_no held at 0) for 100,000 messages while an
/// application keeps sending whenever the chat accepts: our outbox stops at the limit, the
/// chat reports it once and stays ready, and every one of the peer's messages is delivered.
#[test]
fn a_peer_that_never_acknowledges_for_100k_messages() {
    let mut c = chat();
    let limit = harness::test_config().max_unacknowledged;
    let (mut delivered, mut unhealthy, mut held) = (0, Vec::new(), 0);
    for i in 0..100_000 {
        let mut a = c.mallory_sends(text("never acknowledging"));
        if c.core.accepts_sends() {
            a.extend(c.feed(Event::Command(Command::Send(Box::new(Outgoing::text(
                i,
                format!("ours {i}"),
            ))))));
        } else {
            held += 1;
        }
        for x in &a {
            match x {
                Action::Deliver(AppEvent::Message { .. }) => delivered += 1,
                Action::Deliver(AppEvent::ChatUnhealthy { unacknowledged, .. }) => {
                    unhealthy.push(*unacknowledged)
                }
                _ => {}
            }
        }
    }
    let st = c.status();
    assert_eq!(delivered, 100_000);
    assert_eq!(st.phase, "ready");
    assert_eq!(st.unacknowledged, limit, "the outbox stops at the limit");
    assert_eq!(unhealthy, [limit], "reported once");
    assert_eq!(held, 100_000 - limit);
    // One acknowledgement makes room again.
    let mut seq = *c.mallory.seq();
    let (_, out) = seq.next_outgoing().unwrap();
    c.mallory_sends_at(text("got them all"), 2 * limit as i32 + 1, out);
    assert_eq!(c.status().unacknowledged, 0);
    assert!(c.core.accepts_sends());
}

// ---------------------------------------------------------------- re-keying

fn assert_ignored_rekey(c: &mut Chat, action: e2e::DecryptedMessageAction) {
    let fp = c.status().key_fingerprint;
    let a = c.mallory_sends(service(action));
    assert!(closed(&a).is_none(), "{a:?}");
    let st = c.status();
    assert_eq!(
        (st.phase, st.rekeying, st.key_fingerprint),
        ("ready", false, fp)
    );
    // The chat still works.
    let w = c.core_sends("still here");
    assert!(matches!(c.mallory_reads(&w), Payload::Layered(_)));
}

#[test]
fn commit_key_without_accept() {
    let mut c = chat();
    assert_ignored_rekey(
        &mut c,
        e2e::DecryptedMessageAction::CommitKey(e2e_t::DecryptedMessageActionCommitKey {
            exchange_id: 77,
            key_fingerprint: 1,
        }),
    );
}

#[test]
fn accept_key_for_an_unknown_exchange() {
    let mut c = chat();
    let dh = harness::dh();
    assert_ignored_rekey(
        &mut c,
        e2e::DecryptedMessageAction::AcceptKey(e2e_t::DecryptedMessageActionAcceptKey {
            exchange_id: 999,
            g_b: dh.public(&[9u8; 256]).to_vec(),
            key_fingerprint: 1,
        }),
    );
}

#[test]
fn request_key_while_ours_is_pending_with_an_equal_id() {
    let mut c = chat();
    let ours = our_rekey_request(&mut c);
    assert!(c.status().rekeying);
    let fp = c.status().key_fingerprint;
    // pfs.md: equal exchange ids — both exchanges are dropped, the chat goes on.
    let a = c.mallory_sends(service(e2e::DecryptedMessageAction::RequestKey(
        e2e_t::DecryptedMessageActionRequestKey {
            exchange_id: ours.exchange_id,
            g_a: harness::dh().public(&[3u8; 256]).to_vec(),
        },
    )));
    assert!(closed(&a).is_none());
    let st = c.status();
    assert!(!st.rekeying, "our exchange was dropped");
    assert_eq!(st.key_fingerprint, fp);
}

// ---------------------------------------------------------------- layers

#[test]
fn layer_going_down() {
    let mut c = chat();
    assert_eq!(c.status().peer_layer, OUR_LAYER);
    let a = c.mallory_sends(service(e2e::DecryptedMessageAction::NotifyLayer(
        e2e_t::DecryptedMessageActionNotifyLayer { layer: 46 },
    )));
    assert!(closed(&a).is_none());
    assert_eq!(c.status().peer_layer, OUR_LAYER, "layers never go back");
    assert_eq!(c.status().negotiated_layer, OUR_LAYER);
}

#[test]
fn layer_far_above_ours() {
    let mut c = chat();
    let a = c.mallory_sends(service(e2e::DecryptedMessageAction::NotifyLayer(
        e2e_t::DecryptedMessageActionNotifyLayer { layer: i32::MAX },
    )));
    assert!(
        a.iter()
            .any(|a| matches!(a, Action::Deliver(AppEvent::PeerNewerThanUs(l)) if *l == i32::MAX))
    );
    assert_eq!(c.status().peer_layer, OUR_LAYER, "capped at ours");
    assert!(closed(&a).is_none());
}

// ---------------------------------------------------------------- TL and sizes

/// Seals `payload` (TL bytes) as mallory's next message: correct envelope framing.
fn seal_payload(payload: &[u8]) -> Vec<u8> {
    let mut p = payload.to_vec();
    while !p.len().is_multiple_of(4) {
        p.push(0);
    }
    let pad = 16 - (4 + p.len()) % 16 + 16;
    seal_raw(&key(), 8, &framed(p.len() as i32, &p, pad))
}

#[test]
fn tl_with_an_unknown_constructor() {
    let mut c = chat();
    let mut p = payload_bytes(&mut c);
    // The inner message's constructor: after the envelope's id, random_bytes (TL bytes),
    // layer, in_seq_no and out_seq_no.
    let random_len = (1 + usize::from(p[4])).div_ceil(4) * 4;
    let at = 4 + random_len + 12;
    p[at..at + 4].copy_from_slice(&0xdead_beefu32.to_le_bytes());
    let err = e2e::DecryptedMessageLayer::from_bytes(&p).unwrap_err();
    // No constructor of DecryptedMessage has this id.
    assert_eq!(err.kind(), "unexpected_constructor", "{err:?}");
    assert_rejected(&mut c, seal_payload(&p));
}

#[test]
fn tl_vector_count_of_2_pow_31() {
    // A text message whose entities vector claims 2^31 elements: refused without allocating.
    let mut c = chat();
    let m = text_message(OUR_LAYER, 3, 0, "v".into(), vec![]);
    let mut body = m.to_bytes().unwrap();
    // Append a vector header with a huge count where the entities would start (flags say
    // entities present): decoding must fail on the count, not allocate.
    body.extend_from_slice(&0x1cb5_c415u32.to_le_bytes());
    body.extend_from_slice(&(1u32 << 31).to_le_bytes());
    let r = e2e::DecryptedMessage::from_bytes(&body);
    assert!(r.is_err());
    let envelope = e2e_t::DecryptedMessageLayer {
        random_bytes: vec![0; 15],
        layer: OUR_LAYER,
        in_seq_no: 1,
        out_seq_no: 0,
        message: m,
    };
    let mut p = e2e::DecryptedMessageLayer::DecryptedMessageLayer(envelope)
        .to_bytes()
        .unwrap();
    // Replace the message's tail by a vector with a huge count.
    p.extend_from_slice(&0x1cb5_c415u32.to_le_bytes());
    p.extend_from_slice(&(1u32 << 31).to_le_bytes());
    assert_rejected(&mut c, seal_payload(&p));
}

#[test]
fn tl_nesting_bomb() {
    // Layers inside layers (decryptedMessageLayer is not a DecryptedMessage): a deep chain of
    // boxed constructors is refused with an error, not a stack overflow.
    let mut c = chat();
    let id = e2e_t::DecryptedMessageLayer::CONSTRUCTOR_ID;
    let mut p = Vec::new();
    for _ in 0..50_000 {
        p.extend_from_slice(&id.to_le_bytes());
        p.extend_from_slice(&[0; 4]); // random_bytes: empty bytes, padded
    }
    assert!(e2e::DecryptedMessageLayer::from_bytes(&p).is_err());
    let p = &p[..(p.len().min(1 << 19))];
    assert_rejected(&mut c, seal_payload(p));
}

#[test]
fn a_100_mb_message() {
    let mut c = chat();
    let mut w = key().fingerprint().to_le_bytes().to_vec();
    w.resize(8 + 16 + 100 * 1024 * 1024, 0x42);
    assert!(w.len() > MAX_WIRE);
    assert!(matches!(
        message::decrypt_v2(&key(), Side::Participant, &w),
        Err(CryptoError::BadWireLength { .. })
    ));
    assert_rejected(&mut c, w);
}

/// More messages past a hole than the waiting queue holds: back-pressure, not an abort. The
/// extra ones are dropped with the chat unchanged; once the hole is filled the queue drains in
/// order, and the dropped ones are taken when they come again (as the Resend brings them).
#[test]
fn a_flood_past_a_hole_fills_the_queue_without_closing_the_chat() {
    use secretchat_engine::protocol::gaps::MAX_WAITING;
    let mut c = chat();
    let delivered = |a: &[Action]| {
        a.iter()
            .filter(|a| matches!(a, Action::Deliver(AppEvent::Message { .. })))
            .count()
    };
    let first = c.mallory.seal(text("m0"), &mut c.rng).unwrap().wire;
    let extra = 20;
    let mut later = Vec::new();
    for i in 1..=MAX_WAITING + extra {
        later.push(
            c.mallory
                .seal(text(&format!("m{i}")), &mut c.rng)
                .unwrap()
                .wire,
        );
    }
    for w in &later {
        let a = c.incoming(w.clone());
        assert!(closed(&a).is_none(), "closed while queueing");
    }
    let st = c.status();
    assert_eq!(st.phase, "ready");
    assert_eq!(st.holes.len(), 1);
    let a = c.incoming(first);
    assert_eq!(
        delivered(&a),
        1 + MAX_WAITING,
        "the hole and the whole queue"
    );
    for w in &later[MAX_WAITING..] {
        assert_eq!(delivered(&c.incoming(w.clone())), 1, "a dropped one, again");
    }
    let st = c.status();
    assert!(st.holes.is_empty() && st.closed.is_none(), "{st:?}");
}

#[test]
fn the_suite_names_at_least_40_cases() {
    let src = include_str!("adversarial.rs");
    let n = src.matches("#[test]").count();
    assert!(n >= 41, "{n} cases");
}

use secretchat_schema::Identifiable;
