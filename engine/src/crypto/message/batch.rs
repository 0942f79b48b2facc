//! Many messages in one call: the hashing per message, the AES chains interleaved
//! ([`crate::crypto::ige_batch`]); byte-identical to the one-by-one functions.

use zeroize::Zeroizing;

use super::{Decrypted, HEADER_LEN, check_v2, header, kdf_v2, msg_key_v2, plaintext};
use crate::crypto::ige::Direction;
use crate::crypto::ige_batch::{self, Lane};
use crate::crypto::{AuthKey, CryptoError, Side};

/// One message for [`encrypt_v2_many`].
#[derive(Debug, Clone, Copy)]
pub struct Outgoing<'a> {
    /// The chat key.
    pub key: &'a AuthKey,
    /// The sender's side.
    pub from: Side,
    /// The TL payload.
    pub payload: &'a [u8],
    /// The padding bytes (as for [`encrypt_v2`](super::encrypt_v2)).
    pub padding: &'a [u8],
}

/// Encrypts many MTProto 2.0 messages (any keys) in one call: the hashing is per message, the
/// AES chains run interleaved ([`crate::crypto::ige_batch`]). Same output as [`encrypt_v2`](super::encrypt_v2)
/// one by one.
///
/// # Errors
/// The first message's error, as [`encrypt_v2`](super::encrypt_v2); nothing is returned then.
pub fn encrypt_v2_many(msgs: &[Outgoing<'_>]) -> Result<Vec<Vec<u8>>, CryptoError> {
    let mut outs = Vec::with_capacity(msgs.len());
    let mut keys = Vec::with_capacity(msgs.len());
    for m in msgs {
        let p = m.padding.len();
        if !(12..=1024).contains(&p) || !(4 + m.payload.len() + p).is_multiple_of(16) {
            return Err(CryptoError::InvalidFixedPadding { padding: p });
        }
        let pt = plaintext(m.payload, m.padding)?;
        let x = m.from.x();
        let msg_key = msg_key_v2(m.key, x, &pt);
        let (aes_key, aes_iv) = kdf_v2(m.key, &msg_key, x);
        let mut out = Vec::with_capacity(HEADER_LEN + pt.len());
        out.extend_from_slice(&m.key.fingerprint().to_le_bytes());
        out.extend_from_slice(&msg_key);
        out.extend_from_slice(&pt);
        outs.push(out);
        keys.push((aes_key, aes_iv));
    }
    let mut lanes: Vec<Lane<'_>> = keys
        .iter()
        .zip(outs.iter_mut())
        .map(|((k, iv), out)| Lane::new(k, iv, Direction::Encrypt, &mut out[HEADER_LEN..]))
        .collect();
    ige_batch::run(&mut lanes, Direction::Encrypt)?;
    drop(lanes);
    Ok(outs)
}

/// One received message for [`decrypt_v2_many`].
#[derive(Debug, Clone, Copy)]
pub struct Incoming<'a> {
    /// The chat key.
    pub key: &'a AuthKey,
    /// The sender's side.
    pub from: Side,
    /// The message as on the wire.
    pub wire: &'a [u8],
}

/// Decrypts and checks many MTProto 2.0 messages (any keys) in one call, the AES chains
/// interleaved ([`crate::crypto::ige_batch`]); each result is what [`decrypt_v2`](super::decrypt_v2) returns for it.
pub fn decrypt_v2_many(msgs: &[Incoming<'_>]) -> Vec<Result<Decrypted, CryptoError>> {
    // Header checks first; only well-formed messages join the batch.
    let mut results: Vec<Option<Result<Decrypted, CryptoError>>> = Vec::with_capacity(msgs.len());
    let mut work = Vec::new();
    for (i, m) in msgs.iter().enumerate() {
        match header(m.key, m.wire) {
            Ok((msg_key, body)) => {
                let (aes_key, aes_iv) = kdf_v2(m.key, &msg_key, m.from.x());
                work.push((i, msg_key, aes_key, aes_iv, Zeroizing::new(body.to_vec())));
                results.push(None);
            }
            Err(e) => results.push(Some(Err(e))),
        }
    }
    let mut lanes: Vec<Lane<'_>> = work
        .iter_mut()
        .map(|(_, _, k, iv, pt)| Lane::new(k, iv, Direction::Decrypt, pt.as_mut_slice()))
        .collect();
    // Bodies are block-aligned (checked by `header`), so `run` cannot fail.
    let ran = ige_batch::run(&mut lanes, Direction::Decrypt);
    drop(lanes);
    for (i, msg_key, _, _, pt) in &work {
        let m = &msgs[*i];
        results[*i] = Some(
            ran.clone()
                .and_then(|()| check_v2(m.key, m.from.x(), *msg_key, pt)),
        );
    }
    results
        .into_iter()
        .map(|r| r.unwrap_or(Err(CryptoError::MsgKeyMismatch)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::message::{decrypt_v2, encrypt_v2, padding_len};

    fn key() -> AuthKey {
        AuthKey::new(std::array::from_fn(|i| i as u8))
    }

    #[test]
    fn many_equals_one_by_one() {
        let keys = [key(), AuthKey::new([9; 256])];
        let payloads: Vec<Vec<u8>> = (0..5).map(|i| vec![i as u8; i * 40]).collect();
        let pads: Vec<Vec<u8>> = payloads
            .iter()
            .map(|p| vec![1u8; padding_len(p.len(), 5)])
            .collect();
        let msgs: Vec<Outgoing<'_>> = (0..5)
            .map(|i| Outgoing {
                key: &keys[i % 2],
                from: if i % 3 == 0 {
                    Side::Originator
                } else {
                    Side::Participant
                },
                payload: &payloads[i],
                padding: &pads[i],
            })
            .collect();
        let many = encrypt_v2_many(&msgs).unwrap();
        for (m, w) in msgs.iter().zip(&many) {
            assert_eq!(&encrypt_v2(m.key, m.from, m.payload, m.padding).unwrap(), w);
        }
    }

    #[test]
    fn decrypt_many_equals_one_by_one() {
        let k = key();
        let good: Vec<Vec<u8>> = (0..10)
            .map(|i| {
                encrypt_v2(
                    &k,
                    Side::Participant,
                    &vec![i as u8; i * 12],
                    &vec![3u8; padding_len(i * 12, i as u32)],
                )
                .unwrap()
            })
            .collect();
        let mut tampered = good[3].clone();
        tampered[40] ^= 1;
        let short = good[4][..30].to_vec();
        let mut wires: Vec<&[u8]> = good.iter().map(Vec::as_slice).collect();
        wires.push(&tampered);
        wires.push(&short);
        let msgs: Vec<Incoming<'_>> = wires
            .iter()
            .map(|w| Incoming {
                key: &k,
                from: Side::Participant,
                wire: w,
            })
            .collect();
        let many = decrypt_v2_many(&msgs);
        assert_eq!(many.len(), wires.len());
        for (w, r) in wires.iter().zip(&many) {
            assert_eq!(&decrypt_v2(&k, Side::Participant, w), r);
        }
        assert!(many[..10].iter().all(Result::is_ok));
        assert_eq!(many[10], Err(CryptoError::MsgKeyMismatch));
        assert!(matches!(many[11], Err(CryptoError::BadWireLength { .. })));
    }
}
