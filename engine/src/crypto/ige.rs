//! AES-256 in IGE mode (infinite garble extension), as MTProto uses it.
//!
//! **Hazmat:** IGE is not authenticated. MTProto authenticates with `msg_key`; use
//! [`super::message`] for messages and [`super::file`] for files.
//!
//! With `iv = iv1 ‖ iv2` (`c₀ = iv1`, `m₀ = iv2`):
//! `cᵢ = E(mᵢ ⊕ cᵢ₋₁) ⊕ mᵢ₋₁` and `mᵢ = D(cᵢ ⊕ mᵢ₋₁) ⊕ cᵢ₋₁`.
//! The chain state (the last ciphertext and plaintext blocks) is exactly an IV, so
//! [`IgeStream`] can encrypt a file part by part as one continuous chain.

use aes::Aes256;
use aes::cipher::generic_array::GenericArray;
use aes::cipher::{BlockDecrypt, BlockEncrypt, KeyInit};
use zeroize::{Zeroize, ZeroizeOnDrop};

use super::CryptoError;
use super::aesni;
use super::ige_batch::RoundKeys;

/// Direction of an IGE pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Encrypt.
    Encrypt,
    /// Decrypt.
    Decrypt,
}

fn xor16(a: &mut [u8; 16], b: &[u8; 16]) {
    for (x, y) in a.iter_mut().zip(b) {
        *x ^= y;
    }
}

fn check_len(len: usize) -> Result<(), CryptoError> {
    if len.is_multiple_of(16) {
        Ok(())
    } else {
        Err(CryptoError::UnalignedLength { len })
    }
}

/// An IGE chain in progress: the cipher and the two chaining blocks.
#[derive(ZeroizeOnDrop)]
pub struct IgeStream {
    #[zeroize(skip)] // aes zeroizes its own round keys on drop (feature `zeroize`)
    cipher: Aes256,
    /// The key schedule for the AES-NI kernel, when the CPU has AES-NI (zeroized on drop).
    #[zeroize(skip)]
    ni: Option<RoundKeys>,
    /// Previous ciphertext block (`iv1` at the start).
    prev_c: [u8; 16],
    /// Previous plaintext block (`iv2` at the start).
    prev_m: [u8; 16],
    #[zeroize(skip)]
    dir: Direction,
}

impl std::fmt::Debug for IgeStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "IgeStream(AES-256, {:?})", self.dir)
    }
}

impl IgeStream {
    /// Starts a chain with a 32-byte key and 32-byte IV.
    pub fn new(key: &[u8; 32], iv: &[u8; 32], dir: Direction) -> Self {
        let mut prev_c = [0u8; 16];
        let mut prev_m = [0u8; 16];
        prev_c.copy_from_slice(&iv[..16]);
        prev_m.copy_from_slice(&iv[16..]);
        let ni = aesni::available().then(|| match dir {
            Direction::Encrypt => RoundKeys::encrypt(key),
            Direction::Decrypt => RoundKeys::decrypt(key),
        });
        Self {
            cipher: Aes256::new(GenericArray::from_slice(key)),
            ni,
            prev_c,
            prev_m,
            dir,
        }
    }

    /// Processes `data` in place, continuing the chain.
    ///
    /// # Errors
    /// [`CryptoError::UnalignedLength`] when `data.len()` is not a multiple of 16.
    pub fn process(&mut self, data: &mut [u8]) -> Result<(), CryptoError> {
        check_len(data.len())?;
        if let Some(keys) = &self.ni {
            let mut s = aesni::ChainState {
                keys: keys.as_array(),
                prev_c: &mut self.prev_c,
                prev_m: &mut self.prev_m,
            };
            if aesni::ige(&mut s, data, self.dir == Direction::Encrypt) {
                return Ok(());
            }
        }
        for chunk in data.chunks_exact_mut(16) {
            self.block(chunk);
        }
        Ok(())
    }

    /// The current chain state as an IV (what a later stream would start from).
    pub fn iv(&self) -> [u8; 32] {
        let mut iv = [0u8; 32];
        iv[..16].copy_from_slice(&self.prev_c);
        iv[16..].copy_from_slice(&self.prev_m);
        iv
    }

    #[inline(always)]
    fn block(&mut self, chunk: &mut [u8]) {
        let mut input = [0u8; 16];
        input.copy_from_slice(chunk);
        let mut b = input;
        match self.dir {
            Direction::Encrypt => {
                xor16(&mut b, &self.prev_c);
                self.cipher
                    .encrypt_block(GenericArray::from_mut_slice(&mut b));
                xor16(&mut b, &self.prev_m);
                self.prev_c = b;
                self.prev_m = input;
            }
            Direction::Decrypt => {
                xor16(&mut b, &self.prev_m);
                self.cipher
                    .decrypt_block(GenericArray::from_mut_slice(&mut b));
                xor16(&mut b, &self.prev_c);
                self.prev_m = b;
                self.prev_c = input;
            }
        }
        chunk.copy_from_slice(&b);
        input.zeroize();
    }
}

/// Encrypts `data` in place (one-shot).
///
/// ```
/// use secretchat_engine::crypto::ige;
/// let (key, iv) = ([1u8; 32], [2u8; 32]);
/// let mut data = *b"sixteen byte msg";
/// ige::encrypt(&key, &iv, &mut data).unwrap();
/// ige::decrypt(&key, &iv, &mut data).unwrap();
/// assert_eq!(&data, b"sixteen byte msg");
/// ```
///
/// # Errors
/// [`CryptoError::UnalignedLength`].
pub fn encrypt(key: &[u8; 32], iv: &[u8; 32], data: &mut [u8]) -> Result<(), CryptoError> {
    IgeStream::new(key, iv, Direction::Encrypt).process(data)
}

/// Decrypts `data` in place (one-shot).
///
/// # Errors
/// [`CryptoError::UnalignedLength`].
pub fn decrypt(key: &[u8; 32], iv: &[u8; 32], data: &mut [u8]) -> Result<(), CryptoError> {
    IgeStream::new(key, iv, Direction::Decrypt).process(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unaligned_is_an_error() {
        assert_eq!(
            encrypt(&[0; 32], &[0; 32], &mut [0; 15]),
            Err(CryptoError::UnalignedLength { len: 15 })
        );
    }

    #[test]
    fn portable_path_equals_aesni_path() {
        for dir in [Direction::Encrypt, Direction::Decrypt] {
            let data: Vec<u8> = (0..480u32).map(|i| (i * 13) as u8).collect();
            let (mut a, mut b) = (data.clone(), data.clone());
            IgeStream::new(&[5; 32], &[6; 32], dir)
                .process(&mut a)
                .unwrap();
            let mut portable = IgeStream::new(&[5; 32], &[6; 32], dir);
            portable.ni = None; // force the per-block `aes` crate path
            portable.process(&mut b).unwrap();
            assert_eq!(a, b, "{dir:?}");
        }
    }

    #[test]
    fn stream_equals_one_shot() {
        let (key, iv) = ([7u8; 32], [9u8; 32]);
        let mut whole: Vec<u8> = (0..160u8).collect();
        let mut parts = whole.clone();
        encrypt(&key, &iv, &mut whole).unwrap();
        let mut s = IgeStream::new(&key, &iv, Direction::Encrypt);
        let (a, b) = parts.split_at_mut(48);
        s.process(a).unwrap();
        // a new stream from the carried IV continues the same chain
        let mut s2 = IgeStream::new(&key, &s.iv(), Direction::Encrypt);
        s2.process(b).unwrap();
        assert_eq!(whole, parts);
    }
}
