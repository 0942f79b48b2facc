//! Wrappers for the bare forms: `vector<T>` ([`RawVec`]) and bare constructors ([`Bare`]).

use crate::json::{TlJson, Value};
use crate::serialize::{VECTOR_ID, VectorItem};
use crate::{
    BareDeserialize, BareSerialize, DecodeError, Deserialize, EncodeError, JsonError, Reader,
    Serialize,
};

/// TL bare `vector<T>`: the count and items, without the `Vector` id.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RawVec<T>(pub Vec<T>);

impl<T: VectorItem> Serialize for RawVec<T> {
    fn serialize(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        // The boxed form minus its 4-byte id.
        let start = out.len();
        self.0.serialize(out)?;
        debug_assert_eq!(
            out.get(start..start + 4),
            Some(&VECTOR_ID.to_le_bytes()[..])
        );
        out.drain(start..start + 4);
        Ok(())
    }
}

impl<T: VectorItem + Deserialize> Deserialize for RawVec<T> {
    fn deserialize(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let count = r.read_u32()? as usize;
        if count > r.remaining() / 4 {
            return Err(DecodeError::VectorTooLong {
                count,
                remaining: r.remaining(),
            });
        }
        r.nested(|r| (0..count).map(|_| T::deserialize(r)).collect())
            .map(RawVec)
    }
}

impl<T: VectorItem + TlJson> TlJson for RawVec<T> {
    fn to_json(&self) -> Value {
        self.0.to_json()
    }
    fn from_json(v: &Value) -> Result<Self, JsonError> {
        Vec::from_json(v).map(RawVec)
    }
}

impl<T: VectorItem> VectorItem for RawVec<T> {}

/// A constructor used as a bare type (`%T`): written without its id.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Bare<T>(pub T);

impl<T: BareSerialize> Serialize for Bare<T> {
    fn serialize(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        self.0.serialize_bare(out)
    }
}

impl<T: BareDeserialize> Deserialize for Bare<T> {
    fn deserialize(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        r.nested(T::deserialize_bare).map(Bare)
    }
}

impl<T: TlJson> TlJson for Bare<T> {
    fn to_json(&self) -> Value {
        self.0.to_json()
    }
    fn from_json(v: &Value) -> Result<Self, JsonError> {
        T::from_json(v).map(Bare)
    }
}

impl<T: BareSerialize> VectorItem for Bare<T> where Bare<T>: Serialize {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_vec_has_no_id() {
        let v = RawVec(vec![7i32]);
        let bytes = v.to_bytes().unwrap();
        assert_eq!(bytes, [1, 0, 0, 0, 7, 0, 0, 0]);
        assert_eq!(RawVec::<i32>::from_bytes(&bytes).unwrap(), v);
    }
}
