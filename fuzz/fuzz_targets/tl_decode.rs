//! Decodes arbitrary bytes as every boxed type of both schemas (via the by-id JSON dispatch, and
//! typed for the types the engine reads from the network). A value that decodes must re-encode
//! to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use secretchat_schema::{Deserialize, Serialize, api, e2e};

fn typed<T: Deserialize + Serialize>(data: &[u8]) {
    if let Ok(v) = T::from_bytes(data) {
        assert_eq!(v.to_bytes().ok().as_deref(), Some(data), "typed re-encode differs");
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(json) = secretchat_schema::decode_json(data) {
        let again = secretchat_schema::encode_json(&json).expect("decoded JSON must encode");
        assert_eq!(again, data, "JSON round trip differs");
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
