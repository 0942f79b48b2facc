//! Which of a connection's updates belong to the engine.
//!
//! The engine owns the secret-chat queue (`qts`): it must see `updateNewEncryptedMessage`,
//! `updateEncryption`, `updateEncryptedMessagesRead` and `updateEncryptedChatTyping`, and
//! nobody else may acknowledge them. grammers' message box tracks pts, seq and qts together;
//! so the adapter takes the four out of every container before the rest reaches grammers'
//! bookkeeping, which then never sees a qts to advance.
//!
//! Containers: `updateShort` holding one of them is consumed whole (it has no pts or seq);
//! `updates` and `updatesCombined` lose those entries but keep their seq, date, users and
//! chats, so grammers' seq tracking is unchanged. From a difference (the pts-only form the
//! adapter asks for), `updateEncryption`s in `other_updates` go to the engine (a seq gap may
//! hide a chat request or an acceptance); `new_encrypted_messages` are dropped — they carry no
//! qts, and the engine fetches them itself, in order.

use grammers_tl_types as tl;
use grammers_tl_types::Serializable;
use secretchat::tl::Deserialize;
use secretchat::tl::api::enums as api;

/// What one container held.
#[derive(Debug, Default)]
pub struct Split {
    /// The engine's updates, in the order they came, in the engine's types.
    pub secret: Vec<api::Update>,
    /// Secret-chat updates this build cannot read (a layer mismatch with grammers): the
    /// constructor id and why. Logged; the engine's getDifference brings their content.
    pub unreadable: Vec<(u32, String)>,
}

/// Whether `u` is one of the four secret-chat updates (the engine's).
pub(crate) fn is_secret(u: &tl::enums::Update) -> bool {
    use tl::enums::Update as U;
    matches!(
        u,
        U::NewEncryptedMessage(_)
            | U::Encryption(_)
            | U::EncryptedMessagesRead(_)
            | U::EncryptedChatTyping(_)
    )
}

impl Split {
    /// Converts one of grammers' secret-chat updates to the engine's (same bytes).
    fn take(&mut self, u: &tl::enums::Update) {
        let bytes = u.to_bytes();
        match api::Update::from_bytes(&bytes) {
            Ok(ours) => self.secret.push(ours),
            Err(e) => {
                let id = bytes
                    .get(..4)
                    .and_then(|b| b.try_into().ok())
                    .map_or(0, u32::from_le_bytes);
                tracing::warn!(id, error = %e, "a secret-chat update this build cannot read");
                self.unreadable.push((id, e.to_string()));
            }
        }
    }

    /// Takes the secret updates out of `list`, keeping the others in order.
    fn filter(&mut self, list: Vec<tl::enums::Update>) -> Vec<tl::enums::Update> {
        let mut rest = Vec::with_capacity(list.len());
        for u in list {
            if is_secret(&u) {
                self.take(&u);
            } else {
                rest.push(u);
            }
        }
        rest
    }
}

/// Splits a container from the connection: the engine's updates, and what is left for
/// grammers (`None` when nothing is).
pub fn split_updates(updates: tl::enums::Updates) -> (Split, Option<tl::enums::Updates>) {
    use tl::enums::Updates as C;
    let mut split = Split::default();
    let rest = match updates {
        C::UpdateShort(s) if is_secret(&s.update) => {
            split.take(&s.update);
            None
        }
        C::Updates(mut u) => {
            u.updates = split.filter(u.updates);
            Some(C::Updates(u))
        }
        C::Combined(mut u) => {
            u.updates = split.filter(u.updates);
            Some(C::Combined(u))
        }
        other => Some(other),
    };
    (split, rest)
}

/// Splits the answer to grammers' own (pts-only) `updates.getDifference`: the engine's
/// `updateEncryption`s, and the difference for grammers without any secret-chat content.
pub fn split_difference(
    difference: tl::enums::updates::Difference,
) -> (Split, tl::enums::updates::Difference) {
    use tl::enums::updates::Difference as D;
    let mut split = Split::default();
    let rest = match difference {
        D::Difference(mut d) => {
            d.other_updates = split.filter(d.other_updates);
            d.new_encrypted_messages.clear();
            D::Difference(d)
        }
        D::Slice(mut d) => {
            d.other_updates = split.filter(d.other_updates);
            d.new_encrypted_messages.clear();
            D::Slice(d)
        }
        other => other,
    };
    // Encrypted messages of a difference are the engine's to fetch: only the chat updates
    // are kept from it (the engine's own getDifference repeats them harmlessly).
    split
        .secret
        .retain(|u| !matches!(u, api::Update::NewEncryptedMessage(_)));
    (split, rest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use secretchat::tl::Serialize as _;
    use tl::enums::Update as U;

    fn encryption(id: i32) -> U {
        U::Encryption(tl::types::UpdateEncryption {
            chat: tl::enums::EncryptedChat::Discarded(tl::types::EncryptedChatDiscarded {
                history_deleted: false,
                id,
            }),
            date: 7,
        })
    }

    fn typing(id: i32) -> U {
        U::EncryptedChatTyping(tl::types::UpdateEncryptedChatTyping { chat_id: id })
    }

    fn new_message(qts: i32) -> U {
        U::NewEncryptedMessage(tl::types::UpdateNewEncryptedMessage {
            message: tl::enums::EncryptedMessage::Service(tl::types::EncryptedMessageService {
                random_id: 5,
                chat_id: 9,
                date: 3,
                bytes: vec![1, 2, 3],
            }),
            qts,
        })
    }

    fn other(pts: i32) -> U {
        U::DeleteMessages(tl::types::UpdateDeleteMessages {
            messages: vec![1],
            pts,
            pts_count: 1,
        })
    }

    fn ours(u: &U) -> api::Update {
        api::Update::from_bytes(&u.to_bytes()).unwrap()
    }

    #[test]
    fn an_update_short_with_a_secret_update_goes_to_the_engine_whole() {
        let (split, rest) =
            split_updates(tl::enums::Updates::UpdateShort(tl::types::UpdateShort {
                update: new_message(41),
                date: 1,
            }));
        assert!(rest.is_none());
        assert_eq!(split.secret, [ours(&new_message(41))]);
        // The same bytes as grammers wrote.
        assert_eq!(
            split.secret[0].to_bytes().unwrap(),
            new_message(41).to_bytes()
        );
    }

    #[test]
    fn containers_keep_their_seq_and_other_updates_in_order() {
        let container = tl::types::Updates {
            updates: vec![
                other(10),
                encryption(1),
                new_message(5),
                other(11),
                typing(1),
            ],
            users: vec![],
            chats: vec![],
            date: 99,
            seq: 17,
        };
        let (split, rest) = split_updates(tl::enums::Updates::Updates(container));
        assert_eq!(
            split.secret,
            [
                ours(&encryption(1)),
                ours(&new_message(5)),
                ours(&typing(1))
            ]
        );
        let Some(tl::enums::Updates::Updates(rest)) = rest else {
            panic!("the container stays for grammers");
        };
        assert_eq!((rest.seq, rest.date), (17, 99));
        assert_eq!(rest.updates, [other(10), other(11)]);

        let combined = tl::types::UpdatesCombined {
            updates: vec![typing(2), other(12)],
            users: vec![],
            chats: vec![],
            date: 5,
            seq_start: 18,
            seq: 19,
        };
        let (split, rest) = split_updates(tl::enums::Updates::Combined(combined));
        assert_eq!(split.secret, [ours(&typing(2))]);
        let Some(tl::enums::Updates::Combined(rest)) = rest else {
            panic!("the combined container stays");
        };
        assert_eq!(
            (rest.seq_start, rest.seq, rest.updates),
            (18, 19, vec![other(12)])
        );
    }

    #[test]
    fn other_containers_pass_untouched() {
        for c in [
            tl::enums::Updates::TooLong,
            tl::enums::Updates::UpdateShort(tl::types::UpdateShort {
                update: other(3),
                date: 1,
            }),
        ] {
            let (split, rest) = split_updates(c.clone());
            assert!(split.secret.is_empty());
            assert_eq!(rest, Some(c));
        }
    }

    #[test]
    fn a_difference_gives_the_engine_its_chat_updates_and_grammers_no_secret_content() {
        let state = tl::enums::updates::State::State(tl::types::updates::State {
            pts: 1,
            qts: 0,
            date: 2,
            seq: 3,
            unread_count: 0,
        });
        let d = tl::types::updates::Difference {
            new_messages: vec![],
            new_encrypted_messages: vec![tl::enums::EncryptedMessage::Service(
                tl::types::EncryptedMessageService {
                    random_id: 1,
                    chat_id: 2,
                    date: 3,
                    bytes: vec![],
                },
            )],
            other_updates: vec![other(4), encryption(8), new_message(6)],
            chats: vec![],
            users: vec![],
            state,
        };
        let (split, rest) = split_difference(tl::enums::updates::Difference::Difference(d));
        assert_eq!(split.secret, [ours(&encryption(8))]);
        let tl::enums::updates::Difference::Difference(rest) = rest else {
            panic!("a difference stays a difference");
        };
        assert!(rest.new_encrypted_messages.is_empty());
        assert_eq!(rest.other_updates, [other(4)]);
    }
}
