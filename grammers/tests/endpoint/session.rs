//! One connection's MTProto session on the server's side: the messages inside a decrypted
//! frame (containers, acknowledgements, pings, `gzip_packed`, RPC calls answered with
//! `rpc_result`), and what the server sends back — its msg_ids and seqnos, the
//! acknowledgements it owes, several messages in one container.

use std::io::Read;
use std::sync::{Arc, Mutex};

use super::wire::{Key, Reader, write_string};
use super::*;

/// One connection's server-side session state.
pub(super) struct Conn {
    pub(super) id: u64,
    pub(super) key: Arc<Key>,
    pub(super) account: usize,
    pub(super) dc: i32,
    pub(super) session_id: i64,
    pub(super) last_msg_id: i64,
    pub(super) content_sent: i32,
    pub(super) acks_owed: Vec<i64>,
}

/// A message the server sends: its body and whether it answers the client (msg_id ≡ 1 mod
/// 4, else 3) and is content-related (odd seqno, the client acknowledges it).
pub(super) struct Out {
    pub(super) body: Vec<u8>,
    pub(super) response: bool,
    pub(super) content: bool,
}

impl Conn {
    /// Decrypts one frame and answers every message in it; `None` ends the connection (a
    /// frame that does not decrypt or parse, as a server would).
    pub(super) async fn handle_frame(
        &mut self,
        shared: &Mutex<Shared>,
        frame: &[u8],
    ) -> Option<Vec<Out>> {
        let plain = self.key.open(frame)?;
        let mut r = Reader { buf: &plain };
        let _salt = r.i64()?;
        let session_id = r.i64()?;
        if self.session_id == 0 {
            self.session_id = session_id;
        } else if session_id != self.session_id {
            return None;
        }
        let msg_id = r.i64()?;
        let seqno = r.u32()?;
        let len = r.u32()? as usize;
        let body = r.bytes(len)?.to_vec();
        let mut out = Vec::new();
        self.message(shared, msg_id, seqno, body, &mut out, 0)
            .await?;
        if !self.acks_owed.is_empty() {
            let mut ack = Vec::new();
            ack.extend_from_slice(&MSGS_ACK.to_le_bytes());
            ack.extend_from_slice(&VECTOR.to_le_bytes());
            ack.extend_from_slice(&(self.acks_owed.len() as u32).to_le_bytes());
            for id in self.acks_owed.drain(..) {
                ack.extend_from_slice(&id.to_le_bytes());
            }
            out.push(Out {
                body: ack,
                response: false,
                content: false,
            });
        }
        Some(out)
    }

    async fn message(
        &mut self,
        shared: &Mutex<Shared>,
        msg_id: i64,
        seqno: u32,
        body: Vec<u8>,
        out: &mut Vec<Out>,
        depth: u32,
    ) -> Option<()> {
        if seqno % 2 == 1 {
            self.acks_owed.push(msg_id);
        }
        let mut r = Reader { buf: &body };
        match r.u32()? {
            MSG_CONTAINER if depth == 0 => {
                shared.lock().ok()?.stats.containers_in += 1;
                let n = r.u32()?;
                for _ in 0..n {
                    let (id, seq, len) = (r.i64()?, r.u32()?, r.u32()? as usize);
                    let inner = r.bytes(len)?.to_vec();
                    Box::pin(self.message(shared, id, seq, inner, out, 1)).await?;
                }
            }
            MSGS_ACK => {
                (r.u32()? == VECTOR).then_some(())?;
                let n = r.u32()?;
                shared.lock().ok()?.stats.acks_in += u64::from(n);
            }
            PING | PING_DELAY_DISCONNECT => {
                let ping_id = r.i64()?;
                shared.lock().ok()?.stats.pings += 1;
                let mut pong = PONG.to_le_bytes().to_vec();
                pong.extend_from_slice(&msg_id.to_le_bytes());
                pong.extend_from_slice(&ping_id.to_le_bytes());
                out.push(Out {
                    body: pong,
                    response: true,
                    content: false,
                });
            }
            GZIP_PACKED => {
                let packed = r.string()?;
                let mut inner = Vec::new();
                flate2::read::GzDecoder::new(packed)
                    .take(2 << 20)
                    .read_to_end(&mut inner)
                    .ok()?;
                Box::pin(self.message(shared, msg_id, 0, inner, out, depth)).await?;
            }
            _ => {
                let answer = match self.call(shared, &body).await {
                    Some(Ok(result)) => result,
                    Some(Err((code, message))) => {
                        let mut e = RPC_ERROR.to_le_bytes().to_vec();
                        e.extend_from_slice(&code.to_le_bytes());
                        write_string(&mut e, message.as_bytes());
                        e
                    }
                    None => return None,
                };
                let mut result = RPC_RESULT.to_le_bytes().to_vec();
                result.extend_from_slice(&msg_id.to_le_bytes());
                result.extend_from_slice(&answer);
                out.push(Out {
                    body: result,
                    response: true,
                    content: true,
                });
            }
        }
        Some(())
    }

    fn next_msg_id(&mut self, response: bool) -> i64 {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock after 1970");
        let t = ((now.as_secs() as i64) << 32) | (i64::from(now.subsec_nanos()) << 2);
        let base = (t & !3).max((self.last_msg_id & !3) + 4);
        self.last_msg_id = base | if response { 1 } else { 3 };
        self.last_msg_id
    }

    fn next_seqno(&mut self, content: bool) -> i32 {
        if content {
            self.content_sent += 1;
            self.content_sent * 2 - 1
        } else {
            self.content_sent * 2
        }
    }

    /// The plaintext of one encrypted message: salt, session, then the messages (in a
    /// container when there are several).
    pub(super) fn pack(&mut self, msgs: Vec<Out>) -> Vec<u8> {
        let mut plain = Vec::new();
        plain.extend_from_slice(&0i64.to_le_bytes()); // salt: grammers starts with 0
        plain.extend_from_slice(&self.session_id.to_le_bytes());
        let one = |c: &mut Self, out: &mut Vec<u8>, m: &Out| {
            out.extend_from_slice(&c.next_msg_id(m.response).to_le_bytes());
            out.extend_from_slice(&c.next_seqno(m.content).to_le_bytes());
            out.extend_from_slice(&(m.body.len() as u32).to_le_bytes());
            out.extend_from_slice(&m.body);
        };
        if msgs.len() == 1 {
            one(self, &mut plain, &msgs[0]);
            return plain;
        }
        let mut inner = MSG_CONTAINER.to_le_bytes().to_vec();
        inner.extend_from_slice(&(msgs.len() as u32).to_le_bytes());
        for m in &msgs {
            one(self, &mut inner, m);
        }
        let container = Out {
            body: inner,
            response: false,
            content: false,
        };
        one(self, &mut plain, &container);
        plain
    }
}
