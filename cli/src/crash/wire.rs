//! The pipe between the crash-test driver and the engine process: length-prefixed frames
//! (`u32` little-endian length, then a tag byte and the fields). The driver writes [`Down`]
//! frames to the engine's stdin and reads [`Up`] frames from its stdout.
//!
//! Both ends trust each other (one program), but a frame cut short by `kill -9` is normal on the
//! driver's side, so decoding returns `None` rather than panicking, and a frame longer than
//! [`MAX_FRAME`] is refused before it is allocated.

use std::io::{self, Read, Write};

/// The longest frame (a request carrying one 512 KiB file part, with room to spare).
pub const MAX_FRAME: usize = 4 << 20;

/// Driver → engine process.
#[derive(Debug, Clone, PartialEq)]
pub enum Down {
    /// The answer to request `id`: the TL result, or `(code, message)` of an error.
    Reply(u64, Result<Vec<u8>, (i32, String)>),
    /// A TL `Update` for an account.
    Update(u64, Vec<u8>),
    /// Account 1 requests this many chats with user 2.
    Setup(u32),
    /// Send message `idx` of the stream (`pair`, `dir`) from this account's chat handle.
    Send {
        /// Sending account.
        account: u64,
        /// Its chat handle.
        handle: u64,
        /// Chat number in the run.
        pair: u32,
        /// Direction (0: account 1 → 2).
        dir: u8,
        /// Position in the stream.
        idx: u32,
    },
    /// Start a re-key on this chat.
    Rekey(u64, u64),
    /// Report this chat's status.
    Status(u64, u64),
    /// Add this account (on a shared database: take it over, waiting while another node's
    /// lease on it runs).
    Take(u64),
    /// Stop this account and give up its lease (the hand-over).
    Release(u64),
}

/// Engine process → driver.
#[derive(Debug, Clone, PartialEq)]
pub enum Up {
    /// The engine is open and its accounts are connected.
    Hello,
    /// A server request of an account: (id, account, TL function).
    Request(u64, u64, Vec<u8>),
    /// A chat is ready: (account, handle, server chat id).
    ChatReady(u64, u64, i32),
    /// The engine accepted message `idx` of (pair, dir) for sending (it is stored).
    Accepted(u32, u8, u32),
    /// The engine refused message `idx` of (pair, dir).
    SendFailed(u32, u8, u32, String),
    /// A message reached the application: (account, handle, inbox seq, text or caption, whether
    /// its content — and file bytes, if any — are what the workload says).
    Delivered(u64, u64, u64, String, bool),
    /// The application acknowledged inbox entry `seq` (stored: never delivered again).
    Acked(u64),
    /// A chat re-keyed: (account, handle).
    Rekeyed(u64, u64),
    /// A chat closed: (account, handle, reason).
    Closed(u64, u64, String),
    /// A status answer: (account, handle, key fingerprint, re-keys, re-keying, seq numbers).
    Status(u64, u64, i64, u32, bool, (u32, u32, u32)),
    /// The file of a delivered message (account, handle, inbox seq) is not the workload's.
    FileBad(u64, u64, u64),
    /// The account is added (taken over) and runs here.
    Took(u64),
    /// The account is stopped here and its lease given up.
    Released(u64),
}

#[derive(Default)]
struct Out(Vec<u8>);

impl Out {
    fn u8(mut self, v: u8) -> Self {
        self.0.push(v);
        self
    }
    fn u32(mut self, v: u32) -> Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn u64(mut self, v: u64) -> Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn bytes(self, v: &[u8]) -> Self {
        let mut s = self.u32(v.len() as u32);
        s.0.extend_from_slice(v);
        s
    }
    fn framed(self) -> Vec<u8> {
        let mut f = (self.0.len() as u32).to_le_bytes().to_vec();
        f.extend_from_slice(&self.0);
        f
    }
}

struct In<'a>(&'a [u8]);

impl In<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        if self.0.len() < n {
            return None;
        }
        let (h, t) = self.0.split_at(n);
        self.0 = t;
        Some(h)
    }
    fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    fn bytes(&mut self) -> Option<Vec<u8>> {
        let n = self.u32()? as usize;
        Some(self.take(n)?.to_vec())
    }
    fn string(&mut self) -> Option<String> {
        String::from_utf8(self.bytes()?).ok()
    }
}

impl Down {
    /// The frame's bytes, length prefix included.
    pub fn encode(&self) -> Vec<u8> {
        let o = Out::default();
        match self {
            Down::Reply(id, Ok(b)) => o.u8(0).u64(*id).u8(0).bytes(b),
            Down::Reply(id, Err((code, m))) => {
                o.u8(0).u64(*id).u8(1).u32(*code as u32).bytes(m.as_bytes())
            }
            Down::Update(a, b) => o.u8(1).u64(*a).bytes(b),
            Down::Setup(n) => o.u8(2).u32(*n),
            Down::Send {
                account,
                handle,
                pair,
                dir,
                idx,
            } => o
                .u8(3)
                .u64(*account)
                .u64(*handle)
                .u32(*pair)
                .u8(*dir)
                .u32(*idx),
            Down::Rekey(a, h) => o.u8(4).u64(*a).u64(*h),
            Down::Status(a, h) => o.u8(5).u64(*a).u64(*h),
            Down::Take(a) => o.u8(6).u64(*a),
            Down::Release(a) => o.u8(7).u64(*a),
        }
        .framed()
    }

    /// Decodes a frame body (without its length prefix).
    pub fn decode(body: &[u8]) -> Option<Down> {
        let mut i = In(body);
        Some(match i.u8()? {
            0 => {
                let id = i.u64()?;
                match i.u8()? {
                    0 => Down::Reply(id, Ok(i.bytes()?)),
                    _ => Down::Reply(id, Err((i.u32()? as i32, i.string()?))),
                }
            }
            1 => Down::Update(i.u64()?, i.bytes()?),
            2 => Down::Setup(i.u32()?),
            3 => Down::Send {
                account: i.u64()?,
                handle: i.u64()?,
                pair: i.u32()?,
                dir: i.u8()?,
                idx: i.u32()?,
            },
            4 => Down::Rekey(i.u64()?, i.u64()?),
            5 => Down::Status(i.u64()?, i.u64()?),
            6 => Down::Take(i.u64()?),
            7 => Down::Release(i.u64()?),
            _ => return None,
        })
    }
}

impl Up {
    /// The frame's bytes, length prefix included.
    pub fn encode(&self) -> Vec<u8> {
        let o = Out::default();
        match self {
            Up::Hello => o.u8(0),
            Up::Request(id, a, b) => o.u8(1).u64(*id).u64(*a).bytes(b),
            Up::ChatReady(a, h, c) => o.u8(2).u64(*a).u64(*h).u32(*c as u32),
            Up::Accepted(p, d, i) => o.u8(3).u32(*p).u8(*d).u32(*i),
            Up::SendFailed(p, d, i, e) => o.u8(4).u32(*p).u8(*d).u32(*i).bytes(e.as_bytes()),
            Up::Delivered(a, h, s, t, ok) => o
                .u8(5)
                .u64(*a)
                .u64(*h)
                .u64(*s)
                .bytes(t.as_bytes())
                .u8(u8::from(*ok)),
            Up::Acked(s) => o.u8(6).u64(*s),
            Up::Rekeyed(a, h) => o.u8(7).u64(*a).u64(*h),
            Up::Closed(a, h, r) => o.u8(8).u64(*a).u64(*h).bytes(r.as_bytes()),
            Up::Status(a, h, fp, r, busy, (x, y, z)) => o
                .u8(9)
                .u64(*a)
                .u64(*h)
                .u64(*fp as u64)
                .u32(*r)
                .u8(u8::from(*busy))
                .u32(*x)
                .u32(*y)
                .u32(*z),
            Up::Took(a) => o.u8(10).u64(*a),
            Up::FileBad(a, h, s) => o.u8(12).u64(*a).u64(*h).u64(*s),
            Up::Released(a) => o.u8(11).u64(*a),
        }
        .framed()
    }

    /// Decodes a frame body (without its length prefix).
    pub fn decode(body: &[u8]) -> Option<Up> {
        let mut i = In(body);
        Some(match i.u8()? {
            0 => Up::Hello,
            1 => Up::Request(i.u64()?, i.u64()?, i.bytes()?),
            2 => Up::ChatReady(i.u64()?, i.u64()?, i.u32()? as i32),
            3 => Up::Accepted(i.u32()?, i.u8()?, i.u32()?),
            4 => Up::SendFailed(i.u32()?, i.u8()?, i.u32()?, i.string()?),
            5 => Up::Delivered(i.u64()?, i.u64()?, i.u64()?, i.string()?, i.u8()? != 0),
            6 => Up::Acked(i.u64()?),
            7 => Up::Rekeyed(i.u64()?, i.u64()?),
            8 => Up::Closed(i.u64()?, i.u64()?, i.string()?),
            9 => Up::Status(
                i.u64()?,
                i.u64()?,
                i.u64()? as i64,
                i.u32()?,
                i.u8()? != 0,
                (i.u32()?, i.u32()?, i.u32()?),
            ),
            10 => Up::Took(i.u64()?),
            11 => Up::Released(i.u64()?),
            12 => Up::FileBad(i.u64()?, i.u64()?, i.u64()?),
            _ => return None,
        })
    }
}

/// Reads one frame body from a blocking reader; `Ok(None)` at a clean or cut-off end.
///
/// # Errors
/// An I/O error, or `InvalidData` for a frame above [`MAX_FRAME`].
pub fn read_frame(r: &mut impl Read) -> io::Result<Option<Vec<u8>>> {
    let mut len = [0u8; 4];
    if let Err(e) = r.read_exact(&mut len) {
        return if e.kind() == io::ErrorKind::UnexpectedEof {
            Ok(None)
        } else {
            Err(e)
        };
    }
    let n = u32::from_le_bytes(len) as usize;
    if n > MAX_FRAME {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "frame too long"));
    }
    let mut body = vec![0u8; n];
    match r.read_exact(&mut body) {
        Ok(()) => Ok(Some(body)),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(None),
        Err(e) => Err(e),
    }
}

/// Writes and flushes one frame: once this returns, the bytes are in the pipe and survive the
/// writer's death.
///
/// # Errors
/// The I/O error.
pub fn write_frame(w: &mut impl Write, frame: &[u8]) -> io::Result<()> {
    w.write_all(frame)?;
    w.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_cut_frames_are_none() {
        let ups = [
            Up::Hello,
            Up::Request(7, 1, vec![1, 2, 3]),
            Up::ChatReady(2, 9, -5),
            Up::Accepted(3, 1, 44),
            Up::SendFailed(3, 0, 1, "x".into()),
            Up::Delivered(1, 2, 3, "0:1:2:abc".into(), true),
            Up::Acked(99),
            Up::Rekeyed(1, 2),
            Up::Closed(1, 2, "gone".into()),
            Up::Status(1, 2, -3, 4, true, (5, 6, 7)),
            Up::Took(2),
            Up::Released(1),
            Up::FileBad(1, 2, 3),
        ];
        for u in ups {
            let f = u.encode();
            assert_eq!(Up::decode(&f[4..]), Some(u.clone()));
            assert_eq!(Up::decode(&f[4..f.len() - 1]), None, "{u:?} cut short");
        }
        let downs = [
            Down::Reply(1, Ok(vec![9])),
            Down::Reply(2, Err((-503, "TIMEOUT".into()))),
            Down::Update(1, vec![0; 10]),
            Down::Setup(4),
            Down::Send {
                account: 1,
                handle: 2,
                pair: 3,
                dir: 1,
                idx: 5,
            },
            Down::Rekey(1, 2),
            Down::Status(2, 1),
            Down::Take(2),
            Down::Release(1),
        ];
        for d in downs {
            let f = d.encode();
            assert_eq!(Down::decode(&f[4..]), Some(d.clone()));
        }
        let mut cut: &[u8] = &[5, 0, 0, 0, 1];
        assert!(matches!(read_frame(&mut cut), Ok(None)));
        let mut huge: &[u8] = &[0xff, 0xff, 0xff, 0x7f];
        assert!(read_frame(&mut huge).is_err());
    }
}
