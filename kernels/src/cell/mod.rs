//! The elementwise math of each cell, forward and backward, for one batch row and one range of
//! hidden units.
//!
//! The drivers (`forward.rs`, `backward.rs`) run the GEMMs; a cell turns one row's gate
//! pre-activations of some hidden units into their new state, or their state gradients into
//! gate gradients. Units never interact, so the drivers cut a step by units: the thread that
//! computed units' gate columns in the step GEMM runs their cell at once, with no wait between.
//! Every slice below holds the same `n` units (a gate's slice is that gate's block); gate
//! activations are written over the pre-activations so that the backward finds them.

// Parallel slices of one unit range, indexed together: indexed loops read clearest here.
#![allow(clippy::needless_range_loop)]

pub(crate) mod gru;
pub(crate) mod lstm;
pub(crate) mod rnn;

use crate::desc::CellKind;
use crate::isa::Isa;

/// One forward step of one batch row, for a range of `n` hidden units.
pub(crate) struct FwdUnits<'a> {
    pub isa: Isa,
    /// Per gate (the first `G`): x W_ihᵀ + b_ih on entry, the gate activation on exit.
    pub gates: [&'a mut [f32]; 4],
    /// Per gate: h_prev W_hhᵀ, without bias.
    pub gh: [&'a [f32]; 4],
    /// Per gate: b_hh (zeros without bias).
    pub b_hh: [&'a [f32]; 4],
    /// The state before the step.
    pub h_prev: &'a [f32],
    /// The cell state before the step (LSTM), else empty.
    pub c_prev: &'a [f32],
    /// The new state.
    pub h: &'a mut [f32],
    /// The new cell state (LSTM), else empty.
    pub c: &'a mut [f32],
    /// W_hn h_prev + b_hn (GRU), which the backward needs; else empty.
    pub hn: &'a mut [f32],
    /// A second copy of the new state (the layer's output row), or empty for none.
    pub y: &'a mut [f32],
}

/// One backward step of one batch row, for a range of `n` hidden units.
///
/// The backward works in place over what the forward saved: each cell reads every saved value
/// of unit `j` before it writes unit `j`'s gradients.
pub(crate) struct BwdUnits<'a> {
    pub isa: Isa,
    /// Per gate: on entry the activations the forward saved; on exit d loss / d input-side gate
    /// pre-activations (dG_in).
    pub gates: [&'a mut [f32]; 4],
    /// GRU, per gate: d loss / d hidden-side pre-activations (dG_h); LSTM: scratch in the
    /// first; RNN: empty.
    pub dgh: [&'a mut [f32]; 4],
    /// GRU: on entry W_hn h_prev + b_hn, on exit its gradient dn * r (the n block of dG_h,
    /// kept for dW_hh and b_hh); else empty.
    pub hn: &'a mut [f32],
    /// On entry d loss / d h from later steps; on exit the part of d loss / d h_prev that does
    /// not go through W_hh (the GEMM with dG_h adds the rest).
    pub dh: &'a mut [f32],
    /// d loss / d c, carried to c_prev (LSTM), else empty.
    pub dc: &'a mut [f32],
    /// d loss / d output of this step.
    pub dy: &'a [f32],
    pub h_prev: &'a [f32],
    /// The state after the step.
    pub h: &'a [f32],
    pub c_prev: &'a [f32],
    pub c: &'a [f32],
}

/// One forward step of one row's units.
#[inline]
pub(crate) fn forward(cell: CellKind, u: FwdUnits<'_>) {
    match u.isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `isa` was checked available on this CPU when it was chosen.
        Isa::Avx512 => unsafe { forward_avx512(cell, u) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above.
        Isa::Avx2 => unsafe { forward_avx2(cell, u) },
        _ => forward_any(cell, u),
    }
}

/// The rows of one step as a cell takes them: `units(b)` is row `b`'s units, or `None` where
/// the row has nothing for the cell (the source did the row's work itself). A closure is one;
/// a driver's own type can mark its `units` `#[inline(always)]`, which a closure cannot be,
/// so that the row's slices are built in the ISA's row loop, in registers.
pub(crate) trait Rows<U> {
    fn units(&mut self, b: usize) -> Option<U>;
}

impl<U, F: FnMut(usize) -> Option<U>> Rows<U> for F {
    #[inline(always)]
    fn units(&mut self, b: usize) -> Option<U> {
        self(b)
    }
}

/// One forward step of the units of every row in `rows` that `row` gives units for (see
/// [`Rows`]). Called once for a step's rows, so that the ISA is dispatched once a step and
/// the LSTM and GRU cells are inlined into the ISA's row loop: built row by row and passed by
/// value through three calls, each row's slices took 5% of LSTM 400,8,128's time, mostly loads
/// waiting on the stores of the same struct; called through `activation::lstm_forward`, the
/// ISA's cell stayed out of line with its slices passed through memory.
#[inline]
pub(crate) fn forward_rows<'a>(
    cell: CellKind,
    isa: Isa,
    rows: std::ops::Range<usize>,
    row: impl Rows<FwdUnits<'a>>,
) {
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `isa` was checked available on this CPU when it was chosen.
        Isa::Avx512 => unsafe { forward_rows_avx512(cell, rows, row) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above.
        Isa::Avx2 => unsafe { forward_rows_avx2(cell, rows, row) },
        _ => forward_rows_any(cell, rows, row),
    }
}

#[inline(always)]
fn forward_rows_any<'a>(
    cell: CellKind,
    rows: std::ops::Range<usize>,
    mut row: impl Rows<FwdUnits<'a>>,
) {
    for b in rows {
        if let Some(u) = row.units(b) {
            forward_any(cell, u);
        }
    }
}

/// One backward step of the units of every row in `rows` that `row` gives units for, as
/// [`forward_rows`] for the forward.
#[inline]
pub(crate) fn backward_rows<'a>(
    cell: CellKind,
    isa: Isa,
    rows: std::ops::Range<usize>,
    row: impl Rows<BwdUnits<'a>>,
) {
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `isa` was checked available on this CPU when it was chosen.
        Isa::Avx512 => unsafe { backward_rows_avx512(cell, rows, row) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above.
        Isa::Avx2 => unsafe { backward_rows_avx2(cell, rows, row) },
        _ => backward_rows_any(cell, rows, row),
    }
}

#[inline(always)]
fn backward_rows_any<'a>(
    cell: CellKind,
    rows: std::ops::Range<usize>,
    mut row: impl Rows<BwdUnits<'a>>,
) {
    for b in rows {
        if let Some(u) = row.units(b) {
            backward_any(cell, u);
        }
    }
}

#[inline(always)]
fn forward_any(cell: CellKind, u: FwdUnits<'_>) {
    match cell {
        CellKind::RnnTanh => rnn::forward::<false>(u),
        CellKind::RnnRelu => rnn::forward::<true>(u),
        CellKind::Lstm => lstm::forward(u),
        CellKind::Gru => gru::forward(u),
    }
}

#[inline(always)]
fn backward_any(cell: CellKind, u: BwdUnits<'_>) {
    match cell {
        CellKind::RnnTanh => rnn::backward::<false>(u),
        CellKind::RnnRelu => rnn::backward::<true>(u),
        CellKind::Lstm => lstm::backward(u),
        CellKind::Gru => gru::backward(u),
    }
}

// The cells' own elementwise loops, compiled again for each ISA: the baseline x86_64 build
// vectorizes them 4 wide (SSE2), these 16 or 8 wide. Same operations in the same order (no
// contraction into FMAs), so the same results. They were 4% of an LSTM step at B = 64.

/// # Safety
/// The CPU must have AVX-512 F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn forward_avx512(cell: CellKind, u: FwdUnits<'_>) {
    forward_any(cell, u)
}

/// # Safety
/// The CPU must have AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn forward_avx2(cell: CellKind, u: FwdUnits<'_>) {
    forward_any(cell, u)
}

/// `for b in rows`, the cell `$cell` on each row that has units: a macro rather than a function
/// taking the cell as a closure, which out of line would call every intrinsic as a function.
#[cfg(target_arch = "x86_64")]
macro_rules! each_row {
    ($rows:expr, $row:ident, |$u:ident| $cell:expr) => {
        for b in $rows {
            if let Some($u) = $row.units(b) {
                $cell
            }
        }
    };
}

/// # Safety
/// The CPU must have AVX-512 F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn forward_rows_avx512<'a>(
    cell: CellKind,
    rows: std::ops::Range<usize>,
    mut row: impl Rows<FwdUnits<'a>>,
) {
    // The cell picked once for all the rows (inside the loop, a jump table every row).
    match cell {
        // SAFETY: this CPU has AVX-512 F (the caller), and this function is compiled
        // for it, so the cells' intrinsics inline.
        CellKind::Lstm => each_row!(rows, row, |u| unsafe {
            crate::activation::lstm_forward_avx512(u)
        }),
        // SAFETY: as above.
        CellKind::Gru => each_row!(rows, row, |u| unsafe {
            crate::activation::gru_forward_avx512(u)
        }),
        // SAFETY: as above.
        CellKind::RnnTanh => each_row!(rows, row, |u| unsafe {
            crate::activation::rnn_forward_avx512::<false>(u)
        }),
        // SAFETY: as above.
        CellKind::RnnRelu => each_row!(rows, row, |u| unsafe {
            crate::activation::rnn_forward_avx512::<true>(u)
        }),
    }
}

/// # Safety
/// The CPU must have AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn forward_rows_avx2<'a>(
    cell: CellKind,
    rows: std::ops::Range<usize>,
    mut row: impl Rows<FwdUnits<'a>>,
) {
    // The cell picked once for all the rows (inside the loop, a jump table every row).
    match cell {
        // SAFETY: this CPU has AVX2 and FMA (the caller), and this function is
        // compiled for them, so the cells' intrinsics inline.
        CellKind::Lstm => each_row!(rows, row, |u| unsafe {
            crate::activation::lstm_forward_avx2(u)
        }),
        // SAFETY: as above.
        CellKind::Gru => each_row!(rows, row, |u| unsafe {
            crate::activation::gru_forward_avx2(u)
        }),
        // SAFETY: as above.
        CellKind::RnnTanh => each_row!(rows, row, |u| unsafe {
            crate::activation::rnn_forward_avx2::<false>(u)
        }),
        // SAFETY: as above.
        CellKind::RnnRelu => each_row!(rows, row, |u| unsafe {
            crate::activation::rnn_forward_avx2::<true>(u)
        }),
    }
}

/// # Safety
/// The CPU must have AVX-512 F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn backward_rows_avx512<'a>(
    cell: CellKind,
    rows: std::ops::Range<usize>,
    mut row: impl Rows<BwdUnits<'a>>,
) {
    match cell {
        // SAFETY: this CPU has the ISA (the caller), and this function is compiled for it, so
        // the cell's intrinsics inline.
        CellKind::Lstm => each_row!(rows, row, |u| unsafe {
            crate::activation::lstm_backward_avx512(u)
        }),
        _ => backward_rows_any(cell, rows, row),
    }
}

/// # Safety
/// The CPU must have AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn backward_rows_avx2<'a>(
    cell: CellKind,
    rows: std::ops::Range<usize>,
    mut row: impl Rows<BwdUnits<'a>>,
) {
    match cell {
        // SAFETY: this CPU has the ISA (the caller), and this function is compiled for it, so
        // the cell's intrinsics inline.
        CellKind::Lstm => each_row!(rows, row, |u| unsafe {
            crate::activation::lstm_backward_avx2(u)
        }),
        _ => backward_rows_any(cell, rows, row),
    }
}

/// The second copy of a new state, where one is asked for (see [`FwdUnits::y`]).
#[inline(always)]
fn copy_out(y: &mut [f32], h: &[f32]) {
    if !y.is_empty() {
        y.copy_from_slice(h);
    }
}

/// `g += gh + b`, elementwise.
#[inline(always)]
fn add_hidden(g: &mut [f32], gh: &[f32], b: &[f32]) {
    for ((g, h), b) in g.iter_mut().zip(gh).zip(b) {
        *g += h + b;
    }
}

#[cfg(test)]
mod timing {
    use super::*;

    /// The LSTM forward cell alone, in ns per 16 units: one row of 128 units over and over (in
    /// L1), and rows laid out as a step of B = 64, H = 512 lays them out (gates and gh of 512
    /// KiB each, from L2). On Zen 5 (2026-12-01) both took 19-22 ns, so the cell is bound by
    /// its arithmetic, not by where its operands are: without the two tanh it took 14 ns,
    /// without the three sigmoids 14 ns, and with an approximate reciprocal (rcp14) for the
    /// sigmoids' division the same 20. Short rows cost more a unit: each row's chain (sigmoid
    /// -> c -> tanh c -> h) is long beside its work, and a partial last block costs a whole
    /// one; on Zen 4 (2026-12-06, noisy) 4 rows of 48 units took 35-43 ns, 16 rows of 16 units
    /// 59-80 ns. `cargo test --release -p recur-kernels --lib cell::timing -- --ignored
    /// --nocapture`
    #[test]
    #[ignore = "a measurement, not a test"]
    fn lstm_forward_ns() {
        for isa in crate::timing::isas() {
            for &(rows, n) in &[(1usize, 128usize), (64, 512), (4, 48), (4, 50), (16, 16)] {
                let g = 4 * n;
                let mut gates = vec![0.3f32; rows * g];
                let gh = vec![0.1f32; rows * g];
                let b_hh = vec![0.05f32; g];
                let (h_prev, c_prev) = (vec![0.2f32; rows * n], vec![0.4f32; rows * n]);
                let (mut h, mut c, mut y) = (
                    vec![0.0f32; rows * n],
                    vec![0.0f32; rows * n],
                    vec![0.0f32; rows * n],
                );
                let reps = (1 << 24) / (rows * n);
                // Each run writes its activations over the gates and the next runs on those:
                // values in [-1, 1], as in a real step.
                let s = crate::timing::median_secs(reps, || {
                    let mut gates = gates.chunks_mut(g);
                    let (mut h, mut c, mut y) = (h.chunks_mut(n), c.chunks_mut(n), y.chunks_mut(n));
                    forward_rows(CellKind::Lstm, isa, 0..rows, |b| {
                        let [i, f, gg, o] = {
                            let row = gates.next().unwrap();
                            let (i, rest) = row.split_at_mut(n);
                            let (f, rest) = rest.split_at_mut(n);
                            let (gg, o) = rest.split_at_mut(n);
                            [i, f, gg, o]
                        };
                        let ghr = &gh[b * g..][..g];
                        Some(FwdUnits {
                            isa,
                            gates: [i, f, gg, o],
                            gh: std::array::from_fn(|k| &ghr[k * n..][..n]),
                            b_hh: std::array::from_fn(|k| &b_hh[k * n..][..n]),
                            h_prev: &h_prev[b * n..][..n],
                            c_prev: &c_prev[b * n..][..n],
                            h: h.next().unwrap(),
                            c: c.next().unwrap(),
                            hn: &mut [],
                            y: y.next().unwrap(),
                        })
                    });
                });
                std::hint::black_box((&gates, &h, &c, &y));
                println!(
                    "{isa:?} LSTM cell, {rows} rows x {n} units: {:.1} ns per 16 units",
                    s * 1e9 / (rows * n) as f64 * 16.0
                );
            }
        }
    }
}
