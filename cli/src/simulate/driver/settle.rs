//! The end of a run: waiting until every chat is quiet, the consistency check, and the
//! restart probe.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use secretchat::sim::SimServer;
use secretchat::{AccountId, ChatId, ChatStatus, EventStream, InputMessage, Update};
use tokio::sync::mpsc;

use super::sender::Note;
use super::{Driver, Pair, lock};
use crate::simulate::ledger::Ledger;
use crate::simulate::report::Consistency;
use crate::simulate::workload::{Item, Workload, parse_prefix};
use crate::simulate::{SimulateError, SimulateOptions};

/// Chats checked for consistency in scale mode (an even sample).
const MAX_CHECKED: usize = 2000;

impl Driver {
    /// Waits (up to 30 s) until every chat is quiet and both sides agree; returns the final
    /// statuses. Events keep being handled meanwhile.
    pub(super) async fn settle(
        &mut self,
        events: &mut EventStream,
        inbox: &mut mpsc::UnboundedReceiver<Note>,
    ) -> Vec<(usize, Option<ChatStatus>, Option<ChatStatus>)> {
        let deadline = Instant::now() + Duration::from_secs(30);
        // Every chat, or in scale mode an even sample (each status loads a sleeping chat).
        let n = self.pairs.len();
        let step = if self.opts.active.is_some() {
            n.div_ceil(MAX_CHECKED).max(1)
        } else {
            1
        };
        loop {
            while let Some(e) = events.try_next() {
                self.events(e, events);
            }
            while let Ok(n) = inbox.try_recv() {
                self.note(n);
            }
            let mut all = Vec::with_capacity(n / step + 1);
            for (pair, p) in self.pairs.iter().enumerate().step_by(step) {
                let mut st = [None, None];
                for (i, side) in p.sides.iter().enumerate() {
                    if let Some((a, h)) = side {
                        match self.engine.diagnostics(AccountId(*a), ChatId(*h)).await {
                            Ok(s) => st[i] = Some(s),
                            Err(e) => {
                                self.status_errors.insert(pair, e.to_string());
                            }
                        }
                    }
                }
                let [a, b] = st;
                all.push((pair, a, b));
            }
            let quiet = all
                .iter()
                .all(|(_, a, b)| matches!((a, b), (Some(a), Some(b)) if agree(a, b)));
            if quiet || Instant::now() >= deadline {
                return all;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    pub(super) fn check(
        &self,
        statuses: &[(usize, Option<ChatStatus>, Option<ChatStatus>)],
    ) -> Consistency {
        let mut c = Consistency::default();
        for (pair, a, b) in statuses {
            let pair = *pair;
            match (a, b) {
                (Some(a), Some(b)) if agree(a, b) => c.consistent += 1,
                (Some(a), Some(b)) => {
                    c.inconsistent += 1;
                    self.violation(
                        pair,
                        0,
                        None,
                        "inconsistent",
                        format!(
                            "sides disagree: phases {}/{}, seq {:?}/{:?}, keys {:?}/{:?}, \
                             re-keying {}/{}",
                            a.phase,
                            b.phase,
                            a.seq,
                            b.seq,
                            a.key_fingerprint,
                            b.key_fingerprint,
                            a.rekeying,
                            b.rekeying
                        ),
                    );
                }
                _ => {
                    c.inconsistent += 1;
                    self.violation(
                        pair,
                        0,
                        None,
                        "inconsistent",
                        "a side never became ready".into(),
                    );
                }
            }
        }
        c
    }
}

/// Reopens the engine on the run's store (after the run's engine was shut down) and times how
/// long until it serves: one more message on the first chat, sent and delivered. The message
/// is verified like every other.
pub(super) async fn restart_probe(
    opts: &SimulateOptions,
    dir: &Path,
    sim: &Arc<SimServer>,
    pair: &Pair,
    ledger: &Arc<Mutex<Ledger>>,
    work: Workload,
) -> Result<f64, SimulateError> {
    let ([Some(a), Some(b)], true) = (pair.sides, pair.started) else {
        return Ok(0.0);
    };
    let t = Instant::now();
    let (engine, mut events) = super::setup::open_engine(opts, dir)?;
    for acc in 1..=opts.accounts as u64 {
        let device = sim.device(acc as i64, 0);
        let feed = engine
            .add_account(AccountId(acc), Arc::new(device.clone()))
            .await?;
        sim.connect(&device, feed);
    }
    let idx = lock(ledger).streams[0].sent;
    let text = match work.item(0, 0, idx) {
        Item::Text(t) | Item::File(t) => t,
    };
    lock(ledger).sending(0, idx, Instant::now());
    let message = InputMessage::text(text.clone()).with_random_id(Workload::random_id(0, 0, idx));
    let sent = engine
        .send_message(AccountId(a.0), ChatId(a.1), message)
        .await;
    if sent.is_err() {
        return Ok(t.elapsed().as_secs_f64());
    }
    lock(ledger).sent(0, idx);
    let deadline = Instant::now() + Duration::from_secs(30);
    while let Ok(Some(e)) = tokio::time::timeout(
        deadline.saturating_duration_since(Instant::now()),
        events.next(),
    )
    .await
    {
        if let Some(seq) = e.seq {
            drop(engine.ack(seq));
        }
        if let Update::NewMessage(message) = &e.update {
            let got = message.text.as_str();
            if (e.account.0, e.chat.0) == b && parse_prefix(got) == Some((0, 0, idx)) {
                let took = t.elapsed().as_secs_f64();
                lock(ledger).received(0, 0, idx, got == text, Instant::now());
                return Ok(took);
            }
        }
    }
    // Never arrived: the ledger counts it lost.
    Ok(t.elapsed().as_secs_f64())
}

/// Both sides ready, on one key, no exchange running, and each side received what the other
/// sent.
pub(super) fn agree(a: &ChatStatus, b: &ChatStatus) -> bool {
    a.phase == "ready"
        && b.phase == "ready"
        && !a.rekeying
        && !b.rekeying
        && a.key_fingerprint.is_some()
        && a.key_fingerprint == b.key_fingerprint
        && a.seq.0 == b.seq.1
        && b.seq.0 == a.seq.1
}
