//! Numbers drawn from a shared database's counters (chat handles, inbox sequence numbers): a
//! node reserves them in blocks, so that two nodes never hand out the same number and a
//! number costs no round trip. The next block is reserved ahead, on a thread of its own, once
//! half of the current one is used: the thread that takes a number (an account's, a chat's)
//! waits for the database only when numbers are taken faster than a block is reserved.

use std::sync::{Arc, Mutex};

use super::StoreError;
use super::backend::Backend;

/// Which counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Counter {
    /// Chat handles.
    Handle,
    /// Inbox sequence numbers.
    Inbox,
}

impl Counter {
    /// Its name in the database.
    fn name(self) -> &'static str {
        match self {
            Counter::Handle => "handle",
            Counter::Inbox => "inbox",
        }
    }
}

/// One counter's numbers held by this node.
#[derive(Debug, Default)]
struct Blocks {
    /// `(next, end)` of the block in use.
    current: (u64, u64),
    /// A block reserved ahead.
    ahead: Option<(u64, u64)>,
    /// A reservation ahead is under way.
    reserving: bool,
    /// Moves on when the held numbers are given up ([`SharedCounters::restart`]): a
    /// reservation ahead from before is dropped when it lands.
    generation: u64,
}

/// The numbers a node holds from a shared database's counters.
#[derive(Debug, Default)]
pub(super) struct SharedCounters {
    blocks: Arc<Mutex<[Blocks; 2]>>,
}

fn slot(counter: Counter) -> usize {
    match counter {
        Counter::Handle => 0,
        Counter::Inbox => 1,
    }
}

fn poisoned<T>(_: T) -> StoreError {
    StoreError::Corrupt("counter")
}

impl SharedCounters {
    /// `n` consecutive numbers of `counter`, none below `floor`; a new block (of at least
    /// `size`) is reserved here only if none was reserved ahead.
    ///
    /// # Errors
    /// The database's, when a block had to be reserved here and could not be.
    pub(super) fn take(
        &self,
        db: &Arc<dyn Backend>,
        counter: Counter,
        n: u64,
        size: u64,
        floor: u64,
    ) -> Result<u64, StoreError> {
        let mut all = self.blocks.lock().map_err(poisoned)?;
        let b = &mut all[slot(counter)];
        if b.current.0 + n > b.current.1 {
            match b.ahead.take() {
                Some(ahead) if ahead.1 - ahead.0 >= n && ahead.0 >= floor => b.current = ahead,
                _ => {
                    let size = size.max(n);
                    let first = db.reserve(counter.name(), size, floor)?;
                    b.current = (first, first + size);
                }
            }
        }
        let first = b.current.0;
        b.current.0 += n;
        let ahead = b.ahead.is_none() && !b.reserving && (b.current.1 - b.current.0) * 2 < size;
        let (end, generation) = (b.current.1, b.generation);
        if ahead {
            b.reserving = true;
        }
        drop(all);
        if ahead {
            self.reserve_ahead(db.clone(), counter, size, end.max(floor), generation);
        }
        Ok(first)
    }

    /// Gives up `counter`'s held numbers and takes a fresh block of `size`, none below
    /// `floor`: every number this node hands out from now on is above every number taken
    /// before the call (by any node). Returns the block's first number.
    ///
    /// # Errors
    /// The database's.
    pub(super) fn restart(
        &self,
        db: &Arc<dyn Backend>,
        counter: Counter,
        size: u64,
        floor: u64,
    ) -> Result<u64, StoreError> {
        let mut all = self.blocks.lock().map_err(poisoned)?;
        let b = &mut all[slot(counter)];
        b.generation += 1;
        b.ahead = None;
        b.reserving = false;
        let first = db.reserve(counter.name(), size, floor)?;
        b.current = (first, first + size);
        Ok(first)
    }

    /// Reserves `counter`'s next block on a thread of its own.
    fn reserve_ahead(
        &self,
        db: Arc<dyn Backend>,
        counter: Counter,
        size: u64,
        floor: u64,
        generation: u64,
    ) {
        let blocks = self.blocks.clone();
        let spawned = std::thread::Builder::new()
            .name("secretchat-counter".into())
            .spawn(move || {
                let reserved = db.reserve(counter.name(), size, floor);
                let Ok(mut all) = blocks.lock() else {
                    return;
                };
                let b = &mut all[slot(counter)];
                if b.generation != generation {
                    return; // given up meanwhile
                }
                b.reserving = false;
                match reserved {
                    Ok(first) => b.ahead = Some((first, first + size)),
                    // Taken in place when the block runs out.
                    Err(e) => tracing::debug!(counter = counter.name(), error = %e, "reserving ahead failed"),
                }
            });
        if spawned.is_err() {
            if let Ok(mut all) = self.blocks.lock() {
                all[slot(counter)].reserving = false;
            }
        }
    }
}
