//! Message decryption with a fixed key, from hostile bytes.
//!
//! Mode byte even: the input is a wire message (bit 1: with our key's fingerprint spliced in),
//! decrypted as MTProto 2.0 from either side, one by one and batched (which must agree), and as
//! 1.0 (almost always a msg_key mismatch: it checks the header and length paths). Mode byte odd:
//! the input is a *plaintext* (any length prefix, any padding) sealed under a correct msg_key
//! by the independent sealer in `engine/tests/harness/seal.rs`, so the checks after the MAC run:
//! decryption must succeed exactly when the prefix and padding are valid, and then return the
//! payload that was sealed.

#[path = "../../engine/tests/harness/seal.rs"]
mod seal;

use secretchat_engine::crypto::message::{Incoming, decrypt_v1, decrypt_v2, decrypt_v2_many};
use secretchat_engine::crypto::{AuthKey, Side};

/// Runs one input; panics on a broken invariant.
pub fn check(data: &[u8]) {
    // Not a constant key: with every byte equal, both sides' key windows coincide and the
    // peer check below fails (the first campaign's finding, kept in regressions/decrypt).
    let key = AuthKey::new(std::array::from_fn(|i| {
        (i as u8).wrapping_mul(151).wrapping_add(7)
    }));
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode & 1 == 0 {
        // Let the fuzzer reach the msg_key check: our fingerprint over the first 8 bytes.
        let mut wire = rest.to_vec();
        if wire.len() >= 8 && mode & 2 == 2 {
            wire[..8].copy_from_slice(&key.fingerprint().to_le_bytes());
        }
        let one = [Side::Originator, Side::Participant].map(|s| decrypt_v2(&key, s, &wire));
        let _ = decrypt_v1(&key, &wire);
        // The batched path gives exactly the one-by-one results.
        let many = decrypt_v2_many(&[
            Incoming {
                key: &key,
                from: Side::Originator,
                wire: &wire,
            },
            Incoming {
                key: &key,
                from: Side::Participant,
                wire: &wire,
            },
        ]);
        assert_eq!(many, one.to_vec(), "batched decryption differs");
        return;
    }
    if rest.len() < 16 {
        return;
    }
    let pt = &rest[..rest.len() / 16 * 16];
    let from = if mode & 2 == 0 {
        Side::Originator
    } else {
        Side::Participant
    };
    let wire = seal::seal_raw(&key, from.x(), pt);
    let len = u32::from_le_bytes([pt[0], pt[1], pt[2], pt[3]]) as usize;
    let valid =
        len <= pt.len() - 4 && len.is_multiple_of(4) && (12..=1024).contains(&(pt.len() - 4 - len));
    match decrypt_v2(&key, from, &wire) {
        Ok(d) => {
            assert!(
                valid,
                "accepted a bad prefix/padding (len {len}, {} bytes)",
                pt.len()
            );
            assert_eq!(
                d.payload,
                pt[4..4 + len],
                "payload differs from what was sealed"
            );
        }
        Err(e) => assert!(!valid, "refused a well-formed plaintext: {e}"),
    }
    // The other side's keys never open it.
    assert!(decrypt_v2(&key, from.peer(), &wire).is_err());
}
