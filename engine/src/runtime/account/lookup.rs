//! Which chat a server chat id belongs to: the store's index, or a chat started in this run
//! whose first record is not written yet.
//!
//! A requested chat's first write holds its state record, its index entry and the
//! `ChatRequested` event in one batch, so a crash leaves either all of them or none (and the
//! server's repeated `encryptedChatRequested` then starts it again). Until that write lands the
//! id is known here, in memory, so a repeated request does not start it twice. An index entry
//! whose record is missing (left by an earlier build that wrote the index first) counts as
//! unknown: the chat never existed.

use super::AccountActor;

impl AccountActor {
    /// The handle of server chat `chat_id`, if the chat exists.
    pub(super) fn known_chat(&mut self, chat_id: i32) -> Option<u64> {
        if let Some(h) = self.indexed.get(&chat_id) {
            if self.chats.contains_key(h) {
                return Some(*h);
            }
        }
        let store = &self.shared.store;
        if let Ok(Some(h)) = store.handle_of(self.account, chat_id) {
            if self.chats.contains_key(&h) || store.has_chat(self.account, h).unwrap_or(false) {
                self.new_chats.remove(&chat_id);
                self.indexed.insert(chat_id, h);
                return Some(h);
            }
        }
        // Trusted while its actor runs: one whose first write failed has stopped.
        self.new_chats
            .get(&chat_id)
            .copied()
            .filter(|h| self.chats.get(h).is_some_and(|a| a.connected()))
    }

    /// Forgets the in-memory entries of chats whose first write has landed (run with the idle
    /// sweep, so the map holds only chats started since the last sweep), and the cached index
    /// entries of chats no longer in memory.
    pub(super) fn forget_indexed_new_chats(&mut self) {
        let chats = &self.chats;
        self.indexed.retain(|_, h| chats.contains_key(h));
        let (store, account) = (&self.shared.store, self.account);
        self.new_chats
            .retain(|id, h| !matches!(store.handle_of(account, *id), Ok(Some(x)) if x == *h));
    }
}
