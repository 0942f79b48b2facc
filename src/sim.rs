//! The simulated Telegram server (feature `sim`): in process, with fault injection, for
//! tests, examples and load benchmarks. A [`SimDevice`] is an account's [`ServerApi`]; the
//! server pushes each device's updates into the feed [`Engine::add_account`] returned
//! ([`SimServer::connect`]).
//!
//! [`ServerApi`]: crate::ServerApi

pub use secretchat_engine::runtime::ProvisionedChat;
pub use secretchat_engine::sim::{FileKeeping, SimDevice, SimFaults, SimServer, SimStats};

use crate::{AccountId, ChatId, Engine, Error};

impl Engine {
    /// Registers ready chats for `account` without handshakes, from keys agreed elsewhere
    /// (the simulated server's [`SimServer::provision_chat`] gives both ends their ids):
    /// how a load benchmark gets a million chats. Returns their ids in order.
    ///
    /// # Errors
    /// [`Error::Store`]; [`Error::InvalidInput`] for DH parameters that are not valid.
    pub fn provision_chats(
        &self,
        account: AccountId,
        dh_p: &[u8],
        dh_g: i32,
        chats: Vec<ProvisionedChat>,
    ) -> Result<Vec<ChatId>, Error> {
        Ok(self
            .inner()
            .provision_chats(account.0, dh_p, dh_g, chats)?
            .into_iter()
            .map(ChatId)
            .collect())
    }
}
