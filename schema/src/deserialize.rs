//! Reading TL from hostile input: the [`Reader`], the [`Deserialize`] traits and the
//! primitive decodings.
//!
//! Every read is bounds-checked, nothing panics, vector capacities are bounded by the bytes that
//! remain, and nesting depth is capped at [`MAX_DEPTH`].

use crate::DecodeError;
use crate::serialize::{BOOL_FALSE_ID, BOOL_TRUE_ID, VECTOR_ID, VectorItem};

/// Deepest nesting of boxed objects a [`Reader`] accepts.
pub const MAX_DEPTH: u32 = 32;

/// A cursor over untrusted TL bytes.
#[derive(Debug)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    depth: u32,
}

impl<'a> Reader<'a> {
    /// A reader at the start of `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Self {
            buf,
            pos: 0,
            depth: 0,
        }
    }

    /// Bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Bytes read so far.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Takes the next `n` bytes.
    ///
    /// # Errors
    /// [`DecodeError::UnexpectedEof`] when fewer than `n` remain.
    pub fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len());
        let end = end.ok_or(DecodeError::UnexpectedEof {
            offset: self.pos,
            needed: n,
        })?;
        let out = &self.buf[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    /// Takes the next `N` bytes as an array.
    ///
    /// # Errors
    /// [`DecodeError::UnexpectedEof`].
    pub fn take_array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    /// Reads a little-endian `u32` (a constructor id or a flags word).
    ///
    /// # Errors
    /// [`DecodeError::UnexpectedEof`].
    pub fn read_u32(&mut self) -> Result<u32, DecodeError> {
        self.take_array().map(u32::from_le_bytes)
    }

    /// Runs `f` one nesting level deeper.
    ///
    /// # Errors
    /// [`DecodeError::TooDeep`] past [`MAX_DEPTH`], or what `f` returns.
    pub fn nested<T>(
        &mut self,
        f: impl FnOnce(&mut Self) -> Result<T, DecodeError>,
    ) -> Result<T, DecodeError> {
        if self.depth >= MAX_DEPTH {
            return Err(DecodeError::TooDeep { max: MAX_DEPTH });
        }
        self.depth += 1;
        let out = f(self);
        self.depth -= 1;
        out
    }

    /// Fails unless every byte was read.
    ///
    /// # Errors
    /// [`DecodeError::TrailingBytes`].
    pub fn finish(&self) -> Result<(), DecodeError> {
        match self.remaining() {
            0 => Ok(()),
            extra => Err(DecodeError::TrailingBytes { extra }),
        }
    }
}

/// A value that can be read from boxed TL.
pub trait Deserialize: Sized {
    /// Reads one value.
    ///
    /// # Errors
    /// A [`DecodeError`] on truncated, malformed or unexpected input.
    fn deserialize(r: &mut Reader<'_>) -> Result<Self, DecodeError>;

    /// Decodes a whole buffer, rejecting trailing bytes.
    ///
    /// ```
    /// use secretchat_schema::Deserialize;
    /// assert_eq!(i64::from_bytes(&[1, 0, 0, 0, 0, 0, 0, 0]).unwrap(), 1);
    /// assert!(i64::from_bytes(&[1, 0, 0]).is_err());
    /// ```
    ///
    /// # Errors
    /// As [`Deserialize::deserialize`], plus [`DecodeError::TrailingBytes`].
    fn from_bytes(buf: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(buf);
        let v = Self::deserialize(&mut r)?;
        r.finish()?;
        Ok(v)
    }
}

/// A constructor read without its id (the caller has read and matched it).
pub trait BareDeserialize: Sized {
    /// Reads the fields.
    ///
    /// # Errors
    /// As [`Deserialize::deserialize`].
    fn deserialize_bare(r: &mut Reader<'_>) -> Result<Self, DecodeError>;
}

macro_rules! le_primitive {
    ($($t:ty),*) => {$(
        impl Deserialize for $t {
            fn deserialize(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
                r.take_array().map(<$t>::from_le_bytes)
            }
        }
    )*};
}
le_primitive!(i32, u32, i64, f64);

impl Deserialize for [u8; 16] {
    fn deserialize(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        r.take_array()
    }
}

impl Deserialize for [u8; 32] {
    fn deserialize(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        r.take_array()
    }
}

impl Deserialize for bool {
    fn deserialize(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        match r.read_u32()? {
            BOOL_TRUE_ID => Ok(true),
            BOOL_FALSE_ID => Ok(false),
            id => Err(DecodeError::UnexpectedConstructor {
                expected: "Bool",
                id,
            }),
        }
    }
}

/// Reads TL `bytes`/`string` as a slice of the input (no copy, no allocation).
///
/// # Errors
/// [`DecodeError::UnexpectedEof`] when the declared length runs past the input,
/// [`DecodeError::NonZeroPadding`] when padding bytes are not zero.
pub fn read_bytes<'a>(r: &mut Reader<'a>) -> Result<&'a [u8], DecodeError> {
    let first = r.take(1)?[0];
    let (len, header) = if first == 0xff {
        return Err(DecodeError::BadLengthPrefix {
            offset: r.position() - 1,
        });
    } else if first == 0xfe {
        let l = r.take(3)?;
        (
            usize::from(l[0]) | usize::from(l[1]) << 8 | usize::from(l[2]) << 16,
            4,
        )
    } else {
        (usize::from(first), 1)
    };
    let data = r.take(len)?;
    let pad = (4 - (header + len) % 4) % 4;
    let at = r.position();
    if r.take(pad)?.iter().any(|&b| b != 0) {
        return Err(DecodeError::NonZeroPadding { offset: at });
    }
    Ok(data)
}

impl Deserialize for Vec<u8> {
    fn deserialize(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        read_bytes(r).map(<[u8]>::to_vec)
    }
}

/// TL `string` must be UTF-8 here: invalid UTF-8 is rejected with
/// [`DecodeError::InvalidUtf8`] (decided in `docs/tl.md`).
impl Deserialize for String {
    fn deserialize(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let at = r.position();
        let raw = read_bytes(r)?;
        std::str::from_utf8(raw)
            .map(str::to_owned)
            .map_err(|_| DecodeError::InvalidUtf8 { offset: at })
    }
}

impl<T: VectorItem + Deserialize> Deserialize for Vec<T> {
    fn deserialize(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let id = r.read_u32()?;
        if id != VECTOR_ID {
            return Err(DecodeError::UnexpectedConstructor {
                expected: "Vector",
                id,
            });
        }
        let count = r.read_u32()? as usize;
        // Every TL item takes at least 4 bytes: a larger count is a lie, refuse before allocating.
        if count > r.remaining() / 4 {
            return Err(DecodeError::VectorTooLong {
                count,
                remaining: r.remaining(),
            });
        }
        r.nested(|r| (0..count).map(|_| T::deserialize(r)).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncated_primitives_are_errors() {
        assert!(matches!(
            i32::from_bytes(&[1, 2]),
            Err(DecodeError::UnexpectedEof { .. })
        ));
        assert!(matches!(
            <[u8; 16]>::from_bytes(&[0; 15]),
            Err(DecodeError::UnexpectedEof { .. })
        ));
        assert!(matches!(
            i32::from_bytes(&[0; 5]),
            Err(DecodeError::TrailingBytes { extra: 1 })
        ));
    }

    #[test]
    fn bytes_declared_longer_than_input() {
        assert!(matches!(
            Vec::<u8>::from_bytes(&[0xfe, 0xff, 0xff, 0xff]),
            Err(DecodeError::UnexpectedEof { .. })
        ));
        assert!(matches!(
            Vec::<u8>::from_bytes(&[5, 1, 2, 3]),
            Err(DecodeError::UnexpectedEof { .. })
        ));
    }

    #[test]
    fn nonzero_padding_rejected() {
        assert!(matches!(
            Vec::<u8>::from_bytes(&[1, 9, 0, 1]),
            Err(DecodeError::NonZeroPadding { offset: 2 })
        ));
        assert_eq!(Vec::<u8>::from_bytes(&[1, 9, 0, 0]).unwrap(), vec![9]);
    }

    #[test]
    fn huge_vector_count_rejected_without_allocation() {
        let mut buf = VECTOR_ID.to_le_bytes().to_vec();
        buf.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            Vec::<i64>::from_bytes(&buf),
            Err(DecodeError::VectorTooLong { .. })
        ));
    }

    #[test]
    fn invalid_utf8_string_rejected() {
        assert!(matches!(
            String::from_bytes(&[2, 0xc3, 0x28, 0]),
            Err(DecodeError::InvalidUtf8 { .. })
        ));
    }

    #[test]
    fn nesting_depth_is_capped() {
        let mut r = Reader::new(&[]);
        let mut depth_hit = false;
        fn dive(r: &mut Reader<'_>, n: u32, hit: &mut bool) -> Result<(), DecodeError> {
            r.nested(|r| if n == 0 { Ok(()) } else { dive(r, n - 1, hit) })
                .inspect_err(|e| {
                    *hit |= matches!(e, DecodeError::TooDeep { .. });
                })
        }
        assert!(dive(&mut r, MAX_DEPTH - 1, &mut depth_hit).is_ok());
        assert!(dive(&mut r, MAX_DEPTH, &mut depth_hit).is_err());
        assert!(depth_hit);
    }
}
