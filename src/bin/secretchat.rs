//! The `secretchat` command-line tool. See `secretchat --help`.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use secretchat::cli::{self, CliError};
use serde_json::Value;

#[derive(Parser)]
#[command(
    name = "secretchat",
    version,
    about = "Telegram Secret Chats engine: tools and benchmarks"
)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// TL bytes ⇄ JSON for the end-to-end schema and the server-API subset.
    #[command(subcommand)]
    Tl(TlCommand),
    /// End-to-end demonstration: DH key exchange, an MTProto 2.0 message each way, decoded.
    Demo,
}

#[derive(Subcommand)]
enum TlCommand {
    /// Prints the boxed object in HEX as JSON.
    Decode {
        /// The object's bytes, hex.
        hex: String,
    },
    /// Prints the bytes of the JSON object as lowercase hex.
    Encode {
        /// The object as JSON (as `decode` prints it).
        json: String,
    },
}

fn run(args: Args) -> Result<Value, CliError> {
    match args.command {
        Command::Tl(TlCommand::Decode { hex }) => cli::tl::decode(&hex),
        Command::Tl(TlCommand::Encode { json }) => cli::tl::encode(&json).map(Value::String),
        Command::Demo => cli::demo::run(&mut std::io::stdout()),
    }
}

fn main() -> ExitCode {
    let args = match Args::try_parse() {
        Ok(a) => a,
        Err(e) if !e.use_stderr() => {
            // --help, --version
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            let detail = e.render().to_string();
            println!("{}", CliError::new("usage", detail.trim()).to_json());
            return ExitCode::from(2);
        }
    };
    match run(args) {
        Ok(Value::String(s)) => {
            println!("{s}");
            ExitCode::SUCCESS
        }
        Ok(v) => {
            println!("{v}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            println!("{}", e.to_json());
            ExitCode::from(2)
        }
    }
}
