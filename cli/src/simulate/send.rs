//! Sending one workload message through the engine: shared by the simulator's senders and the
//! crash test's engine process.

use std::path::Path;

use secretchat::engine::protocol::chat::{Command, Outgoing};
use secretchat::engine::runtime::Engine;
use secretchat::engine::runtime::files::FileToSend;

use super::workload::{Item, Workload};

/// The command that sends message `idx` of stream (`pair`, `dir`), if it is a text (a file
/// needs its upload first: [`send_item`]).
pub fn text_command(work: &Workload, pair: usize, dir: usize, idx: u32) -> Option<Command> {
    match work.item(pair, dir, idx) {
        Item::Text(t) => Some(send_text(pair, dir, idx, t)),
        Item::File(_) => None,
    }
}

/// The command that sends text `t` as message `idx` of stream (`pair`, `dir`).
pub fn send_text(pair: usize, dir: usize, idx: u32, t: String) -> Command {
    Command::Send(Box::new(Outgoing::text(
        Workload::random_id(pair, dir, idx),
        t,
    )))
}

/// Sends message `idx` of stream (`pair`, `dir`) from chat `from` = (account, handle): a text,
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
    let (account, handle) = from;
    let random_id = Workload::random_id(pair, dir, idx);
    match work.item(pair, dir, idx) {
        Item::Text(t) => engine
            .command(account, handle, send_text(pair, dir, idx, t))
            .await
            .map(|()| false)
            .map_err(|e| e.to_string()),
        Item::File(caption) => {
            let path = files_dir.join(format!("out-{pair}-{dir}-{idx}"));
            std::fs::write(&path, work.file_bytes(pair, dir, idx)).map_err(|e| e.to_string())?;
            let mut f = FileToSend::document(&path, "application/octet-stream");
            f.caption = caption;
            f.random_id = random_id;
            let r = engine.send_file(account, handle, f).await;
            if !keep_file {
                let _ = std::fs::remove_file(&path);
            }
            r.map(|_| true).map_err(|e| e.to_string())
        }
    }
}
