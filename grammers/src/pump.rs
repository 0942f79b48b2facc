//! The connection's update loop: [`pump`] drains grammers' update channel (bounded, and
//! grammers drops what does not fit), hands the engine its updates, and passes the rest on
//! to the application's own update handling (grammers' `UpdatesReceiver` / message box).

use grammers_session::updates::UpdatesLike;
use secretchat::UpdateFeed;
use tokio::sync::mpsc;

use crate::route::split_updates;

/// What a [`pump`] did, when it ended.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PumpStats {
    /// Updates handed to the engine.
    pub to_engine: u64,
    /// Containers passed on to the application.
    pub passed_on: u64,
    /// Containers the application's channel had no room for (its own gap recovery, by pts
    /// and seq, fetches them again).
    pub dropped_for_app: u64,
    /// Secret-chat updates this build could not read (the engine's getDifference brings
    /// their content).
    pub unreadable: u64,
    /// Times the home connection closed (each one asks the engine to catch up).
    pub connections_closed: u64,
}

/// Runs until grammers' channel closes or the engine is gone. Never waits on the
/// application: when `others` is full, its container is dropped and counted, not the
/// engine's updates behind it. `others` may be `None` when nothing else reads updates.
pub async fn pump(
    mut updates: mpsc::Receiver<UpdatesLike>,
    feed: UpdateFeed,
    others: Option<mpsc::Sender<UpdatesLike>>,
) -> PumpStats {
    let mut stats = PumpStats::default();
    while let Some(u) = updates.recv().await {
        let rest = match u {
            UpdatesLike::Updates(container) => {
                let (split, rest) = split_updates(container);
                stats.unreadable += split.unreadable.len() as u64;
                for s in split.secret {
                    if !feed.push(s) {
                        return stats; // the engine stopped
                    }
                    stats.to_engine += 1;
                }
                rest.map(UpdatesLike::Updates)
            }
            UpdatesLike::ConnectionClosed => {
                // Pushes while it was down are lost: the engine asks for the difference at
                // its next gap check (which also reconnects the pool).
                feed.catch_up();
                stats.connections_closed += 1;
                Some(UpdatesLike::ConnectionClosed)
            }
            other => Some(other),
        };
        if let (Some(rest), Some(tx)) = (rest, &others) {
            match tx.try_send(rest) {
                Ok(()) => stats.passed_on += 1,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    stats.dropped_for_app += 1;
                    tracing::warn!(
                        "the application's update channel is full: an update was dropped"
                    );
                }
                Err(mpsc::error::TrySendError::Closed(_)) => {}
            }
        }
    }
    stats
}

#[cfg(test)]
mod tests {
    use grammers_tl_types as tl;

    use super::*;

    fn typing(id: i32) -> tl::enums::Update {
        tl::enums::Update::EncryptedChatTyping(tl::types::UpdateEncryptedChatTyping { chat_id: id })
    }

    fn other(pts: i32) -> tl::enums::Update {
        tl::enums::Update::DeleteMessages(tl::types::UpdateDeleteMessages {
            messages: vec![1],
            pts,
            pts_count: 1,
        })
    }

    fn container(updates: Vec<tl::enums::Update>, seq: i32) -> UpdatesLike {
        UpdatesLike::Updates(tl::enums::Updates::Updates(tl::types::Updates {
            updates,
            users: vec![],
            chats: vec![],
            date: 1,
            seq,
        }))
    }

    #[tokio::test]
    async fn the_engine_gets_its_updates_even_when_the_application_does_not_read() {
        let (tx, rx) = mpsc::channel(16);
        let (feed, mut engine) = UpdateFeed::channel();
        let (app_tx, mut app) = mpsc::channel(1);
        for seq in 1..=4 {
            tx.send(container(vec![typing(seq), other(seq)], seq))
                .await
                .unwrap();
        }
        tx.send(UpdatesLike::ConnectionClosed).await.unwrap();
        drop(tx);
        let stats = pump(rx, feed, Some(app_tx)).await;
        // Every secret update reached the engine, in order.
        let mut got = Vec::new();
        while let Ok(u) = engine.try_recv() {
            got.push(u);
        }
        assert_eq!(got.len(), 4);
        assert_eq!(stats.to_engine, 4);
        // The application's channel held one; the rest were counted, not waited for.
        assert_eq!((stats.passed_on, stats.dropped_for_app), (1, 4));
        let Some(UpdatesLike::Updates(tl::enums::Updates::Updates(first))) = app.recv().await
        else {
            panic!("the first container reached the application");
        };
        assert_eq!((first.seq, first.updates), (1, vec![other(1)]));
    }
}
