//! Property tests: every generated type (all constructors, functions and boxed types of both
//! schemas) survives bytes → value → bytes and JSON → value → bytes, and no strict prefix of its
//! encoding decodes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use proptest::prelude::*;
use secretchat_schema::arbitrary::Gen;
use secretchat_schema::{api, e2e};

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn every_e2e_type_round_trips(seed in any::<u64>()) {
        let n = e2e::check_roundtrips(&mut Gen::new(seed)).map_err(TestCaseError::fail)?;
        prop_assert!(n > 80, "only {n} types checked");
    }

    #[test]
    fn every_api_type_round_trips(seed in any::<u64>()) {
        let n = api::check_roundtrips(&mut Gen::new(seed)).map_err(TestCaseError::fail)?;
        prop_assert!(n > 50, "only {n} types checked");
    }

    /// Arbitrary bytes never panic the decoder, whatever id they start with.
    #[test]
    fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = secretchat_schema::decode_json(&bytes);
    }

    /// A valid constructor id followed by garbage: an error or a value, never a panic; a value
    /// re-encodes, and the re-encoding is a fixed point (unknown flag bits are dropped).
    #[test]
    fn known_id_then_garbage(pick in any::<usize>(), tail in proptest::collection::vec(any::<u8>(), 0..256)) {
        let ids = [0x1be31789u32, 0x91cc4674, 0x6abd9782, 0x36b091de, 0x9852f9c6, 0xf49ca0, 0x12bcbd9a, 0x61f0d4c7];
        let mut bytes = ids[pick % ids.len()].to_le_bytes().to_vec();
        bytes.extend_from_slice(&tail);
        if let Ok(json) = secretchat_schema::decode_json(&bytes) {
            let again = secretchat_schema::encode_json(&json).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(secretchat_schema::decode_json(&again).ok(), Some(json));
        }
    }
}
