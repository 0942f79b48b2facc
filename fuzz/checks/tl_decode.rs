//! TL decoding of every boxed type of both schemas, from hostile bytes.
//!
//! The first byte picks the schema and the boxed type; the rest is decoded with that type's
//! typed `Deserialize` (what the engine uses). The whole input also goes through the by-id JSON
//! dispatch (every constructor); whatever decodes must encode again and decode to the same value.
//! Invariants: no panic, no unbounded allocation (libFuzzer's -rss_limit_mb), and decode ∘
//! encode ∘ decode = decode.

use secretchat_schema::{api, decode_json, e2e, encode_json};

/// Runs one input; panics on a broken invariant.
pub fn check(data: &[u8]) {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let n = usize::from(pick >> 1);
    let _ = if pick & 1 == 0 {
        e2e::decode_boxed(n, rest)
    } else {
        api::decode_boxed(n, rest)
    };
    if let Ok(value) = decode_json(rest) {
        let bytes = encode_json(&value).expect("a decoded value encodes");
        let again = decode_json(&bytes).expect("what we encoded decodes");
        assert_eq!(again, value, "decode/encode/decode changed the value");
    }
}
