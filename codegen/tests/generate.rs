//! Generator tests: assertions on generated snippets, and the build-failing checks.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use secretchat_codegen::{CodegenError, generate};

#[test]
fn wrong_constructor_id_is_rejected() {
    // The right id is 0xf3048883.
    let err = generate(
        "decryptedMessageActionNotifyLayer#f3048884 layer:int = DecryptedMessageAction;",
        "crate::t",
        None,
    )
    .unwrap_err();
    match err {
        CodegenError::IdMismatch {
            declared, computed, ..
        } => {
            assert_eq!(declared, 0xf3048884);
            assert_eq!(computed, 0xf3048883);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn flags_true_flags_and_several_flag_words() {
    let tl = "peerUser#59511722 user_id:long = Peer;\n\
              x flags:# a:flags.0?true b:flags.1?Peer flags2:# c:flags2.3?string d:int = X;";
    let rust = generate(tl, "crate::t", None).unwrap();
    assert!(
        rust.contains("#[tl(flags_before = \"flags\", true_flag = \"flags.0\")]\n    pub a: bool,"),
        "{rust}"
    );
    assert!(rust.contains("#[tl(flag = \"flags.1\")]\n    pub b: Option<crate::t::enums::Peer>,"));
    assert!(rust.contains(
        "#[tl(flags_before = \"flags2\", flag = \"flags2.3\")]\n    pub c: Option<String>,"
    ));
    assert!(rust.contains("pub d: i32,"));
}

#[test]
fn primitive_and_vector_types() {
    let tl = "p a:int b:long c:double d:string e:bytes f:int128 g:int256 h:Bool i:Vector<long> j:vector<int> = P;";
    let rust = generate(tl, "crate::t", None).unwrap();
    for field in [
        "pub a: i32,",
        "pub b: i64,",
        "pub c: f64,",
        "pub d: String,",
        "pub e: Vec<u8>,",
        "pub f: [u8; 16],",
        "pub g: [u8; 32],",
        "pub h: bool,",
        "pub i: Vec<i64>,",
        "pub j: ::secretchat_schema::RawVec<i32>,",
    ] {
        assert!(rust.contains(field), "{field} missing in\n{rust}");
    }
}

#[test]
fn generic_function_returns_its_query_type() {
    let tl =
        "---functions---\ninvokeAfterMsgs#3dc4b4f0 {X:Type} msg_ids:Vector<long> query:!X = X;";
    let rust = generate(tl, "crate::t", None).unwrap();
    assert!(rust.contains("pub struct InvokeAfterMsgs<X> {"), "{rust}");
    assert!(rust.contains("pub query: X,"));
    assert!(rust.contains("impl<X: ::secretchat_schema::RemoteCall> ::secretchat_schema::RemoteCall for InvokeAfterMsgs<X> {\n    type Return = X::Return;"));
}

#[test]
fn layered_constructors_are_named_by_layer() {
    let tl = "decryptedMessageMediaEmpty#89f5c4a = DecryptedMessageMedia;\n\
              decryptedMessage8 random_id:long random_bytes:bytes message:string media:DecryptedMessageMedia = DecryptedMessage;\n\
              // layer 23\n\
              decryptedMessage23 random_id:long ttl:int message:string media:DecryptedMessageMedia = DecryptedMessage;\n\
              // layer 73\n\
              decryptedMessage flags:# silent:flags.5?true random_id:long ttl:int message:string media:flags.9?DecryptedMessageMedia entities:flags.7?Vector<DecryptedMessageMedia> via_bot_name:flags.11?string reply_to_random_id:flags.3?long grouped_id:flags.17?long = DecryptedMessage;";
    let rust = generate(tl, "crate::t", Some(8)).unwrap();
    for (name, layer) in [
        ("DecryptedMessage8", 8),
        ("DecryptedMessage23", 23),
        ("DecryptedMessage73", 73),
    ] {
        assert!(rust.contains(&format!("pub struct {name} {{")), "{name}");
        assert!(
            rust.contains(&format!("name = \"decryptedMessage\", layer = {layer})]")),
            "{layer}"
        );
    }
    // Not layered: only one version.
    assert!(rust.contains("#[tl(id = 0x089f5c4a, name = \"decryptedMessageMediaEmpty\")]"));
}

#[test]
fn output_is_deterministic_and_sorted() {
    let tl = "b#1 = T;\na#2 = T;";
    // Ids here are wrong on purpose: check that ordering is by name, after fixing ids.
    let fixed = "zeta = T;\nalpha = T;";
    assert!(generate(tl, "crate::t", None).is_err());
    let one = generate(fixed, "crate::t", None).unwrap();
    assert_eq!(one, generate(fixed, "crate::t", None).unwrap());
    assert!(one.find("pub struct Alpha").unwrap() < one.find("pub struct Zeta").unwrap());
}

#[test]
fn unknown_type_reference_fails() {
    let err = generate("x a:Nope = X;", "crate::t", None).unwrap_err();
    assert!(matches!(err, CodegenError::Unsupported { .. }), "{err:?}");
}

#[test]
fn builtins_are_skipped() {
    let tl = "int ? = Int;\nvector {t:Type} # [ t ] = Vector t;\nboolFalse = Bool;\ntrue#3fedd339 = True;\nx a:Bool = X;";
    let rust = generate(tl, "crate::t", None).unwrap();
    assert!(!rust.contains("pub struct BoolFalse"));
    assert!(rust.contains("pub a: bool,"));
}
