//! A persistent parallel region for a recurrence: a sequence of rounds, each cut into slices
//! that run in parallel, with one cheap wait between rounds instead of a rayon fork-join.
//!
//! A small-batch step is a few microseconds of work: handing it to the pool every step costs as
//! much as the step. Here the threads stay inside one region for the whole sequence. Each
//! participant owns one slice (so the same thread keeps the same part of W_hh in its caches
//! step after step) and claims it round after round; a round opens once every slice of the one
//! before is done.
//!
//! No participant ever waits for a *particular* other thread to show up: slices are claimed
//! with an atomic compare-exchange, and a participant that finds a slice still unclaimed after
//! a while (its owner is late, busy elsewhere in the pool, or was never scheduled) runs it
//! itself. So the region finishes on one thread if need be, and it cannot deadlock with other
//! work in the pool. Which thread runs a slice never changes what it computes: results are
//! bit-identical at any thread count.

use std::hint::spin_loop;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// Most slices a region takes (a fixed array, so a region allocates nothing).
pub(crate) const MAX_SLICES: usize = 16;
/// Spins (a few microseconds) a participant waits for a slice's owner before running the slice
/// itself.
const PATIENCE: u32 = 256;
/// Spins after which a waiting participant also yields its core: on a loaded machine the thread
/// it waits for may be the one that needs it.
const YIELD_AFTER: u32 = 8 * PATIENCE;

/// Claims the next of the jobs counted by `count`, those below `end`: its index, or `None`
/// when every one is taken. For work shared within a round (the pipelined cut by rows): the
/// claims' order is the round's end to publish, not theirs, so they are relaxed.
pub(crate) fn claim(count: &AtomicUsize, end: usize) -> Option<usize> {
    count
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |c| {
            (c < end).then_some(c + 1)
        })
        .ok()
}

/// Claims (see [`claim`]) the jobs `first..first + jobs * runs` of `count`, a grid of `jobs`
/// jobs (the index that runs fastest) by `runs` runs of rows, and does `job(j, run)` for each
/// until none is left.
pub(crate) fn claim_grid(
    count: &AtomicUsize,
    first: usize,
    (jobs, runs): (usize, usize),
    mut job: impl FnMut(usize, usize),
) {
    while let Some(c) = claim(count, first + jobs * runs) {
        job((c - first) % jobs, (c - first) / jobs);
    }
}

/// Runs `work(round, slice)` for every round in `0..rounds`, in order, and every slice in
/// `0..slices` of it on up to `slices` threads of the current pool: every slice of round `r`
/// happens before any slice of round `r + 1`.
pub(crate) fn rounds(rounds: usize, slices: usize, work: &(dyn Fn(usize, usize) + Sync)) {
    assert!((1..=MAX_SLICES).contains(&slices), "team: 1..=16 slices");
    let threads = rayon::current_num_threads().min(slices);
    if threads <= 1 {
        for r in 0..rounds {
            for i in 0..slices {
                work(r, i);
            }
        }
        return;
    }
    let team = Team {
        rounds,
        slices,
        claimed: std::array::from_fn(|_| Line::default()),
        done: Line::default(),
        arrived: Line::default(),
        work,
        panic: std::sync::Mutex::new(None),
        poisoned: AtomicBool::new(false),
    };
    rayon::scope(|s| {
        for _ in 1..threads {
            s.spawn(|_| team.participate());
        }
        team.participate();
    });
    // A slice that panicked: the others stopped at their next wait; the panic goes on from
    // here, as it would have from a plain loop.
    let payload = team.panic.lock().unwrap_or_else(|e| e.into_inner()).take();
    if let Some(payload) = payload {
        std::panic::resume_unwind(payload);
    }
}

/// An atomic counter on cache lines of its own (128 bytes: x86 cores fetch lines in pairs), so
/// that one participant's claim does not take the line another is claiming or spinning on.
#[derive(Default)]
#[repr(align(128))]
struct Line(AtomicUsize);

struct Team<'a> {
    rounds: usize,
    slices: usize,
    /// Per slice: how many rounds of it have been claimed.
    claimed: [Line; MAX_SLICES],
    /// Slices finished, over all rounds: round `r` is open when this reaches `r * slices`.
    done: Line,
    /// Participants so far; each one's index picks the slice it owns.
    arrived: Line,
    work: &'a (dyn Fn(usize, usize) + Sync),
    /// The first panic of a slice, resumed once every participant has left: counted done, so
    /// that nobody spins forever on a round that cannot finish.
    panic: std::sync::Mutex<Option<Box<dyn std::any::Any + Send>>>,
    poisoned: AtomicBool,
}

impl Team<'_> {
    fn participate(&self) {
        let me = self.arrived.0.fetch_add(1, Ordering::Relaxed);
        // A late participant starts at the round in progress.
        let mut r = self.done.0.load(Ordering::Acquire) / self.slices;
        while r < self.rounds && !self.poisoned() {
            self.wait_for(r * self.slices);
            if me < self.slices {
                self.try_run(r, me);
            }
            let end = (r + 1) * self.slices;
            let mut spins = 0u32;
            while self.done.0.load(Ordering::Acquire) < end && !self.poisoned() {
                // Alone, or an owner is late: run what is left of the round.
                if spins >= PATIENCE || self.arrived.0.load(Ordering::Relaxed) == 1 {
                    for i in 0..self.slices {
                        self.try_run(r, i);
                    }
                }
                spins = pause(spins);
            }
            r += 1;
        }
    }

    fn wait_for(&self, done: usize) {
        let mut spins = 0;
        while self.done.0.load(Ordering::Acquire) < done && !self.poisoned() {
            spins = pause(spins);
        }
    }

    fn poisoned(&self) -> bool {
        self.poisoned.load(Ordering::Relaxed)
    }

    /// Runs slice `i` of round `r` unless someone already claimed it.
    fn try_run(&self, r: usize, i: usize) {
        if !self.poisoned()
            && self.claimed[i]
                .0
                .compare_exchange(r, r + 1, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        {
            let run = std::panic::AssertUnwindSafe(|| (self.work)(r, i));
            if let Err(payload) = std::panic::catch_unwind(run) {
                let mut first = self.panic.lock().unwrap_or_else(|e| e.into_inner());
                first.get_or_insert(payload);
                self.poisoned.store(true, Ordering::Relaxed);
            }
            // Release: this slice's writes are seen by whoever sees the round done.
            self.done.0.fetch_add(1, Ordering::Release);
        }
    }
}

/// One wait of a spin loop: a pause, or a yield of the core once the wait has been long.
fn pause(spins: u32) -> u32 {
    if spins >= YIELD_AFTER {
        std::thread::yield_now();
    } else {
        spin_loop();
    }
    spins.saturating_add(1)
}

/// A buffer the slices of a round share, each taking its own disjoint part of it.
#[derive(Clone, Copy)]
pub(crate) struct Shared<'a> {
    ptr: *mut f32,
    len: usize,
    _buf: std::marker::PhantomData<&'a mut [f32]>,
}

// SAFETY: a `Shared` is only read and written through `part` / `part_mut`, whose callers keep
// the parts that threads use at once disjoint (or all read-only).
unsafe impl Send for Shared<'_> {}
// SAFETY: as above.
unsafe impl Sync for Shared<'_> {}

impl<'a> Shared<'a> {
    pub(crate) fn new(buf: &'a mut [f32]) -> Self {
        Shared {
            ptr: buf.as_mut_ptr(),
            len: buf.len(),
            _buf: std::marker::PhantomData,
        }
    }

    /// Its length.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// A read-only view of the whole buffer.
    pub(crate) fn read(&self) -> SharedRead<'a> {
        SharedRead {
            ptr: self.ptr,
            len: self.len,
            _buf: std::marker::PhantomData,
        }
    }

    /// `len` values from `start` (empty when the buffer or `len` is, wherever `start` is: the
    /// steps take their parts of the buffers a cell does not use, as c for GRU, unchanged).
    ///
    /// # Safety
    /// Nothing may write these values while the result lives.
    pub(crate) unsafe fn part(&self, start: usize, len: usize) -> &'a [f32] {
        if self.len == 0 || len == 0 {
            return &[];
        }
        assert!(start <= self.len && len <= self.len - start, "shared part");
        // SAFETY: in bounds (asserted); no writer meanwhile (the caller).
        unsafe { std::slice::from_raw_parts(self.ptr.add(start), len) }
    }

    /// `len` values from `start`, to write (empty when the buffer or `len` is).
    ///
    /// # Safety
    /// Nothing else may read or write these values while the result lives.
    #[allow(clippy::mut_from_ref)]
    pub(crate) unsafe fn part_mut(&self, start: usize, len: usize) -> &'a mut [f32] {
        if self.len == 0 || len == 0 {
            return &mut [];
        }
        assert!(start <= self.len && len <= self.len - start, "shared part");
        // SAFETY: in bounds (asserted); exclusive meanwhile (the caller).
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add(start), len) }
    }

    /// `n` values at `at + k * stride` for each gate `k < count`, empty for the others (the
    /// same units of every gate block of a row).
    ///
    /// # Safety
    /// As [`Shared::part`], for every part.
    pub(crate) unsafe fn gates(
        &self,
        at: usize,
        stride: usize,
        count: usize,
        n: usize,
    ) -> [&'a [f32]; 4] {
        // SAFETY: forwarded to the caller.
        std::array::from_fn(|k| unsafe {
            self.part(at + k * stride, if k < count { n } else { 0 })
        })
    }

    /// [`Shared::gates`], to write.
    ///
    /// # Safety
    /// As [`Shared::part_mut`], for every part.
    pub(crate) unsafe fn gates_mut(
        &self,
        at: usize,
        stride: usize,
        count: usize,
        n: usize,
    ) -> [&'a mut [f32]; 4] {
        // SAFETY: forwarded to the caller; the parts of distinct gates are disjoint when
        // `stride >= n`.
        std::array::from_fn(|k| unsafe {
            self.part_mut(at + k * stride, if k < count { n } else { 0 })
        })
    }

    /// Asks for the lines of [`Shared::gates`]'s parts to be fetched (see `prefetch.rs`).
    ///
    /// # Safety
    /// As [`Shared::gates`].
    pub(crate) unsafe fn prefetch_gates(&self, at: usize, stride: usize, count: usize, n: usize) {
        // SAFETY: forwarded to the caller.
        for part in unsafe { self.gates(at, stride, count, n) } {
            crate::prefetch::lines(part);
        }
    }

    /// The block of `rows` rows of `width` values, `ld` apart, from `start`, for the GEMM
    /// drivers that write disjoint blocks through a raw pointer.
    pub(crate) fn out_block(
        &self,
        start: usize,
        rows: usize,
        ld: usize,
        width: usize,
    ) -> crate::packed::OutPtr {
        let end = rows
            .checked_sub(1)
            .map_or(Some(0), |r| r.checked_mul(ld)?.checked_add(width));
        assert!(
            end.and_then(|e| e.checked_add(start))
                .is_some_and(|e| e <= self.len),
            "shared block"
        );
        crate::packed::OutPtr(self.ptr.wrapping_add(start))
    }
}

/// A buffer the slices of a round read, which others may write elsewhere meanwhile (the input of
/// a layer while the layer below writes its next rows).
#[derive(Clone, Copy)]
pub(crate) struct SharedRead<'a> {
    ptr: *const f32,
    len: usize,
    _buf: std::marker::PhantomData<&'a [f32]>,
}

// SAFETY: a `SharedRead` is only read, through `part`, whose callers keep the parts they read
// apart from what is written meanwhile.
unsafe impl Send for SharedRead<'_> {}
// SAFETY: as above.
unsafe impl Sync for SharedRead<'_> {}

impl<'a> SharedRead<'a> {
    pub(crate) fn new(buf: &'a [f32]) -> Self {
        SharedRead {
            ptr: buf.as_ptr(),
            len: buf.len(),
            _buf: std::marker::PhantomData,
        }
    }

    /// `len` values from `start`.
    ///
    /// # Safety
    /// Nothing may write these values while the result lives.
    pub(crate) unsafe fn part(&self, start: usize, len: usize) -> &'a [f32] {
        assert!(start <= self.len && len <= self.len - start, "shared part");
        // SAFETY: in bounds (asserted); no writer meanwhile (the caller).
        unsafe { std::slice::from_raw_parts(self.ptr.add(start), len) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU64;

    #[test]
    fn every_slice_once_and_rounds_in_order() {
        for threads in [1, 2, 3, 5] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            for slices in [1, 2, 3, 7, MAX_SLICES] {
                let (n, rounds) = (slices, 200);
                let runs: Vec<AtomicU64> = (0..n).map(|_| AtomicU64::new(0)).collect();
                let total = AtomicUsize::new(0);
                pool.install(|| {
                    super::rounds(rounds, slices, &|r, i| {
                        // Every slice of the rounds before is done.
                        assert!(total.load(Ordering::Acquire) >= r * slices);
                        assert_eq!(runs[i].fetch_add(1, Ordering::Relaxed), r as u64);
                        total.fetch_add(1, Ordering::Release);
                    })
                });
                assert_eq!(total.into_inner(), rounds * slices);
            }
        }
    }

    /// A panic in a slice ends the region and goes on to the caller, at any thread count,
    /// instead of leaving the others waiting for a round that never finishes.
    #[test]
    fn a_panicking_slice_panics_the_caller() {
        for threads in [1, 2, 3] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            let ran = AtomicUsize::new(0);
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                pool.install(|| {
                    rounds(50, 3, &|r, i| {
                        ran.fetch_add(1, Ordering::Relaxed);
                        if (r, i) == (7, 1) {
                            panic!("slice 1 of round 7");
                        }
                    })
                })
            }));
            let payload = result.expect_err("the panic reaches the caller");
            assert_eq!(payload.downcast_ref::<&str>(), Some(&"slice 1 of round 7"));
            // Nothing past the panic's round.
            assert!(ran.into_inner() <= 8 * 3, "{threads} threads");
        }
    }

    #[test]
    fn finishes_when_the_other_threads_are_busy() {
        // Both pool threads run a region at once: each may have to do all of its slices.
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        let count = AtomicUsize::new(0);
        pool.install(|| {
            rayon::join(
                || rounds(300, 2, &|_, _| _ = count.fetch_add(1, Ordering::Relaxed)),
                || rounds(300, 2, &|_, _| _ = count.fetch_add(1, Ordering::Relaxed)),
            )
        });
        assert_eq!(count.into_inner(), 1200);
    }
}
