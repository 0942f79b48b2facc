//! Many independent AES-256-IGE chains at once, 8 per group, one AES round at a time across the
//! group (`aes::hazmat::cipher_round_par`: 8 blocks with 8 different round keys per call).
//!
//! One IGE chain is bound by the latency of its dependent blocks; eight chains keep the AES
//! units busy. Round keys come from the AES-256 key schedule (FIPS-197 §5.2), whose `SubWord`
//! is computed with the same maintained primitives (`cipher_round` + `inv_mix_columns` on a
//! state of four equal columns, where `ShiftRows` is the identity), so no S-box is written here.

use aes::Block;
use aes::hazmat::{
    cipher_round, cipher_round_par, equiv_inv_cipher_round_par, inv_mix_columns, mix_columns,
};
use zeroize::{Zeroize, ZeroizeOnDrop};

use super::CryptoError;
use super::ige::Direction;

type Block8 = aes::cipher::generic_array::GenericArray<Block, aes::cipher::consts::U8>;

/// AES-256 round keys (15), for encryption or the equivalent inverse cipher.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct RoundKeys([[u8; 16]; 15]);

fn sub_word(w: [u8; 4]) -> [u8; 4] {
    let mut state = Block::default();
    for c in 0..4 {
        state[4 * c..4 * c + 4].copy_from_slice(&w);
    }
    cipher_round(&mut state, &Block::default()); // MixColumns(ShiftRows(SubBytes(s)))
    inv_mix_columns(&mut state); // ShiftRows(SubBytes(s)) = SubBytes(s): the columns are equal
    [state[0], state[1], state[2], state[3]]
}

impl RoundKeys {
    /// The 15 round keys.
    pub(crate) fn as_array(&self) -> &[[u8; 16]; 15] {
        &self.0
    }

    /// The encryption key schedule of a 32-byte key.
    pub fn encrypt(key: &[u8; 32]) -> Self {
        super::aesni::expand_key(key, true).map_or_else(|| Self::encrypt_portable(key), Self)
    }

    /// [`RoundKeys::encrypt`] with the `aes` crate's primitives (any CPU).
    pub fn encrypt_portable(key: &[u8; 32]) -> Self {
        const RCON: [u8; 7] = [0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40];
        let mut w = [[0u8; 4]; 60];
        for (i, word) in w.iter_mut().take(8).enumerate() {
            word.copy_from_slice(&key[4 * i..4 * i + 4]);
        }
        for i in 8..60 {
            let mut t = w[i - 1];
            if i % 8 == 0 {
                t.rotate_left(1);
                t = sub_word(t);
                t[0] ^= RCON[i / 8 - 1];
            } else if i % 8 == 4 {
                t = sub_word(t);
            }
            for b in 0..4 {
                w[i][b] = w[i - 8][b] ^ t[b];
            }
        }
        let mut rk = [[0u8; 16]; 15];
        for (r, k) in rk.iter_mut().enumerate() {
            for c in 0..4 {
                k[4 * c..4 * c + 4].copy_from_slice(&w[4 * r + c]);
            }
        }
        w.zeroize();
        Self(rk)
    }

    /// The equivalent-inverse-cipher schedule (FIPS-197 §5.3.5) of a 32-byte key.
    pub fn decrypt(key: &[u8; 32]) -> Self {
        super::aesni::expand_key(key, false).map_or_else(|| Self::decrypt_portable(key), Self)
    }

    /// [`RoundKeys::decrypt`] with the `aes` crate's primitives (any CPU).
    pub fn decrypt_portable(key: &[u8; 32]) -> Self {
        let enc = Self::encrypt_portable(key);
        let mut dk = [[0u8; 16]; 15];
        for (r, k) in dk.iter_mut().enumerate() {
            *k = enc.0[14 - r];
            if (1..14).contains(&r) {
                inv_mix_columns(Block::from_mut_slice(k));
            }
        }
        Self(dk)
    }
}

fn xor16(a: &mut [u8], b: &[u8; 16]) {
    for (x, y) in a.iter_mut().zip(b) {
        *x ^= y;
    }
}

/// One chain of a batch.
pub struct Lane<'a> {
    keys: RoundKeys,
    prev_c: [u8; 16],
    prev_m: [u8; 16],
    data: &'a mut [u8],
}

impl<'a> Lane<'a> {
    /// A chain over `data` with `key` and `iv` in direction `dir`.
    pub fn new(key: &[u8; 32], iv: &[u8; 32], dir: Direction, data: &'a mut [u8]) -> Self {
        let keys = match dir {
            Direction::Encrypt => RoundKeys::encrypt(key),
            Direction::Decrypt => RoundKeys::decrypt(key),
        };
        let mut prev_c = [0u8; 16];
        let mut prev_m = [0u8; 16];
        prev_c.copy_from_slice(&iv[..16]);
        prev_m.copy_from_slice(&iv[16..]);
        Self {
            keys,
            prev_c,
            prev_m,
            data,
        }
    }
}

impl Drop for Lane<'_> {
    fn drop(&mut self) {
        self.prev_c.zeroize();
        self.prev_m.zeroize();
    }
}

/// Runs every lane of one direction; lanes may have different lengths.
///
/// # Errors
/// [`CryptoError::UnalignedLength`] if a lane's data is not a multiple of 16 (nothing is done).
pub fn run(lanes: &mut [Lane<'_>], dir: Direction) -> Result<(), CryptoError> {
    if let Some(l) = lanes.iter().find(|l| !l.data.len().is_multiple_of(16)) {
        return Err(CryptoError::UnalignedLength { len: l.data.len() });
    }
    for group in lanes.chunks_mut(8) {
        if !run_group_aesni(group, dir) {
            run_group(group, dir);
        }
    }
    Ok(())
}

/// The AES-NI path: the common prefix of the group in lock step, then each lane's tail alone.
fn run_group_aesni(group: &mut [Lane<'_>], dir: Direction) -> bool {
    if !super::aesni::available() {
        return false;
    }
    let encrypt = dir == Direction::Encrypt;
    let common = group.iter().map(|l| l.data.len() / 16).min().unwrap_or(0);
    let mut states = Vec::with_capacity(group.len());
    let mut heads = Vec::with_capacity(group.len());
    let mut tails = Vec::with_capacity(group.len());
    for l in group.iter_mut() {
        let (head, tail) = l.data.split_at_mut(common * 16);
        states.push(super::aesni::ChainState {
            keys: &l.keys.0,
            prev_c: &mut l.prev_c,
            prev_m: &mut l.prev_m,
        });
        heads.push(head);
        tails.push(tail);
    }
    let ok = super::aesni::ige8(&mut states, &mut heads, common, encrypt);
    for (s, tail) in states.iter_mut().zip(tails) {
        super::aesni::ige(s, tail, encrypt);
    }
    ok
}

fn run_group(group: &mut [Lane<'_>], dir: Direction) {
    let blocks = group.iter().map(|l| l.data.len() / 16).max().unwrap_or(0);
    // Round keys laid out per round for the parallel calls; unused lanes get zero keys.
    let mut keys = [Block8::default(); 15];
    for (lane, l) in group.iter().enumerate() {
        for (r, k) in keys.iter_mut().enumerate() {
            k[lane].copy_from_slice(&l.keys.0[r]);
        }
    }
    let mut state = Block8::default();
    let mut inputs = [[0u8; 16]; 8];
    for i in 0..blocks {
        let at = i * 16..i * 16 + 16;
        for (lane, l) in group.iter().enumerate() {
            let Some(chunk) = l.data.get(at.clone()) else {
                continue;
            };
            inputs[lane].copy_from_slice(chunk);
            let s = &mut state[lane];
            s.copy_from_slice(chunk);
            // IGE input whitening, then AddRoundKey(0).
            match dir {
                Direction::Encrypt => xor16(s, &l.prev_c),
                Direction::Decrypt => xor16(s, &l.prev_m),
            }
            xor16(s, &l.keys.0[0]);
        }
        match dir {
            Direction::Encrypt => {
                for k in &keys[1..14] {
                    cipher_round_par(&mut state, k);
                }
                // Last round has no MixColumns: undo it.
                cipher_round_par(&mut state, &Block8::default());
                for b in state.iter_mut() {
                    inv_mix_columns(b);
                }
            }
            Direction::Decrypt => {
                for k in &keys[1..14] {
                    equiv_inv_cipher_round_par(&mut state, k);
                }
                equiv_inv_cipher_round_par(&mut state, &Block8::default());
                for b in state.iter_mut() {
                    mix_columns(b);
                }
            }
        }
        for (lane, l) in group.iter_mut().enumerate() {
            let Some(chunk) = l.data.get_mut(at.clone()) else {
                continue;
            };
            let s = &mut state[lane];
            xor16(s, &l.keys.0[14]);
            match dir {
                Direction::Encrypt => {
                    xor16(s, &l.prev_m);
                    l.prev_c.copy_from_slice(s);
                    l.prev_m = inputs[lane];
                }
                Direction::Decrypt => {
                    xor16(s, &l.prev_c);
                    l.prev_m.copy_from_slice(s);
                    l.prev_c = inputs[lane];
                }
            }
            chunk.copy_from_slice(s);
        }
    }
    inputs.zeroize();
    for b in state.iter_mut() {
        b.zeroize();
    }
    for k in keys.iter_mut() {
        for b in k.iter_mut() {
            b.zeroize();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::ige;

    #[test]
    fn aesni_key_schedule_equals_portable() {
        for seed in 0..4u8 {
            let key: [u8; 32] = std::array::from_fn(|i| (i as u8).wrapping_mul(29) ^ seed);
            if let Some(ni) = crate::crypto::aesni::expand_key(&key, true) {
                assert_eq!(ni, RoundKeys::encrypt_portable(&key).0);
                assert_eq!(
                    crate::crypto::aesni::expand_key(&key, false).unwrap(),
                    RoundKeys::decrypt_portable(&key).0
                );
            }
        }
    }

    #[test]
    fn batch_matches_single_both_directions() {
        for dir in [Direction::Encrypt, Direction::Decrypt] {
            let mut datas: Vec<Vec<u8>> = (0..11)
                .map(|i| (0..i * 48).map(|b| (b * 7 + i) as u8).collect())
                .collect();
            let expect: Vec<Vec<u8>> = datas
                .iter()
                .enumerate()
                .map(|(i, d)| {
                    let mut d = d.clone();
                    ige::IgeStream::new(&[i as u8; 32], &[!(i as u8); 32], dir)
                        .process(&mut d)
                        .unwrap();
                    d
                })
                .collect();
            let mut lanes: Vec<Lane<'_>> = datas
                .iter_mut()
                .enumerate()
                .map(|(i, d)| Lane::new(&[i as u8; 32], &[!(i as u8); 32], dir, d))
                .collect();
            run(&mut lanes, dir).unwrap();
            drop(lanes);
            assert_eq!(datas, expect, "{dir:?}");
            // The portable (hazmat) path, whatever this CPU has.
            let mut again: Vec<Vec<u8>> = (0..11)
                .map(|i| (0..i * 48).map(|b| (b * 7 + i) as u8).collect())
                .collect();
            let mut lanes: Vec<Lane<'_>> = again
                .iter_mut()
                .enumerate()
                .map(|(i, d)| Lane::new(&[i as u8; 32], &[!(i as u8); 32], dir, d))
                .collect();
            for group in lanes.chunks_mut(8) {
                run_group(group, dir);
            }
            drop(lanes);
            assert_eq!(again, expect, "portable {dir:?}");
        }
    }
}
