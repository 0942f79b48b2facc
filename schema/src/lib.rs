//! Telegram secret-chat TL types, generated at build time from `schema/tl/*.tl`.
//!
//! - [`e2e`]: the end-to-end schema (`secret_api.tl`, layers 8–144): what travels encrypted
//!   between the two clients. Constructors that exist at several layers carry the layer in their
//!   Rust name (`DecryptedMessage8`, `DecryptedMessage23`, `DecryptedMessage46`,
//!   `DecryptedMessage73`).
//! - [`api`]: the subset of the server API a secret-chat client calls (`api_subset.tl`).
//!
//! Each schema module has `types` (one struct per constructor), `enums` (one enum per boxed
//! type), `functions` (one struct per method, with [`RemoteCall::Return`]), and a by-id /
//! by-name dispatch used for JSON (`decode_json`, `encode_json`).
//!
//! ```
//! use secretchat_schema::{Deserialize, Serialize, e2e::{enums, types}};
//! let action = enums::DecryptedMessageAction::NotifyLayer(types::DecryptedMessageActionNotifyLayer { layer: 144 });
//! let bytes = action.to_bytes().unwrap();
//! assert_eq!(bytes, [0x83, 0x88, 0x04, 0xf3, 144, 0, 0, 0]);
//! assert_eq!(enums::DecryptedMessageAction::from_bytes(&bytes).unwrap(), action);
//! ```

#![forbid(unsafe_code)]

extern crate self as secretchat_schema;

pub mod arbitrary;
mod deserialize;
mod error;
pub mod json;
mod serialize;
mod wrappers;

pub use deserialize::{BareDeserialize, Deserialize, MAX_DEPTH, Reader, read_bytes};
pub use error::{DecodeError, EncodeError, JsonError};
pub use json::TlJson;
pub use secretchat_macros::{Identifiable, TlArbitrary, TlDeserialize, TlJson, TlSerialize};
pub use serialize::{
    BOOL_FALSE_ID, BOOL_TRUE_ID, BareSerialize, MAX_BYTES_LEN, Serialize, VECTOR_ID, VectorItem,
    write_bytes,
};
pub use wrappers::{Bare, RawVec};

/// A TL constructor or function: its id, TL name and (for layered constructors) layer.
pub trait Identifiable {
    /// The 32-bit constructor id (CRC32 of the normalized TL line, checked at build time).
    const CONSTRUCTOR_ID: u32;
    /// The TL name without TDLib's layer suffix, with namespace (`messages.sendEncrypted`).
    const TL_NAME: &'static str;
    /// The layer, for constructors that exist at several end-to-end layers.
    const LAYER: Option<u32>;
}

/// A server method: the request is `Self`, the answer is [`RemoteCall::Return`].
pub trait RemoteCall: Serialize {
    /// The type the server answers with.
    type Return: Deserialize;
}

/// The end-to-end schema (secret_api.tl, layers 8–144).
#[allow(missing_docs, clippy::all)]
pub mod e2e {
    include!(concat!(env!("OUT_DIR"), "/e2e.rs"));
}

/// The server-API subset a secret-chat client uses.
#[allow(missing_docs, clippy::all)]
pub mod api {
    include!(concat!(env!("OUT_DIR"), "/api.rs"));
}

/// Decodes any boxed object of either schema (end-to-end first) into its JSON form.
///
/// # Errors
/// [`DecodeError::UnknownConstructor`] for an id neither schema knows, a decoding error, or
/// [`DecodeError::TrailingBytes`].
pub fn decode_json(bytes: &[u8]) -> Result<json::Value, DecodeError> {
    let mut r = Reader::new(bytes);
    let id = r.read_u32()?;
    let v = match e2e::decode_json(id, &mut r).or_else(|| api::decode_json(id, &mut r)) {
        Some(v) => v?,
        None => return Err(DecodeError::UnknownConstructor { id }),
    };
    r.finish()?;
    Ok(v)
}

/// Encodes the JSON form of any object of either schema.
///
/// # Errors
/// [`JsonError`] when the JSON does not name a known constructor or does not fit it;
/// [`JsonError::Encode`] when a value cannot be written.
pub fn encode_json(value: &json::Value) -> Result<Vec<u8>, JsonError> {
    e2e::encode_json(value)
        .or_else(|| api::encode_json(value))
        .unwrap_or_else(|| {
            let name = value
                .get("_")
                .and_then(json::Value::as_str)
                .unwrap_or_default();
            Err(JsonError::UnknownConstructor {
                name: name.to_owned(),
            })
        })
}
