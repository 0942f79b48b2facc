//! The `secretchat` command-line tool. See `secretchat --help`.

#![forbid(unsafe_code)]

use std::process::ExitCode;

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};
use secretchat::crypto::Side;
use secretchat::crypto::ige::Direction;
use secretchat_cli::cli::{self, CliError};
use serde_json::Value;

/// mimalloc instead of the system allocator: the engine's threads hand memory to each other
/// (messages, futures), and glibc's malloc serialised those frees on its arena lock — half of
/// the chat threads' waits at 100,000 chats (docs/engine.md, "Allocator").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    /// Secret-message encryption and decryption (MTProto 2.0 or 1.0).
    #[command(subcommand)]
    Crypto(CryptoCommand),
    /// Diffie-Hellman checks, keys and key visualization.
    #[command(subcommand)]
    Dh(DhCommand),
    /// Encrypted-file streams and fingerprints.
    #[command(subcommand)]
    File(FileCommand),
    /// End-to-end demonstration: DH key exchange, an MTProto 2.0 message each way, decoded.
    Demo,
    /// The load benchmark with built-in verification: many accounts and chats on the
    /// simulated server with the real engine, RocksDB and crypto. Exits 1 if any message was
    /// lost, duplicated, misordered or corrupted, or any chat ended inconsistent.
    Simulate(Box<cli::simulate::SimulateArgs>),
    /// Kills the engine process with SIGKILL at random moments (inside re-keys, uploads and
    /// gap recovery), restarts it on the same data directory, and checks that nothing was
    /// lost, duplicated or misordered and that every chat still works. Exits 1 on a violation.
    CrashTest(Box<cli::crash::CrashArgs>),
    /// The engine for a host in any language: newline-delimited JSON on stdin/stdout (or a
    /// unix socket); the host carries the engine's server calls over its own MTProto client
    /// (docs/host.md).
    Host(Box<cli::host::HostArgs>),
    /// The simulated Telegram server behind JSON lines (`connect`, `invoke` in;
    /// `invokeResult`, `invokeError`, `pushUpdate` out): tests a host without Telegram.
    SimServer(Box<cli::host::SimServerArgs>),
    /// Messages/s through two `host` processes whose calls and updates this process relays to
    /// the simulated server, against the same workload in process (`simulate`), in one run.
    BenchHost(Box<cli::bench_host::BenchHostArgs>),
    /// The engine process of `crash-test` (internal; talks to its driver over stdin/stdout).
    #[command(hide = true)]
    CrashEngine(Box<cli::crash::EngineArgs>),
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

#[derive(Clone, Copy, ValueEnum)]
enum From {
    Originator,
    Participant,
}

impl From {
    fn side(self) -> Side {
        match self {
            From::Originator => Side::Originator,
            From::Participant => Side::Participant,
        }
    }
}

/// What both `crypto` commands take: the chat key, the sender, the MTProto version.
#[derive(clap::Args)]
struct MessageArgs {
    /// The 256-byte chat key, hex.
    #[arg(long)]
    key: String,
    /// Who sends (sent) the message.
    #[arg(long, value_enum)]
    from: From,
    /// MTProto version.
    #[arg(long, default_value_t = 2)]
    mtproto: u8,
}

#[derive(Subcommand)]
enum CryptoCommand {
    /// Encrypts a TL payload into a secret-chat message.
    Encrypt {
        #[command(flatten)]
        m: MessageArgs,
        /// The TL bytes (without the length prefix), hex.
        #[arg(long)]
        payload: String,
        /// Fixed padding bytes, hex (random when absent).
        #[arg(long)]
        padding: Option<String>,
    },
    /// Decrypts and checks a secret-chat message.
    Decrypt {
        #[command(flatten)]
        m: MessageArgs,
        /// The message as on the wire, hex.
        #[arg(long)]
        wire: String,
    },
}

#[derive(Subcommand)]
enum DhCommand {
    /// Checks (p, g), including the safe-prime test.
    Check {
        /// The prime, big-endian hex.
        #[arg(long)]
        p: String,
        /// The generator.
        #[arg(long)]
        g: i64,
    },
    /// Computes g^a and the shared key from the peer's public value.
    Key {
        /// The prime, big-endian hex.
        #[arg(long)]
        p: String,
        /// The generator.
        #[arg(long)]
        g: i64,
        /// Our secret exponent, big-endian hex (up to 256 bytes).
        #[arg(long)]
        a: String,
        /// The peer's g_b (or g_a), big-endian hex.
        #[arg(long)]
        peer: String,
    },
    /// Key visualization, as the official apps show it: prints `visualization_hex` (36 bytes),
    /// `pixels` (144 colour indices, row by row) and `hex_lines`.
    Visualize {
        /// The initial key, hex.
        #[arg(long)]
        key: String,
        /// The key in use at the layer-46 upgrade, hex (default: the initial key, as for every
        /// chat created at layer 46 or later).
        #[arg(long = "layer46-key")]
        layer46_key: Option<String>,
        /// Also write the image as SVG to this file.
        #[arg(long)]
        svg: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum FileCommand {
    /// Encrypts a file (zero-pads the last part to 16 bytes).
    Encrypt(FileArgs),
    /// Decrypts a file.
    Decrypt(FileArgs),
    /// The 32-bit fingerprint of a file key and IV.
    Fingerprint {
        /// 32-byte key, hex.
        #[arg(long)]
        key: String,
        /// 32-byte IV, hex.
        #[arg(long)]
        iv: String,
    },
}

#[derive(clap::Args)]
struct FileArgs {
    /// 32-byte key, hex.
    #[arg(long)]
    key: String,
    /// 32-byte IV, hex.
    #[arg(long)]
    iv: String,
    /// Input path.
    #[arg(long)]
    input: PathBuf,
    /// Output path.
    #[arg(long)]
    output: PathBuf,
    /// Decrypt only: the original size, to drop the padding.
    #[arg(long)]
    size: Option<u64>,
}

fn file(dir: Direction, a: FileArgs) -> Result<Value, CliError> {
    cli::crypto::file_crypt(dir, &a.key, &a.iv, &a.input, &a.output, a.size)
}

fn run(args: Args) -> Result<Value, CliError> {
    match args.command {
        Command::Tl(TlCommand::Decode { hex }) => cli::tl::decode(&hex),
        Command::Tl(TlCommand::Encode { json }) => cli::tl::encode(&json).map(Value::String),
        Command::Crypto(CryptoCommand::Encrypt {
            m,
            payload,
            padding,
        }) => cli::crypto::encrypt(
            &m.key,
            m.from.side(),
            cli::crypto::version(m.mtproto)?,
            &payload,
            padding.as_deref(),
        ),
        Command::Crypto(CryptoCommand::Decrypt { m, wire }) => cli::crypto::decrypt(
            &m.key,
            m.from.side(),
            cli::crypto::version(m.mtproto)?,
            &wire,
        ),
        Command::Dh(DhCommand::Check { p, g }) => cli::crypto::dh_check(&p, g),
        Command::Dh(DhCommand::Key { p, g, a, peer }) => cli::crypto::dh_key(&p, g, &a, &peer),
        Command::Dh(DhCommand::Visualize {
            key,
            layer46_key,
            svg,
        }) => cli::crypto::dh_visualize(&key, layer46_key.as_deref(), svg.as_deref()),
        Command::File(FileCommand::Encrypt(a)) => file(Direction::Encrypt, a),
        Command::File(FileCommand::Decrypt(a)) => file(Direction::Decrypt, a),
        Command::File(FileCommand::Fingerprint { key, iv }) => {
            cli::crypto::file_fingerprint(&key, &iv)
        }
        Command::Demo => cli::demo::run(&mut std::io::stdout()),
        Command::Simulate(_)
        | Command::CrashTest(_)
        | Command::CrashEngine(_)
        | Command::Host(_)
        | Command::SimServer(_)
        | Command::BenchHost(_) => Err(CliError::new("usage", "run by main")),
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
    match &args.command {
        Command::Simulate(a) => return ExitCode::from(cli::simulate::run(a)),
        Command::CrashTest(a) => return ExitCode::from(cli::crash::run(a)),
        Command::CrashEngine(a) => return ExitCode::from(cli::crash::engine(a)),
        Command::Host(a) => return ExitCode::from(cli::host::host(a)),
        Command::SimServer(a) => return ExitCode::from(cli::host::sim_server(a)),
        Command::BenchHost(a) => return ExitCode::from(cli::bench_host::run(a)),
        _ => {}
    }
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
