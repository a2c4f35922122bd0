//! The test binary's allocator: the system's (glibc's malloc), counting the heap each thread holds
//! as glibc really hands it out (`malloc_usable_size` plus its 8-byte header), so a test can
//! measure what a structure it fills on its own thread takes, whatever other tests run beside it.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

pub struct Counting;

#[global_allocator]
static COUNTING: Counting = Counting;

thread_local! {
    /// Bytes allocated on this thread less those freed on it.
    static HELD: Cell<isize> = const { Cell::new(0) };
}

fn footprint(ptr: *mut u8) -> isize {
    // SAFETY: `ptr` came from the system allocator (glibc's malloc) and is not yet freed.
    (unsafe { libc::malloc_usable_size(ptr.cast()) } + 8) as isize
}

fn add(n: isize) {
    // A thread being torn down has no counter left: its allocations go uncounted.
    let _ = HELD.try_with(|h| h.set(h.get() + n));
}

// SAFETY: every call is forwarded to `System` unchanged; the counting only reads the pointers.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            add(footprint(ptr));
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let ptr = unsafe { System.alloc_zeroed(layout) };
        if !ptr.is_null() {
            add(footprint(ptr));
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        add(-footprint(ptr));
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let old = footprint(ptr);
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            add(footprint(new) - old);
        }
        new
    }
}

/// The heap this thread holds now (bytes it allocated less those it freed).
pub fn held_by_this_thread() -> isize {
    HELD.with(Cell::get)
}
