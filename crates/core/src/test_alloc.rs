// A global allocator cannot be written without `unsafe`; this one is compiled into unit
// tests only, and forwards every call to `System` unchanged.
#![allow(unsafe_code)]

//! A counting allocator for unit tests: the bytes a thread has allocated and not freed,
//! and its peak since [`reset_peak`], so a test can assert what a piece of work costs in
//! memory (counts, never times). Counters are per thread, so tests running in parallel do
//! not see each other's allocations; memory freed by another thread is not subtracted
//! from this one's (it only makes a peak look larger).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

thread_local! {
    static LIVE: Cell<usize> = const { Cell::new(0) };
    static PEAK: Cell<usize> = const { Cell::new(0) };
}

/// The allocator: the system's, counting.
pub struct Counting;

fn grew(bytes: usize) {
    let _ = LIVE.try_with(|live| {
        let now = live.get().saturating_add(bytes);
        live.set(now);
        let _ = PEAK.try_with(|peak| peak.set(peak.get().max(now)));
    });
}

fn shrank(bytes: usize) {
    let _ = LIVE.try_with(|live| live.set(live.get().saturating_sub(bytes)));
}

// SAFETY: every call is forwarded to `System` unchanged; only counters are updated.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract is passed on to System.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as above.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) };
        shrank(layout.size());
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as above.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            shrank(layout.size());
            grew(new_size);
        }
        p
    }
}

/// Starts a new peak at what this thread holds now.
pub fn reset_peak() {
    let live = LIVE.with(Cell::get);
    PEAK.with(|p| p.set(live));
}

/// The most this thread held at once since [`reset_peak`], above what it held then.
pub fn peak_since(start_live: usize) -> usize {
    PEAK.with(Cell::get).saturating_sub(start_live)
}

/// What this thread holds now.
pub fn live() -> usize {
    LIVE.with(Cell::get)
}

/// Runs `work` and returns its result and the peak bytes it held above what was held before.
pub fn peak_of<T>(work: impl FnOnce() -> T) -> (T, usize) {
    let start = live();
    reset_peak();
    let out = work();
    (out, peak_since(start))
}
