//! The `secretchat` command-line tool.
//!
//! Every command but `simulate` (a human summary, with `--json` for scripts) prints one JSON
//! object on stdout. A rejected input exits with status 2 and
//! prints `{"error": "<snake_case kind>", "detail": "..."}`; other tools script against these
//! names, so they are stable.

pub mod bench_host;
pub mod crash;
pub mod crypto;
pub mod demo;
pub mod host;
pub mod simulate;
pub mod tl;

use serde_json::{Value, json};

/// A command's failure: a stable kind and a human detail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CliError {
    /// snake_case kind, e.g. `unexpected_eof`.
    pub kind: &'static str,
    /// Human-readable detail.
    pub detail: String,
}

impl CliError {
    /// A new error.
    pub fn new(kind: &'static str, detail: impl ToString) -> Self {
        Self {
            kind,
            detail: detail.to_string(),
        }
    }

    /// The JSON line printed for it.
    pub fn to_json(&self) -> Value {
        json!({ "error": self.kind, "detail": self.detail })
    }
}

/// The runtime of the long-running commands (`crash-test`, `crash-engine`, `host`,
/// `sim-server`, `bench-host`): two workers, as the machines the project measures on.
fn runtime() -> Result<tokio::runtime::Runtime, CliError> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| CliError::new("runtime", e))
}

/// The engine's log on stderr, plain text, at `SECRETCHAT_LOG` (default `warn`): for the
/// processes whose stdout is a protocol (`crash-engine`, `host`, `sim-server`).
fn log_to_stderr() {
    let level = std::env::var("SECRETCHAT_LOG")
        .ok()
        .and_then(|l| l.parse::<tracing::Level>().ok())
        .unwrap_or(tracing::Level::WARN);
    let _ = tracing::subscriber::set_global_default(
        tracing_subscriber::fmt()
            .with_max_level(level)
            .with_ansi(false)
            .with_writer(std::io::stderr)
            .finish(),
    );
}

impl From<secretchat::tl::DecodeError> for CliError {
    fn from(e: secretchat::tl::DecodeError) -> Self {
        Self::new(e.kind(), e)
    }
}

impl From<secretchat::tl::JsonError> for CliError {
    fn from(e: secretchat::tl::JsonError) -> Self {
        Self::new(e.kind(), e)
    }
}

/// Writes `value` as pretty JSON to `path` (a report's `--json`); says why on stderr and
/// returns false when it cannot.
pub fn write_json(path: &std::path::Path, value: &Value) -> bool {
    let text = serde_json::to_string_pretty(value).unwrap_or_default();
    match std::fs::write(path, text + "\n") {
        Ok(()) => true,
        Err(e) => {
            eprintln!("could not write {}: {e}", path.display());
            false
        }
    }
}

/// Parses a hex argument (whitespace and a `0x` prefix allowed).
///
/// # Errors
/// `bad_hex` with the argument name.
pub fn parse_hex(what: &str, s: &str) -> Result<Vec<u8>, CliError> {
    let s: String = s.split_whitespace().collect();
    let s = s.strip_prefix("0x").unwrap_or(&s);
    hex::decode(s).map_err(|e| CliError::new("bad_hex", format!("{what}: {e}")))
}

/// The key in `--at-rest-key-file`, if given.
///
/// # Errors
/// `bad_option` for a file that cannot be read or is not a key.
pub fn at_rest_key(path: Option<&std::path::Path>) -> Result<Option<[u8; 32]>, CliError> {
    path.map(|p| secretchat::read_key_file(p).map_err(|e| CliError::new("bad_option", e)))
        .transpose()
}
