//! The engine's own `updates.getDifference` against a real server.
//!
//! The engine asks for what its update stream lost with `pts 0, date 0` and its stored `qts`,
//! and reads the answer with the project's API subset, which knows encrypted messages and the
//! four secret-chat updates but not ordinary messages, users or chats. A real server answers
//! `pts 0` with `differenceTooLong`, and a real difference carries the account's ordinary
//! messages too. So the adapter completes the contract (docs/grammers.md, "The engine's
//! difference"):
//!
//! - it keeps a common state (`pts`, `date`) for the engine's requests only — learned with
//!   `updates.getState` before the first one, moved by every answer — and asks with it and a
//!   small `pts_total_limit`, so that a long backlog of ordinary updates comes back as
//!   `differenceTooLong` instead of being carried; on `differenceTooLong` it moves its `pts`
//!   and asks again. This state is not grammers' message box: moving it acknowledges nothing.
//! - it decodes the answer with grammers' full layer and re-encodes it with only what the engine
//!   reads: the encrypted messages, the secret-chat updates among `other_updates`, the state.
//!
//! The engine's `qts` and `qts_limit` go out unchanged: the engine alone decides what is
//! acknowledged.

use std::future::Future;
use std::sync::Mutex;

use grammers_tl_types as tl;
use grammers_tl_types::{Deserializable, Identifiable, Serializable};
use secretchat::RpcError;
use secretchat::tl::Deserialize;
use secretchat::tl::api::functions::updates as ours;

/// The most ordinary updates one answer may carry before the server says `differenceTooLong`.
pub const PTS_TOTAL_LIMIT: i32 = 100;

/// How many `differenceTooLong` answers in a row before giving up for now (the engine asks
/// again at its next interval).
const MAX_TOO_LONG: usize = 3;

/// The common state of the engine's difference requests: `(pts, date)`, unknown until the
/// first `updates.getState`.
#[derive(Debug, Default)]
pub struct CatchUpState(Mutex<Option<(i32, i32)>>);

impl CatchUpState {
    /// The state the next request starts from, if known.
    pub fn get(&self) -> Option<(i32, i32)> {
        *self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn set(&self, pts: i32, date: i32) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some((pts, date));
    }
}

/// Whether `request` is an `updates.getDifference` (the engine's).
pub fn is_get_difference(request: &[u8]) -> bool {
    request.get(..4)
        == Some(&tl::functions::updates::GetDifference::CONSTRUCTOR_ID.to_le_bytes()[..])
}

/// Runs the engine's getDifference `request` through `call` (a raw invoke on the account's
/// connection) with the common state in `state`, and returns an answer the engine's API subset
/// decodes.
///
/// # Errors
/// `400 REQUEST_INVALID` for a request that is not a getDifference; the call's own errors;
/// `-503 BAD_RESPONSE` for an answer that does not decode; `-503 DIFFERENCE_TOO_LONG` after
/// several `differenceTooLong` answers in a row (transient: the engine asks again later).
pub async fn engine_difference<F, Fut>(
    state: &CatchUpState,
    request: &[u8],
    call: F,
) -> Result<Vec<u8>, RpcError>
where
    F: Fn(Vec<u8>) -> Fut,
    Fut: Future<Output = Result<Vec<u8>, RpcError>>,
{
    let asked = ours::GetDifference::from_bytes(request)
        .map_err(|_| RpcError::new(400, "REQUEST_INVALID"))?;
    let bad = |_| RpcError::new(-503, "BAD_RESPONSE");
    for _ in 0..MAX_TOO_LONG {
        let (pts, date) = match state.get() {
            Some(s) => s,
            None => {
                let answer = call(tl::functions::updates::GetState {}.to_bytes()).await?;
                let tl::enums::updates::State::State(s) =
                    tl::enums::updates::State::from_bytes(&answer).map_err(bad)?;
                state.set(s.pts, s.date);
                (s.pts, s.date)
            }
        };
        let ask = tl::functions::updates::GetDifference {
            pts,
            pts_limit: None,
            pts_total_limit: Some(PTS_TOTAL_LIMIT),
            date,
            qts: asked.qts,
            qts_limit: asked.qts_limit,
        };
        let answer = call(ask.to_bytes()).await?;
        use tl::enums::updates::Difference as D;
        let narrowed = match D::from_bytes(&answer).map_err(bad)? {
            D::TooLong(t) => {
                state.set(t.pts, date);
                continue;
            }
            D::Empty(e) => {
                state.set(pts, e.date);
                D::Empty(e)
            }
            D::Difference(d) => {
                let tl::enums::updates::State::State(s) = &d.state;
                state.set(s.pts, s.date);
                D::Difference(tl::types::updates::Difference {
                    new_messages: Vec::new(),
                    new_encrypted_messages: d.new_encrypted_messages,
                    other_updates: secret_updates(d.other_updates),
                    chats: Vec::new(),
                    users: Vec::new(),
                    state: d.state,
                })
            }
            D::Slice(d) => {
                let tl::enums::updates::State::State(s) = &d.intermediate_state;
                state.set(s.pts, s.date);
                D::Slice(tl::types::updates::DifferenceSlice {
                    new_messages: Vec::new(),
                    new_encrypted_messages: d.new_encrypted_messages,
                    other_updates: secret_updates(d.other_updates),
                    chats: Vec::new(),
                    users: Vec::new(),
                    intermediate_state: d.intermediate_state,
                })
            }
        };
        return Ok(narrowed.to_bytes());
    }
    Err(RpcError::new(-503, "DIFFERENCE_TOO_LONG"))
}

/// The four secret-chat updates among `updates`, in order.
fn secret_updates(updates: Vec<tl::enums::Update>) -> Vec<tl::enums::Update> {
    updates
        .into_iter()
        .filter(crate::route::is_secret)
        .collect()
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex as StdMutex;

    use secretchat::tl::Serialize;
    use secretchat::tl::api::enums as api;

    use super::*;

    /// The engine's request, as `AccountActor::fetch_difference` sends it.
    fn engine_request(qts: i32) -> Vec<u8> {
        ours::GetDifference {
            pts: 0,
            pts_limit: None,
            pts_total_limit: None,
            date: 0,
            qts,
            qts_limit: None,
        }
        .to_bytes()
        .unwrap()
    }

    fn state(pts: i32, qts: i32, date: i32) -> tl::enums::updates::State {
        tl::enums::updates::State::State(tl::types::updates::State {
            pts,
            qts,
            date,
            seq: 1,
            unread_count: 0,
        })
    }

    fn encrypted(random_id: i64) -> tl::enums::EncryptedMessage {
        tl::enums::EncryptedMessage::Message(tl::types::EncryptedMessage {
            random_id,
            chat_id: 7,
            date: 1_700_000_000,
            bytes: vec![1; 32],
            file: tl::enums::EncryptedFile::Empty,
        })
    }

    /// A difference as a real server sends it: ordinary messages, chats and updates the API
    /// subset does not know, around the encrypted messages and an updateEncryption.
    fn real_difference() -> tl::enums::updates::Difference {
        let ordinary = tl::enums::Message::Service(tl::types::MessageService {
            out: false,
            mentioned: false,
            media_unread: false,
            reactions_are_possible: false,
            silent: false,
            post: false,
            legacy: false,
            id: 5,
            from_id: None,
            peer_id: tl::enums::Peer::User(tl::types::PeerUser { user_id: 9 }),
            saved_peer_id: None,
            reply_to: None,
            date: 1_700_000_000,
            action: tl::enums::MessageAction::Empty,
            reactions: None,
            ttl_period: None,
        });
        let discarded = tl::enums::EncryptedChat::Discarded(tl::types::EncryptedChatDiscarded {
            history_deleted: false,
            id: 7,
        });
        tl::enums::updates::Difference::Difference(tl::types::updates::Difference {
            new_messages: vec![ordinary],
            new_encrypted_messages: vec![encrypted(11), encrypted(12)],
            other_updates: vec![
                tl::enums::Update::DeleteMessages(tl::types::UpdateDeleteMessages {
                    messages: vec![1],
                    pts: 40,
                    pts_count: 1,
                }),
                tl::enums::Update::Encryption(tl::types::UpdateEncryption {
                    chat: discarded,
                    date: 1_700_000_001,
                }),
            ],
            chats: vec![tl::enums::Chat::Forbidden(tl::types::ChatForbidden {
                id: 3,
                title: "a group".into(),
            })],
            users: Vec::new(),
            state: state(41, 12, 1_700_000_002),
        })
    }

    /// A server stand-in: answers each request with the next of `answers`, recording them.
    struct Server {
        asked: StdMutex<Vec<Vec<u8>>>,
        answers: StdMutex<Vec<Vec<u8>>>,
    }

    impl Server {
        fn new(answers: Vec<Vec<u8>>) -> Self {
            Server {
                asked: StdMutex::default(),
                answers: StdMutex::new(answers.into_iter().rev().collect()),
            }
        }

        async fn call(&self, request: Vec<u8>) -> Result<Vec<u8>, RpcError> {
            self.asked.lock().unwrap().push(request);
            self.answers
                .lock()
                .unwrap()
                .pop()
                .ok_or_else(|| RpcError::new(500, "NO_MORE"))
        }

        fn asked_difference(&self, i: usize) -> tl::functions::updates::GetDifference {
            let b = &self.asked.lock().unwrap()[i];
            let r = ours::GetDifference::from_bytes(b).unwrap();
            tl::functions::updates::GetDifference {
                pts: r.pts,
                pts_limit: r.pts_limit,
                pts_total_limit: r.pts_total_limit,
                date: r.date,
                qts: r.qts,
                qts_limit: r.qts_limit,
            }
        }
    }

    #[tokio::test]
    async fn a_real_difference_reaches_the_engine_with_what_it_reads() {
        let server = Server::new(vec![
            state(30, 10, 1_699_999_990).to_bytes(),
            real_difference().to_bytes(),
        ]);
        // The real answer does not decode with the subset…
        assert!(api::updates::Difference::from_bytes(&real_difference().to_bytes()).is_err());
        let st = CatchUpState::default();
        let got = engine_difference(&st, &engine_request(10), |r| server.call(r))
            .await
            .unwrap();
        // …the narrowed one does, with every encrypted message and the updateEncryption.
        let api::updates::Difference::Difference(d) =
            api::updates::Difference::from_bytes(&got).unwrap()
        else {
            panic!("not a difference");
        };
        assert_eq!(d.new_encrypted_messages.len(), 2);
        assert!(matches!(
            d.other_updates.as_slice(),
            [api::Update::Encryption(_)]
        ));
        assert!(d.new_messages.is_empty() && d.chats.is_empty() && d.users.is_empty());
        let api::updates::State::State(s) = d.state;
        assert_eq!((s.pts, s.qts), (41, 12));
        // It asked for the state first, then with that pts and date and the engine's qts.
        assert_eq!(
            server.asked.lock().unwrap()[0],
            tl::functions::updates::GetState {}.to_bytes()
        );
        let ask = server.asked_difference(1);
        assert_eq!(
            (ask.pts, ask.date, ask.qts, ask.pts_total_limit),
            (30, 1_699_999_990, 10, Some(PTS_TOTAL_LIMIT))
        );
        // The next request starts from the answer's state.
        assert_eq!(st.get(), Some((41, 1_700_000_002)));
    }

    #[tokio::test]
    async fn too_long_moves_the_pts_and_asks_again() {
        let too_long =
            tl::enums::updates::Difference::TooLong(tl::types::updates::DifferenceTooLong {
                pts: 5_000,
            });
        let empty = tl::enums::updates::Difference::Empty(tl::types::updates::DifferenceEmpty {
            date: 1_700_000_100,
            seq: 2,
        });
        let server = Server::new(vec![too_long.to_bytes(), empty.to_bytes()]);
        let st = CatchUpState::default();
        st.set(30, 1_700_000_000);
        let got = engine_difference(&st, &engine_request(10), |r| server.call(r))
            .await
            .unwrap();
        assert!(matches!(
            api::updates::Difference::from_bytes(&got).unwrap(),
            api::updates::Difference::Empty(_)
        ));
        assert_eq!(server.asked_difference(0).pts, 30);
        assert_eq!(server.asked_difference(1).pts, 5_000);
        assert_eq!(st.get(), Some((5_000, 1_700_000_100)));
        // Too long again and again: a transient error, the engine asks later.
        let server = Server::new(vec![too_long.to_bytes(); MAX_TOO_LONG]);
        let e = engine_difference(&st, &engine_request(10), |r| server.call(r))
            .await
            .unwrap_err();
        assert_eq!((e.code, e.message.as_str()), (-503, "DIFFERENCE_TOO_LONG"));
    }

    #[tokio::test]
    async fn hostile_answers_are_transient_errors() {
        let server = Server::new(vec![vec![0xff; 7]]);
        let st = CatchUpState::default();
        st.set(1, 1);
        let e = engine_difference(&st, &engine_request(1), |r| server.call(r))
            .await
            .unwrap_err();
        assert_eq!((e.code, e.message.as_str()), (-503, "BAD_RESPONSE"));
        assert_eq!(st.get(), Some((1, 1)), "the state did not move");
        let e = engine_difference(&st, &[1, 2, 3], |r| server.call(r))
            .await
            .unwrap_err();
        assert_eq!(e.code, 400);
    }
}
