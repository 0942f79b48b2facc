//! Decodes arbitrary bytes as every boxed type of both schemas (via the by-id JSON dispatch, and
//! typed for the types the engine reads from the network). No panic; a value that decodes
//! re-encodes, and its re-encoding decodes to the same value (unknown flag bits are ignored on
//! decode, docs/tl.md, so the bytes themselves may differ only there).
#![no_main]

use libfuzzer_sys::fuzz_target;
use secretchat_schema::{Deserialize, Serialize, api, e2e};

fn typed<T: Deserialize + Serialize>(data: &[u8]) {
    if let Ok(v) = T::from_bytes(data) {
        let again = v.to_bytes().expect("decoded value must encode");
        let v2 = T::from_bytes(&again).expect("re-encoded bytes must decode");
        assert_eq!(v2.to_bytes().ok(), Some(again), "re-encoding is not a fixed point");
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(json) = secretchat_schema::decode_json(data) {
        let again = secretchat_schema::encode_json(&json).expect("decoded JSON must encode");
        let json2 = secretchat_schema::decode_json(&again).expect("re-encoded bytes must decode");
        assert_eq!(json, json2, "JSON round trip differs");
    }
    typed::<e2e::enums::DecryptedMessageLayer>(data);
    typed::<e2e::enums::DecryptedMessage>(data);
    typed::<e2e::enums::DecryptedMessageAction>(data);
    typed::<e2e::enums::DecryptedMessageMedia>(data);
    typed::<api::enums::Update>(data);
    typed::<api::enums::EncryptedChat>(data);
    typed::<api::enums::messages::DhConfig>(data);
    typed::<api::enums::updates::Difference>(data);
});
