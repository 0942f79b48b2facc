//! The JSON form of TL objects, used by `secretchat tl decode|encode`.
//!
//! `"_"` is the constructor's TL name (for layered constructors the name without TDLib's layer
//! suffix, plus `"_layer"`), fields keep their TL names; `int`/`double` are numbers, `long` a
//! decimal string, `string` a string, `bytes`/`int128`/`int256` lowercase hex, `true` flags and
//! `Bool` booleans; absent optional fields (and unset `true` flags) are omitted. A non-finite
//! `double` is written as the string `"f64:"` followed by the 16 hex digits of its bits, so the
//! round trip stays byte-exact.

pub use serde_json::{Map, Value};

use crate::serialize::VectorItem;
use crate::{Identifiable, JsonError};

/// A value with a JSON form.
pub trait TlJson: Sized {
    /// The JSON form.
    fn to_json(&self) -> Value;
    /// Parses the JSON form.
    ///
    /// # Errors
    /// A [`JsonError`] naming what did not fit.
    fn from_json(value: &Value) -> Result<Self, JsonError>;
}

/// The constructor a JSON object names: `"_"` and its resolved layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// TL name without layer suffix.
    pub name: String,
    /// The layer, for layered constructors.
    pub layer: Option<u32>,
}

/// Writes `"_"` (and `"_layer"`) for `T`.
pub fn put_header<T: Identifiable>(map: &mut Map<String, Value>) {
    map.insert("_".into(), Value::String(T::TL_NAME.into()));
    if let Some(layer) = T::LAYER {
        map.insert("_layer".into(), Value::from(layer));
    }
}

/// Reads and resolves the header of `value` against the constructors `(name, layer)` of one
/// type. `"decryptedMessage8"` (TDLib's suffixed name) is accepted for
/// `{"_": "decryptedMessage", "_layer": 8}`.
///
/// # Errors
/// [`JsonError::NotAnObject`], [`JsonError::MissingName`], [`JsonError::AmbiguousLayer`].
pub fn header(value: &Value, candidates: &[(&str, Option<u32>)]) -> Result<Header, JsonError> {
    let map = value.as_object().ok_or(JsonError::NotAnObject)?;
    let name = map
        .get("_")
        .and_then(Value::as_str)
        .ok_or(JsonError::MissingName)?;
    let layer = match map.get("_layer") {
        None => None,
        Some(v) => Some(
            v.as_u64()
                .and_then(|l| u32::try_from(l).ok())
                .ok_or_else(|| JsonError::field("_layer", JsonError::wrong("layer number", v)))?,
        ),
    };
    let known = |n: &str| candidates.iter().any(|(c, _)| *c == n);
    let (name, layer) = if !known(name) {
        // TDLib's suffixed form: strip trailing digits and treat them as the layer.
        let base = name.trim_end_matches(|c: char| c.is_ascii_digit());
        match name[base.len()..].parse::<u32>() {
            Ok(l) if known(base) && layer.is_none_or(|given| given == l) => (base, Some(l)),
            _ => (name, layer),
        }
    } else {
        (name, layer)
    };
    let layer = match layer {
        Some(l) => Some(l),
        None => {
            let mut same = candidates.iter().filter(|(c, _)| *c == name);
            match (same.next(), same.next()) {
                (Some((_, l)), None) => *l,
                (Some(_), Some(_)) => {
                    return Err(JsonError::AmbiguousLayer {
                        name: name.to_owned(),
                    });
                }
                (None, _) => None,
            }
        }
    };
    Ok(Header {
        name: name.to_owned(),
        layer,
    })
}

/// Whether `header` names `T`.
pub fn names<T: Identifiable>(header: &Header) -> bool {
    header.name == T::TL_NAME && header.layer == T::LAYER
}

/// Checks that `value` is the JSON object of constructor `T` with no unknown keys.
///
/// # Errors
/// [`JsonError::WrongConstructor`], [`JsonError::UnknownField`] and the [`header`] errors.
pub fn object_of<'v, T: Identifiable>(
    value: &'v Value,
    fields: &[&str],
) -> Result<&'v Map<String, Value>, JsonError> {
    let h = header(value, &[(T::TL_NAME, T::LAYER)])?;
    if !names::<T>(&h) {
        return Err(JsonError::WrongConstructor {
            expected: T::TL_NAME,
            found: h.name,
        });
    }
    let map = value.as_object().ok_or(JsonError::NotAnObject)?;
    if let Some(k) = map
        .keys()
        .find(|k| *k != "_" && *k != "_layer" && !fields.contains(&k.as_str()))
    {
        return Err(JsonError::UnknownField { field: k.clone() });
    }
    Ok(map)
}

/// A field that must be present.
///
/// # Errors
/// [`JsonError::MissingField`] or the field's own error, wrapped in [`JsonError::Field`].
pub fn required<T: TlJson>(map: &Map<String, Value>, key: &str) -> Result<T, JsonError> {
    let v = map.get(key).ok_or_else(|| JsonError::MissingField {
        field: key.to_owned(),
    })?;
    T::from_json(v).map_err(|e| JsonError::field(key, e))
}

/// A `flags.N?T` field.
///
/// # Errors
/// The field's own error, wrapped in [`JsonError::Field`].
pub fn optional<T: TlJson>(map: &Map<String, Value>, key: &str) -> Result<Option<T>, JsonError> {
    map.get(key)
        .map(|v| T::from_json(v).map_err(|e| JsonError::field(key, e)))
        .transpose()
}

/// A `flags.N?true` field: absent means false.
///
/// # Errors
/// [`JsonError::Field`] when present and not a boolean.
pub fn true_flag(map: &Map<String, Value>, key: &str) -> Result<bool, JsonError> {
    Ok(optional::<bool>(map, key)?.unwrap_or(false))
}

impl JsonError {
    fn wrong(expected: &'static str, v: &Value) -> Self {
        let mut found = v.to_string();
        found.truncate(64);
        JsonError::WrongType { expected, found }
    }

    fn field(field: &str, source: JsonError) -> Self {
        JsonError::Field {
            field: field.to_owned(),
            source: Box::new(source),
        }
    }
}

impl TlJson for i32 {
    fn to_json(&self) -> Value {
        Value::from(*self)
    }
    fn from_json(v: &Value) -> Result<Self, JsonError> {
        v.as_i64()
            .and_then(|x| i32::try_from(x).ok())
            .ok_or_else(|| JsonError::wrong("int (32-bit number)", v))
    }
}

impl TlJson for i64 {
    fn to_json(&self) -> Value {
        Value::String(self.to_string())
    }
    fn from_json(v: &Value) -> Result<Self, JsonError> {
        match v {
            Value::String(s) => s.parse().ok(),
            Value::Number(n) => n.as_i64(),
            _ => None,
        }
        .ok_or_else(|| JsonError::wrong("long (decimal string)", v))
    }
}

impl TlJson for f64 {
    fn to_json(&self) -> Value {
        if self.is_finite() {
            Value::from(*self)
        } else {
            Value::String(format!("f64:{:016x}", self.to_bits()))
        }
    }
    fn from_json(v: &Value) -> Result<Self, JsonError> {
        match v {
            Value::Number(n) => n.as_f64(),
            Value::String(s) => s
                .strip_prefix("f64:")
                .and_then(|h| u64::from_str_radix(h, 16).ok())
                .map(f64::from_bits),
            _ => None,
        }
        .ok_or_else(|| JsonError::wrong("double", v))
    }
}

impl TlJson for bool {
    fn to_json(&self) -> Value {
        Value::Bool(*self)
    }
    fn from_json(v: &Value) -> Result<Self, JsonError> {
        v.as_bool().ok_or_else(|| JsonError::wrong("boolean", v))
    }
}

impl TlJson for String {
    fn to_json(&self) -> Value {
        Value::String(self.clone())
    }
    fn from_json(v: &Value) -> Result<Self, JsonError> {
        v.as_str()
            .map(str::to_owned)
            .ok_or_else(|| JsonError::wrong("string", v))
    }
}

fn hex_of(v: &Value) -> Result<Vec<u8>, JsonError> {
    v.as_str()
        .and_then(|s| hex::decode(s).ok())
        .ok_or_else(|| JsonError::wrong("hex string", v))
}

impl TlJson for Vec<u8> {
    fn to_json(&self) -> Value {
        Value::String(hex::encode(self))
    }
    fn from_json(v: &Value) -> Result<Self, JsonError> {
        hex_of(v)
    }
}

impl<const N: usize> TlJson for [u8; N] {
    fn to_json(&self) -> Value {
        Value::String(hex::encode(self))
    }
    fn from_json(v: &Value) -> Result<Self, JsonError> {
        hex_of(v)?
            .try_into()
            .map_err(|_| JsonError::wrong("hex string of the exact size", v))
    }
}

impl<T: VectorItem + TlJson> TlJson for Vec<T> {
    fn to_json(&self) -> Value {
        Value::Array(self.iter().map(TlJson::to_json).collect())
    }
    fn from_json(v: &Value) -> Result<Self, JsonError> {
        let items = v.as_array().ok_or_else(|| JsonError::wrong("array", v))?;
        items
            .iter()
            .enumerate()
            .map(|(i, x)| T::from_json(x).map_err(|e| JsonError::field(&i.to_string(), e)))
            .collect()
    }
}
