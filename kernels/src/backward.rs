//! BPTT over whole batched sequences, after [`crate::forward_training`].
//!
//! Only the recurrence is sequential: per step, the cell's elementwise backward turns d h (and
//! d c) into gate gradients, kept for every step, and one GEMM with W_hh carries d h to the
//! step before. Every weight gradient is then one GEMM over all T*B rows (`gemm_tn`), and the
//! input gradient one GEMM per direction, all on our micro-kernels. Every reduction runs in a fixed order, so the results are
//! bit-identical at any thread count.

use crate::cell::{self, row, BwdRow, BwdStep};
use crate::desc::RnnDesc;
use crate::error::{Error, Result};
use crate::forward::{slots, sub, time_of};
use crate::gemm_tn::gemm_tn;
use crate::isa::Isa;
use crate::packed::{self, PackedB};
use crate::params::LayerParams;
use crate::rows::{grain_for, par_rows};
use crate::seq::{Gradients, OutputGrads};
use crate::weights::PackedWeights;
use crate::workspace::Workspace;
use rayon::prelude::*;

/// Gradients of every input, initial state and parameter, given the gradients of the outputs of
/// the last [`crate::forward_training`] run in `ws`.
///
/// `grads` is overwritten (size it with [`Gradients::zeros`]). The workspace keeps its saved
/// forward, so several backward calls may follow one forward.
pub fn backward(
    weights: &PackedWeights,
    ws: &mut Workspace,
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
    out_grads.validate(&desc, t_len, batch)?;
    grads.validate(&desc, t_len, batch)?;

    let nd = desc.directions();
    let bh = batch * desc.hidden_size;
    let gate_w = desc.gates() * desc.hidden_size;
    let Workspace {
        lengths,
        x,
        inter,
        gates,
        states,
        cells,
        hn,
        dgi,
        dgh,
        dh,
        dc,
        dy,
        ..
    } = ws;
    let lengths: &[usize] = lengths;
    for l in (0..desc.num_layers).rev() {
        let top = l + 1 == desc.num_layers;
        let i_l = desc.layer_input_size(l);
        let x_l: &[f32] = if l == 0 { x } else { &inter[l - 1] };
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
        let saved = |d: usize| Saved {
            gates: &gates[s0 + d],
            states: &states[s0 + d],
            cells: &cells[s0 + d],
            hn: &hn[s0 + d],
        };
        let mut work = dgi
            .iter_mut()
            .zip(dgh.iter_mut())
            .zip(dh.iter_mut())
            .zip(dc.iter_mut())
            .zip(grads.params.layers[s0..s0 + nd].iter_mut());
        let run_dir = |d: usize, ((((dgi, dgh), dh), dc), pg): DirWork<'_>| {
            let k = s0 + d;
            let init_h = out_grads.h_n.map(|g| &g[k * bh..][..bh]);
            let init_c = out_grads.c_n.map(|g| &g[k * bh..][..bh]);
            match init_h {
                Some(g) => dh.copy_from_slice(g),
                None => dh.fill(0.0),
            }
            if !dc.is_empty() {
                match init_c {
                    Some(g) => dc.copy_from_slice(g),
                    None => dc.fill(0.0),
                }
            }
            let dirs = (t_len, batch, d);
            let w_hh = &weights.packed(l, d).w_hh_back;
            recurrence(
                &desc,
                w_hh,
                &saved(d),
                lengths,
                dy_l,
                dirs,
                dgi,
                dgh,
                dh,
                dc,
            );
            weight_grads(
                weights.isa(),
                &desc,
                x_l,
                i_l,
                &saved(d),
                dgi,
                dgh,
                dirs,
                pg,
            );
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
            packed::gemm(t_len * batch, &dgi[d], gate_w, w_ih, dx_l, i_l, d > 0);
        }
    }
    Ok(())
}

type DirWork<'a> = (
    (
        ((&'a mut Vec<f32>, &'a mut Vec<f32>), &'a mut Vec<f32>),
        &'a mut Vec<f32>,
    ),
    &'a mut LayerParams<f32>,
);

/// What the training forward saved for one (layer, direction).
struct Saved<'a> {
    gates: &'a [f32],
    states: &'a [f32],
    cells: &'a [f32],
    hn: &'a [f32],
}

/// The sequential part: steps in reverse processing order, d h carried through W_hh.
#[allow(clippy::too_many_arguments)]
fn recurrence(
    desc: &RnnDesc,
    w_hh: &PackedB,
    saved: &Saved<'_>,
    lengths: &[usize],
    dy_l: &[f32],
    (t_len, batch, d): (usize, usize, usize),
    dgi: &mut [f32],
    dgh: &mut [f32],
    dh: &mut [f32],
    dc: &mut [f32],
) {
    let (h, g) = (desc.hidden_size, desc.gates() * desc.hidden_size);
    let (bh, out_w) = (batch * h, desc.output_size());
    let gw = if dgh.is_empty() { 0 } else { g };
    let cw = if dc.is_empty() { 0 } else { h };
    let grain = grain_for(batch);
    for step in (0..t_len).rev() {
        let t = time_of(d, step, t_len);
        let (p, q) = slots(d, t);
        fn at(buf: &[f32], slot: usize, len: usize) -> &[f32] {
            if buf.is_empty() {
                buf
            } else {
                &buf[slot * len..(slot + 1) * len]
            }
        }
        let s = BwdStep {
            isa: w_hh.isa(),
            hidden: h,
            gates: &saved.gates[t * batch * g..(t + 1) * batch * g],
            h_prev: at(saved.states, p, bh),
            h: at(saved.states, q, bh),
            c_prev: at(saved.cells, p, bh),
            c: at(saved.cells, q, bh),
            hn: if saved.hn.is_empty() {
                &[]
            } else {
                &saved.hn[t * bh..(t + 1) * bh]
            },
        };
        let dy_t = &dy_l[t * batch * out_w..(t + 1) * batch * out_w];
        let dgi_t = &mut dgi[t * batch * g..(t + 1) * batch * g];
        let dgh_t: &mut [f32] = if gw == 0 {
            &mut []
        } else {
            &mut dgh[t * batch * g..(t + 1) * batch * g]
        };
        par_rows(
            [dgi_t, dgh_t, &mut *dh, &mut *dc],
            [g, gw, h, cw],
            batch,
            grain,
            &|start, n, [gi, gh, dhr, dcr]: [&mut [f32]; 4]| {
                for i in 0..n {
                    let b = start + i;
                    if t < lengths[b] {
                        let dy = &row(dy_t, b, out_w)[d * h..(d + 1) * h];
                        let r = BwdRow {
                            dgi: sub(gi, i, g),
                            dgh: sub(gh, i, gw),
                            dh: sub(dhr, i, h),
                            dc: sub(dcr, i, cw),
                        };
                        cell::backward_row(desc.cell, &s, b, dy, r);
                    } else {
                        // Padded step: no gradient is made here; d h and d c pass through.
                        sub(gi, i, g).fill(0.0);
                        sub(gh, i, gw).fill(0.0);
                    }
                }
            },
        );
        // d h_prev += dG_h W_hh (rows past their length have dG_h = 0 and keep their d h).
        let dg_h: &[f32] = if gw == 0 {
            &dgi[t * batch * g..(t + 1) * batch * g]
        } else {
            &dgh[t * batch * g..(t + 1) * batch * g]
        };
        packed::gemm(batch, dg_h, g, w_hh, dh, h, true);
    }
}

/// The deferred weight gradients of one (layer, direction): one GEMM each over all T*B rows.
#[allow(clippy::too_many_arguments)]
fn weight_grads(
    isa: Isa,
    desc: &RnnDesc,
    x_l: &[f32],
    i_l: usize,
    saved: &Saved<'_>,
    dgi: &[f32],
    dgh: &[f32],
    (t_len, batch, d): (usize, usize, usize),
    pg: &mut LayerParams<f32>,
) {
    let (h, g) = (desc.hidden_size, desc.gates() * desc.hidden_size);
    let rows = t_len * batch;
    let dgh = if dgh.is_empty() { dgi } else { dgh };
    // dW_ih = dG_inᵀ X.
    gemm_tn(isa, g, i_l, rows, dgi, g, x_l, i_l, &mut pg.w_ih, i_l);
    // dW_hh = dG_hᵀ H_prev, where the state before step t sits in slot t (forward) or t+1.
    let first = if d == 0 { 0 } else { 1 };
    let h_prev = &saved.states[first * batch * h..(first + t_len) * batch * h];
    gemm_tn(isa, g, h, rows, dgh, g, h_prev, h, &mut pg.w_hh, h);
    if desc.bias {
        column_sums(dgi, g, &mut pg.b_ih);
        column_sums(dgh, g, &mut pg.b_hh);
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
