//! Fetching missed updates: `updates.getDifference` from the watermark, slices back to back
//! (the bookkeeping is `runtime/queue.rs`'s).

use actix::prelude::*;
use secretchat_schema::api::enums as api;
use secretchat_schema::api::functions::updates as u;

use super::{AccountActor, message_key};
use crate::runtime::{AckToken, call_retrying};

impl AccountActor {
    pub(super) fn get_difference(&mut self, ctx: &mut Context<Self>) {
        // Checked at ticks `difference_interval` apart: half a tick early counts as due, so an
        // idle interval equal to the tick polls at every tick.
        let config = &self.shared.config;
        let idle = self.last_difference.is_none_or(|t| {
            t.elapsed() + config.difference_interval / 2 >= config.idle_difference_interval
        });
        if let Some(mark) = self.queue.due(idle) {
            self.fetch_difference(mark, ctx);
        }
    }

    /// Asks for the difference from `mark`. A `differenceSlice` answer (more to come) is
    /// followed by the next request as soon as its messages are stored, not at the next
    /// interval: at scale one 1,000-message slice per interval fell behind the live rate, and
    /// messages behind a dropped push waited up to 100 s (measured).
    pub(super) fn fetch_difference(&mut self, mark: i32, ctx: &mut Context<Self>) {
        tracing::trace!(account = self.account, qts = mark, "getDifference");
        self.last_difference = Some(std::time::Instant::now());
        let api = self.api.clone();
        let req = u::GetDifference {
            pts: 0,
            pts_limit: None,
            pts_total_limit: None,
            date: 0,
            qts: mark,
            qts_limit: None,
        };
        ctx.wait(
            async move { call_retrying(&*api, &req).await }
                .into_actor(self)
                .map(move |d, act, ctx| {
                    let Ok(d) = d else {
                        return;
                    };
                    let more = matches!(d, api::updates::Difference::Slice(_));
                    let (messages, others, state) = match d {
                        api::updates::Difference::Difference(d) => {
                            (d.new_encrypted_messages, d.other_updates, Some(d.state))
                        }
                        api::updates::Difference::Slice(d) => (
                            d.new_encrypted_messages,
                            d.other_updates,
                            Some(d.intermediate_state),
                        ),
                        _ => return,
                    };
                    for o in others {
                        act.on_update(o, ctx);
                    }
                    let Some(api::updates::State::State(state)) = state else {
                        return;
                    };
                    // Messages that arrived live (stored or on their way) are not routed again.
                    let fresh = act
                        .queue
                        .batch(mark, messages, state.qts, more, message_key);
                    if fresh.is_empty() {
                        if let Some(m) = act.queue.next_slice() {
                            act.fetch_difference(m, ctx);
                        }
                        return;
                    }
                    for msg in fresh {
                        act.route_message(msg, Some(AckToken::Difference), ctx);
                    }
                }),
        );
    }
}
