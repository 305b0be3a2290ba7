//! BPTT over whole batched sequences, after [`crate::forward_training`].
//!
//! Only the recurrence is sequential: per step, the cell's elementwise backward turns d h (and
//! d c) into gate gradients, written in place over the gate activations the forward saved (so
//! the backward needs no buffer of its own the size of the sequence, and consumes the forward),
//! and one GEMM with W_hh carries d h to the step before; threads own blocks of hidden units
//! as in the forward, one wait per step. Every weight gradient is then one GEMM over all T*B
//! rows (`gemm_tn`), and the input gradient one GEMM per direction, all on our micro-kernels.
//! Every reduction runs in a fixed order, so the results are bit-identical at any thread count.

use crate::cell::{self, BwdUnits};
use crate::desc::{CellKind, RnnDesc};
use crate::error::{Error, Result};
use crate::forward::{slots, time_of, UnitBlocks, PREFETCH_ROWS};
use crate::gemm_tn::gemm_tn;
use crate::isa::Isa;
use crate::packed::{self, PackedB};
use crate::params::LayerParams;
use crate::seq::{Gradients, OutputGrads, SeqBatch};
use crate::team::{self, Shared};
use crate::weights::PackedWeights;
use crate::workspace::Workspace;
use rayon::prelude::*;

/// Gradients of every input, initial state and parameter, given the gradients of the outputs of
/// the last [`crate::forward_training`] run in `ws` and that run's `input`.
///
/// `input` must be the one the forward ran on: the weight gradient of the first layer is
/// `dGᵀ x`, and the workspace keeps no copy of x (as PyTorch's autograd keeps a reference, not a
/// copy). Its shape and lengths are checked against the forward's; its values cannot be.
///
/// `grads` is overwritten (size it with [`Gradients::zeros`]). The backward works in place over
/// the activations the forward saved (the gate gradients overwrite them), so, like PyTorch's
/// `backward()` without `retain_graph`, one backward consumes one forward: a second backward
/// needs a new [`crate::forward_training`] first, and is an error otherwise. The forward is
/// consumed once the arguments are validated, also when the call then fails.
pub fn backward(
    weights: &PackedWeights,
    ws: &mut Workspace,
    input: &SeqBatch<'_, f32>,
    out_grads: &OutputGrads<'_, f32>,
    grads: &mut Gradients<f32>,
) -> Result<()> {
    let desc = *weights.desc();
    ws.check(&desc, ws.seq_len, ws.batch)?;
    if !ws.saved {
        return Err(Error::Mismatch(
            "backward needs a forward_training run in this workspace first".into(),
        ));
    }
    let (t_len, batch) = (ws.seq_len, ws.batch);
    input.validate(&desc)?;
    ws.check(&desc, input.seq_len, input.batch)?;
    if (0..batch).any(|b| input.length(b) != ws.lengths[b]) {
        return Err(Error::Mismatch(format!(
            "backward given an input with lengths {:?}, expected the forward's {:?}",
            (0..batch).map(|b| input.length(b)).collect::<Vec<_>>(),
            ws.lengths
        )));
    }
    out_grads.validate(&desc, t_len, batch)?;
    grads.validate(&desc, t_len, batch)?;
    // From here on the saved activations are overwritten.
    ws.saved = false;

    let nd = desc.directions();
    let bh = batch * desc.hidden_size;
    let gate_w = desc.gates() * desc.hidden_size;
    let Workspace {
        lengths,
        inter,
        gates,
        states,
        cells,
        hn,
        gh,
        dh,
        dc,
        dy,
        ..
    } = ws;
    let lengths: &[usize] = lengths;
    for l in (0..desc.num_layers).rev() {
        let top = l + 1 == desc.num_layers;
        let i_l = desc.layer_input_size(l);
        let x_l: &[f32] = if l == 0 { input.x } else { &inter[l - 1] };
        // d loss / d this layer's output, and where d loss / d its input goes.
        let (dy_l, dx_l): (&[f32], &mut [f32]) = match (top, l) {
            (true, 0) => (out_grads.output, &mut grads.input),
            (true, _) => (out_grads.output, &mut dy[(l - 1) % 2]),
            (false, 0) => (&dy[0], &mut grads.input),
            (false, _) => {
                let (a, b) = dy.split_at_mut(1);
                if l % 2 == 0 {
                    (&a[0], &mut b[0])
                } else {
                    (&b[0], &mut a[0])
                }
            }
        };
        let s0 = l * nd;
        let mut work = gates[s0..s0 + nd]
            .iter_mut()
            .zip(&mut hn[s0..s0 + nd])
            .zip(gh.iter_mut())
            .zip(dh.iter_mut())
            .zip(dc.iter_mut())
            .zip(&mut grads.params.layers[s0..s0 + nd])
            .map(|(((((gates, hn), dgh), dh), dc), pg)| DirWork {
                gates,
                hn,
                dgh,
                dh,
                dc,
                pg,
            });
        let run_dir = |d: usize, mut w: DirWork<'_>| {
            let k = s0 + d;
            let init_h = out_grads.h_n.map(|g| &g[k * bh..][..bh]);
            let init_c = out_grads.c_n.map(|g| &g[k * bh..][..bh]);
            match init_h {
                Some(g) => w.dh.copy_from_slice(g),
                None => w.dh.fill(0.0),
            }
            if !w.dc.is_empty() {
                match init_c {
                    Some(g) => w.dc.copy_from_slice(g),
                    None => w.dc.fill(0.0),
                }
            }
            let dirs = (t_len, batch, d);
            let w_hh = &weights.packed(l, d).w_hh_back;
            let (states, cells) = (&states[k][..], &cells[k][..]);
            recurrence(&desc, w_hh, states, cells, lengths, dy_l, dirs, &mut w);
            weight_grads(weights.isa(), &desc, x_l, i_l, states, w, dirs);
        };
        let fwd = work.next().expect("one direction at least");
        match work.next() {
            Some(rev) => {
                rayon::join(|| run_dir(0, fwd), || run_dir(1, rev));
            }
            None => run_dir(0, fwd),
        }
        for d in 0..nd {
            let k = s0 + d;
            grads.h0[k * bh..][..bh].copy_from_slice(&dh[d]);
            if desc.cell.has_cell_state() {
                grads.c0[k * bh..][..bh].copy_from_slice(&dc[d]);
            }
            // d loss / d x_l = sum over directions of dG_in W_ih, in direction order.
            let w_ih = &weights.packed(l, d).w_ih_back;
            packed::gemm(t_len * batch, &gates[k], gate_w, w_ih, dx_l, i_l, d > 0);
        }
    }
    Ok(())
}

/// What the backward of one (layer, direction) writes.
struct DirWork<'a> {
    /// `(T, B, G*H)`: the saved gate activations, overwritten with dG_in.
    gates: &'a mut [f32],
    /// GRU `(T, B, H)`: the saved W_hn h_prev + b_hn, overwritten with the n block of dG_h.
    hn: &'a mut [f32],
    /// `(B, G*H)`: GRU: dG_h of the current step; LSTM: the cells' scratch.
    dgh: &'a mut [f32],
    dh: &'a mut [f32],
    dc: &'a mut [f32],
    pg: &'a mut LayerParams<f32>,
}

/// The sequential part: steps in reverse processing order, d h carried through W_hh.
#[allow(clippy::too_many_arguments)]
fn recurrence(
    desc: &RnnDesc,
    w_hh: &PackedB,
    states: &[f32],
    cells: &[f32],
    lengths: &[usize],
    dy_l: &[f32],
    (t_len, batch, d): (usize, usize, usize),
    w: &mut DirWork<'_>,
) {
    let (h, g) = (desc.hidden_size, desc.gates() * desc.hidden_size);
    let (bh, out_w) = (batch * h, desc.output_size());
    let gate_count = desc.gates();
    let gru = desc.cell == CellKind::Gru;
    let lstm = desc.cell.has_cell_state();
    // Scratch rows of G*H: GRU's dG_h, in two buffers by step parity (a step's cells write one
    // while the GEMM of the step before reads the other); LSTM's tanh(c') in the first H.
    let sw = if lstm || gru { g } else { 0 };
    let isa = w_hh.isa();
    // Each round is cut by blocks of hidden units, as in the forward, and does two things for
    // its units: d h_prev += dG_h W_hh of the step before (the columns of its units: W_hh is
    // packed with its H columns as the panels), then the cells of this step, which need d h of
    // these units only. One wait per step: the next GEMM needs dG_h of every unit.
    let cut = UnitBlocks::new(desc, isa);
    let (gates, scratch, hn, dh, dc) = (
        Shared::new(w.gates),
        Shared::new(if sw == 0 {
            &mut []
        } else {
            &mut w.dgh[..2 * batch * sw]
        }),
        Shared::new(w.hn),
        Shared::new(w.dh),
        Shared::new(w.dc),
    );
    // dG_h of processing step `s` (time `t`), B rows of G*H.
    let dg_h_at = |s: usize, t: usize| {
        if gru {
            (&scratch, (s % 2) * batch * sw)
        } else {
            (&gates, t * batch * g)
        }
    };
    team::rounds(t_len + 1, cut.slices, &|round, i| {
        let (units, j0, n) = cut.slice(i);
        if round > 0 {
            let s = round - 1;
            let (buf, at) = dg_h_at(s, time_of(d, t_len - 1 - s, t_len));
            // SAFETY: dG_h of the step before was written in the round before, by every slice,
            // and nothing writes it now (this round's cells write the other parity or another
            // step); this slice adds into the columns of its units of d h, which only it
            // touches. dG_h holds B rows of G*H floats and d h B rows of H, as the GEMM needs.
            unsafe {
                let dg_h = buf.part(at, batch * g);
                packed::gemm_block(
                    w_hh,
                    dg_h.as_ptr(),
                    g,
                    dh.out_block(j0, batch, h, n),
                    h,
                    true,
                    0..batch,
                    units.clone(),
                    n,
                );
            }
        }
        if round == t_len {
            return;
        }
        let t = time_of(d, t_len - 1 - round, t_len);
        let (p, q) = slots(d, t);
        let scratch_at = if gru { (round % 2) * batch * sw } else { 0 };
        let dy_t = &dy_l[t * batch * out_w..(t + 1) * batch * out_w];
        for (b, &len) in lengths.iter().enumerate() {
            let (at, gates_at) = (b * h + j0, (t * batch + b) * g + j0);
            if b + PREFETCH_ROWS < batch {
                // SAFETY: reads of this slice's units of a later row of this step's gates,
                // which only this slice touches in this round.
                unsafe { gates.prefetch_gates(gates_at + PREFETCH_ROWS * g, h, gate_count, n) };
            }
            // GRU's dG_h of every gate; LSTM's scratch in the first.
            let scratch_gates = if gru { gate_count } else { usize::from(lstm) };
            // SAFETY: units j0..j0+n of row b of this step's gates, scratch, hn, d h and d c:
            // only this slice touches them in this round (the GEMM above reads the other
            // parity of the scratch, or another step's gates). Buffers a cell does not use are
            // empty, and so are their parts.
            let u = unsafe {
                BwdUnits {
                    isa,
                    gates: gates.gates_mut(gates_at, h, gate_count, n),
                    dgh: scratch.gates_mut(scratch_at + b * sw + j0, h, scratch_gates, n),
                    hn: hn.part_mut(t * bh + at, n),
                    dh: dh.part_mut(at, n),
                    dc: dc.part_mut(at, n),
                    dy: &dy_t[b * out_w + d * h + j0..][..n],
                    h_prev: at_slot(states, p, bh, at, n),
                    h: at_slot(states, q, bh, at, n),
                    c_prev: at_slot(cells, p, bh, at, n),
                    c: at_slot(cells, q, bh, at, n),
                }
            };
            if t < len {
                cell::backward(desc.cell, u);
            } else {
                // Padded step: no gradient is made here; d h and d c pass through.
                for v in u.gates.into_iter().chain(u.dgh) {
                    v.fill(0.0);
                }
                u.hn.fill(0.0);
            }
        }
    });
}

/// Units `at..at + n` of slot `slot` (of `len` floats) of a per-slot buffer (empty for an
/// unused one).
fn at_slot(buf: &[f32], slot: usize, len: usize, at: usize, n: usize) -> &[f32] {
    if buf.is_empty() {
        buf
    } else {
        &buf[slot * len + at..][..n]
    }
}

/// The deferred weight gradients of one (layer, direction): one GEMM each over all T*B rows.
fn weight_grads(
    isa: Isa,
    desc: &RnnDesc,
    x_l: &[f32],
    i_l: usize,
    states: &[f32],
    w: DirWork<'_>,
    (t_len, batch, d): (usize, usize, usize),
) {
    let (h, g) = (desc.hidden_size, desc.gates() * desc.hidden_size);
    let rows = t_len * batch;
    let DirWork { gates, hn, pg, .. } = w;
    let (dgi, hn): (&[f32], &[f32]) = (gates, hn);
    // dW_ih = dG_inᵀ X.
    gemm_tn(isa, g, i_l, rows, dgi, g, x_l, i_l, &mut pg.w_ih, i_l);
    // dW_hh = dG_hᵀ H_prev, where the state before step t sits in slot t (forward) or t+1.
    let first = if d == 0 { 0 } else { 1 };
    let h_prev = &states[first * batch * h..(first + t_len) * batch * h];
    // dG_h equals dG_in but for GRU's n block, which sits in `hn`.
    let same = if desc.cell == CellKind::Gru { 2 * h } else { g };
    let (w_same, w_n) = pg.w_hh.split_at_mut(same * h);
    gemm_tn(isa, same, h, rows, dgi, g, h_prev, h, w_same, h);
    if same < g {
        gemm_tn(isa, h, h, rows, hn, h, h_prev, h, w_n, h);
    }
    if desc.bias {
        column_sums(dgi, g, &mut pg.b_ih);
        let (b_same, b_n) = pg.b_hh.split_at_mut(same);
        column_sums(dgi, g, b_same);
        if same < g {
            column_sums(hn, h, b_n);
        }
    } else {
        pg.b_ih.fill(0.0);
        pg.b_hh.fill(0.0);
    }
}

/// `out[j] = sum over rows of m[row][j]`, rows in order, columns shared across the pool.
fn column_sums(m: &[f32], width: usize, out: &mut [f32]) {
    const COLS: usize = 64;
    out.par_chunks_mut(COLS).enumerate().for_each(|(c, o)| {
        o.fill(0.0);
        let (j0, n) = (c * COLS, o.len());
        for r in m.chunks_exact(width) {
            for (acc, v) in o.iter_mut().zip(&r[j0..j0 + n]) {
                *acc += v;
            }
        }
    });
}
