//! Writing TL: the [`Serialize`] traits and the primitive encodings.

use crate::EncodeError;

/// A value that can be written as boxed TL (with its constructor id where it has one).
///
/// Primitives (`int`, `long`, `string`, ...) have no constructor id and write only their bytes;
/// `Vec<T>` is the boxed `Vector<T>` (id `0x1cb5c415`, count, items).
///
/// ```
/// use secretchat_schema::Serialize;
/// let mut out = Vec::new();
/// "hi".to_owned().serialize(&mut out).unwrap();
/// assert_eq!(out, [2, b'h', b'i', 0]);
/// ```
pub trait Serialize {
    /// Appends the TL encoding of `self` to `out`.
    ///
    /// # Errors
    /// [`EncodeError::TooLong`] when a `string`/`bytes` exceeds TL's 2^24-1 byte limit.
    fn serialize(&self, out: &mut Vec<u8>) -> Result<(), EncodeError>;

    /// The encoding as a fresh buffer.
    ///
    /// # Errors
    /// As [`Serialize::serialize`].
    fn to_bytes(&self) -> Result<Vec<u8>, EncodeError> {
        let mut out = Vec::new();
        self.serialize(&mut out)?;
        Ok(out)
    }
}

/// A constructor written without its id (the bare form `%T`).
pub trait BareSerialize {
    /// Appends the fields of `self`, without the constructor id.
    ///
    /// # Errors
    /// As [`Serialize::serialize`].
    fn serialize_bare(&self, out: &mut Vec<u8>) -> Result<(), EncodeError>;
}

/// The id of the boxed `Vector` constructor.
pub const VECTOR_ID: u32 = 0x1cb5_c415;
/// `boolTrue#997275b5`.
pub const BOOL_TRUE_ID: u32 = 0x9972_75b5;
/// `boolFalse#bc799737`.
pub const BOOL_FALSE_ID: u32 = 0xbc79_9737;
/// Largest `string`/`bytes` TL can carry (3-byte length).
pub const MAX_BYTES_LEN: usize = (1 << 24) - 1;

impl Serialize for i32 {
    fn serialize(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        out.extend_from_slice(&self.to_le_bytes());
        Ok(())
    }
}

impl Serialize for u32 {
    fn serialize(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        out.extend_from_slice(&self.to_le_bytes());
        Ok(())
    }
}

impl Serialize for i64 {
    fn serialize(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        out.extend_from_slice(&self.to_le_bytes());
        Ok(())
    }
}

impl Serialize for f64 {
    fn serialize(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        out.extend_from_slice(&self.to_le_bytes());
        Ok(())
    }
}

impl Serialize for [u8; 16] {
    fn serialize(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        out.extend_from_slice(self);
        Ok(())
    }
}

impl Serialize for [u8; 32] {
    fn serialize(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        out.extend_from_slice(self);
        Ok(())
    }
}

impl Serialize for bool {
    fn serialize(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        let id = if *self { BOOL_TRUE_ID } else { BOOL_FALSE_ID };
        out.extend_from_slice(&id.to_le_bytes());
        Ok(())
    }
}

/// Writes TL `bytes`/`string`: a 1-byte length below 254, else `0xfe` and a 3-byte length;
/// then the data, then zero padding to a multiple of 4.
///
/// # Errors
/// [`EncodeError::TooLong`] above [`MAX_BYTES_LEN`].
pub fn write_bytes(data: &[u8], out: &mut Vec<u8>) -> Result<(), EncodeError> {
    let len = data.len();
    let header = if len < 254 {
        out.push(len as u8);
        1
    } else if len <= MAX_BYTES_LEN {
        let l = (len as u32).to_le_bytes();
        out.extend_from_slice(&[0xfe, l[0], l[1], l[2]]);
        4
    } else {
        return Err(EncodeError::TooLong { len });
    };
    out.extend_from_slice(data);
    let pad = (4 - (header + len) % 4) % 4;
    out.extend_from_slice(&[0u8; 3][..pad]);
    Ok(())
}

impl Serialize for String {
    fn serialize(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        write_bytes(self.as_bytes(), out)
    }
}

impl Serialize for Vec<u8> {
    fn serialize(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        write_bytes(self, out)
    }
}

/// Element types of TL vectors. `u8` is deliberately not one: `Vec<u8>` is TL `bytes`.
pub trait VectorItem: Serialize {}

impl VectorItem for i32 {}
impl VectorItem for i64 {}
impl VectorItem for f64 {}
impl VectorItem for bool {}
impl VectorItem for String {}
impl VectorItem for Vec<u8> {}
impl VectorItem for [u8; 16] {}
impl VectorItem for [u8; 32] {}
impl<T: VectorItem> VectorItem for Vec<T> {}

impl<T: VectorItem> Serialize for Vec<T> {
    fn serialize(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        let count =
            u32::try_from(self.len()).map_err(|_| EncodeError::TooLong { len: self.len() })?;
        out.extend_from_slice(&VECTOR_ID.to_le_bytes());
        out.extend_from_slice(&count.to_le_bytes());
        self.iter().try_for_each(|item| item.serialize(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_length_forms_and_padding() {
        for (len, header, total) in [
            (0, 1, 4),
            (1, 1, 4),
            (3, 1, 4),
            (4, 1, 8),
            (253, 1, 256),
            (254, 4, 260),
            (255, 4, 260),
            (256, 4, 260),
            (257, 4, 264),
        ] {
            let mut out = Vec::new();
            write_bytes(&vec![7u8; len], &mut out).unwrap();
            assert_eq!(out.len(), total, "len {len}");
            if header == 4 {
                assert_eq!(out[0], 0xfe);
                assert_eq!(
                    u32::from_le_bytes([out[1], out[2], out[3], 0]) as usize,
                    len
                );
            } else {
                assert_eq!(out[0] as usize, len);
            }
            assert!(out[header + len..].iter().all(|&b| b == 0));
        }
    }

    #[test]
    fn too_long_is_an_error() {
        let big = vec![0u8; MAX_BYTES_LEN + 1];
        assert_eq!(
            write_bytes(&big, &mut Vec::new()),
            Err(EncodeError::TooLong {
                len: MAX_BYTES_LEN + 1
            })
        );
    }

    #[test]
    fn vector_of_long() {
        let out = vec![1i64, -1].to_bytes().unwrap();
        assert_eq!(
            hex(&out),
            "15c4b51c020000000100000000000000ffffffffffffffff"
        );
    }

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }
}
