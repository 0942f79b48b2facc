//! Delivering updates to devices with the fault model: a thread with a timed queue, so the
//! simulator works with any async runtime (or none).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use secretchat_schema::api::enums as api;

use crate::transport::UpdateFeed;

#[derive(Default)]
struct Queue {
    heap: BinaryHeap<Reverse<(Instant, u64)>>,
    items: HashMap<u64, (UpdateFeed, api::Update)>,
    next: u64,
    stop: bool,
}

/// The delivery thread's handle; the thread stops when this is dropped.
pub struct Delivery {
    shared: Arc<(Mutex<Queue>, Condvar)>,
}

impl Delivery {
    /// Starts the thread.
    pub fn start() -> Self {
        let shared = Arc::new((Mutex::new(Queue::default()), Condvar::new()));
        let worker = shared.clone();
        let _ = std::thread::Builder::new()
            .name("secretchat-sim-delivery".into())
            .spawn(move || run(&worker));
        Self { shared }
    }

    /// Delivers `update` to `feed` after `delay`.
    pub fn schedule(&self, feed: UpdateFeed, update: api::Update, delay: Duration) {
        let (lock, cv) = &*self.shared;
        let Ok(mut q) = lock.lock() else {
            return;
        };
        q.next += 1;
        let id = q.next;
        q.items.insert(id, (feed, update));
        q.heap.push(Reverse((Instant::now() + delay, id)));
        cv.notify_one();
    }
}

impl Drop for Delivery {
    fn drop(&mut self) {
        let (lock, cv) = &*self.shared;
        if let Ok(mut q) = lock.lock() {
            q.stop = true;
        }
        cv.notify_one();
    }
}

fn run(shared: &(Mutex<Queue>, Condvar)) {
    let (lock, cv) = shared;
    let Ok(mut q) = lock.lock() else {
        return;
    };
    loop {
        if q.stop {
            return;
        }
        let now = Instant::now();
        match q.heap.peek().copied() {
            Some(Reverse((at, id))) if at <= now => {
                q.heap.pop();
                if let Some((feed, update)) = q.items.remove(&id) {
                    drop(q);
                    feed.push(update);
                    q = match lock.lock() {
                        Ok(q) => q,
                        Err(_) => return,
                    };
                }
            }
            Some(Reverse((at, _))) => {
                q = match cv.wait_timeout(q, at - now) {
                    Ok((q, _)) => q,
                    Err(_) => return,
                };
            }
            None => {
                q = match cv.wait(q) {
                    Ok(q) => q,
                    Err(_) => return,
                };
            }
        }
    }
}
