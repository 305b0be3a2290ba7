//! The forward sequence driver: layers, directions, time steps, variable lengths.
//!
//! Per layer and direction: the input projection of a chunk of steps at a time (out of the
//! recurrence: it depends on no state), then each step runs one GEMM of the state with W_hh
//! for all gates and the cell's elementwise math. Directions run in parallel; within a
//! direction the steps run in one team (`team.rs`), each thread owning a block of hidden units:
//! their columns of the projection and of the step GEMM, then their cells, one wait per step.
//! Rows past their sequence's length hold their state, so h_n is simply the last slot and the
//! reverse direction starts at each sequence's own last step.

use crate::aligned::Buf;
use crate::cell::{self, FwdUnits};
use crate::desc::RnnDesc;
use crate::error::{Error, Result};
use crate::microkernel;
use crate::packed;
use crate::packed::split;
use crate::seq::{Outputs, SeqBatch};
use crate::team::{self, Shared, MAX_SLICES};
use crate::weights::PackedWeights;
use crate::workspace::{Mode, Workspace};
use rayon::prelude::*;

/// Runs the network forward without saving anything for a backward.
///
/// `ws` may be of either mode; it must have been made for this descriptor, `seq_len` and batch.
/// `out` must be sized as [`Outputs::zeros`] sizes it; it is overwritten.
pub fn forward_inference(
    weights: &PackedWeights,
    ws: &mut Workspace,
    input: &SeqBatch<'_, f32>,
    out: &mut Outputs<f32>,
) -> Result<()> {
    run(weights, ws, input, out, false)
}

/// Runs the network forward and saves in `ws` what [`crate::backward`] needs.
///
/// `ws` must be a [`Mode::Training`] or [`Mode::TrainingRecompute`] workspace.
pub fn forward_training(
    weights: &PackedWeights,
    ws: &mut Workspace,
    input: &SeqBatch<'_, f32>,
    out: &mut Outputs<f32>,
) -> Result<()> {
    if ws.mode == Mode::Inference {
        return Err(Error::Mismatch(
            "forward_training needs a workspace made with Mode::Training or \
             Mode::TrainingRecompute"
                .into(),
        ));
    }
    run(weights, ws, input, out, true)
}

/// Rows ahead whose saved activations the backward's cells prefetch: they come from memory in
/// short runs of units per row, which the hardware prefetcher does not follow. (The forward's
/// cells read the input projection of their chunk from cache.)
pub(crate) const PREFETCH_ROWS: usize = 2;

/// Rows of the input projection computed at once: enough for the GEMM to reuse each panel of
/// W_ih over many rows, few enough for a chunk of gates to stay in L2.
const PROJECTION_ROWS: usize = 256;

/// Steps per chunk of the input projection (see `direction`).
pub(crate) fn chunk_steps(seq_len: usize, batch: usize) -> usize {
    PROJECTION_ROWS.div_ceil(batch).clamp(1, seq_len.max(1))
}

/// How a direction's steps are cut across a team: blocks of `nr` hidden units (one panel of
/// each gate's columns of W_hh), a near-equal range of blocks per slice.
pub(crate) struct UnitBlocks {
    nr: usize,
    h: usize,
    blocks: usize,
    pub slices: usize,
}

impl UnitBlocks {
    pub(crate) fn new(desc: &RnnDesc, isa: crate::isa::Isa) -> Self {
        let (nr, h) = (microkernel::shape(isa).nr, desc.hidden_size);
        let blocks = h.div_ceil(nr);
        let slices =
            (rayon::current_num_threads() / desc.directions()).clamp(1, MAX_SLICES.min(blocks));
        UnitBlocks {
            nr,
            h,
            blocks,
            slices,
        }
    }

    /// Slice `i`'s blocks (panels of one gate) and its units: the first and how many.
    pub(crate) fn slice(&self, i: usize) -> (std::ops::Range<usize>, usize, usize) {
        let (u0, u1) = split(self.blocks, self.slices, i);
        let j0 = u0 * self.nr;
        (u0..u1, j0, (u1 * self.nr).min(self.h) - j0)
    }

    pub(crate) fn blocks(&self) -> usize {
        self.blocks
    }
}

/// The buffers one direction of one layer works in.
pub(crate) struct DirBufs<'a> {
    pub gates: &'a mut [f32],
    pub states: &'a mut [f32],
    pub cells: &'a mut [f32],
    pub hn: &'a mut [f32],
    pub gh: &'a mut [f32],
}

/// Slots (before, after) step `t` in direction `dir`.
#[inline]
pub(crate) fn slots(dir: usize, t: usize) -> (usize, usize) {
    if dir == 0 {
        (t, t + 1)
    } else {
        (t + 1, t)
    }
}

/// The step index of processing step `step` in direction `dir`.
#[inline]
pub(crate) fn time_of(dir: usize, step: usize, seq_len: usize) -> usize {
    if dir == 0 {
        step
    } else {
        seq_len - 1 - step
    }
}

fn run(
    weights: &PackedWeights,
    ws: &mut Workspace,
    input: &SeqBatch<'_, f32>,
    out: &mut Outputs<f32>,
    training: bool,
) -> Result<()> {
    let desc = *weights.desc();
    input.validate(&desc)?;
    ws.check(&desc, input.seq_len, input.batch)?;
    out.validate(&desc, input.seq_len, input.batch)?;
    ws.saved = false;
    for (b, len) in ws.lengths.iter_mut().enumerate() {
        *len = input.length(b);
    }
    let (t_len, batch) = (input.seq_len, input.batch);
    let (nd, bh) = (desc.directions(), batch * desc.hidden_size);
    let ws_mode = ws.mode;
    let Workspace {
        lengths,
        inter,
        gates,
        states,
        cells,
        hn,
        gh,
        ..
    } = ws;
    let lengths: &[usize] = lengths;
    let inter_index = |l: usize| if training { l } else { l % 2 };
    // Gate activations (and GRU's W_hn h + b_hn) are kept for the backward in one mode only.
    let keep_gates = training && ws_mode == Mode::Training;
    for l in 0..desc.num_layers {
        let top = l + 1 == desc.num_layers;
        // This layer's input and output: the user's buffers at the ends, the workspace between.
        let (x_l, y_l): (&[f32], &mut [f32]) = match (l, top) {
            (0, true) => (input.x, &mut out.output),
            (0, false) => (input.x, &mut inter[inter_index(0)]),
            (_, true) => (&inter[inter_index(l - 1)], &mut out.output),
            (_, false) => {
                let (r, w) = (inter_index(l - 1), inter_index(l));
                let (lo, hi) = inter.split_at_mut(r.max(w));
                if r < w {
                    (&lo[r], &mut hi[0])
                } else {
                    (&hi[0], &mut lo[w])
                }
            }
        };
        let s0 = if training { l * nd } else { 0 };
        let g0 = if keep_gates { l * nd } else { 0 };
        let mut dirs = gates[g0..g0 + nd]
            .iter_mut()
            .zip(&mut states[s0..s0 + nd])
            .zip(&mut cells[s0..s0 + nd])
            .zip(&mut hn[g0..g0 + nd])
            .zip(gh.iter_mut())
            .map(|((((gates, states), cells), hn), gh)| DirBufs {
                gates,
                states,
                cells,
                hn,
                gh,
            });
        let run_dir = |d: usize, bufs: DirBufs<'_>| {
            let k = l * nd + d;
            let h0 = input.h0.map(|v| &v[k * bh..(k + 1) * bh]);
            let c0 = input.c0.map(|v| &v[k * bh..(k + 1) * bh]);
            let init = (h0, c0);
            direction(
                &desc, weights, l, d, x_l, lengths, init, bufs, keep_gates, t_len, batch,
            )
        };
        let fwd = dirs.next().expect("one direction at least");
        match dirs.next() {
            Some(rev) => {
                rayon::join(|| run_dir(0, fwd), || run_dir(1, rev));
            }
            None => run_dir(0, fwd),
        }
        let slots = &states[s0..s0 + nd];
        gather_output(&desc, slots, lengths, t_len, batch, y_l);
        for d in 0..nd {
            let k = l * nd + d;
            let last = if d == 0 { t_len } else { 0 };
            out.h_n[k * bh..][..bh].copy_from_slice(&slots[d][last * bh..][..bh]);
            if desc.cell.has_cell_state() {
                out.c_n[k * bh..][..bh].copy_from_slice(&cells[s0 + d][last * bh..][..bh]);
            }
        }
    }
    ws.saved = training;
    Ok(())
}

/// One direction of one layer over the whole sequence.
#[allow(clippy::too_many_arguments)]
fn direction(
    desc: &RnnDesc,
    weights: &PackedWeights,
    l: usize,
    d: usize,
    x_l: &[f32],
    lengths: &[usize],
    (h0, c0): (Option<&[f32]>, Option<&[f32]>),
    bufs: DirBufs<'_>,
    keep_gates: bool,
    t_len: usize,
    batch: usize,
) {
    let (h, g) = (desc.hidden_size, desc.gates() * desc.hidden_size);
    let i_l = desc.layer_input_size(l);
    let bh = batch * h;
    let DirBufs {
        gates,
        states,
        cells,
        hn,
        gh,
    } = bufs;

    let pw = weights.packed(l, d);
    // Initial state in the slot before the first step.
    let first = if d == 0 { 0 } else { t_len };
    let init = |buf: &mut [f32], v: Option<&[f32]>| {
        if !buf.is_empty() {
            let slot = &mut buf[first * bh..][..bh];
            match v {
                Some(v) => slot.copy_from_slice(v),
                None => slot.fill(0.0),
            }
        }
    };
    init(states, h0);
    init(cells, c0);

    // Each step is one round of a team (see team.rs), cut by blocks of hidden units: a slice
    // computes its units' columns of every gate in the step GEMM (so each thread streams the
    // same part of W_hh step after step, from its own cache), then runs their cells at once.
    // One wait per step: the next step's GEMM needs every unit of the new state.
    //
    // The input projection (X W_ihᵀ + b_ih, no dependence between steps) is computed a chunk of
    // steps ahead, in the round that starts the chunk, by each slice for its own units' columns
    // (W_ih is packed by gate like W_hh): the cells then read it from cache, not from memory,
    // and inference keeps one chunk of it instead of the whole sequence.
    let (isa, cell, gate_count) = (weights.isa(), desc.cell, desc.gates());
    let (w_ih, w_hh) = (&pw.w_ih, &pw.w_hh);
    let cut = UnitBlocks::new(desc, isa);
    let blocks = cut.blocks();
    let hp = packed::padded(isa, h);
    let ldg = gate_count * hp;
    let chunk = chunk_steps(t_len, batch);
    let (states, cells, gates, gh, hn) = (
        Shared::new(states),
        Shared::new(cells),
        Shared::new(gates),
        Shared::new(gh),
        Shared::new(hn),
    );
    // The rows of `gates` holding time `t`: all of them when kept for the backward, else one
    // chunk's.
    let chunk_times = |step: usize| {
        let (s0, s1) = (
            step / chunk * chunk,
            (step / chunk * chunk + chunk).min(t_len),
        );
        if d == 0 {
            (s0, s1)
        } else {
            (t_len - s1, t_len - s0)
        }
    };
    let gate_row = |t: usize, step: usize| match keep_gates {
        true => t,
        false => t - chunk_times(step).0,
    };
    team::rounds(t_len, cut.slices, &|step, i| {
        let t = time_of(d, step, t_len);
        let (p, q) = slots(d, t);
        let (units, j0, n) = cut.slice(i);
        if step % chunk == 0 {
            let (t0, t1) = chunk_times(step);
            let rows = (t1 - t0) * batch;
            let row0 = gate_row(t0, step) * batch;
            for k in 0..gate_count {
                // SAFETY: X holds T*B rows of I floats (validated), of which rows t0*B..t1*B are
                // read; this slice writes its units' columns of gate k in `rows` rows of the
                // gates buffer, which no other slice touches and nothing reads meanwhile.
                unsafe {
                    packed::gemm_block(
                        w_ih,
                        x_l[t0 * batch * i_l..].as_ptr(),
                        i_l,
                        gates.out_block(row0 * g + k * h + j0, rows, g, n),
                        g,
                        false,
                        0..rows,
                        k * blocks + units.start..k * blocks + units.end,
                        n,
                    );
                }
            }
        }
        // SAFETY: this round reads the state slot `p` (all units) and writes this slice's
        // columns of every gate block of `gh`, then reads them back: columns of no other slice.
        // The slot holds B rows of H floats and `gh` B rows of G*Hp, as the GEMM needs.
        unsafe {
            let h_prev = states.part(p * bh, bh);
            for k in 0..gate_count {
                packed::gemm_block(
                    w_hh,
                    h_prev.as_ptr(),
                    h,
                    gh.out_block(k * hp + j0, batch, ldg, n),
                    ldg,
                    false,
                    0..batch,
                    k * blocks + units.start..k * blocks + units.end,
                    n,
                );
            }
        }
        let hn_at = if keep_gates { t * bh } else { 0 };
        for (b, &len) in lengths.iter().enumerate() {
            let (at, gates_at) = (b * h + j0, (gate_row(t, step) * batch + b) * g + j0);
            // SAFETY: units j0..j0+n of row b: this step's gates and gh of this slice's
            // columns, the slots `p` (read by all, written by none) and `q`, and hn, which only
            // this slice touches in this round. Buffers a cell does not use are empty, and so
            // are their parts.
            let u = unsafe {
                FwdUnits {
                    isa,
                    gates: gates.gates_mut(gates_at, h, gate_count, n),
                    gh: gh.gates(b * ldg + j0, hp, gate_count, n),
                    b_hh: std::array::from_fn(|k| match k < gate_count {
                        true => &pw.b_hh[k * h + j0..][..n],
                        false => &[],
                    }),
                    h_prev: states.part(p * bh + at, n),
                    c_prev: cells.part(p * bh + at, n),
                    h: states.part_mut(q * bh + at, n),
                    c: cells.part_mut(q * bh + at, n),
                    hn: hn.part_mut(hn_at + at, n),
                }
            };
            if t < len {
                cell::forward(cell, u);
            } else {
                // Past the end of this sequence: hold the state (c is empty but for LSTM).
                u.h.copy_from_slice(u.h_prev);
                u.c.copy_from_slice(u.c_prev);
            }
        }
    });
}

/// Writes the layer output `(T, B, D*H)` from the direction's state slots, zero where padded.
fn gather_output(
    desc: &RnnDesc,
    slots: &[Buf],
    lengths: &[usize],
    t_len: usize,
    batch: usize,
    y: &mut [f32],
) {
    let (h, dh) = (desc.hidden_size, desc.output_size());
    let bh = batch * h;
    y.par_chunks_mut(batch * dh)
        .enumerate()
        .for_each(|(t, y_t)| {
            for (d, states) in slots.iter().enumerate() {
                let q = slots_after(d, t);
                for b in 0..batch {
                    let dst = &mut y_t[b * dh + d * h..][..h];
                    if t < lengths[b] {
                        dst.copy_from_slice(&states[q * bh + b * h..][..h]);
                    } else {
                        dst.fill(0.0);
                    }
                }
            }
        });
    debug_assert_eq!(y.len(), t_len * batch * dh);
}

#[inline]
fn slots_after(d: usize, t: usize) -> usize {
    slots(d, t).1
}
