//! The end of a crash test: faults off, every accepted message delivered, then per chat one
//! re-key (both sides on one new key) and one more message each way.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use secretchat::sim::SimFaults;

use super::Driver;
use crate::crash::wire::Down;

impl Driver<'_> {
    /// Faults off; waits for every confirmed message; then per chat one re-key and one more
    /// message each way.
    pub(super) async fn finish(&mut self) {
        self.sim.set_faults(SimFaults::NONE);
        let settle = Duration::from_secs(self.opts.settle_s);
        // Every account runs somewhere (a take-over may still be under way).
        let deadline = Instant::now() + settle;
        while self.holder.iter().any(Option::is_none) && Instant::now() < deadline {
            self.traffic(Instant::now() + Duration::from_millis(50), false)
                .await;
        }
        self.drain(settle).await;
        let before = self.poll_status().await;
        for p in 0..self.pairs.len() {
            if let Some(h) = self.pairs[p][0] {
                self.send_for(1, Down::Rekey(1, h));
            }
        }
        let deadline = Instant::now() + settle;
        let mut rekeyed = vec![false; self.pairs.len()];
        while Instant::now() < deadline && rekeyed.iter().any(|r| !r) {
            self.traffic(Instant::now() + Duration::from_millis(300), false)
                .await;
            let now = self.poll_status().await;
            for (p, done) in rekeyed.iter_mut().enumerate() {
                *done = self.agree_on_new_key(p, &before, &now);
            }
        }
        // One more message each way, after the re-key.
        let last: Vec<Option<u32>> = (0..self.in_flight.len())
            .map(|s| self.send_next(s))
            .collect();
        self.drain(settle).await;
        self.report.chats_working = rekeyed
            .iter()
            .enumerate()
            .filter(|&(p, ok)| {
                *ok && [p * 2, p * 2 + 1]
                    .iter()
                    .all(|&s| last[s].is_some_and(|i| self.check.is_confirmed_and_delivered(s, i)))
            })
            .count();
    }

    fn agree_on_new_key(
        &self,
        p: usize,
        before: &HashMap<(u64, u64), (i64, u32, bool)>,
        now: &HashMap<(u64, u64), (i64, u32, bool)>,
    ) -> bool {
        let [Some(a), Some(b)] = self.pairs[p] else {
            return false;
        };
        match (now.get(&(1, a)), now.get(&(2, b)), before.get(&(1, a))) {
            (Some(x), Some(y), Some(old)) => x.0 == y.0 && x.0 != old.0 && !x.2 && !y.2,
            _ => false,
        }
    }

    /// Asks both sides of every chat for their status; returns what came back.
    async fn poll_status(&mut self) -> HashMap<(u64, u64), (i64, u32, bool)> {
        self.statuses.clear();
        let want = self.pairs.len() * 2;
        for p in self.pairs.clone() {
            for (side, h) in p.iter().enumerate() {
                if let Some(h) = h {
                    let account = side as u64 + 1;
                    self.send_for(account, Down::Status(account, *h));
                }
            }
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.statuses.len() < want && Instant::now() < deadline {
            self.traffic(Instant::now() + Duration::from_millis(50), false)
                .await;
        }
        self.statuses.clone()
    }

    /// Serves the engine until every confirmed message was delivered (or `limit` passes).
    async fn drain(&mut self, limit: Duration) {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if self.check.outstanding() == 0 && self.in_flight.iter().all(|&n| n == 0) {
                return;
            }
            self.traffic(Instant::now() + Duration::from_millis(100), false)
                .await;
        }
    }
}
