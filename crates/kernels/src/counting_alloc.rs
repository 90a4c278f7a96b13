//! A counting global allocator, to prove that a warm training step allocates nothing.
//!
//! A test binary installs it with
//! `#[global_allocator] static A: Counting = Counting;` (re-exported as `stagewise_testkit::alloc`)
//! and wraps the code under test in [`count_allocations`].

// A global allocator is the one place a counting test needs `unsafe`.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// Forwards to the system allocator and counts allocations while counting is on.
pub struct Counting;

static THIS_THREAD: AtomicUsize = AtomicUsize::new(0);
static WORKERS: AtomicUsize = AtomicUsize::new(0);
static COUNTING: AtomicBool = AtomicBool::new(false);

thread_local! {
    /// The thread that called [`count_allocations`].
    static ON_THIS_THREAD: Cell<bool> = const { Cell::new(false) };
    /// A thread marked with [`mark_this_thread`] (a worker of the code under test).
    static MARKED: Cell<bool> = const { Cell::new(false) };
}

fn record() {
    if COUNTING.load(Ordering::Relaxed) {
        // `try_with`: the allocator may run while this thread's locals are being torn down.
        let caller = ON_THIS_THREAD.try_with(Cell::get).unwrap_or(false);
        if caller {
            THIS_THREAD.fetch_add(1, Ordering::Relaxed);
        }
        if caller || MARKED.try_with(Cell::get).unwrap_or(false) {
            WORKERS.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Marks the calling thread as one whose allocations [`count_allocations`] counts in its second
/// figure, e.g. every worker of a rayon pool, from its `start_handler`. Unmarked threads (the
/// test harness's own, say) are never counted: they allocate on their own schedule.
pub fn mark_this_thread() {
    MARKED.with(|m| m.set(true));
}

// SAFETY: every call is forwarded unchanged to the system allocator.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        record();
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        record();
        // SAFETY: same contract as ours.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        record();
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// Allocations made while `f` ran: `(on the calling thread, on the calling thread and every
/// thread marked with [`mark_this_thread`])`.
///
/// Only meaningful in a binary whose global allocator is [`Counting`]; run such tests one at a
/// time (one test per binary, or `--test-threads 1`), since the counters are global.
pub fn count_allocations(f: impl FnOnce()) -> (usize, usize) {
    THIS_THREAD.store(0, Ordering::Relaxed);
    WORKERS.store(0, Ordering::Relaxed);
    ON_THIS_THREAD.with(|on| on.set(true));
    COUNTING.store(true, Ordering::SeqCst);
    f();
    COUNTING.store(false, Ordering::SeqCst);
    ON_THIS_THREAD.with(|on| on.set(false));
    (THIS_THREAD.load(Ordering::Relaxed), WORKERS.load(Ordering::Relaxed))
}
