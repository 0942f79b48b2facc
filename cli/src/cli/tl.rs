//! `secretchat tl decode|encode`: TL bytes ⇄ JSON.

use serde_json::Value;

use super::{CliError, parse_hex};

/// `tl decode HEX`: the boxed object as JSON.
///
/// # Errors
/// `bad_hex`, or the decoder's kind (`unexpected_eof`, `unknown_constructor`, ...).
pub fn decode(hex_arg: &str) -> Result<Value, CliError> {
    let bytes = parse_hex("HEX", hex_arg)?;
    Ok(secretchat::tl::decode_json(&bytes)?)
}

/// `tl encode JSON`: the object's bytes as lowercase hex.
///
/// # Errors
/// `invalid_json`, or the converter's kind (`unknown_constructor`, `missing_field`, ...).
pub fn encode(json_arg: &str) -> Result<String, CliError> {
    let v: Value = serde_json::from_str(json_arg).map_err(|e| CliError::new("invalid_json", e))?;
    Ok(hex::encode(secretchat::tl::encode_json(&v)?))
}
