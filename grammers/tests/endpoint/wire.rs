//! The server's side of MTProto 2.0 for the test endpoint: grammers' `Full` framing
//! (`len, seq, payload, crc32`), message encryption with `x = 8` for what the server sends and
//! `x = 0` for what it receives (mtproto/description, "Defining AES Key and Initialization
//! Vector"), and the few TL readers the service messages need.

use secretchat::crypto::ige;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The largest frame the endpoint reads (grammers sends at most a 1 MiB container).
const MAX_FRAME: usize = 2 << 20;

/// The `Full` transport's state for one connection (each side counts its own frames).
#[derive(Default)]
pub struct Full {
    recv_seq: i32,
    send_seq: i32,
}

impl Full {
    /// Reads one frame's payload, checking its length, sequence number and CRC.
    pub async fn read(&mut self, rd: &mut (impl AsyncReadExt + Unpin)) -> std::io::Result<Vec<u8>> {
        let bad =
            |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_owned());
        let len = rd.read_u32_le().await? as usize;
        if !(12..=MAX_FRAME).contains(&len) || !len.is_multiple_of(4) {
            return Err(bad("frame length"));
        }
        let mut rest = vec![0u8; len - 4];
        rd.read_exact(&mut rest).await?;
        let seq = i32::from_le_bytes(rest[..4].try_into().expect("4 bytes"));
        if seq != self.recv_seq {
            return Err(bad("frame sequence"));
        }
        let crc = u32::from_le_bytes(rest[len - 8..].try_into().expect("4 bytes"));
        let mut h = crc32fast::Hasher::new();
        h.update(&(len as u32).to_le_bytes());
        h.update(&rest[..len - 8]);
        if h.finalize() != crc {
            return Err(bad("frame crc"));
        }
        self.recv_seq += 1;
        rest.truncate(len - 8);
        rest.drain(..4);
        Ok(rest)
    }

    /// Writes one frame around `payload`.
    pub async fn write(
        &mut self,
        wr: &mut (impl AsyncWriteExt + Unpin),
        payload: &[u8],
    ) -> std::io::Result<()> {
        let len = (payload.len() + 12) as u32;
        let mut frame = Vec::with_capacity(len as usize);
        frame.extend_from_slice(&len.to_le_bytes());
        frame.extend_from_slice(&self.send_seq.to_le_bytes());
        frame.extend_from_slice(payload);
        let crc = crc32fast::hash(&frame);
        frame.extend_from_slice(&crc.to_le_bytes());
        self.send_seq += 1;
        wr.write_all(&frame).await?;
        wr.flush().await
    }
}

/// An authorization key as the server holds it.
pub struct Key {
    pub bytes: [u8; 256],
    pub id: [u8; 8],
}

impl Key {
    pub fn new(bytes: [u8; 256]) -> Self {
        let sha1 = sha1_lower(&bytes);
        Key { bytes, id: sha1 }
    }

    fn kdf(&self, msg_key: &[u8; 16], x: usize) -> ([u8; 32], [u8; 32]) {
        let k = &self.bytes;
        let a = Sha256::new()
            .chain_update(msg_key)
            .chain_update(&k[x..x + 36])
            .finalize();
        let b = Sha256::new()
            .chain_update(&k[40 + x..76 + x])
            .chain_update(msg_key)
            .finalize();
        let (mut key, mut iv) = ([0u8; 32], [0u8; 32]);
        key[..8].copy_from_slice(&a[..8]);
        key[8..24].copy_from_slice(&b[8..24]);
        key[24..].copy_from_slice(&a[24..]);
        iv[..8].copy_from_slice(&b[..8]);
        iv[8..24].copy_from_slice(&a[8..24]);
        iv[24..].copy_from_slice(&b[24..]);
        (key, iv)
    }

    fn msg_key(&self, x: usize, plaintext: &[u8]) -> [u8; 16] {
        let large = Sha256::new()
            .chain_update(&self.bytes[88 + x..120 + x])
            .chain_update(plaintext)
            .finalize();
        large[8..24].try_into().expect("16 bytes")
    }

    /// Decrypts a client's message (`x = 0`); `None` when it is not one of this key's.
    pub fn open(&self, payload: &[u8]) -> Option<Vec<u8>> {
        if payload.len() < 24 + 32
            || !(payload.len() - 24).is_multiple_of(16)
            || payload[..8] != self.id
        {
            return None;
        }
        let msg_key: [u8; 16] = payload[8..24].try_into().ok()?;
        let (key, iv) = self.kdf(&msg_key, 0);
        let mut plain = payload[24..].to_vec();
        ige::decrypt(&key, &iv, &mut plain).ok()?;
        (self.msg_key(0, &plain) == msg_key).then_some(plain)
    }

    /// Encrypts a server's message (`x = 8`) with 12..=27 bytes of padding.
    pub fn seal(&self, mut plain: Vec<u8>) -> Vec<u8> {
        let pad = 12 + (16 - (plain.len() + 12) % 16) % 16;
        plain.extend((0..pad).map(|_| rand::random::<u8>()));
        let msg_key = self.msg_key(8, &plain);
        let (key, iv) = self.kdf(&msg_key, 8);
        ige::encrypt(&key, &iv, &mut plain).expect("a multiple of 16 bytes");
        let mut out = Vec::with_capacity(24 + plain.len());
        out.extend_from_slice(&self.id);
        out.extend_from_slice(&msg_key);
        out.extend_from_slice(&plain);
        out
    }
}

/// auth_key_id: the lower 64 bits of SHA1 of the key.
fn sha1_lower(bytes: &[u8; 256]) -> [u8; 8] {
    use sha1::Sha1;
    let d = Sha1::digest(bytes);
    d[12..20].try_into().expect("8 bytes")
}

/// A cursor over TL bytes; every read is checked (the client's bytes are not trusted).
pub struct Reader<'a> {
    pub buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn bytes(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.buf.len() < n {
            return None;
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Some(head)
    }

    pub fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.bytes(4)?.try_into().ok()?))
    }

    pub fn i64(&mut self) -> Option<i64> {
        Some(i64::from_le_bytes(self.bytes(8)?.try_into().ok()?))
    }

    /// A TL `string`/`bytes`.
    pub fn string(&mut self) -> Option<&'a [u8]> {
        let first = *self.bytes(1)?.first()?;
        let (len, header) = if first < 254 {
            (first as usize, 1)
        } else {
            let b = self.bytes(3)?;
            (u32::from_le_bytes([b[0], b[1], b[2], 0]) as usize, 4)
        };
        let data = self.bytes(len)?;
        self.bytes((4 - (header + len) % 4) % 4)?;
        Some(data)
    }
}

/// A TL `string`.
pub fn write_string(out: &mut Vec<u8>, s: &[u8]) {
    if s.len() < 254 {
        out.push(s.len() as u8);
    } else {
        out.push(254);
        out.extend_from_slice(&(s.len() as u32).to_le_bytes()[..3]);
    }
    out.extend_from_slice(s);
    let header = if s.len() < 254 { 1 } else { 4 };
    out.resize(out.len() + (4 - (header + s.len()) % 4) % 4, 0);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_round_trip() {
        for len in [0usize, 1, 3, 4, 253, 254, 1000] {
            let s = vec![7u8; len];
            let mut out = Vec::new();
            write_string(&mut out, &s);
            assert_eq!(out.len() % 4, 0);
            let mut r = Reader { buf: &out };
            assert_eq!(r.string(), Some(&s[..]));
            assert!(r.buf.is_empty());
        }
    }
}
