//! AES-256 in IGE mode (infinite garble extension), as MTProto uses it.
//!
//! **Hazmat:** IGE is not authenticated. MTProto authenticates with `msg_key`; use
//! [`super::message`] for messages and [`super::file`] for files.
//!
//! With `iv = iv1 ‖ iv2` (`c₀ = iv1`, `m₀ = iv2`):
//! `cᵢ = E(mᵢ ⊕ cᵢ₋₁) ⊕ mᵢ₋₁` and `mᵢ = D(cᵢ ⊕ mᵢ₋₁) ⊕ cᵢ₋₁`.
//! The chain state (the last ciphertext and plaintext blocks) is exactly an IV, so
//! [`IgeStream`] can encrypt a file part by part as one continuous chain.
//!
//! With AES-NI the loop runs in [`super::aesni`]; otherwise each block goes through the `aes`
//! crate's portable round functions with the same key schedule.

use aes::Block;
use aes::hazmat::{cipher_round, equiv_inv_cipher_round, inv_mix_columns, mix_columns};
use zeroize::Zeroize;

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

/// An IGE chain in progress: the key schedule and the two chaining blocks.
pub struct IgeStream {
    /// Round keys for `dir` (encryption or equivalent-inverse schedule); zeroized on drop.
    keys: RoundKeys,
    /// Whether the AES-NI kernel runs (else the portable `aes` hazmat rounds).
    use_ni: bool,
    /// Previous ciphertext block (`iv1` at the start).
    prev_c: [u8; 16],
    /// Previous plaintext block (`iv2` at the start).
    prev_m: [u8; 16],
    dir: Direction,
}

impl Drop for IgeStream {
    fn drop(&mut self) {
        self.prev_c.zeroize();
        self.prev_m.zeroize();
    }
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
        let keys = match dir {
            Direction::Encrypt => RoundKeys::encrypt(key),
            Direction::Decrypt => RoundKeys::decrypt(key),
        };
        Self {
            keys,
            use_ni: aesni::available(),
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
        let encrypt = self.dir == Direction::Encrypt;
        let mut s = aesni::ChainState {
            keys: self.keys.as_array(),
            prev_c: &mut self.prev_c,
            prev_m: &mut self.prev_m,
        };
        if self.use_ni && aesni::ige(&mut s, data, encrypt) {
            return Ok(());
        }
        for chunk in data.chunks_exact_mut(16) {
            portable_block(
                self.keys.as_array(),
                &mut self.prev_c,
                &mut self.prev_m,
                self.dir,
                chunk,
            );
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
}

/// One IGE block with the `aes` crate's round functions (CPUs without AES-NI).
fn portable_block(
    keys: &[[u8; 16]; 15],
    prev_c: &mut [u8; 16],
    prev_m: &mut [u8; 16],
    dir: Direction,
    chunk: &mut [u8],
) {
    let mut input = [0u8; 16];
    input.copy_from_slice(chunk);
    let mut b = input;
    match dir {
        Direction::Encrypt => {
            xor16(&mut b, prev_c);
            encrypt_block(keys, &mut b);
            xor16(&mut b, prev_m);
            *prev_c = b;
            *prev_m = input;
        }
        Direction::Decrypt => {
            xor16(&mut b, prev_m);
            decrypt_block(keys, &mut b);
            xor16(&mut b, prev_c);
            *prev_m = b;
            *prev_c = input;
        }
    }
    chunk.copy_from_slice(&b);
    input.zeroize();
}

fn encrypt_block(keys: &[[u8; 16]; 15], b: &mut [u8; 16]) {
    xor16(b, &keys[0]);
    let blk = Block::from_mut_slice(b);
    for k in &keys[1..14] {
        cipher_round(blk, Block::from_slice(k));
    }
    cipher_round(blk, &Block::default());
    inv_mix_columns(blk); // the last round has no MixColumns
    xor16(b, &keys[14]);
}

fn decrypt_block(keys: &[[u8; 16]; 15], b: &mut [u8; 16]) {
    xor16(b, &keys[0]);
    let blk = Block::from_mut_slice(b);
    for k in &keys[1..14] {
        equiv_inv_cipher_round(blk, Block::from_slice(k));
    }
    equiv_inv_cipher_round(blk, &Block::default());
    mix_columns(blk); // the last round has no InvMixColumns
    xor16(b, &keys[14]);
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
            portable.use_ni = false; // force the portable `aes` hazmat path
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
