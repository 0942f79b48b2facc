//! `secretchat demo`: the whole cryptographic path of a secret chat between two parties,
//! in one process, printed step by step (until the simulator exists, this is the main job).

use std::io::Write;
use std::time::Instant;

use rand::RngCore;
use secretchat::crypto::dh::{DhParams, secret_exponent};
use secretchat::crypto::prime::{TELEGRAM_DH_PRIME, check_safe_prime};
use secretchat::crypto::{Side, message, visualize};
use secretchat::tl::e2e::{enums, types};
use secretchat::tl::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::CliError;

fn crypto_err(e: impl std::fmt::Display) -> CliError {
    CliError::new("crypto", e)
}

/// Runs the demonstration, writing a human log to `out`; returns a JSON summary.
///
/// # Errors
/// `crypto` or `encode` when a step fails (it should not: every failure is a bug).
pub fn run(out: &mut impl Write) -> Result<Value, CliError> {
    let mut rng = rand::thread_rng();
    let mut say = |s: String| {
        let _ = writeln!(out, "{s}");
    };
    let t = Instant::now();
    let safe = check_safe_prime(&TELEGRAM_DH_PRIME, rng.next_u64());
    say(format!(
        "1. dh_prime from security-guidelines.md is a safe prime: {safe} ({:.0} ms)",
        t.elapsed().as_secs_f64() * 1e3
    ));
    let params = DhParams::new(&TELEGRAM_DH_PRIME, 3).map_err(crypto_err)?;
    let mut server_random = [0u8; 256];
    rng.fill_bytes(&mut server_random);
    let (mut la, mut lb) = ([0u8; 256], [0u8; 256]);
    rng.fill_bytes(&mut la);
    rng.fill_bytes(&mut lb);
    let (a, b) = (
        secret_exponent(&la, &server_random),
        secret_exponent(&lb, &server_random),
    );
    let t = Instant::now();
    let (g_a, g_b) = (params.public(&a), params.public(&b));
    let alice = params.shared_key(&g_b, &a).map_err(crypto_err)?;
    let bob = params.shared_key(&g_a, &b).map_err(crypto_err)?;
    let dh_ms = t.elapsed().as_secs_f64() * 1e3;
    say(format!(
        "2. Alice (originator) and Bob agree on a 256-byte key: fingerprints {} / {} ({dh_ms:.1} ms for 4 exponentiations)",
        alice.fingerprint(),
        bob.fingerprint()
    ));
    let vis = visualize::visualization(&alice, Some(&alice));
    say(format!(
        "3. Key visualization (as the apps print it under the image): {}",
        visualize::hex_lines(&vis).join(" / ")
    ));

    let msg = types::DecryptedMessageLayer {
        random_bytes: {
            let mut r = vec![0u8; 15];
            rng.fill_bytes(&mut r);
            r
        },
        layer: 144,
        in_seq_no: 0,
        out_seq_no: 0,
        message: enums::DecryptedMessage::DecryptedMessage73(types::DecryptedMessage73 {
            no_webpage: false,
            silent: false,
            random_id: rng.next_u64() as i64,
            ttl: 0,
            message: "Hello from secretchat".into(),
            media: None,
            entities: Some(vec![enums::MessageEntity::Bold(types::MessageEntityBold {
                offset: 0,
                length: 5,
            })]),
            via_bot_name: None,
            reply_to_random_id: None,
            grouped_id: None,
        }),
    };
    let payload = msg.to_bytes().map_err(|e| CliError::new("encode", e))?;
    let pad = message::random_padding(payload.len(), message::Version::V2, &mut rng);
    let wire = message::encrypt_v2(&alice, Side::Originator, &payload, &pad).map_err(crypto_err)?;
    say(format!(
        "4. Alice encrypts {} TL bytes with MTProto 2.0 → {} bytes on the wire (padding {})",
        payload.len(),
        wire.len(),
        pad.len()
    ));
    let got = message::decrypt_v2(&bob, Side::Originator, &wire).map_err(crypto_err)?;
    let decoded = types::DecryptedMessageLayer::from_bytes(&got.payload)
        .map_err(|e| CliError::new(e.kind(), e))?;
    let json = secretchat::tl::decode_json(&got.payload).map_err(|e| CliError::new(e.kind(), e))?;
    say(format!("5. Bob checks msg_key and decrypts: {json}"));
    let tampered = {
        let mut w = wire.clone();
        w[40] ^= 1;
        message::decrypt_v2(&bob, Side::Originator, &w)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    };
    say(format!(
        "6. One flipped ciphertext bit is rejected: {tampered}"
    ));
    let wrong_dir = message::decrypt_v2(&bob, Side::Participant, &wire)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    say(format!(
        "7. Decrypting with the wrong direction (x = 8) is rejected: {wrong_dir}"
    ));
    let ok =
        safe && alice == bob && decoded == msg && !tampered.is_empty() && !wrong_dir.is_empty();
    say(format!("Result: {}", if ok { "OK" } else { "FAILED" }));
    if !ok {
        return Err(CliError::new(
            "demo_failed",
            "a step did not give the expected result",
        ));
    }
    Ok(
        json!({"ok": ok, "key_fingerprint": alice.fingerprint().to_string(), "wire_len": wire.len(), "dh_ms": dh_ms}),
    )
}
