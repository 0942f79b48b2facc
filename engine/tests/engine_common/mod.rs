//! Helpers shared by the running-engine tests.

#![allow(dead_code)]

pub mod node;

use std::time::Duration;

use secretchat_engine::protocol::chat::ChatConfig;
use secretchat_engine::runtime::EngineConfig;
use secretchat_engine::store::{Durability, StoreOptions};
use secretchat_schema::api::{enums as api, types as api_types};

/// Short timers and intervals for tests; no fsync.
pub fn config() -> EngineConfig {
    EngineConfig {
        chat: ChatConfig {
            resend_retry_ms: 300,
            unhealthy_after: 10,
            retransmit_ms: 500,
            max_backoff_ms: 2_000,
            ..ChatConfig::default()
        },
        store: StoreOptions {
            durability: Durability::Buffered,
            at_rest_key: None,
            ..StoreOptions::default()
        },
        dh_threads: 2,
        file_threads: 2,
        chat_threads: 2,
        ack_interval: Duration::from_millis(50),
        difference_interval: Duration::from_millis(300),
        idle_after: Duration::from_secs(30),
        ..EngineConfig::default()
    }
}

/// The simulator's user `id`.
pub fn user(id: i64) -> api::InputUser {
    api::InputUser::InputUser(api_types::InputUser {
        user_id: id,
        access_hash: 0,
    })
}

/// Whether `needle` appears in any file under `dir` (what someone with a copy of the
/// directory sees). A file that vanishes while it is read counts as not holding it.
pub fn appears(dir: &std::path::Path, needle: &[u8]) -> bool {
    std::fs::read_dir(dir).unwrap().any(|f| {
        let p = f.unwrap().path();
        if p.is_dir() {
            return appears(&p, needle);
        }
        std::fs::read(&p)
            .map(|b| b.windows(needle.len()).any(|w| w == needle))
            .unwrap_or(false)
    })
}
