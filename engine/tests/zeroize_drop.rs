//! Secrets are wiped when they are dropped: every secret type is boxed (so it lives in a heap
//! block of its own), filled with a marker, and dropped; a global allocator that looks at each
//! block as it is freed reports whether the marker was still there. The control — a plain
//! `Vec<u8>` with the same marker — must be seen, or the check proves nothing.
//!
//! Looking at a block in `dealloc` is sound: the allocator owns it until it hands it back to
//! the system allocator, which it does right after.
#![allow(unsafe_code, clippy::unwrap_used)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use secretchat_engine::crypto::AuthKey;
use secretchat_engine::crypto::dh::DhParams;
use secretchat_engine::crypto::file::FileKey;
use secretchat_engine::crypto::keys::Secret32;
use secretchat_engine::crypto::prime::TELEGRAM_DH_PRIME;
use secretchat_engine::protocol::dh_job::{DhJob, DhPurpose};
use zeroize::Zeroizing;

const MARK: u8 = 0xc7;
/// A run this long of the marker byte means the secret survived.
const RUN: usize = 24;

static WATCH: AtomicBool = AtomicBool::new(false);
static SEEN: AtomicUsize = AtomicUsize::new(0);

struct Inspecting;

unsafe impl GlobalAlloc for Inspecting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if WATCH.load(Ordering::SeqCst) {
            // SAFETY: `ptr` is a live block of `layout.size()` bytes we allocated.
            let block = unsafe { std::slice::from_raw_parts(ptr, layout.size()) };
            let mut run = 0;
            for &b in block {
                run = if b == MARK { run + 1 } else { 0 };
                if run >= RUN {
                    SEEN.fetch_add(1, Ordering::SeqCst);
                    break;
                }
            }
        }
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Inspecting = Inspecting;

/// Drops `value` while watching; returns how many freed blocks still held the marker.
fn survivors<T>(value: T) -> usize {
    // black_box: without it the optimizer may remove the allocation altogether.
    let boxed = std::hint::black_box(Box::new(value));
    SEEN.store(0, Ordering::SeqCst);
    WATCH.store(true, Ordering::SeqCst);
    drop(boxed);
    WATCH.store(false, Ordering::SeqCst);
    SEEN.load(Ordering::SeqCst)
}

/// One test: the watch flags are global, and tests run in parallel threads.
#[test]
fn secret_types_are_wiped_on_drop_and_the_check_would_see_them() {
    // Control: plain bytes are not wiped, and the check sees them.
    assert_eq!(survivors(vec![MARK; 256]), 1, "control Vec");
    assert_eq!(survivors([MARK; 256]), 1, "control array");
    assert_eq!(survivors(AuthKey::new([MARK; 256])), 0, "AuthKey");
    assert_eq!(survivors(Secret32([MARK; 32])), 0, "Secret32");
    let key = FileKey::from_random(&[MARK; 64]);
    assert_eq!(survivors(key), 0, "FileKey");
    let params = Arc::new(DhParams::new(&TELEGRAM_DH_PRIME, 3).unwrap());
    let job = DhJob::new(
        1,
        DhPurpose::Handshake,
        params,
        Zeroizing::new([MARK; 256]),
        None,
        true,
    );
    assert_eq!(survivors(job), 0, "DhJob (the exponent)");
}
