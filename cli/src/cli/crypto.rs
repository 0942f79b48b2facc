//! `secretchat crypto|dh|file`: the crypto primitives from the command line, for inspection and
//! cross-implementation tests. Output is one JSON object; `long` values are decimal strings and
//! bytes lowercase hex.

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::Path;

use rand::RngCore;
use secretchat::crypto::dh::{DhError, DhParams};
use secretchat::crypto::file::{FileKey, PART_SIZE};
use secretchat::crypto::ige::Direction;
use secretchat::crypto::message::{self, Version};
use secretchat::crypto::{AuthKey, CryptoError, Side, prime, visualize};
use serde_json::{Value, json};

use super::{CliError, parse_hex};

impl From<CryptoError> for CliError {
    fn from(e: CryptoError) -> Self {
        Self::new(e.kind(), e)
    }
}

impl From<DhError> for CliError {
    fn from(e: DhError) -> Self {
        Self::new(e.kind(), e)
    }
}

fn key(hex_arg: &str) -> Result<AuthKey, CliError> {
    Ok(AuthKey::from_slice(&parse_hex("--key", hex_arg)?)?)
}

fn fixed<const N: usize>(what: &str, hex_arg: &str) -> Result<[u8; N], CliError> {
    let v = parse_hex(what, hex_arg)?;
    v.as_slice().try_into().map_err(|_| {
        CliError::new(
            "bad_key_length",
            format!("{what} must be {N} bytes, got {}", v.len()),
        )
    })
}

/// `--mtproto 2|1`.
///
/// # Errors
/// `usage` for another version.
pub fn version(v: u8) -> Result<Version, CliError> {
    match v {
        2 => Ok(Version::V2),
        1 => Ok(Version::V1),
        other => Err(CliError::new(
            "usage",
            format!("--mtproto must be 1 or 2, got {other}"),
        )),
    }
}

/// `crypto encrypt`.
///
/// # Errors
/// `bad_hex`, `bad_key_length`, `invalid_padding`, `unaligned_payload`, `payload_too_large`.
pub fn encrypt(
    key_hex: &str,
    from: Side,
    v: Version,
    payload_hex: &str,
    padding_hex: Option<&str>,
) -> Result<Value, CliError> {
    let k = key(key_hex)?;
    let payload = parse_hex("--payload", payload_hex)?;
    let padding = match padding_hex {
        Some(p) => parse_hex("--padding", p)?,
        None => message::random_padding(payload.len(), v, &mut rand::thread_rng()),
    };
    let wire = match v {
        Version::V2 => message::encrypt_v2(&k, from, &payload, &padding)?,
        Version::V1 => message::encrypt_v1(&k, &payload, &padding)?,
    };
    Ok(json!({
        "wire_hex": hex::encode(&wire),
        "msg_key_hex": hex::encode(&wire[8..24]),
        "key_fingerprint": k.fingerprint().to_string(),
    }))
}

/// `crypto decrypt`.
///
/// # Errors
/// `bad_hex`, `bad_key_length` and every decryption check's kind (`msg_key_mismatch`, ...).
pub fn decrypt(key_hex: &str, from: Side, v: Version, wire_hex: &str) -> Result<Value, CliError> {
    let k = key(key_hex)?;
    let wire = parse_hex("--wire", wire_hex)?;
    let d = match v {
        Version::V2 => message::decrypt_v2(&k, from, &wire)?,
        Version::V1 => message::decrypt_v1(&k, &wire)?,
    };
    let mut out = json!({
        "payload_hex": hex::encode(&d.payload),
        "padding_len": d.padding_len,
        "msg_key_hex": hex::encode(d.msg_key),
        "key_fingerprint": k.fingerprint().to_string(),
        "mtproto": if d.version == Version::V2 { 2 } else { 1 },
    });
    if let (Ok(decoded), Some(obj)) = (secretchat::tl::decode_json(&d.payload), out.as_object_mut())
    {
        obj.insert("decoded".into(), decoded);
    }
    Ok(out)
}

fn params(p_hex: &str, g: i64) -> Result<DhParams, CliError> {
    let p = parse_hex("--p", p_hex)?;
    let params = DhParams::new(&p, g)?;
    if p != prime::TELEGRAM_DH_PRIME && !prime::is_safe_prime(&p, rand::thread_rng().next_u64()) {
        return Err(DhError::NotSafePrime.into());
    }
    Ok(params)
}

/// `dh check`.
///
/// # Errors
/// The DH check's kind (`prime_size`, `generator_residue`, `not_safe_prime`, ...).
pub fn dh_check(p_hex: &str, g: i64) -> Result<Value, CliError> {
    params(p_hex, g).map(|_| json!({ "valid": true }))
}

/// `dh key`.
///
/// # Errors
/// The DH check's kind, `public_range`, `bad_hex`.
pub fn dh_key(p_hex: &str, g: i64, a_hex: &str, peer_hex: &str) -> Result<Value, CliError> {
    let params = params(p_hex, g)?;
    let a_raw = parse_hex("--a", a_hex)?;
    if a_raw.len() > 256 {
        return Err(CliError::new(
            "bad_key_length",
            "--a must be at most 256 bytes",
        ));
    }
    let mut a = zeroize::Zeroizing::new([0u8; 256]);
    a[256 - a_raw.len()..].copy_from_slice(&a_raw);
    let peer = parse_hex("--peer", peer_hex)?;
    let k = params.shared_key(&peer, &a)?;
    Ok(json!({
        "g_a_hex": hex::encode(params.public(&a)),
        "key_hex": hex::encode(k.bytes()),
        "key_fingerprint": k.fingerprint().to_string(),
    }))
}

/// `dh visualize`: the 36 bytes, the image's cells and the hex lines (see
/// [`visualize`]); with `svg`, the image written there too. Without `layer46_hex` the
/// layer-46 key is the initial key.
///
/// # Errors
/// `bad_hex`, `bad_key_length`, `io`.
pub fn dh_visualize(
    key_hex: &str,
    layer46_hex: Option<&str>,
    svg: Option<&Path>,
) -> Result<Value, CliError> {
    let initial = key(key_hex)?;
    let l46 = layer46_hex.map(key).transpose()?;
    let v = visualize::visualization(&initial, Some(l46.as_ref().unwrap_or(&initial)));
    if let Some(path) = svg {
        std::fs::write(path, visualize::svg(&v, 10)).map_err(io_err)?;
    }
    Ok(json!({
        "visualization_hex": hex::encode(&v),
        "pixels": visualize::pixels(&v),
        "hex_lines": visualize::hex_lines(&v),
    }))
}

fn file_key(key_hex: &str, iv_hex: &str) -> Result<FileKey, CliError> {
    let mut r = [0u8; 64];
    r[..32].copy_from_slice(&fixed::<32>("--key", key_hex)?);
    r[32..].copy_from_slice(&fixed::<32>("--iv", iv_hex)?);
    Ok(FileKey::from_random(&r))
}

/// `file fingerprint`.
///
/// # Errors
/// `bad_hex`, `bad_key_length`.
pub fn file_fingerprint(key_hex: &str, iv_hex: &str) -> Result<Value, CliError> {
    Ok(json!({ "fingerprint": file_key(key_hex, iv_hex)?.fingerprint() }))
}

fn io_err(e: std::io::Error) -> CliError {
    CliError::new("io", e)
}

/// `file encrypt|decrypt`: streams `input` to `output` in 512 KiB parts through one IGE chain
/// (memory stays at one part). Encryption zero-pads the last part to 16 bytes; decryption
/// requires a multiple of 16 and, with `size`, truncates the padding.
///
/// On any error after the output was created, the partial output is removed.
///
/// # Errors
/// `io`, `bad_hex`, `bad_key_length`, `unaligned_length`.
pub fn file_crypt(
    dir: Direction,
    key_hex: &str,
    iv_hex: &str,
    input: &Path,
    output: &Path,
    size: Option<u64>,
) -> Result<Value, CliError> {
    let fk = file_key(key_hex, iv_hex)?;
    let result = stream_file(dir, &fk, input, output, size);
    if result.is_err() && output.exists() {
        let _ = std::fs::remove_file(output);
    }
    result
}

fn stream_file(
    dir: Direction,
    fk: &FileKey,
    input: &Path,
    output: &Path,
    size: Option<u64>,
) -> Result<Value, CliError> {
    let mut stream = fk.stream(dir);
    let mut inp = File::open(input).map_err(io_err)?;
    let mut out = BufWriter::new(File::create(output).map_err(io_err)?);
    let mut buf = vec![0u8; PART_SIZE];
    let (mut read_total, mut written) = (0u64, 0u64);
    loop {
        let mut n = 0;
        while n < PART_SIZE {
            let got = inp.read(&mut buf[n..]).map_err(io_err)?;
            if got == 0 {
                break;
            }
            n += got;
        }
        read_total += n as u64;
        let last = n < PART_SIZE;
        let mut part = buf[..n].to_vec();
        match (dir, last) {
            (Direction::Encrypt, true) => stream.last_part(&mut part)?,
            _ => stream.part(&mut part)?,
        }
        let keep = match (dir, size) {
            (Direction::Decrypt, Some(s)) => part.len().min(s.saturating_sub(written) as usize),
            _ => part.len(),
        };
        out.write_all(&part[..keep]).map_err(io_err)?;
        written += keep as u64;
        if last {
            break;
        }
    }
    out.flush().map_err(io_err)?;
    Ok(
        json!({ "input_bytes": read_total, "output_bytes": written, "fingerprint": fk.fingerprint() }),
    )
}
