//! The JSON-lines framing: bounded line reading and typed access to a request's fields.

use serde_json::{Map, Value};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

/// The longest line accepted: an upload part (512 KiB) in hex with room to spare.
pub const MAX_LINE: usize = 4 << 20;

/// A request the host process refuses, answered with an `error` line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct WireError {
    /// HTTP-like: 400 bad input, 404 no such account/chat/invoke, 5xx engine failures, or
    /// the server's own code for a failed call.
    pub code: i32,
    /// What was wrong.
    pub message: String,
}

impl WireError {
    /// A 400 (bad input).
    pub fn bad(message: impl Into<String>) -> Self {
        WireError {
            code: 400,
            message: message.into(),
        }
    }
}

/// One line read: a JSON object, or why it is not one.
#[derive(Debug)]
pub enum Line {
    /// A JSON object.
    Object(Map<String, Value>),
    /// Not a JSON object (or too long); answered with an error, the stream goes on.
    Bad(WireError),
}

/// Reads the next line (without its `\n`), at most [`MAX_LINE`] bytes; a longer one is
/// skipped to its end and reported. `None` at the end of the input.
///
/// # Errors
/// I/O errors of the input.
pub async fn read_line<R: AsyncBufRead + Unpin>(r: &mut R) -> std::io::Result<Option<Line>> {
    let mut buf = Vec::new();
    let mut too_long = false;
    loop {
        let chunk = r.fill_buf().await?;
        if chunk.is_empty() {
            if buf.is_empty() && !too_long {
                return Ok(None);
            }
            break;
        }
        let (take, done) = match chunk.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (chunk.len(), false),
        };
        if !too_long {
            let body = if done { &chunk[..take - 1] } else { chunk };
            if buf.len() + body.len() > MAX_LINE {
                too_long = true;
                buf = Vec::new();
            } else {
                buf.extend_from_slice(body);
            }
        }
        r.consume(take);
        if done {
            break;
        }
    }
    if too_long {
        return Ok(Some(Line::Bad(WireError::bad(format!(
            "line longer than {MAX_LINE} bytes"
        )))));
    }
    if buf.iter().all(u8::is_ascii_whitespace) {
        return Ok(Some(Line::Bad(WireError::bad("empty line"))));
    }
    Ok(Some(match serde_json::from_slice::<Value>(&buf) {
        Ok(Value::Object(m)) => Line::Object(m),
        Ok(_) => Line::Bad(WireError::bad("not a JSON object")),
        Err(e) => Line::Bad(WireError::bad(format!("not JSON: {e}"))),
    }))
}

/// Writes each line of `rx` followed by `\n` until the channel closes or a write fails:
/// buffered, with one flush per burst (when the queue is drained).
pub async fn write_lines<W: AsyncWrite + Unpin>(output: W, mut rx: mpsc::Receiver<String>) {
    // Lines gather in the buffer; one write per burst (flushed when the queue is drained).
    let mut output = tokio::io::BufWriter::with_capacity(64 * 1024, output);
    while let Some(line) = rx.recv().await {
        let mut ok = output.write_all(line.as_bytes()).await.is_ok()
            && output.write_all(b"\n").await.is_ok();
        // Flush once the queue is drained (one write call per burst).
        if ok && rx.is_empty() {
            ok = output.flush().await.is_ok();
        }
        if !ok {
            tracing::warn!("writing the JSON lines failed");
            break;
        }
    }
    let _ = output.flush().await;
}

/// Typed access to a request's fields, with errors that name the field.
pub struct Fields<'a>(pub &'a Map<String, Value>);

impl Fields<'_> {
    fn get(&self, name: &str) -> Result<&Value, WireError> {
        self.0
            .get(name)
            .filter(|v| !v.is_null())
            .ok_or_else(|| WireError::bad(format!("missing field `{name}`")))
    }

    /// Whether the field is present (and not null).
    pub fn has(&self, name: &str) -> bool {
        self.0.get(name).is_some_and(|v| !v.is_null())
    }

    /// A 64-bit integer given as a decimal string (the protocol's form) or a JSON number.
    pub fn i64(&self, name: &str) -> Result<i64, WireError> {
        int_of(self.get(name)?)
            .ok_or_else(|| WireError::bad(format!("`{name}` is not a 64-bit integer")))
    }

    /// [`Fields::i64`], non-negative.
    pub fn u64(&self, name: &str) -> Result<u64, WireError> {
        let v = self.get(name)?;
        match v {
            Value::String(s) => s.parse().ok(),
            Value::Number(n) => n.as_u64(),
            _ => None,
        }
        .ok_or_else(|| WireError::bad(format!("`{name}` is not an unsigned 64-bit integer")))
    }

    /// The events an `ack` names: `seq` (one) or `seqs` (an array, one store write for all).
    pub fn seqs(&self) -> Result<Vec<u64>, WireError> {
        match (self.has("seq"), self.has("seqs")) {
            (true, false) => Ok(vec![self.u64("seq")?]),
            (false, true) => {
                let items = self
                    .get("seqs")?
                    .as_array()
                    .filter(|a| !a.is_empty())
                    .ok_or_else(|| WireError::bad("`seqs` is not a non-empty array"))?;
                items
                    .iter()
                    .map(|v| match v {
                        Value::String(s) => s.parse().ok(),
                        Value::Number(n) => n.as_u64(),
                        _ => None,
                    })
                    .collect::<Option<Vec<u64>>>()
                    .ok_or_else(|| WireError::bad("`seqs` holds a non-integer"))
            }
            (true, true) => Err(WireError::bad("`seq` and `seqs` together")),
            (false, false) => Err(WireError::bad("missing field `seq`")),
        }
    }

    /// A 32-bit integer.
    pub fn i32(&self, name: &str) -> Result<i32, WireError> {
        self.i64(name)?
            .try_into()
            .map_err(|_| WireError::bad(format!("`{name}` is out of the 32-bit range")))
    }

    /// An optional 32-bit integer.
    pub fn opt_i32(&self, name: &str) -> Result<Option<i32>, WireError> {
        self.has(name).then(|| self.i32(name)).transpose()
    }

    /// An optional 64-bit integer.
    pub fn opt_i64(&self, name: &str) -> Result<Option<i64>, WireError> {
        self.has(name).then(|| self.i64(name)).transpose()
    }

    /// A string.
    pub fn str(&self, name: &str) -> Result<&str, WireError> {
        self.get(name)?
            .as_str()
            .ok_or_else(|| WireError::bad(format!("`{name}` is not a string")))
    }

    /// An optional string.
    pub fn opt_str(&self, name: &str) -> Result<Option<&str>, WireError> {
        self.has(name).then(|| self.str(name)).transpose()
    }

    /// An optional boolean (absent: false).
    pub fn flag(&self, name: &str) -> Result<bool, WireError> {
        if !self.has(name) {
            return Ok(false);
        }
        self.get(name)?
            .as_bool()
            .ok_or_else(|| WireError::bad(format!("`{name}` is not a boolean")))
    }

    /// Lowercase (or uppercase) hex bytes.
    pub fn hex(&self, name: &str) -> Result<Vec<u8>, WireError> {
        hex::decode(self.str(name)?).map_err(|e| WireError::bad(format!("`{name}`: bad hex ({e})")))
    }

    /// An array of 64-bit integers.
    pub fn i64s(&self, name: &str) -> Result<Vec<i64>, WireError> {
        let items = self
            .get(name)?
            .as_array()
            .ok_or_else(|| WireError::bad(format!("`{name}` is not an array")))?;
        items
            .iter()
            .map(|v| {
                int_of(v).ok_or_else(|| WireError::bad(format!("`{name}` holds a non-integer")))
            })
            .collect()
    }

    /// A nested object.
    pub fn object(&self, name: &str) -> Result<Fields<'_>, WireError> {
        self.get(name)?
            .as_object()
            .map(Fields)
            .ok_or_else(|| WireError::bad(format!("`{name}` is not an object")))
    }

    /// The raw value, if present.
    pub fn value(&self, name: &str) -> Option<&Value> {
        self.0.get(name).filter(|v| !v.is_null())
    }
}

fn int_of(v: &Value) -> Option<i64> {
    match v {
        Value::String(s) => s.parse().ok(),
        Value::Number(n) => n.as_i64(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn lines(input: &[u8]) -> Vec<Result<Map<String, Value>, WireError>> {
        let mut r = tokio::io::BufReader::with_capacity(7, input);
        let mut out = Vec::new();
        while let Some(l) = read_line(&mut r).await.unwrap() {
            out.push(match l {
                Line::Object(m) => Ok(m),
                Line::Bad(e) => Err(e),
            });
        }
        out
    }

    #[tokio::test]
    async fn lines_are_split_bounded_and_bad_ones_reported() {
        let mut input = b"{\"a\":1}\nnot json\n[1]\n\n".to_vec();
        input.extend(std::iter::repeat_n(b'x', MAX_LINE + 10));
        input.extend(b"\n{\"b\":\"2\"}");
        let got = lines(&input).await;
        assert_eq!(got.len(), 6);
        assert_eq!(got[0].as_ref().unwrap()["a"], 1);
        assert!(got[1].as_ref().unwrap_err().message.starts_with("not JSON"));
        assert_eq!(got[2].as_ref().unwrap_err().message, "not a JSON object");
        assert_eq!(got[3].as_ref().unwrap_err().message, "empty line");
        assert!(got[4].as_ref().unwrap_err().message.contains("longer than"));
        assert_eq!(got[5].as_ref().unwrap()["b"], "2");
    }

    #[test]
    fn fields_name_what_is_wrong() {
        let m: Map<String, Value> =
            serde_json::from_str(r#"{"id":"-5","n":7,"big":"99999999999","h":"zz","s":1}"#)
                .unwrap();
        let f = Fields(&m);
        assert_eq!(f.i64("id"), Ok(-5));
        assert_eq!(f.i64("n"), Ok(7));
        assert_eq!(
            f.i32("big").unwrap_err().message,
            "`big` is out of the 32-bit range"
        );
        assert_eq!(f.u64("id").unwrap_err().code, 400);
        assert!(f.hex("h").unwrap_err().message.starts_with("`h`: bad hex"));
        assert_eq!(f.str("s").unwrap_err().message, "`s` is not a string");
        assert_eq!(f.str("nope").unwrap_err().message, "missing field `nope`");
        assert_eq!(f.opt_i32("nope"), Ok(None));
    }
}
