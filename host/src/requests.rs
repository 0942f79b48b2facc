//! The host's requests to the engine, each answered on its own (with its `@extra`), so a
//! slow one (a file) never holds up the others.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;

use secretchat::{Error, InputFile, InputMessage};
use serde_json::{Value, json};

use crate::json::{self, long};
use crate::serve::{Host, Request};
use crate::transport::HostApi;
use crate::wire::{Fields, WireError};

/// The protocol's error for an engine error.
pub fn wire_error(e: &Error) -> WireError {
    let code = match e {
        Error::NoSuchChat(_) | Error::NoSuchAccount(_) => 404,
        Error::InvalidInput(_) | Error::Io(_) | Error::FileTooLarge(_) => 400,
        Error::Rpc(r) => r.code,
        Error::Stopped => 503,
        Error::Busy => 429,
        _ => 500,
    };
    WireError {
        code,
        message: e.to_string(),
    }
}

fn ok() -> Value {
    json!({"@type": "ok"})
}

/// Starts request `kind`. Bad input is answered at once; the rest runs on a task and is
/// answered when done. Sends are queued before this returns, so consecutive sends to a
/// chat keep their order.
pub(crate) fn handle(host: &Host, kind: &str, req: Request, extra: Option<Value>) {
    let started = start(host, kind, &req);
    let host = host.clone();
    tokio::spawn(async move {
        let result = match started {
            Ok(work) => work.await,
            Err(e) => Err(e),
        };
        host.answer(extra, result).await;
    });
}

type Work = std::pin::Pin<Box<dyn Future<Output = Result<Value, WireError>> + Send>>;

fn work(f: impl Future<Output = Result<Value, Error>> + Send + 'static) -> Work {
    Box::pin(async move { f.await.map_err(|e| wire_error(&e)) })
}

/// Validates the request and starts it (synchronously queueing what must keep its order).
fn start(host: &Host, kind: &str, req: &Request) -> Result<Work, WireError> {
    let f = Fields(req);
    let engine = host.engine.clone();
    Ok(match kind {
        "addAccount" => {
            let account = json::account(&f)?;
            let host = host.clone();
            work(async move {
                let api = HostApi {
                    account,
                    calls: host.calls.clone(),
                    out: host.out.clone(),
                    timeout: host.options.invoke_timeout,
                };
                let feed = host.engine.add_account(account, Arc::new(api)).await?;
                if let Ok(mut feeds) = host.feeds.lock() {
                    feeds.insert(account, feed);
                }
                // Uploads a crash interrupted finish in the background.
                let engine = host.engine.clone();
                tokio::spawn(async move { engine.resume_uploads(account).await });
                Ok(ok())
            })
        }
        "removeAccount" => {
            let account = json::account(&f)?;
            let feeds = host.feeds.clone();
            work(async move {
                let n = engine.remove_account(account).await?;
                if let Ok(mut feeds) = feeds.lock() {
                    feeds.remove(&account);
                }
                Ok(json!({"@type": "accountRemoved", "secret_chats": n}))
            })
        }
        "createSecretChat" => {
            let account = json::account(&f)?;
            let (user_id, access_hash) = (f.i64("user_id")?, f.i64("access_hash")?);
            work(async move {
                let chat = engine.request_chat(account, user_id, access_hash).await?;
                Ok(json::secret_chat(&engine.chat(account, chat).await?))
            })
        }
        "acceptSecretChat" | "declineSecretChat" | "closeSecretChat" | "rekey" => {
            let (account, chat) = (json::account(&f)?, json::chat(&f)?);
            let delete_history = f.flag("delete_history")?;
            let kind = kind.to_owned();
            work(async move {
                match kind.as_str() {
                    "acceptSecretChat" => engine.accept_chat(account, chat).await?,
                    "declineSecretChat" => engine.decline_chat(account, chat).await?,
                    "closeSecretChat" => engine.close_chat(account, chat, delete_history).await?,
                    _ => engine.rekey(account, chat).await?,
                }
                Ok(ok())
            })
        }
        "getSecretChat" => {
            let (account, chat) = (json::account(&f)?, json::chat(&f)?);
            work(async move { Ok(json::secret_chat(&engine.chat(account, chat).await?)) })
        }
        "getSecretChatByServerId" => {
            let account = json::account(&f)?;
            let server_id = f.i32("server_chat_id")?;
            Box::pin(async move {
                match engine.chat_by_server_id(account, server_id) {
                    Ok(Some(chat)) => engine
                        .chat(account, chat)
                        .await
                        .map(|c| json::secret_chat(&c))
                        .map_err(|e| wire_error(&e)),
                    Ok(None) => Err(WireError {
                        code: 404,
                        message: format!("no secret chat with server id {server_id}"),
                    }),
                    Err(e) => Err(wire_error(&e)),
                }
            })
        }
        "sendMessage" => {
            let (account, chat) = (json::account(&f)?, json::chat(&f)?);
            let m = input_message(&f)?;
            // Queued now: the next line's send comes after this one.
            let stored = engine.queue_message(account, chat, m);
            work(async move {
                let random_id = stored.await?;
                Ok(json!({"@type": "messageStored", "random_id": long(random_id)}))
            })
        }
        "sendFile" => {
            let (account, chat) = (json::account(&f)?, json::chat(&f)?);
            let file = input_file(&f)?;
            work(async move {
                let random_id = engine.send_file(account, chat, file).await?;
                Ok(json!({"@type": "messageStored", "random_id": long(random_id)}))
            })
        }
        "downloadFile" => {
            let account = json::account(&f)?;
            let (chat, file) = json::file_ref(&f.object("file")?)?;
            let path = PathBuf::from(f.str("path")?);
            work(async move {
                engine.download(account, chat, &file, &path).await?;
                Ok(json!({
                    "@type": "fileDownloaded",
                    "path": path.to_string_lossy(),
                    "size": long(file.size),
                }))
            })
        }
        "markRead" | "deleteMessages" => {
            let (account, chat) = (json::account(&f)?, json::chat(&f)?);
            let ids = f.i64s("random_ids")?;
            let read = kind == "markRead";
            work(async move {
                if read {
                    engine.mark_read(account, chat, ids).await?;
                } else {
                    engine.delete_messages(account, chat, ids).await?;
                }
                Ok(ok())
            })
        }
        "setTtl" => {
            let (account, chat) = (json::account(&f)?, json::chat(&f)?);
            let ttl = f.i32("ttl")?;
            work(async move {
                engine.set_ttl(account, chat, ttl).await?;
                Ok(ok())
            })
        }
        "ack" => {
            // Queued now; answered once stored.
            let stored = engine.ack_all(f.seqs()?);
            work(async move {
                stored.await?;
                Ok(ok())
            })
        }
        other => {
            return Err(WireError::bad(format!("unknown @type `{other}`")));
        }
    })
}

fn input_message(f: &Fields<'_>) -> Result<InputMessage, WireError> {
    let mut m = InputMessage::text(f.str("text")?)
        .silent(f.flag("silent")?)
        .no_webpage(f.flag("no_webpage")?);
    if let Some(v) = f.value("entities") {
        let items = v
            .as_array()
            .ok_or_else(|| WireError::bad("`entities` is not an array"))?;
        let entities = items
            .iter()
            .map(|e| {
                secretchat::tl::TlJson::from_json(e)
                    .map_err(|err| WireError::bad(format!("`entities`: {err}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        m = m.entities(entities);
    }
    if let Some(r) = f.opt_i64("reply_to_random_id")? {
        m = m.reply_to(r);
    }
    if let Some(t) = f.opt_i32("ttl")? {
        m = m.ttl(t);
    }
    if let Some(g) = f.opt_i64("grouped_id")? {
        m = m.grouped_id(g);
    }
    if let Some(id) = f.opt_i64("random_id")? {
        m = m.with_random_id(id);
    }
    Ok(m)
}

fn input_file(f: &Fields<'_>) -> Result<InputFile, WireError> {
    let path = PathBuf::from(f.str("path")?);
    let mut file = if f.has("photo") {
        let p = f.object("photo")?;
        InputFile::photo(path, p.i32("width")?, p.i32("height")?)
    } else {
        let mime = f
            .opt_str("mime_type")?
            .unwrap_or("application/octet-stream");
        InputFile::document(path, mime)
    };
    if let Some(c) = f.opt_str("caption")? {
        file = file.caption(c);
    }
    if let Some(r) = f.opt_i64("reply_to_random_id")? {
        file = file.reply_to(r);
    }
    if let Some(t) = f.opt_i32("ttl")? {
        file = file.ttl(t);
    }
    file = file.silent(f.flag("silent")?);
    if let Some(id) = f.opt_i64("random_id")? {
        file = file.with_random_id(id);
    }
    Ok(file)
}
