//! Bulk provisioning: ready chats from keys agreed elsewhere, written straight to the store
//! without a handshake. For benchmarks and tests that need very many chats
//! (`secretchat simulate --active`): a million handshakes would cost hours of DH and say
//! nothing about the steady state being measured.
//!
//! Both ends of a chat must be provisioned with the same key, opposite sides and the server's
//! `chat_id`/`access_hash` (the simulated server's `SimServer::provision_chat` gives them).
//! Nothing is sent: the caller vouches for the layers. The chats are not loaded; each is
//! activated from the store when first addressed.

use super::{Engine, EngineError, now_ms};
use crate::crypto::{AuthKey, Side};
use crate::protocol::chat::ChatCore;
use crate::store::NewChat;

/// One chat end to provision.
#[derive(Debug)]
pub struct ProvisionedChat {
    /// Our side.
    pub side: Side,
    /// The server's chat id.
    pub chat_id: i32,
    /// The server's access hash.
    pub access_hash: i64,
    /// The agreed key (both ends the same).
    pub key: AuthKey,
    /// The layer the peer is known to speak.
    pub peer_layer: i32,
}

/// Chats written per store batch.
const BATCH: usize = 4096;

impl Engine {
    /// Registers ready chats for `account` under the DH parameters `(p, g)` (used by their
    /// future re-keys); returns their handles in order. Written in batches, each synced once.
    ///
    /// # Errors
    /// [`EngineError::Store`]; [`EngineError::InvalidDhParams`].
    pub fn provision_chats(
        &self,
        account: u64,
        dh_p: &[u8],
        dh_g: i32,
        chats: Vec<ProvisionedChat>,
    ) -> Result<Vec<u64>, EngineError> {
        let dh = self
            .registry
            .get(dh_p, dh_g)
            .ok_or(EngineError::InvalidDhParams)?;
        let first = self.store.new_handles(chats.len() as u64)?;
        let now = now_ms();
        let mut handles = Vec::with_capacity(chats.len());
        let mut batch = Vec::with_capacity(BATCH.min(chats.len()));
        for (i, c) in chats.into_iter().enumerate() {
            let handle = first + i as u64;
            let (core, _) = ChatCore::provisioned(
                self.config.chat,
                c.side,
                c.chat_id,
                c.access_hash,
                c.key,
                dh.clone(),
                c.peer_layer,
                now,
            );
            batch.push(NewChat {
                account,
                handle,
                chat_id: c.chat_id,
                state: core.snapshot(),
            });
            handles.push(handle);
            if batch.len() == BATCH {
                self.store.write_new_chats(&batch)?;
                batch.clear();
            }
        }
        if !batch.is_empty() {
            self.store.write_new_chats(&batch)?;
        }
        Ok(handles)
    }
}
