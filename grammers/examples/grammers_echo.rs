//! Secret chats on a Telegram user account over grammers: log in with a phone number, accept
//! every secret chat, print its key image (compare it with the peer's screen), echo texts and
//! files back.
//!
//! ```sh
//! TG_ID=12345 TG_HASH=0123abcd cargo run -p secretchat-grammers --example grammers_echo -- ./echo-data
//! ```
//!
//! Bots cannot have secret chats: log in as a user. The example is built by CI but, with no
//! network there, has not been run against Telegram from this repository. `./echo-data` keeps
//! the engine's database and the login (the home DC and its auth key, mode 0600): keep it, or
//! every start is a new login (which Telegram rate-limits).

use std::io::{BufRead as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use grammers_client::{Client, SignInError};
use grammers_mtsender::SenderPool;
use grammers_session::storages::MemorySession;
use grammers_session::{Session as _, SessionData};
use secretchat::{AccountId, Engine, EngineConfig, InputFile, InputMessage, Update};
use secretchat_grammers::{GrammersApi, pump};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// The one account of this example.
const ACCOUNT: AccountId = AccountId(1);

fn prompt(message: &str) -> Result<String> {
    print!("{message}");
    std::io::stdout().flush()?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(line.trim().to_owned())
}

/// The saved login: the home DC (4 bytes, little endian) and its 256-byte auth key.
fn load_session(path: &Path) -> SessionData {
    let mut data = SessionData::default();
    if let Ok(bytes) = std::fs::read(path) {
        if let (Some(dc), Some(key)) = (bytes.get(..4), bytes.get(4..260)) {
            let dc = i32::from_le_bytes(dc.try_into().unwrap_or_default());
            if let (Some(option), Ok(key)) = (data.dc_options.get_mut(&dc), key.try_into()) {
                option.auth_key = Some(key);
                data.home_dc = dc;
            }
        }
    }
    data
}

fn save_session(path: &Path, session: &MemorySession) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let dc = session.home_dc_id()?;
    let Some(key) = session.dc_option(dc)?.and_then(|o| o.auth_key) else {
        return Ok(());
    };
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(&dc.to_le_bytes())?;
    f.write_all(&key)?;
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    let dir = PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| "echo-data".into()),
    );
    std::fs::create_dir_all(&dir)?;
    let api_id: i32 = std::env::var("TG_ID")?.parse()?;
    let api_hash = std::env::var("TG_HASH")?;
    let session_file = dir.join("session");

    // grammers: the connection and the login.
    let session = Arc::new(MemorySession::from(load_session(&session_file)));
    let SenderPool {
        runner,
        handle,
        updates,
    } = SenderPool::new(Arc::clone(&session), api_id);
    let client = Client::new(handle.clone());
    tokio::spawn(runner.run());
    if !client.is_authorized().await? {
        let phone = prompt("Phone number (international format): ")?;
        let token = client.request_login_code(&phone, &api_hash).await?;
        let code = prompt("The code you received: ")?;
        match client.sign_in(&token, &code).await {
            Ok(_) => {}
            Err(SignInError::PasswordRequired(password)) => {
                let pass = prompt("Two-step verification password: ")?;
                client.check_password(password, pass).await?;
            }
            Err(e) => return Err(e.into()),
        }
        save_session(&session_file, &session)?;
    }

    // The engine on that connection; grammers' update channel drained by the adapter.
    let config = secretchat_grammers::for_telegram(EngineConfig::builder()).build();
    let (engine, mut events) = Engine::open(dir.join("engine"), config)?;
    let api = GrammersApi::new(handle.thin.clone(), session.home_dc_id()?);
    let feed = engine.add_account(ACCOUNT, Arc::new(api)).await?;
    tokio::spawn(pump(updates, feed, None));

    while let Some(e) = events.next().await {
        match e.update {
            Update::ChatRequested { user_id, .. } => {
                println!("secret chat requested by user {user_id}: accepting");
                engine.accept_chat(e.account, e.chat).await?;
            }
            Update::ChatReady { key_hash } => {
                let hex: String = key_hash.iter().map(|b| format!("{b:02x}")).collect();
                println!("chat ready; compare with the peer's screen: {hex}");
            }
            Update::NewMessage(m) => match &m.file {
                Some(file) => {
                    let path = dir.join(format!("in-{}", m.random_id));
                    engine.download(e.account, e.chat, file, &path).await?;
                    let back = InputFile::document(&path, "application/octet-stream")
                        .caption(format!("echo: {}", m.text))
                        .reply_to(m.random_id);
                    engine.send_file(e.account, e.chat, back).await?;
                }
                None if !m.text.is_empty() => {
                    let echo =
                        InputMessage::text(format!("echo: {}", m.text)).reply_to(m.random_id);
                    engine.send_message(e.account, e.chat, echo).await?;
                }
                None => {}
            },
            _ => {}
        }
        // Acknowledged after handling: until then it comes again after a restart.
        if let Some(seq) = e.seq {
            engine.ack(seq).await?;
        }
    }
    Ok(())
}
