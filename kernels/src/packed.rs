//! GEMM with a pre-packed B operand: the weights, packed once, streamed by the micro-kernels.
//!
//! `C = A · B + bias` where B is a weight matrix transposed (PyTorch stores W as `(N, K)`; the
//! GEMMs need `Wᵀ`). B is cut into panels of `NR` columns, each stored k-major on cache lines,
//! the last one zero-padded (half-width where that covers it: a gate weight's, whose units past
//! each gate's whole panels share a tail, see [`GateLayout`]), so a micro-kernel reads one
//! contiguous stream per panel. Work is shared across
//! the rayon pool by row blocks and panel ranges; every element is one FMA chain in k order
//! whichever task computes it, so results are bit-identical at any thread count.

use crate::aligned::Buf;
use crate::error::holds;
use crate::isa::Isa;
use crate::microkernel::{self, shape, A_STRIDE};
use rayon::prelude::*;
use std::cell::RefCell;

/// `Wᵀ` packed for one ISA's micro-kernel, with an optional bias packed alongside.
#[derive(Debug, Clone)]
pub(crate) struct PackedB {
    isa: Isa,
    k: usize,
    /// B's columns: a plain weight's `n` (the last panel zero-padded, half-width where that
    /// covers it), or all of a gate weight's [`GateLayout::cols`] (likewise).
    n: usize,
    nr: usize,
    /// On a cache line, like every panel (a panel's `k * nr` floats are whole lines): a zmm
    /// load of a panel then never spans two lines (the batch-1 step streamed W_hh at 90 GB/s
    /// from a `Vec`, 16 bytes past a page).
    data: Buf,
    bias: Vec<f32>,
    /// `col_start` of every panel and of the end (`panels() + 1` entries): the drivers ask for
    /// them for every call of a kernel (2.4% of LSTM 37,5,300,200 inference was the driver's
    /// arithmetic for them, 14 kernel calls a step).
    starts: Vec<usize>,
}

/// Where a gate weight's columns sit once packed by [`PackedB::from_gate_weight`], and so in
/// the output of its GEMM: each gate's whole blocks of `nr` units, gate after gate, then one
/// tail that holds the units past the last whole block of every gate in turn (gate `q`'s unit
/// `hw + u` at column `gates * hw + q * rem + u`), in whole panels and a half-width last one
/// where that covers it. A range of unit blocks is then a range of panels in every gate, so
/// one thread can compute all the gates of its units; and the units past the whole blocks
/// share panels across gates instead of padding each gate to a panel: H = 200 takes 25 panels
/// where 4 gates of 6.5 took 26, H = 100 12.5 where 4 of 3.5 took 14, H = 50 6.5 where 8 did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct GateLayout {
    pub gates: usize,
    pub h: usize,
    pub nr: usize,
    /// Whole blocks of `nr` units a gate, their units, and the units past them.
    pub whole: usize,
    pub hw: usize,
    pub rem: usize,
    /// The tail's columns (`gates * rem` rounded up to half a panel) and panels.
    pub tail_cols: usize,
    pub tail_panels: usize,
}

impl GateLayout {
    pub(crate) fn new(isa: Isa, gates: usize, h: usize) -> Self {
        let nr = shape(isa).nr;
        let (whole, rem) = (h / nr, h % nr);
        let half = nr.min(16);
        let tail_cols = (gates * rem).div_ceil(half) * half;
        GateLayout {
            gates,
            h,
            nr,
            whole,
            hw: whole * nr,
            rem,
            tail_cols,
            tail_panels: tail_cols.div_ceil(nr),
        }
    }

    /// Columns in all: the width of an output row.
    pub(crate) fn cols(&self) -> usize {
        self.gates * self.hw + self.tail_cols
    }

    /// The column of gate `q`'s unit `j`.
    pub(crate) fn col(&self, q: usize, j: usize) -> usize {
        match j < self.hw {
            true => q * self.hw + j,
            false => self.tail_col() + q * self.rem + j - self.hw,
        }
    }

    /// The tail's first column (gate 0's unit `hw`).
    pub(crate) fn tail_col(&self) -> usize {
        self.gates * self.hw
    }

    /// Gate `q`'s whole panels among unit blocks `units`, and their units (the first, how many).
    pub(crate) fn whole_panels(
        &self,
        q: usize,
        units: &std::ops::Range<usize>,
    ) -> (std::ops::Range<usize>, usize, usize) {
        let (u0, u1) = (units.start.min(self.whole), units.end.min(self.whole));
        (
            q * self.whole + u0..q * self.whole + u1,
            u0 * self.nr,
            (u1 - u0) * self.nr,
        )
    }

    /// Copies one row of the tail's columns, `src` (from the tail's first), to each gate's
    /// last `rem` units, gate `q`'s at `dst + q * stride` (in an unpadded row of gate blocks,
    /// `dst` is the row's unit `hw` and `stride` is H): the tail's part of the input
    /// projection, computed into scratch.
    ///
    /// # Safety
    /// `src` must hold `gates * rem` floats; `dst + q * stride..+ rem` must be the caller's to
    /// write, for every gate `q`, and apart from `src`.
    pub(crate) unsafe fn spread_tail(&self, src: *const f32, dst: *mut f32, stride: usize) {
        for q in 0..self.gates {
            // SAFETY: within `src`'s and the caller's parts of `dst` (this function's contract).
            unsafe {
                std::ptr::copy_nonoverlapping(src.add(q * self.rem), dst.add(q * stride), self.rem)
            };
        }
    }

    /// The tail's panels if unit blocks `units` hold the tail's units (its block is the last),
    /// else an empty range.
    pub(crate) fn tail(&self, units: &std::ops::Range<usize>) -> std::ops::Range<usize> {
        let first = self.gates * self.whole;
        match self.rem > 0 && units.end > self.whole {
            true => first..first + self.tail_panels,
            false => first..first,
        }
    }
}

impl PackedB {
    /// Packs `B = Wᵀ` for `w`: `(n, k)` row-major (a weight as PyTorch stores it, used by the
    /// forward); `bias`: `n` values or none.
    pub fn from_weight(isa: Isa, w: &[f32], n: usize, k: usize, bias: Option<&[f32]>) -> Self {
        assert_eq!(w.len(), n * k, "weight size");
        let cols = panel_cols(isa, n);
        let bias = bias.map(|b| {
            assert_eq!(b.len(), n, "bias size");
            (0..cols).map(|j| if j < n { b[j] } else { 0.0 }).collect()
        });
        Self::pack(
            isa,
            k,
            n,
            cols,
            |kk, j| (j < n).then(|| w[j * k + kk]),
            bias,
        )
    }

    /// Packs `B = Wᵀ` for a gate weight `w`: `(gates * h, k)` row-major, gate blocks of `h`
    /// rows, and its bias (`gates * h` values) if any, with the columns as [`GateLayout`] places
    /// them; the columns past the tail's units are zeros.
    pub fn from_gate_weight(
        isa: Isa,
        w: &[f32],
        gates: usize,
        h: usize,
        k: usize,
        bias: Option<&[f32]>,
    ) -> Self {
        assert_eq!(w.len(), gates * h * k, "weight size");
        let lay = GateLayout::new(isa, gates, h);
        // The weight row of each column (None: padding).
        let mut row_of = vec![None; lay.cols()];
        for q in 0..gates {
            for j in 0..h {
                row_of[lay.col(q, j)] = Some(q * h + j);
            }
        }
        let bias = bias.map(|b| {
            assert_eq!(b.len(), gates * h, "bias size");
            row_of.iter().map(|r| r.map_or(0.0, |r| b[r])).collect()
        });
        let cols = lay.cols();
        Self::pack(
            isa,
            k,
            cols,
            cols,
            |kk, j| row_of[j].map(|r| w[r * k + kk]),
            bias,
        )
    }

    /// Packs `B = W` itself for `w`: `(k, n)` row-major (the backward's `dG · W`).
    pub fn from_rows(isa: Isa, w: &[f32], k: usize, n: usize) -> Self {
        assert_eq!(w.len(), k * n, "weight size");
        let cols = panel_cols(isa, n);
        Self::pack(
            isa,
            k,
            n,
            cols,
            |kk, j| (j < n).then(|| w[kk * n + j]),
            None,
        )
    }

    /// Panel `p` holds columns `p * nr..` (`nr` of them, or the half-width rest of the last
    /// one), k-major, at `data[p * nr * k..]`; `at(kk, j)` is B's element (None: a zero); the
    /// bias is stored by column.
    fn pack(
        isa: Isa,
        k: usize,
        n: usize,
        cols: usize,
        at: impl Fn(usize, usize) -> Option<f32>,
        bias: Option<Vec<f32>>,
    ) -> Self {
        // What the GEMMs' dispatch on `b.isa` relies on (the public constructors check it
        // first and return an error).
        assert!(
            isa.is_available(),
            "packing for {isa:?}, which this CPU lacks"
        );
        let nr = shape(isa).nr;
        let starts: Vec<usize> = (0..=cols.div_ceil(nr))
            .map(|p| (p * nr).min(cols))
            .collect();
        let mut data = Buf::zeros(cols * k);
        for p in starts.windows(2) {
            let (c0, w) = (p[0], p[1] - p[0]);
            let panel = &mut data[c0 * k..(c0 + w) * k];
            for j in 0..w {
                for kk in 0..k {
                    panel[kk * w + j] = at(kk, c0 + j).unwrap_or(0.0);
                }
            }
        }
        PackedB {
            isa,
            k,
            n,
            nr,
            data,
            bias: bias.unwrap_or_else(|| vec![0.0; cols]),
            starts,
        }
    }

    /// The kernels this operand was packed for.
    pub fn isa(&self) -> Isa {
        self.isa
    }

    pub(crate) fn panels(&self) -> usize {
        self.starts.len() - 1
    }

    /// The first column of panel `p` (of `panels()`, or the end for `p == panels()`).
    #[inline]
    pub(crate) fn col_start(&self, p: usize) -> usize {
        self.starts[p]
    }

    /// The columns of panel `p`: `nr`, or `nr / 2` for a half-width last one.
    #[inline]
    pub(crate) fn width(&self, p: usize) -> usize {
        self.starts[p + 1] - self.starts[p]
    }

    /// Panel `p`'s packed floats (`k` steps of its width) and its bias, for a kernel called on
    /// it alone (a [`microkernel::Rider`]).
    pub(crate) fn panel_and_bias(&self, p: usize) -> (*const f32, *const f32) {
        let col = self.col_start(p);
        (
            self.data[col * self.k..].as_ptr(),
            self.bias[col..].as_ptr(),
        )
    }

    /// The steps of k each panel holds.
    pub(crate) fn k(&self) -> usize {
        self.k
    }
}

/// `n` columns rounded up to panels, the last one half-width where that covers it (16 columns
/// of AVX-512's 32: the backward's d h of H = 200 takes 6.5 panels, not 7).
fn panel_cols(isa: Isa, n: usize) -> usize {
    let q = shape(isa).nr.min(16);
    n.div_ceil(q).max(1) * q
}

/// Lets tasks write disjoint blocks of one C.
#[derive(Clone, Copy)]
pub(crate) struct OutPtr(pub(crate) *mut f32);
// SAFETY: used only by the GEMM drivers (here and gemm_tn.rs) and the attention's heads
// (attention.rs, kv_cache.rs), whose tasks write pairwise disjoint blocks of C.
unsafe impl Send for OutPtr {}
// SAFETY: as above.
unsafe impl Sync for OutPtr {}

impl OutPtr {
    /// The element at `offset` (a method, so closures capture the whole `Send` wrapper).
    pub(crate) fn at(self, offset: usize) -> *mut f32 {
        self.0.wrapping_add(offset)
    }
}

/// Below this many multiply-adds a GEMM runs on the calling thread: a rayon task costs more.
pub(crate) const MIN_TASK_WORK: usize = 1 << 16;
/// Bytes of a panel's k-block, kept in L1 while every row tile of a block streams past it.
const PANEL_BLOCK_BYTES: usize = 24 << 10;
/// Bytes of A's row block, kept in L2 while every panel streams past it.
const ROW_BLOCK_BYTES: usize = 512 << 10;

/// `C = A · B + bias` for A `(m, k)` with leading dimension `lda`, C `(m, n)` with `ldc`; with
/// `accumulate`, `C += A · B` instead (the bias is not added).
pub(crate) fn gemm(
    m: usize,
    a: &[f32],
    lda: usize,
    b: &PackedB,
    c: &mut [f32],
    ldc: usize,
    accumulate: bool,
) {
    let (k, n) = (b.k, b.n);
    if m == 0 || n == 0 {
        return;
    }
    // Checked arithmetic: these asserts are what the unsafe code below relies on.
    assert!(lda >= k && holds(a.len(), m, lda, k), "gemm: A too short");
    assert!(ldc >= n && holds(c.len(), m, ldc, n), "gemm: C too short");
    let wide = microkernel::wide_panels(b.isa, m, 4 * b.data.len());
    let out = OutPtr(c.as_mut_ptr());
    let task = |r0: usize, r1: usize, p0: usize, p1: usize| {
        let c0 = OutPtr(out.at(b.col_start(p0)));
        // SAFETY: the asserts above bound every read of A and every access of C in these rows
        // (columns below n); tasks cover disjoint (row range, panel range) blocks, so no
        // element of C is touched by two tasks.
        unsafe {
            gemm_block(
                b,
                a.as_ptr(),
                lda,
                c0,
                ldc,
                accumulate,
                r0..r1,
                p0..p1,
                n - b.col_start(p0),
                PanelOrder::Forward,
            )
        }
    };
    let panels = b.panels();
    if wide > 0 {
        // Split in whole groups of `wide` panels, so that every call gets its full width (the
        // half-width last panel shares a call only with a run in its own group).
        let groups = panels.div_ceil(wide);
        let (_, tasks) = task_grid(1, groups, m * n * k);
        return run_tasks(tasks, |t| {
            let (g0, g1) = split(groups, tasks, t);
            task(0, m, g0 * wide, (g1 * wide).min(panels))
        });
    }
    let mr = shape(b.isa).mr;
    let row_tiles = m.div_ceil(mr);
    let (row_tasks, panel_tasks) = task_grid(row_tiles, panels, m * n * k);
    run_tasks(row_tasks * panel_tasks, |t| {
        let (r0, r1) = split(row_tiles, row_tasks, t / panel_tasks);
        let (p0, p1) = split(panels, panel_tasks, t % panel_tasks);
        task(r0 * mr, (r1 * mr).min(m), p0, p1)
    });
}

/// The order in which [`gemm_block`] walks its panels. Each element of C is the same FMA
/// chain either way.
///
/// A recurrent weight too big for L2 (W_hh of LSTM H = 512 is 4 MiB) is streamed from L3 every
/// step; walked the other way round every other step, the panels a step used last are the
/// next one's first, still in L2 (as far as it holds them): 16x2048x512 141 -> 146-150
/// GFLOP/s, steps alternating.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PanelOrder {
    Forward,
    Backward,
}

impl PanelOrder {
    /// Forward on even steps, backward on odd ones.
    pub(crate) fn of_step(step: usize) -> Self {
        match step % 2 {
            0 => PanelOrder::Forward,
            _ => PanelOrder::Backward,
        }
    }

    /// The indices of `range` in this order.
    pub(crate) fn walk(self, range: std::ops::Range<usize>) -> impl Iterator<Item = usize> {
        (0..range.len()).map(move |i| match self {
            PanelOrder::Forward => range.start + i,
            PanelOrder::Backward => range.end - 1 - i,
        })
    }
}

/// `C (+)= A · B (+ bias)` for `rows` of A and C and the columns of `panels` of B, on this
/// thread: the few-rows kernel when it applies, else row blocks (A in L2) > panels > k-blocks
/// (a panel's block in L1, or longer: see [`k_block`]) > row tiles. Every element is the same
/// FMA chain either way.
///
/// C is addressed from the first panel of the range: panel `p`'s column `j` is C's column
/// `col_start(p) - col_start(panels.start) + j`, written only below `width`. So a range of one
/// gate's whole panels of a [`PackedB::from_gate_weight`] operand can land in an unpadded gate
/// block of C (see [`GateLayout`]).
///
/// # Safety
/// A must hold `k` floats at `a + i * lda` and C must be ours at `c + i * ldc + j` for every
/// row `i` in `rows` and every column `j < width` of the panels' columns.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn gemm_block(
    b: &PackedB,
    a: *const f32,
    lda: usize,
    c: OutPtr,
    ldc: usize,
    accumulate: bool,
    rows: std::ops::Range<usize>,
    panels: std::ops::Range<usize>,
    width: usize,
    order: PanelOrder,
) {
    // SAFETY: forwarded from this function's contract; no riders.
    unsafe {
        gemm_block_riding(
            b,
            a,
            lda,
            c,
            ldc,
            accumulate,
            rows,
            panels,
            width,
            order,
            (0, &|_| unreachable!("no riders")),
        )
    }
}

/// Riders made on demand: how many, and the `i`th (so a step builds no array of them).
pub(crate) type Riders<'r> = (usize, &'r dyn Fn(usize) -> microkernel::Rider);

/// [`gemm_block`] with `riders`, tiles of other work (the input projection of the next chunk
/// of steps) that a one-row GEMM runs in its calls' k loops, spread evenly over its calls (see
/// [`microkernel::ride`]); every rider is computed, in a call or after the last one, and the
/// results are those of running them alone.
///
/// # Safety
/// As [`gemm_block`]; each rider's operands as [`microkernel::Rider`] says, its block of C
/// disjoint from this call's and from the other riders'.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn gemm_block_riding(
    b: &PackedB,
    a: *const f32,
    lda: usize,
    c: OutPtr,
    ldc: usize,
    accumulate: bool,
    rows: std::ops::Range<usize>,
    panels: std::ops::Range<usize>,
    width: usize,
    order: PanelOrder,
    riders: Riders<'_>,
) {
    let mut taken = 0;
    'gemm: {
        let (k, nr) = (b.k, b.nr);
        let first = b.col_start(panels.start);
        let col = |p: usize| b.col_start(p) - first;
        let width = width.min(col(panels.end));
        if width == 0 || rows.is_empty() {
            break 'gemm;
        }
        // Past `width`, no panel is touched at all.
        let panels = panels.start
            ..(panels.start..panels.end)
                .find(|&p| col(p) >= width)
                .unwrap_or(panels.end);
        let cols_of = |p: usize| b.width(p).min(width - col(p));
        let panel = |p: usize| b.data[b.col_start(p) * k..].as_ptr();
        let bias = |p: usize| b.bias[b.col_start(p)..].as_ptr();
        // The bytes of B this call streams: its panels' (whole, for a half-width last one).
        let streamed = 4 * k * nr * panels.len();
        let mut wide = microkernel::wide_panels(b.isa, rows.len(), streamed);
        let riding = riders.0 > 0 && rows.len() == 1 && microkernel::rides(b.isa);
        if riding {
            wide = wide.min(microkernel::RIDE_PANELS);
        }
        // The calls (about: a half-width panel may make one more) over which the riders spread.
        let calls = panels.len().div_ceil(wide.max(1));
        let mut call = 0;
        if wide > 0 {
            // With so few rows a panel is used once: no k-blocking, several panels per call (a run
            // of whole panels, each `k * nr` floats after the one before, and a half-width last
            // one in the run's last slot, as alone its 1-zmm tile had too few FMA chains: `rows`
            // of them). Groups cut from the end when going backwards: which panels share a call
            // does not change any element's sum.
            let whole_from = |q: usize| b.width(q) == nr;
            let (mut lo, mut hi) = (panels.start, panels.end);
            while lo < hi {
                let (p, count) = match order {
                    PanelOrder::Forward => {
                        // The calls that going backwards makes, in the other order: with a
                        // half-width last panel, the short call first, so that the half shares the
                        // last one with a run (in runs of `wide` from the start, a whole number of
                        // runs left it alone: 12 of H = 100's 12.5 panels).
                        let left = hi - lo;
                        let count = match !whole_from(hi - 1) && !left.is_multiple_of(wide) {
                            true => left % wide,
                            false => wide.min(left),
                        };
                        lo += count;
                        (lo - count, count)
                    }
                    PanelOrder::Backward => {
                        // A half-width panel is the last of the operand: first when going back.
                        let half = usize::from(!whole_from(hi - 1));
                        let whole = (lo..hi - half)
                            .rev()
                            .take(wide - half)
                            .take_while(|&q| whole_from(q))
                            .count();
                        hi -= whole + half;
                        (hi, whole + half)
                    }
                };
                let half = !whole_from(p + count - 1);
                call += 1;
                // The riders due by the end of this call, one of them in it.
                let due = (call * riders.0 / calls).min(riders.0);
                let rider = (riding && !half && taken < due)
                    .then(|| (riders.1)(taken))
                    .filter(|r| r.width == nr);
                if let Some(rider) = rider {
                    // SAFETY: as below, one row, `count` whole panels within RIDE_PANELS; the
                    // rider is the caller's (this function's contract).
                    unsafe {
                        let (a, c) = (a.add(rows.start * lda), c.at(rows.start * ldc + col(p)));
                        microkernel::ride(
                            b.isa,
                            count,
                            k,
                            a,
                            panel(p),
                            k * nr,
                            bias(p),
                            c,
                            cols_of(p + count - 1),
                            accumulate,
                            &rider,
                        );
                    }
                    taken += 1;
                    continue;
                }
                // SAFETY: the rows and panels p..p+count are the caller's, `k * nr` floats apart
                // with their bias, all whole but maybe the last (`half`); the row count and `count`
                // are within `wide_panels`; the ISA was checked when the weights were packed.
                unsafe {
                    let (a, c) = (a.add(rows.start * lda), c.at(rows.start * ldc + col(p)));
                    microkernel::wide(
                        b.isa,
                        rows.len(),
                        count,
                        k,
                        a,
                        lda,
                        panel(p),
                        k * nr,
                        bias(p),
                        c,
                        ldc,
                        cols_of(p + count - 1),
                        accumulate,
                        half,
                    )
                };
            }
            break 'gemm;
        }
        let mr = shape(b.isa).mr;
        let kc_l1 = (PANEL_BLOCK_BYTES / (4 * nr)).max(1);
        let mut block_rows = mr * (ROW_BLOCK_BYTES / (4 * mr * k)).max(1);
        let copy = ACopy::new(b.isa, (k, lda, width), kc_l1, mr);
        if let Some(copy) = &copy {
            block_rows = block_rows.min(copy.max_rows);
        }
        let mut r1 = rows.start;
        while r1 < rows.end {
            let r0 = r1;
            // A last block up to a quarter over the budget is taken whole: each block streams all
            // of B once more (the 256-row projection chunk of H = 512 was 252 + 4 rows, two passes
            // over a 4 MiB W_ih for 4 rows; LSTM 100,64,512 1T 177 -> 174 ms with one).
            r1 = match rows.end - r0 <= block_rows + block_rows / 4 {
                true => rows.end,
                false => r0 + block_rows,
            };
            let kc = k_block(k, kc_l1, (r1 - r0) / mr);
            // SAFETY: rows r0..r1 of A, k floats each, are the caller's.
            let copied = copy
                .as_ref()
                .and_then(|copy| unsafe { copy.fill(a, lda, r0..r1, k, kc) });
            let tiles = row_tiles(r0..r1, mr, kc > kc_l1).count();
            let mut walk = order.walk(panels.clone()).peekable();
            while let Some(p) = walk.next() {
                let after = walk.peek().copied();
                let w = b.width(p);
                for k0 in (0..k).step_by(kc) {
                    let kl = kc.min(k - k0);
                    // The block after this one in the walk (the panel's next k-block, or the next
                    // panel's first): with two tiles or more, the last two prefetch a half of it
                    // each into L2 (see `microkernel::tile`), where the first tile of each block
                    // streamed it from L3 alone (W_hh past L2) with one or a few tiles' reuse. On an
                    // Intel Xeon (2026-12-03, `ab.sh`, 6-8 pairs), the last tile prefetching the
                    // first half: LSTM 100,16,512 infer 1T 0.960x the time, 2T 0.991x, train 1T
                    // 0.975x; GRU 100,16,512 0.971x; LSTM 100,64,512 0.987x, 2T 0.993x; LSTM
                    // 50,64,1024 0.987x; on its AVX2 path LSTM 100,16,512 0.982x, 100,64,512
                    // 0.993x. Then the two last tiles a half each, against that: LSTM 100,16,512
                    // 0.971x (train 0.984x), GRU 100,16,512 0.982x, LSTM 50,64,1024 0.989x, B = 64
                    // 1.00x; 16x2048x512 alone 129.5 -> 138.4 GFLOP/s, 160 with W_hh in L2.
                    let next = match (k0 + kl < k, after) {
                        (true, _) => panel(p).wrapping_add((k0 + kl) * w),
                        (false, Some(q)) => panel(q),
                        (false, None) => std::ptr::null(),
                    };
                    for (ti, (i0, tile_rows)) in row_tiles(r0..r1, mr, kc > kc_l1).enumerate() {
                        let far = microkernel::far_half(next, kl * w, ti, tiles);
                        let (a_tile, lda_tile) = match copied {
                            Some(at) => (
                                at.wrapping_add(at_copy(r1 - r0, k0 / kc, i0 - r0)),
                                A_STRIDE,
                            ),
                            None => (a.wrapping_add(i0 * lda + k0), lda),
                        };
                        // SAFETY: rows i0..i0+tile_rows (within r1), columns k0..k0+kl of A (or
                        // of its copy, `A_STRIDE` floats a row) and the panel's columns of C are
                        // the caller's; the panel holds `kl` steps of `w` floats from step k0, its
                        // bias `w` floats; the ISA was checked when the weights were packed.
                        unsafe {
                            microkernel::tile(
                                b.isa,
                                tile_rows,
                                kl,
                                a_tile,
                                lda_tile,
                                panel(p).add(k0 * w),
                                w,
                                bias(p),
                                c.at(i0 * ldc + col(p)),
                                ldc,
                                cols_of(p),
                                accumulate || k0 > 0,
                                far,
                            )
                        };
                    }
                }
            }
        }
    }
    // SAFETY: the riders' operands are the caller's (this function's contract).
    unsafe {
        // Those no call took (none took any if this was not a one-row GEMM), in tiles of
        // this ISA's rows.
        let mr = shape(b.isa).mr;
        for r in (taken..riders.0).map(riders.1) {
            for r0 in (0..r.rows).step_by(mr) {
                microkernel::tile(
                    b.isa,
                    mr.min(r.rows - r0),
                    r.k,
                    r.a.add(r0 * r.lda),
                    r.lda,
                    r.b,
                    r.width,
                    r.bias,
                    r.c.add(r0 * r.ldc),
                    r.ldc,
                    r.cols,
                    false,
                    std::ptr::null(),
                );
            }
        }
    }
}

/// Floats of each thread's copy of A (see [`ACopy`]): 1 MiB, 442 rows of one k-block.
const A_COPY_FLOATS: usize = 1 << 18;

thread_local! {
    /// This thread's copy of a row block of A (see [`ACopy`]): allocated by the thread's first
    /// GEMM that copies, then reused by every one after it, never grown (a block that would
    /// not fit is read in place). One per thread, as `gemm` (faer) keeps its packing buffers:
    /// the GEMMs run on whichever pool thread rayon picks, so a workspace cannot hand them one.
    static A_COPY: RefCell<Option<Buf>> = const { RefCell::new(None) };
}

/// A row block of A copied, before a GEMM's tiles read it, into a buffer whose rows are
/// [`A_STRIDE`] floats apart, a stride the AVX-512 tile knows at compile time: each broadcast
/// is then one base register plus a constant, where at `lda` the 12-row tile spent a register
/// or an add per row, and the register it frees lets every row tile prefetch the next block
/// of B into L2 (only the tiles of 8 rows or fewer could: the row blocks of H = 1024's
/// projection are 10 tiles of 12 rows, of its dx two). The tile at a compile-time stride
/// reading A in place (a scratch build) gained as much: the addressing and the prefetch pay,
/// not where the copy's rows fall. The copy's rows: `[k-block][row]`, each k-block's `kc` (at
/// most `A_STRIDE`) floats of each row. Read by whole panels and k-blocks of every tile, it
/// costs one pass over the block (a memcpy from L2) against `n` columns of FMAs; the same FMAs
/// in the same order, so the same results.
///
/// Where it pays, end to end, is H = 1024: `ab.sh` on an Intel Xeon (2026-12-04, time with it
/// over without, 6 pairs): LSTM 50,64,1024 inference 0.940x at 1 thread, 0.984x at 2; training
/// 0.968x and 0.965x. At H = 512, the same within the noise (10 pairs): LSTM 100,64,512
/// inference 1.002x, training 0.991x; GRU 100,64,512 0.999x (6 pairs).
///
/// The buffer is refilled only by the next block's `fill` on the same thread: a GEMM's tiles
/// make no call that could run other work on this thread (no rayon join) in between.
struct ACopy {
    /// Rows of a block whose copy fits the buffer.
    max_rows: usize,
}

impl ACopy {
    /// The copy's plan for a GEMM of depth `k` on `isa`, A's rows `lda` apart, `width`
    /// columns of C, or `None` where its tile takes A in place: other ISAs (their tiles keep
    /// few rows), k-blocks past the stride, or too few columns to pay for the copy.
    ///
    /// The copy pays where 1024 columns or more read it, or 512 where A's rows are a multiple
    /// of 4 KiB apart (H = 1024's state, the backward's dG); alone (`packed::timing`,
    /// 3 rounds, 2026-12-04, GFLOP/s without and with it): 64x4096x1024 175-199 / 201-209,
    /// 64x2048x512 194-213 / 204-220, 64x1536x512 183-211 / 198-212, 64x512x1024 199-203 /
    /// 201-206; not at 512 columns otherwise (64x512x2048, the backward's step at H = 512:
    /// 192-210 / 190-206) nor at 256 (64x256x512, a gate of H = 512 cut in two: 214-225 /
    /// 209-219).
    fn new(
        isa: Isa,
        (k, lda, width): (usize, usize, usize),
        kc_l1: usize,
        mr: usize,
    ) -> Option<Self> {
        let rows_4k_apart = (4 * lda).is_multiple_of(4096);
        if isa != Isa::Avx512 || k == 0 || !(width >= 1024 || (rows_4k_apart && width >= 512)) {
            return None;
        }
        // The k-blocks of a block of two tiles or more; a block with fewer tiles takes all of
        // k at once, copied only where that is within the stride too (see `fill`).
        let kc = k_block(k, kc_l1, 2);
        if kc > A_STRIDE {
            return None;
        }
        // Blocks up to a quarter over `max_rows` are taken whole (see `gemm_block`).
        let rows = A_COPY_FLOATS / (k.div_ceil(kc) * A_STRIDE) * 4 / 5 / mr * mr;
        (rows >= mr).then_some(ACopy { max_rows: rows })
    }

    /// Copies rows `rows` of A (`lda` floats apart, `k` each) in k-blocks of `kc` into this
    /// thread's buffer, and gives its start; `None` (nothing copied) where the block does not
    /// fit, its k-blocks are past the stride, or the buffer is busy or cannot be allocated.
    ///
    /// # Safety
    /// A must hold `k` floats from `a + r * lda` for every `r` in `rows`.
    unsafe fn fill(
        &self,
        a: *const f32,
        lda: usize,
        rows: std::ops::Range<usize>,
        k: usize,
        kc: usize,
    ) -> Option<*const f32> {
        let blocks = k.div_ceil(kc);
        if kc > A_STRIDE || blocks * rows.len() * A_STRIDE > A_COPY_FLOATS {
            return None;
        }
        A_COPY.with(|cell| {
            let mut slot = cell.try_borrow_mut().ok()?;
            if slot.is_none() {
                *slot = Some(Buf::try_zeros(A_COPY_FLOATS)?);
            }
            let buf = slot.as_mut()?;
            let dst = buf.as_mut_ptr();
            for (kb, k0) in (0..k).step_by(kc).enumerate() {
                let kl = kc.min(k - k0);
                for (i, r) in rows.clone().enumerate() {
                    // SAFETY: the source is A's row r from k0, `kl` floats within its `k`
                    // (the caller's contract); the destination is row i of k-block kb,
                    // within the buffer (checked above: `blocks * rows * A_STRIDE` floats at
                    // most) and `kl <= A_STRIDE`; a thread-local buffer, not A.
                    unsafe {
                        std::ptr::copy_nonoverlapping(
                            a.add(r * lda + k0),
                            dst.add(at_copy(rows.len(), kb, i)),
                            kl,
                        )
                    };
                }
            }
            // The buffer outlives the GEMM (a thread-local that is never replaced), and no
            // other code of this thread writes it until the next block's `fill`.
            Some(dst.cast_const())
        })
    }
}

/// Where row `i` of k-block `kb` starts in the copy of a block of `rows` rows.
fn at_copy(rows: usize, kb: usize, i: usize) -> usize {
    (kb * rows + i) * A_STRIDE
}

/// The row tiles of `rows`, `(first row, rows)`: whole tiles of `mr` and the remainder; with
/// `balance`, a remainder under half a tile is merged with the last whole tile and the two cut
/// in halves (64 rows: 4 x 12, 8, 8 instead of 5 x 12, 4). For a k-block streamed from L2
/// (see [`k_block`]), where a 4-row tile reads the panel at 3x the bytes per FMA of a 12-row
/// one: LSTM 100,64,512 infer 1T 181.8 -> 178.6 ms, GRU 100,64,512 136.3 -> 134.8, 2T LSTM
/// 95.6 -> 94.5 (same minutes, medians of 4); with the block in L1 it changed nothing.
fn row_tiles(
    rows: std::ops::Range<usize>,
    mr: usize,
    balance: bool,
) -> impl Iterator<Item = (usize, usize)> {
    let n = rows.len();
    let halves = balance && n > mr && !n.is_multiple_of(mr) && n % mr < mr / 2;
    let whole = match halves {
        true => n / mr - 1,
        false => n.div_ceil(mr),
    };
    let (start, last) = (rows.start, n.saturating_sub(whole * mr));
    let split = halves.then(|| {
        let (at, first) = (start + whole * mr, last.div_ceil(2));
        [(at, first), (at + first, last - first)]
    });
    (0..whole)
        .map(move |t| (start + t * mr, mr.min(n - t * mr)))
        .chain(split.into_iter().flatten())
}

/// Steps of a panel's k-block for a row block of `full_tiles` whole row tiles: all `k` in one
/// block, or with 2 whole tiles or more up to three L1 blocks' worth (`kc_l1` steps each, kept
/// in L1 while the tiles pass): each k-block after the first reloads every tile of C, while a
/// block past L1 streams the panel from L2 to each tile at 128 bytes a step, within L2's rate
/// for 12 rows of FMAs. Same minutes, medians of 4 (ms): LSTM 100,64,512 infer 1T 183.1 ->
/// 179.2, GRU 100,64,512 137.2 -> 135.1, LSTM 100,64,256 48.3 -> 47.3 (against `kc_l1`
/// blocks); three blocks' worth for k past that (dx's k = G*H, H = 1024's k), 0.5-1% on LSTM /
/// GRU training and LSTM 50,64,1024; with 2 and 3 whole tiles it pays (LSTM 100,24,512 68.9 ->
/// 67.9, 100,32,512 91.3 -> 90.0, GRU 100,40,512 85.1 -> 83.2). With one tile and a remainder
/// (B = 16's 12 + 4 rows) or one tile alone, all k too: the panel is read by one or two tiles,
/// and each `kc_l1` block reloaded C and restarted the prefetch stream (`ab.sh`, 2026-12-02:
/// LSTM 100,16,512 infer 1T 0.964x the time, 8 of 12 pairs, GRU 100,16,512 0.968x, 10 of 10).
fn k_block(k: usize, kc_l1: usize, full_tiles: usize) -> usize {
    match full_tiles >= 2 {
        true => k.min(3 * kc_l1),
        false => k,
    }
}

/// How a GEMM's grid of (row tile, panel) pairs is cut into row ranges x panel ranges: enough
/// tasks to balance the pool, none too small (`work` multiply-adds in all) to pay for itself.
pub(crate) fn task_grid(row_tiles: usize, panels: usize, work: usize) -> (usize, usize) {
    let threads = rayon::current_num_threads();
    if threads == 1 {
        return (1, 1);
    }
    let max_tasks = (work / MIN_TASK_WORK).clamp(1, 4 * threads);
    let row_tasks = row_tiles.min(max_tasks);
    (row_tasks, panels.min(max_tasks.div_ceil(row_tasks)))
}

/// Runs `task(t)` for every `t < tasks` on the current pool (on this thread when just one).
pub(crate) fn run_tasks(tasks: usize, task: impl Fn(usize) + Send + Sync) {
    if tasks == 1 {
        task(0);
    } else {
        (0..tasks).into_par_iter().for_each(task);
    }
}

/// The `i`-th of `parts` near-equal ranges of `0..len`.
pub(crate) fn split(len: usize, parts: usize, i: usize) -> (usize, usize) {
    (len * i / parts, len * (i + 1) / parts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::SplitMix64;

    /// The AVX-512 tile's copy of A (`ACopy`) changes no bit: each GEMM below, which copies
    /// (1024 columns or more, or 512 with rows a multiple of 4 KiB apart), against the same
    /// columns computed 256 at a time (too few to copy, so A read in place), over row blocks
    /// (k = 2048: 84 rows a block), k-blocks (576 and a remainder), partial tiles and a
    /// half-width last panel; and against a naive sum.
    #[test]
    fn a_copy_changes_no_bits() {
        if !Isa::Avx512.is_available() {
            return;
        }
        let isa = Isa::Avx512;
        let mut rng = SplitMix64(11);
        for &(m, n, k, lda) in &[
            (64, 1024, 512, 512),
            (29, 1040, 1000, 1003),
            (130, 1056, 2048, 2048),
            (13, 512, 1024, 1024),
            (97, 520, 600, 2048),
            (8, 1024, 577, 577),
            (12, 2000, 100, 100),
        ] {
            let mut a = vec![0.0f32; (m - 1) * lda + k];
            let mut w = vec![0.0f32; n * k];
            let mut bias = vec![0.0f32; n];
            for v in [&mut a, &mut w, &mut bias] {
                rng.fill_uniform(v, 1.0);
            }
            let pb = PackedB::from_weight(isa, &w, n, k, Some(&bias));
            assert!(
                ACopy::new(isa, (k, lda, n), 192, 12).is_some(),
                "{m}x{n}x{k}"
            );
            let mut copied = vec![7.0f32; m * n];
            let mut in_place = vec![7.0f32; m * n];
            for (c, step) in [(&mut copied, pb.panels()), (&mut in_place, 256 / pb.nr)] {
                let out = OutPtr(c.as_mut_ptr());
                for p0 in (0..pb.panels()).step_by(step) {
                    let p1 = (p0 + step).min(pb.panels());
                    let width = n - pb.col_start(p0);
                    // SAFETY: A holds m rows of k floats lda apart, C m rows of n; these
                    // panels' columns of C, from column col_start(p0), within n.
                    unsafe {
                        gemm_block(
                            &pb,
                            a.as_ptr(),
                            lda,
                            OutPtr(out.at(pb.col_start(p0))),
                            n,
                            false,
                            0..m,
                            p0..p1,
                            width,
                            PanelOrder::Forward,
                        )
                    };
                }
            }
            assert_eq!(copied, in_place, "{m}x{n}x{k}, lda {lda}");
            for i in 0..m {
                for j in 0..n {
                    let want: f64 = bias[j] as f64
                        + (0..k)
                            .map(|p| a[i * lda + p] as f64 * w[j * k + p] as f64)
                            .sum::<f64>();
                    let got = copied[i * n + j] as f64;
                    assert!(
                        (got - want).abs() < 1e-4 * (1.0 + want.abs()),
                        "{m}x{n}x{k}"
                    );
                }
            }
        }
    }

    /// Tiles riding a one-row GEMM (`gemm_block_riding`) change no bit of it nor of
    /// themselves: the row's GEMM and the riders' tiles (every panel of a second operand, 1 to
    /// 8 rows, a k shorter, equal or longer, a partial or half-width last panel) against each run
    /// alone, walked forward and backward, overwriting and accumulating; more riders than the
    /// row's calls run after them.
    #[test]
    fn riders_change_no_bits() {
        let mut rng = SplitMix64(13);
        for isa in Isa::available() {
            for &(k, n, ki, ni, rows) in &[
                (512, 2048, 512, 1024, 8),
                (100, 400, 37, 116, 5),
                (17, 64, 600, 64, 3),
                (7, 33, 1, 40, 1),
                (64, 96, 64, 320, 8),
                (9, 50, 30, 80, 7),
            ] {
                let (lda, ldx) = (k + 3, ki + 5);
                let mut a = vec![0.0f32; lda];
                let mut x = vec![0.0f32; (rows - 1) * ldx + ki];
                let (mut w, mut wi) = (vec![0.0f32; n * k], vec![0.0f32; ni * ki]);
                let (mut bias, mut bias_i) = (vec![0.0f32; n], vec![0.0f32; ni]);
                for v in [&mut a, &mut x, &mut w, &mut wi, &mut bias, &mut bias_i] {
                    rng.fill_uniform(v, 1.0);
                }
                let pb = PackedB::from_weight(isa, &w, n, k, Some(&bias));
                let pi = PackedB::from_weight(isa, &wi, ni, ki, Some(&bias_i));
                // Every panel rides but a half-width last one (ni = 80 on AVX-512), run alone.
                let whole = pi.panels();
                for (order, accumulate) in
                    [(PanelOrder::Forward, false), (PanelOrder::Backward, true)]
                {
                    let mut start = vec![0.0f32; n];
                    rng.fill_uniform(&mut start, 1.0);
                    let (mut c, mut c_alone) = (start.clone(), start);
                    let (mut ci, mut ci_alone) = (vec![7.0f32; rows * ni], vec![7.0f32; rows * ni]);
                    let out_i = OutPtr(ci.as_mut_ptr());
                    let rider = |q: usize| {
                        let (b, bias) = pi.panel_and_bias(q);
                        let col = pi.col_start(q);
                        microkernel::Rider {
                            rows,
                            k: ki,
                            a: x.as_ptr(),
                            lda: ldx,
                            b,
                            width: pi.width(q),
                            bias,
                            c: out_i.at(col),
                            ldc: ni,
                            cols: pi.nr.min(ni - col),
                        }
                    };
                    // SAFETY: A holds one row of k floats, X `rows` rows of ki floats ldx
                    // apart; C one row of n floats, C_i `rows` rows of ni; every rider writes
                    // its own panel's columns of C_i.
                    unsafe {
                        gemm_block_riding(
                            &pb,
                            a.as_ptr(),
                            lda,
                            OutPtr(c.as_mut_ptr()),
                            n,
                            accumulate,
                            0..1,
                            0..pb.panels(),
                            n,
                            order,
                            (whole, &rider),
                        );
                        gemm_block(
                            &pb,
                            a.as_ptr(),
                            lda,
                            OutPtr(c_alone.as_mut_ptr()),
                            n,
                            accumulate,
                            0..1,
                            0..pb.panels(),
                            n,
                            order,
                        );
                        gemm_block(
                            &pi,
                            x.as_ptr(),
                            ldx,
                            OutPtr(ci_alone.as_mut_ptr()),
                            ni,
                            false,
                            0..rows,
                            0..whole,
                            ni.min(pi.col_start(whole)),
                            PanelOrder::Forward,
                        );
                    }
                    let what = format!("{isa:?} {k} {n} {ki} {ni} {rows} {order:?}");
                    assert_eq!(c, c_alone, "{what}");
                    assert_eq!(ci, ci_alone, "{what}");
                    assert!(ci.iter().any(|&v| v != 7.0), "{what}");
                }
            }
        }
    }

    #[test]
    fn matches_naive_on_edge_shapes_every_isa_and_split() {
        let mut rng = SplitMix64(3);
        for isa in Isa::available() {
            for &(m, n, k) in &[
                (1, 1, 1),
                (1, 33, 7),
                (3, 17, 5),
                (9, 64, 70),
                (13, 31, 1),
                (1, 300, 33),
                (2, 200, 9),
                (3, 513, 17),
                (4, 97, 40),
                (5, 97, 40),
                (6, 200, 9),
                (7, 513, 17),
                (64, 257, 67),
                (100, 1024, 256),
                // One row streaming 256 KiB or more of B (8 AVX-512 panels a call within half
                // of L2, see `wide_panels`), with a half-width last panel.
                (1, 1040, 100),
                (1, 2000, 70),
                // Row blocks of 504 rows at k = 256 (AVX-512): one of 600 (within a quarter
                // over), two of 700.
                (600, 40, 256),
                (700, 40, 256),
                // k-blocks (see `k_block`): a tile and a remainder, one block of all k; five
                // whole tiles and a remainder (cut into halves, see `row_tiles`), one block of
                // all k; the same past three blocks' worth (several blocks).
                (20, 40, 300),
                (64, 40, 500),
                (50, 33, 1200),
                // One tile and a short remainder past one L1 block's worth of k: all of k in
                // one block, the two tiles even (16: 8 + 8, 13: 7 + 6), or not (23: 12 + 11).
                (16, 70, 600),
                (13, 40, 520),
                (23, 40, 700),
            ] {
                let mut a = vec![0.0f32; m * (k + 3)];
                let mut w = vec![0.0f32; n * k];
                let mut bias = vec![0.0f32; n];
                for v in [&mut a, &mut w, &mut bias] {
                    rng.fill_uniform(v, 1.0);
                }
                let pb = PackedB::from_weight(isa, &w, n, k, Some(&bias));
                let ldc = n + 2;
                let mut one = vec![7.0f32; m * ldc];
                let pool1 = rayon::ThreadPoolBuilder::new()
                    .num_threads(1)
                    .build()
                    .unwrap();
                pool1.install(|| gemm(m, &a, k + 3, &pb, &mut one, ldc, false));
                for i in 0..m {
                    for j in 0..n {
                        let want: f64 = bias[j] as f64
                            + (0..k)
                                .map(|p| a[i * (k + 3) + p] as f64 * w[j * k + p] as f64)
                                .sum::<f64>();
                        let got = one[i * ldc + j] as f64;
                        assert!((got - want).abs() < 1e-4 * (1.0 + want.abs()), "{isa:?}");
                    }
                    // Padding columns of C are left alone.
                    assert_eq!(&one[i * ldc + n..i * ldc + ldc], &[7.0, 7.0], "{isa:?}");
                }
                for threads in [2, 3] {
                    let pool = rayon::ThreadPoolBuilder::new()
                        .num_threads(threads)
                        .build()
                        .unwrap();
                    let mut c = vec![7.0f32; m * ldc];
                    pool.install(|| gemm(m, &a, k + 3, &pb, &mut c, ldc, false));
                    assert_eq!(c, one, "{isa:?} {m}x{n}x{k} at {threads} threads");
                }
            }
        }
    }
}

#[cfg(test)]
mod gate_tests {
    use super::*;
    use crate::params::SplitMix64;

    /// Gate weights as [`GateLayout`] places them: by unit blocks as the step teams cut them
    /// (each gate's whole panels into its unpadded block of C, the tail's into a C of its own),
    /// walked either way, and the whole operand at once into C (m, cols): every column where
    /// the layout says, the padding zero, every row count (the few-rows kernels too).
    #[test]
    fn gate_layout_matches_naive_every_isa() {
        let mut rng = SplitMix64(5);
        for isa in Isa::available() {
            let nr = shape(isa).nr;
            for (gates, h, k) in [
                (4, 1, 3),
                (3, 13, 1),
                (4, 16, 5),
                (3, 17, 7),
                (4, 48, 9),
                (1, 70, 33),
                (4, 100, 20),
                (3, 200, 64),
                (4, 64, 8),
                (3, 95, 6),
                // Whole panels and a tail of 1.5 panels on AVX-512 (44 = 32 + 12: 48 columns).
                (4, 44, 5),
                (3, 108, 7),
                (1, 44, 3),
            ] {
                let lay = GateLayout::new(isa, gates, h);
                assert_eq!(lay.hw + lay.rem, h);
                assert!(lay.tail_cols >= gates * lay.rem && lay.tail_cols < gates * lay.rem + nr);
                let mut w = vec![0.0f32; gates * h * k];
                let mut bias = vec![0.0f32; gates * h];
                rng.fill_uniform(&mut w, 1.0);
                rng.fill_uniform(&mut bias, 1.0);
                let pb = PackedB::from_gate_weight(isa, &w, gates, h, k, Some(&bias));
                assert_eq!(pb.panels(), gates * lay.whole + lay.tail_panels);
                let blocks = h.div_ceil(nr);
                for m in [1, 2, 3, 4, 5, 6, 7, 13, 40] {
                    let mut a = vec![0.0f32; m * k];
                    rng.fill_uniform(&mut a, 1.0);
                    let want = |i: usize, q: usize, j: usize| -> f64 {
                        bias[q * h + j] as f64
                            + (0..k)
                                .map(|p| a[i * k + p] as f64 * w[(q * h + j) * k + p] as f64)
                                .sum::<f64>()
                    };
                    let close =
                        |got: f32, want: f64| (got as f64 - want).abs() < 1e-4 * (1.0 + want.abs());
                    // Unit blocks u0..u1 of each gate into C (m, gates * h), the tail's into
                    // T (m, tail_cols), panels walked either way (the same bits).
                    let (g, tc) = (gates * h, lay.tail_cols);
                    let by_units = |order: PanelOrder| {
                        let mut c = vec![7.0f32; m * g];
                        let mut t = vec![7.0f32; m * tc.max(1)];
                        for units in [0..blocks / 2, blocks / 2..blocks] {
                            for q in 0..gates {
                                let (panels, j0, n) = lay.whole_panels(q, &units);
                                let out = OutPtr(c.as_mut_ptr().wrapping_add(q * h + j0));
                                // SAFETY: A holds m rows of k floats; C's rows hold gate q's
                                // units j0..j0+n at columns q*h+j0.., within g.
                                unsafe {
                                    gemm_block(
                                        &pb,
                                        a.as_ptr(),
                                        k,
                                        out,
                                        g,
                                        false,
                                        0..m,
                                        panels,
                                        n,
                                        order,
                                    )
                                };
                            }
                            let out = OutPtr(t.as_mut_ptr());
                            // SAFETY: T's rows hold the tail's columns.
                            unsafe {
                                gemm_block(
                                    &pb,
                                    a.as_ptr(),
                                    k,
                                    out,
                                    tc,
                                    false,
                                    0..m,
                                    lay.tail(&units),
                                    tc,
                                    order,
                                )
                            };
                        }
                        (c, t)
                    };
                    let (c, t) = by_units(PanelOrder::Forward);
                    let back = by_units(PanelOrder::Backward);
                    assert_eq!((&c, &t), (&back.0, &back.1), "{isa:?} h {h} m {m}");
                    // Whole, into C (m, cols), forwards by `gemm` and backwards by one call.
                    let ldg = lay.cols();
                    let mut whole = vec![7.0f32; m * ldg];
                    gemm(m, &a, k, &pb, &mut whole, ldg, false);
                    let mut back = vec![7.0f32; m * ldg];
                    // SAFETY: A holds m rows of k floats, C m rows of ldg = every column.
                    unsafe {
                        gemm_block(
                            &pb,
                            a.as_ptr(),
                            k,
                            OutPtr(back.as_mut_ptr()),
                            ldg,
                            false,
                            0..m,
                            0..pb.panels(),
                            ldg,
                            PanelOrder::Backward,
                        )
                    };
                    assert_eq!(whole, back, "{isa:?} h {h} m {m}: whole, backwards");
                    for i in 0..m {
                        let mut real = vec![false; ldg];
                        for q in 0..gates {
                            for j in 0..h {
                                let want = want(i, q, j);
                                let col = lay.col(q, j);
                                real[col] = true;
                                let by_units = match j < lay.hw {
                                    true => c[i * g + q * h + j],
                                    false => t[i * tc + col - lay.tail_col()],
                                };
                                assert!(
                                    close(by_units, want),
                                    "{isa:?} h {h} m {m} gate {q} unit {j}"
                                );
                                assert!(
                                    close(whole[i * ldg + col], want),
                                    "{isa:?} h {h} m {m} whole"
                                );
                            }
                        }
                        for (j, _) in real.iter().enumerate().filter(|(_, r)| !**r) {
                            assert_eq!(whole[i * ldg + j], 0.0, "{isa:?} h {h} padding column {j}");
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod accumulate_tests {
    use super::*;
    use crate::params::SplitMix64;

    #[test]
    fn from_rows_accumulates_into_c() {
        let mut rng = SplitMix64(5);
        for isa in Isa::available() {
            let (m, k, n) = (5, 37, 19);
            let mut a = vec![0.0f32; m * k];
            let mut w = vec![0.0f32; k * n];
            let mut c0 = vec![0.0f32; m * n];
            for v in [&mut a, &mut w, &mut c0] {
                rng.fill_uniform(v, 1.0);
            }
            let pb = PackedB::from_rows(isa, &w, k, n);
            let mut c = c0.clone();
            gemm(m, &a, k, &pb, &mut c, n, true);
            for i in 0..m {
                for j in 0..n {
                    let want = c0[i * n + j] as f64
                        + (0..k)
                            .map(|p| a[i * k + p] as f64 * w[p * n + j] as f64)
                            .sum::<f64>();
                    assert!((c[i * n + j] as f64 - want).abs() < 1e-4, "{isa:?}");
                }
            }
        }
    }
}

#[cfg(test)]
mod timing {
    use super::*;

    /// The read bandwidth of one core from a buffer that stays in its L2 (512 KiB and 1 MiB,
    /// as W_hh of LSTM H = 256 at 2 and 1 threads): the bound of the batch-1 step, which
    /// streams W_hh once per step; and beside it the batch-1 step's GEMM (1 x H*4 x H) on a
    /// weight of that size, in the same bytes per second.
    /// `cargo test --release -p recur-kernels --lib packed::timing::l2 -- --ignored --nocapture`
    #[test]
    #[ignore = "a measurement, not a test"]
    #[cfg(target_arch = "x86_64")]
    fn l2_read_bandwidth() {
        if !Isa::Avx512.is_available() {
            return;
        }
        for kib in [512usize, 1024] {
            // Written first: a buffer only ever read maps every page to the kernel's one zero
            // page, which stays in L1 (this test read 185-198 GB/s that way, against ~140
            // from a real 1 MiB).
            let mut v = crate::aligned::Buf::zeros(kib << 8);
            v.fill(1.0);
            let reps = (8 << 30) / (kib << 10);
            let s = crate::timing::median_secs(reps, || {
                // SAFETY: AVX-512 F is available (checked above).
                std::hint::black_box(unsafe { sum16(std::hint::black_box(&v)) });
            });
            let (k, n) = (256, (kib << 10) / 4 / 256);
            let pb = PackedB::from_weight(Isa::Avx512, &vec![0.25f32; n * k], n, k, None);
            let (a, mut c) = (vec![0.5f32; k], vec![0.0f32; n]);
            let gemv = crate::timing::median_secs(reps, || gemm(1, &a, k, &pb, &mut c, n, false));
            println!(
                "L2 read, {kib} KiB buffer: {:.1} GB/s; GEMM 1x{n}x{k}: {:.1} GB/s (medians of 5)",
                (kib << 10) as f64 / s / 1e9,
                (kib << 10) as f64 / gemv / 1e9
            );
        }
    }

    /// Sum of `v` with eight independent vector accumulators: a pure read stream.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    fn sum16(v: &[f32]) -> f32 {
        use std::arch::x86_64::*;
        let mut acc = [_mm512_setzero_ps(); 8];
        for c in v.chunks_exact(128) {
            for (k, a) in acc.iter_mut().enumerate() {
                // SAFETY: `c` holds 128 floats, k * 16 + 16 <= 128.
                *a = _mm512_add_ps(*a, unsafe { _mm512_loadu_ps(c.as_ptr().add(k * 16)) });
            }
        }
        let s = acc
            .iter()
            .fold(_mm512_setzero_ps(), |s, a| _mm512_add_ps(s, *a));
        _mm512_reduce_add_ps(s)
    }

    /// `cargo test --release -p recur-kernels --lib packed::timing -- --ignored --nocapture`
    #[test]
    #[ignore = "a measurement, not a test"]
    fn gflops() {
        for isa in crate::timing::isas() {
            for &(m, n, k) in &[
                (8, 32, 64),
                (8, 32, 512),
                (12, 32, 512),
                (64, 4096, 1024),
                (256, 4096, 1024),
                // Where A's copy pays and where not (see `ACopy::new`).
                (64, 1536, 512),
                (64, 512, 2048),
                (64, 512, 1024),
                (64, 256, 512),
                (3200, 4096, 1024),
                (64, 2048, 512),
                (6400, 2048, 512),
                (256, 2048, 512),
                (6400, 512, 2048),
                // B = 16's step with W in L2, beside 16x2048x512 from L3.
                (16, 512, 512),
                (1, 128, 2048),
                (1, 512, 256),
                (1, 1024, 256),
                (1, 2048, 512),
                (2, 1024, 256),
                (4, 2048, 512),
                (16, 2048, 512),
                (12, 2048, 512),
                (24, 2048, 512),
                // LSTM 400,8,128: the step, the projection chunk, and both as one GEMM.
                (8, 512, 128),
                (256, 512, 128),
                (8, 512, 256),
                // LSTM 37,5,300,200: the whole sequence's projection, the step.
                (185, 800, 300),
                (5, 800, 200),
            ] {
                if !crate::timing::wants(m, n, k) {
                    continue;
                }
                let a = vec![0.5f32; m * k];
                let w = vec![0.25f32; n * k];
                let pb = PackedB::from_weight(isa, &w, n, k, None);
                let mut c = vec![0.0f32; m * n];
                let reps = (4e8 / (2.0 * (m * n * k) as f64)).max(1.0) as usize;
                let s = crate::timing::median_secs(reps, || gemm(m, &a, k, &pb, &mut c, n, false));
                println!(
                    "{isa:?} {m}x{n}x{k}: {:.1} GFLOP/s",
                    2.0 * (m * n * k) as f64 / s / 1e9
                );
            }
        }
    }
}

/// A GEMM with a weight operand packed once, as the forward runs its input projection:
/// `C = A · Wᵀ + bias` for `W` stored `(n, k)` as PyTorch stores weights. Public so that engines
/// and benches can use the hoisted projection on its own.
#[derive(Debug, Clone)]
pub struct WeightGemm {
    b: PackedB,
}

impl WeightGemm {
    /// Packs `w` (`n * k` values, row-major `(n, k)`) and `bias` (`n` values) for `isa`.
    pub fn new(
        isa: Isa,
        w: &[f32],
        n: usize,
        k: usize,
        bias: Option<&[f32]>,
    ) -> crate::Result<Self> {
        let isa = isa.checked()?;
        if n == 0 || k == 0 {
            return Err(crate::Error::Mismatch(format!(
                "a {n}x{k} weight, expected both sizes >= 1"
            )));
        }
        crate::error::check_len("weight", w, crate::error::size("weight", &[n, k])?)?;
        if let Some(b) = bias {
            crate::error::check_len("bias", b, n)?;
        }
        Ok(WeightGemm {
            b: PackedB::from_weight(isa, w, n, k, bias),
        })
    }

    /// `c` (`m * n`, row-major) = `a` (`m * k`, row-major) · Wᵀ + bias, on the current rayon pool.
    pub fn run(&self, m: usize, a: &[f32], c: &mut [f32]) -> crate::Result<()> {
        crate::error::check_len("a", a, crate::error::size("a", &[m, self.b.k])?)?;
        crate::error::check_len("c", c, crate::error::size("c", &[m, self.b.n])?)?;
        gemm(m, a, self.b.k, &self.b, c, self.b.n, false);
        Ok(())
    }
}
