//! Bytes compatibility with grammers (the Rust MTProto client a bridge would carry the engine
//! over): every constructor and function of `tl/api_subset.tl`, serialized by this crate from
//! random values, decodes with `grammers-tl-types` 0.11 (API layer 230) and re-encodes to the
//! same bytes; and what grammers encodes decodes here to the same value. A layer bump on
//! either side that changes one of these definitions fails here.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;

use grammers_tl_types::{
    Deserializable as GDeserialize, Identifiable as GIdentifiable, Serializable as GSerialize,
};
use secretchat_schema::arbitrary::{Gen, TlArbitrary};
use secretchat_schema::{Deserialize, Identifiable, Serialize};

/// Random values tried per definition.
const TRIES: usize = 64;

/// grammers' `types::*` structs write themselves bare (their enums add the constructor id);
/// its functions write the id. `bare` says which form `G` writes.
fn check<O, G>(name: &str, bare: bool, g: &mut Gen) -> Result<(), String>
where
    O: TlArbitrary + Serialize + Deserialize + Identifiable + PartialEq + std::fmt::Debug,
    G: GDeserialize + GSerialize + GIdentifiable,
{
    if O::CONSTRUCTOR_ID != G::CONSTRUCTOR_ID {
        return Err(format!(
            "{name}: id {:#010x} here, {:#010x} in grammers",
            O::CONSTRUCTOR_ID,
            G::CONSTRUCTOR_ID
        ));
    }
    for _ in 0..TRIES {
        let ours = O::arbitrary(g);
        let bytes = ours.to_bytes().map_err(|e| format!("{name}: {e}"))?;
        // grammers reads both forms without their id (it picked the type already).
        if bytes.get(..4) != Some(&G::CONSTRUCTOR_ID.to_le_bytes()[..]) {
            return Err(format!(
                "{name}: no constructor id in {}",
                hex::encode(&bytes)
            ));
        }
        let body = &bytes[4..];
        let theirs = G::from_bytes(body).map_err(|e| {
            format!(
                "{name}: grammers cannot read {}: {e:?}",
                hex::encode(&bytes)
            )
        })?;
        let mut again = if bare {
            G::CONSTRUCTOR_ID.to_le_bytes().to_vec()
        } else {
            Vec::new()
        };
        again.extend(theirs.to_bytes());
        if again != bytes {
            return Err(format!(
                "{name}: grammers re-encodes {} as {}",
                hex::encode(&bytes),
                hex::encode(&again)
            ));
        }
        let back = O::from_bytes(&again).map_err(|e| format!("{name}: {e}"))?;
        if back != ours {
            return Err(format!("{name}: {ours:?} came back as {back:?}"));
        }
    }
    Ok(())
}

macro_rules! definitions {
    ($( ($name:literal, $kind:ident :: $($seg:ident)::+) ),* $(,)?) => {
        /// The definitions checked, by TL name.
        const NAMES: &[&str] = &[$($name),*];

        fn check_all(g: &mut Gen) -> Result<usize, String> {
            let mut n = 0;
            $(
                check::<
                    secretchat_schema::api::$kind::$($seg)::+,
                    grammers_tl_types::$kind::$($seg)::+,
                >($name, stringify!($kind) == "types", g)?;
                n += 1;
            )*
            Ok(n)
        }
    };
}

definitions![
    ("inputUserEmpty", types::InputUserEmpty),
    ("inputUserSelf", types::InputUserSelf),
    ("inputUser", types::InputUser),
    ("inputFile", types::InputFile),
    ("inputFileBig", types::InputFileBig),
    ("storage.fileUnknown", types::storage::FileUnknown),
    ("storage.filePartial", types::storage::FilePartial),
    ("storage.fileJpeg", types::storage::FileJpeg),
    ("storage.fileGif", types::storage::FileGif),
    ("storage.filePng", types::storage::FilePng),
    ("storage.filePdf", types::storage::FilePdf),
    ("storage.fileMp3", types::storage::FileMp3),
    ("storage.fileMov", types::storage::FileMov),
    ("storage.fileMp4", types::storage::FileMp4),
    ("storage.fileWebp", types::storage::FileWebp),
    ("peerUser", types::PeerUser),
    ("peerChat", types::PeerChat),
    ("peerChannel", types::PeerChannel),
    ("messageEmpty", types::MessageEmpty),
    ("chatEmpty", types::ChatEmpty),
    ("userEmpty", types::UserEmpty),
    (
        "inputEncryptedFileLocation",
        types::InputEncryptedFileLocation
    ),
    (
        "updateNewEncryptedMessage",
        types::UpdateNewEncryptedMessage
    ),
    (
        "updateEncryptedChatTyping",
        types::UpdateEncryptedChatTyping
    ),
    ("updateEncryption", types::UpdateEncryption),
    (
        "updateEncryptedMessagesRead",
        types::UpdateEncryptedMessagesRead
    ),
    ("updates.state", types::updates::State),
    ("updates.differenceEmpty", types::updates::DifferenceEmpty),
    ("updates.difference", types::updates::Difference),
    ("updates.differenceSlice", types::updates::DifferenceSlice),
    (
        "updates.differenceTooLong",
        types::updates::DifferenceTooLong
    ),
    ("upload.file", types::upload::File),
    ("encryptedChatEmpty", types::EncryptedChatEmpty),
    ("encryptedChatWaiting", types::EncryptedChatWaiting),
    ("encryptedChatRequested", types::EncryptedChatRequested),
    ("encryptedChat", types::EncryptedChat),
    ("encryptedChatDiscarded", types::EncryptedChatDiscarded),
    ("inputEncryptedChat", types::InputEncryptedChat),
    ("encryptedFileEmpty", types::EncryptedFileEmpty),
    ("encryptedFile", types::EncryptedFile),
    ("inputEncryptedFileEmpty", types::InputEncryptedFileEmpty),
    (
        "inputEncryptedFileUploaded",
        types::InputEncryptedFileUploaded
    ),
    ("inputEncryptedFile", types::InputEncryptedFile),
    (
        "inputEncryptedFileBigUploaded",
        types::InputEncryptedFileBigUploaded
    ),
    ("encryptedMessage", types::EncryptedMessage),
    ("encryptedMessageService", types::EncryptedMessageService),
    (
        "messages.dhConfigNotModified",
        types::messages::DhConfigNotModified
    ),
    ("messages.dhConfig", types::messages::DhConfig),
    (
        "messages.sentEncryptedMessage",
        types::messages::SentEncryptedMessage
    ),
    (
        "messages.sentEncryptedFile",
        types::messages::SentEncryptedFile
    ),
    ("messages.getDhConfig", functions::messages::GetDhConfig),
    (
        "messages.requestEncryption",
        functions::messages::RequestEncryption
    ),
    (
        "messages.acceptEncryption",
        functions::messages::AcceptEncryption
    ),
    (
        "messages.discardEncryption",
        functions::messages::DiscardEncryption
    ),
    (
        "messages.setEncryptedTyping",
        functions::messages::SetEncryptedTyping
    ),
    (
        "messages.readEncryptedHistory",
        functions::messages::ReadEncryptedHistory
    ),
    ("messages.sendEncrypted", functions::messages::SendEncrypted),
    (
        "messages.sendEncryptedFile",
        functions::messages::SendEncryptedFile
    ),
    (
        "messages.sendEncryptedService",
        functions::messages::SendEncryptedService
    ),
    ("messages.receivedQueue", functions::messages::ReceivedQueue),
    (
        "messages.reportEncryptedSpam",
        functions::messages::ReportEncryptedSpam
    ),
    ("updates.getState", functions::updates::GetState),
    ("updates.getDifference", functions::updates::GetDifference),
    ("upload.saveFilePart", functions::upload::SaveFilePart),
    ("upload.getFile", functions::upload::GetFile),
    ("upload.saveBigFilePart", functions::upload::SaveBigFilePart),
];

#[test]
fn every_definition_reads_and_writes_the_same_bytes_as_grammers() {
    for seed in 0..8 {
        let n = check_all(&mut Gen::new(seed)).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        assert_eq!(n, NAMES.len());
    }
}

/// The list above is the whole schema: a definition added to `tl/api_subset.tl` without a
/// line here fails (the built-ins `Bool`, `True` and the generic `invokeAfterMsgs` aside).
#[test]
fn the_check_covers_every_definition_of_the_subset() {
    // Embedded, not read at run time from the build's checkout: a test binary built in
    // another checkout of the same tree (sharing the target directory) is reused by cargo.
    let tl = include_str!("../tl/api_subset.tl");
    let in_schema: BTreeSet<&str> = tl
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("//") && !l.starts_with("---"))
        .filter_map(|l| l.split('#').next())
        .filter(|n| !["boolFalse", "boolTrue", "true", "invokeAfterMsgs"].contains(n))
        .collect();
    let checked: BTreeSet<&str> = NAMES.iter().copied().collect();
    assert_eq!(in_schema, checked);
}
