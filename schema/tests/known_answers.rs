//! Known-answer tests. Every expected byte string is derived by hand from the TL lines in
//! `schema/tl/secret_api.tl` / `api_subset.tl` (copies of ../shared/spec/secret_api.tl and
//! methods.md) and the TL encoding rules (core.telegram.org/mtproto/serialize): little-endian
//! ints, 1-byte length below 254 else 0xfe + 3-byte length, zero padding to 4, Vector id
//! 0x1cb5c415, flags word computed from the optional fields present.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use secretchat_schema::api::{enums as api_enums, functions as api_fn, types as api_types};
use secretchat_schema::e2e::{enums, types};
use secretchat_schema::{Deserialize, Serialize};

/// Joins hex pieces, ignoring spaces.
fn h(parts: &[&str]) -> Vec<u8> {
    hex::decode(parts.concat().replace(' ', "")).unwrap()
}

fn check<T: Serialize + Deserialize + PartialEq + std::fmt::Debug>(value: T, expected: Vec<u8>) {
    assert_eq!(
        hex::encode(value.to_bytes().unwrap()),
        hex::encode(&expected)
    );
    assert_eq!(T::from_bytes(&expected).unwrap(), value);
    let json = secretchat_schema::decode_json(&expected).unwrap();
    assert_eq!(
        secretchat_schema::encode_json(&json).unwrap(),
        expected,
        "{json}"
    );
}

fn notify_layer(layer: i32) -> enums::DecryptedMessageAction {
    enums::DecryptedMessageAction::NotifyLayer(types::DecryptedMessageActionNotifyLayer { layer })
}

#[test]
fn notify_layer_144() {
    // decryptedMessageActionNotifyLayer#f3048883 layer:int
    check(notify_layer(144), h(&["838804f3", "90000000"]));
}

#[test]
fn service_message_in_layer_envelope() {
    // decryptedMessageService#73164160 random_id:long action:DecryptedMessageAction (layer 23)
    let service = enums::DecryptedMessage::Service23(types::DecryptedMessageService23 {
        random_id: 1,
        action: notify_layer(73),
    });
    let service_bytes = h(&["60411673", "0100000000000000", "838804f3", "49000000"]);
    check(service.clone(), service_bytes.clone());
    // decryptedMessageLayer#1be31789 random_bytes:bytes layer:int in_seq_no:int out_seq_no:int message:DecryptedMessage
    let layer = types::DecryptedMessageLayer {
        random_bytes: vec![0xaa; 15],
        layer: 144,
        in_seq_no: 0,
        out_seq_no: 1,
        message: service,
    };
    let mut expected = h(&[
        "8917e31b",
        "0f",
        &"aa".repeat(15),
        "90000000",
        "00000000",
        "01000000",
    ]);
    expected.extend_from_slice(&service_bytes);
    check(layer, expected);
}

#[test]
fn decrypted_message_73_flags() {
    // decryptedMessage#91cc4674 flags:# no_webpage:flags.1?true silent:flags.5?true random_id:long
    // ttl:int message:string media:flags.9?.. entities:flags.7?.. via_bot_name:flags.11?string
    // reply_to_random_id:flags.3?long grouped_id:flags.17?long
    let m = types::DecryptedMessage73 {
        no_webpage: false,
        silent: true,
        random_id: 2,
        ttl: 0,
        message: "hi".into(),
        media: None,
        entities: None,
        via_bot_name: None,
        reply_to_random_id: Some(7),
        grouped_id: None,
    };
    // flags = bit 5 (silent) | bit 3 (reply_to_random_id) = 0x28
    check(
        m,
        h(&[
            "7446cc91",
            "28000000",
            "0200000000000000",
            "00000000",
            "02686900",
            "0700000000000000",
        ]),
    );
}

#[test]
fn document_attribute_audio_several_flags() {
    // documentAttributeAudio#9852f9c6 flags:# voice:flags.10?true duration:int title:flags.0?string
    // performer:flags.1?string waveform:flags.2?bytes; flags = bit 10 | bit 2 = 0x404
    let a = types::DocumentAttributeAudio46 {
        voice: true,
        duration: 3,
        title: None,
        performer: None,
        waveform: Some(vec![1, 2, 3]),
    };
    check(a, h(&["c6f95298", "04040000", "03000000", "03010203"]));
}

#[test]
fn read_messages_vector_of_long() {
    // decryptedMessageActionReadMessages#c4f40be random_ids:Vector<long>
    let a = types::DecryptedMessageActionReadMessages {
        random_ids: vec![1, -1],
    };
    check(
        a,
        h(&[
            "be404f0c",
            "15c4b51c",
            "02000000",
            "0100000000000000",
            "ffffffffffffffff",
        ]),
    );
}

#[test]
fn send_encrypted_service_long_bytes() {
    // messages.sendEncryptedService#32d439a4 peer:InputEncryptedChat random_id:long data:bytes
    // inputEncryptedChat#f141b5e1 chat_id:int access_hash:long; 300 data bytes: fe 2c0100, no pad
    let call = api_fn::messages::SendEncryptedService {
        peer: api_enums::InputEncryptedChat::InputEncryptedChat(api_types::InputEncryptedChat {
            chat_id: 5,
            access_hash: 6,
        }),
        random_id: 7,
        data: vec![0x11; 300],
    };
    check(
        call,
        h(&[
            "a439d432",
            "e1b541f1",
            "05000000",
            "0600000000000000",
            "0700000000000000",
            "fe2c0100",
            &"11".repeat(300),
        ]),
    );
}

#[test]
fn received_queue_returns_vector_of_long() {
    use secretchat_schema::RemoteCall;
    fn returns<C: RemoteCall<Return = Vec<i64>>>(_: &C) {}
    let call = api_fn::messages::ReceivedQueue { max_qts: 9 };
    returns(&call);
    check(call, h(&["66bba555", "09000000"]));
}

#[test]
fn layered_json_names() {
    let json = secretchat_schema::decode_json(&h(&[
        "60411673",
        "0100000000000000",
        "838804f3",
        "49000000",
    ]))
    .unwrap();
    assert_eq!(json["_"], "decryptedMessageService");
    assert_eq!(json["_layer"], 23);
    assert_eq!(json["random_id"], "1");
    assert_eq!(json["action"]["layer"], 73);
    assert!(json["action"].get("_layer").is_none());
}
