//! Sending one workload message through the engine: shared by the simulator's senders and the
//! crash test's engine process.

use std::path::Path;

use secretchat::{AccountId, ChatId, Engine, InputFile, InputMessage};

use super::workload::{Item, Workload};

/// The message `idx` of stream (`pair`, `dir`), if it is a text (a file needs its upload
/// first: [`send_item`]).
pub fn text_message(work: &Workload, pair: usize, dir: usize, idx: u32) -> Option<InputMessage> {
    match work.item(pair, dir, idx) {
        Item::Text(t) => {
            Some(InputMessage::text(t).with_random_id(Workload::random_id(pair, dir, idx)))
        }
        Item::File(_) => None,
    }
}

/// Sends message `idx` of stream (`pair`, `dir`) from chat `from` = (account, chat): a text,
/// or a file written to `files_dir` first. The file is removed after the send unless
/// `keep_file` (a crash-interrupted upload resumes from it). Returns whether it was a file.
///
/// # Errors
/// The engine's or the file system's error, as text.
#[allow(clippy::too_many_arguments)]
pub async fn send_item(
    engine: &Engine,
    from: (u64, u64),
    work: &Workload,
    pair: usize,
    dir: usize,
    idx: u32,
    files_dir: &Path,
    keep_file: bool,
) -> Result<bool, String> {
    let (account, chat) = (AccountId(from.0), ChatId(from.1));
    let random_id = Workload::random_id(pair, dir, idx);
    match work.item(pair, dir, idx) {
        Item::Text(t) => engine
            .send_message(
                account,
                chat,
                InputMessage::text(t).with_random_id(random_id),
            )
            .await
            .map(|_| false)
            .map_err(|e| e.to_string()),
        Item::File(caption) => {
            let path = files_dir.join(format!("out-{pair}-{dir}-{idx}"));
            std::fs::write(&path, work.file_bytes(pair, dir, idx)).map_err(|e| e.to_string())?;
            let f = InputFile::document(&path, "application/octet-stream")
                .caption(caption)
                .with_random_id(random_id);
            let r = engine.send_file(account, chat, f).await;
            if !keep_file {
                let _ = std::fs::remove_file(&path);
            }
            r.map(|_| true).map_err(|e| e.to_string())
        }
    }
}
