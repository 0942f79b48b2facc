//! Encrypted files (`end-to-end.md`, "Sending Encrypted Files"): a one-time 32-byte key and
//! 32-byte IV, the 32-bit fingerprint `md5(key ‖ iv)[0..4] XOR md5(key ‖ iv)[4..8]`, and one
//! continuous AES-256-IGE chain over all parts (512 KiB parts, the last padded to 16 bytes).

use md5::{Digest, Md5};

use super::CryptoError;
use super::ige::{Direction, IgeStream};
use super::keys::Secret32;

/// The part size used for encrypted uploads.
pub const PART_SIZE: usize = 512 * 1024;

/// A file's one-time key and IV.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileKey {
    /// AES key.
    pub key: Secret32,
    /// IGE IV.
    pub iv: Secret32,
}

impl FileKey {
    /// From 64 random bytes (key then IV).
    pub fn from_random(random: &[u8; 64]) -> Self {
        let mut key = [0u8; 32];
        let mut iv = [0u8; 32];
        key.copy_from_slice(&random[..32]);
        iv.copy_from_slice(&random[32..]);
        Self {
            key: Secret32(key),
            iv: Secret32(iv),
        }
    }

    /// The 32-bit key fingerprint, as the TL `int` field carries it.
    pub fn fingerprint(&self) -> i32 {
        let d = Md5::new()
            .chain_update(self.key.0)
            .chain_update(self.iv.0)
            .finalize();
        let mut x = [0u8; 4];
        for i in 0..4 {
            x[i] = d[i] ^ d[4 + i];
        }
        i32::from_le_bytes(x)
    }

    /// A stream over the whole file in `dir`.
    pub fn stream(&self, dir: Direction) -> FileStream {
        FileStream {
            ige: IgeStream::new(&self.key.0, &self.iv.0, dir),
        }
    }

    /// A stream continuing a chain from [`FileStream::chain_state`] (resuming after a crash).
    pub fn resume(&self, dir: Direction, state: &[u8; 32]) -> FileStream {
        FileStream {
            ige: IgeStream::new(&self.key.0, state, dir),
        }
    }
}

/// One file's continuous IGE chain, fed part by part.
#[derive(Debug)]
pub struct FileStream {
    ige: IgeStream,
}

impl FileStream {
    /// Processes a middle part (a multiple of 16 bytes) in place.
    ///
    /// # Errors
    /// [`CryptoError::UnalignedLength`].
    pub fn part(&mut self, data: &mut [u8]) -> Result<(), CryptoError> {
        self.ige.process(data)
    }

    /// The chain state after the parts so far (to store with upload/download progress).
    pub fn chain_state(&self) -> [u8; 32] {
        self.ige.iv()
    }

    /// Encrypts the last part: pads it with zeros to a multiple of 16 first.
    ///
    /// # Errors
    /// None in practice; kept for symmetry with [`FileStream::part`].
    pub fn last_part(&mut self, data: &mut Vec<u8>) -> Result<(), CryptoError> {
        let padded = data.len().div_ceil(16) * 16;
        data.resize(padded, 0);
        self.ige.process(data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_formula() {
        let k = FileKey::from_random(&[3; 64]);
        let d = Md5::digest([3u8; 64]);
        let want = [d[0] ^ d[4], d[1] ^ d[5], d[2] ^ d[6], d[3] ^ d[7]];
        assert_eq!(k.fingerprint().to_le_bytes(), want);
    }

    #[test]
    fn parts_form_one_chain() {
        let k = FileKey::from_random(&[9; 64]);
        let data: Vec<u8> = (0..100u8).collect();
        let mut whole = data.clone();
        whole.resize(112, 0);
        crate::crypto::ige::encrypt(&k.key.0, &k.iv.0, &mut whole).unwrap();
        let mut s = k.stream(Direction::Encrypt);
        let mut first = data[..32].to_vec();
        let mut last = data[32..].to_vec();
        s.part(&mut first).unwrap();
        // Resuming from the stored chain state gives the same bytes as going on.
        let mut resumed = k.resume(Direction::Encrypt, &s.chain_state());
        let mut again = last.clone();
        s.last_part(&mut last).unwrap();
        resumed.last_part(&mut again).unwrap();
        assert_eq!(last, again);
        assert_eq!([first, last].concat(), whole);
        let mut dec = k.stream(Direction::Decrypt);
        let mut head = whole[..32].to_vec();
        dec.part(&mut head).unwrap();
        let mut tail = whole[32..].to_vec();
        k.resume(Direction::Decrypt, &dec.chain_state())
            .part(&mut tail)
            .unwrap();
        assert_eq!(&[head, tail].concat()[..100], &data[..]);
    }
}
