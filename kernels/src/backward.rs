//! BPTT over whole batched sequences, after [`crate::forward_training`].
//!
//! Only the recurrence is sequential: per step, the cell's elementwise backward turns d h (and
//! d c) into gate gradients, written in place over the gate activations the forward saved (so
//! the backward needs no buffer of its own the size of the sequence, and consumes the forward),
//! and one GEMM with W_hh carries d h to the step before; threads own blocks of hidden units
//! as in the forward, one wait per step, or rows of the batch with no wait at all (W_hh in L2),
//! or, for a one-direction stack, layers as a wavefront (`wavefront`). Every weight gradient is
//! then one GEMM over all T*B rows (`gemm_tn`), and the input gradient one GEMM per direction
//! (per chunk in the wavefront), all on our micro-kernels. Every reduction runs in a fixed
//! order, so the results are bit-identical at any thread count.

use crate::aligned::Buf;
use crate::cell::FwdUnits;
use crate::cell::{self, BwdUnits};
use crate::desc::{CellKind, RnnDesc};
use crate::error::{Error, Result};
use crate::forward::{
    batch_split, chunk_steps, l2_resident, pipe_chunk_steps, slots, time_of, wave_chunk_steps,
    wavefront_shape, UnitBlocks, JOB_ROWS, PREFETCH_ROWS, RIDE_CHUNK,
};
use crate::gemm_tn::{gemm_tn, Product, TnScratch};
use crate::isa::Isa;
use crate::microkernel;
use crate::packed::{self, split, GateLayout, OutPtr, PackedB, PanelOrder};
use crate::params::LayerParams;
use crate::seq::{Gradients, OutputGrads, SeqBatch};
use crate::team::{self, Shared, SharedRead};
use crate::weights::{PackedLayer, PackedWeights};
use crate::workspace::{Mode, Workspace};
use rayon::prelude::*;

/// Gradients of every input, initial state and parameter, given the gradients of the outputs of
/// the last [`crate::forward_training`] run in `ws` and that run's `input`.
///
/// `input` must be the one the forward ran on: the weight gradient of the first layer is
/// `dGᵀ x`, and the workspace keeps no copy of x (as PyTorch's autograd keeps a reference, not a
/// copy). Its shape and lengths are checked against the forward's; its values cannot be.
/// `weights` must be the forward's too, not updated since ([`PackedWeights::update`]): an
/// error otherwise.
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
    weights.check_trains("backward")?;
    input.validate(&desc)?;
    ws.check(&desc, input.seq_len, input.batch)?;
    match ws.saved {
        None => {
            return Err(Error::Mismatch(
                "backward needs a forward_training run in this workspace first".into(),
            ))
        }
        // Other values (or the same ones updated since) would pair the forward's activations
        // with weights they did not come from: gradients of neither.
        Some(stamp) if stamp != weights.stamp() => {
            return Err(Error::Mismatch(
                "backward given weights other than the forward's (or updated since it ran), \
                 expected the weights of the last forward_training in this workspace"
                    .into(),
            ))
        }
        Some(_) => {}
    }
    let (t_len, batch) = (ws.seq_len, ws.batch);
    if (0..batch).any(|b| input.len_of(b) != ws.lengths[b]) {
        return Err(Error::Mismatch(format!(
            "backward given an input with lengths {:?}, expected the forward's {:?}",
            (0..batch).map(|b| input.len_of(b)).collect::<Vec<_>>(),
            ws.lengths
        )));
    }
    out_grads.validate(&desc, t_len, batch)?;
    grads.validate(&desc, t_len, batch)?;
    // From here on the saved activations are overwritten.
    ws.saved = None;
    let recompute = ws.mode == Mode::TrainingRecompute;

    if !recompute && wavefront_shape(&desc) && rayon::current_num_threads() > 1 {
        wavefront(weights, input, out_grads, grads, ws, (t_len, batch));
        return Ok(());
    }
    let nd = desc.directions();
    let gate_w = desc.gates() * desc.hidden_size;
    let Workspace {
        lengths,
        inter,
        gates,
        states,
        cells,
        hn,
        gh,
        re_gh,
        re_h,
        re_c,
        dh,
        dc,
        dy,
        tn,
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
        // Gate activations: this layer's saved ones, or one chunk per direction to recompute.
        let g0 = if recompute { 0 } else { s0 };
        let mut work = gates[g0..g0 + nd]
            .iter_mut()
            .zip(&mut hn[g0..g0 + nd])
            .zip(gh.iter_mut())
            .zip(dh.iter_mut())
            .zip(dc.iter_mut())
            .zip(&mut grads.params.layers[s0..s0 + nd])
            .zip(or_empty(re_gh).zip(or_empty(re_h)).zip(or_empty(re_c)))
            .zip(tn.iter_mut())
            .map(
                |(((((((gates, hn), dgh), dh), dc), pg), ((re_gh, re_h), re_c)), tn)| DirWork {
                    gates,
                    hn,
                    dgh,
                    dh,
                    dc,
                    pg,
                    re_gh,
                    re_h,
                    re_c,
                    tn,
                },
            );
        let init = |d: usize, w: &mut DirWork<'_>| start_carried(out_grads, s0 + d, w.dh, w.dc);
        let isa = weights.isa();
        // The rows of d loss / d x_l that the recurrence computes itself (see `RideDx`).
        let dx_rides = !recompute && RideDx::rides(isa, nd, t_len, batch);
        // Or the rows of the recurrence's team, cut by batch rows, claim it chunk by chunk.
        let dx_pipes = !recompute && !dx_rides && PipeDx::pipes(&desc, isa, nd, batch);
        if recompute {
            // Directions one after the other: each adds its chunks' share of d loss / d x_l.
            for (d, mut w) in work.enumerate() {
                init(d, &mut w);
                let k = s0 + d;
                let dirs = (t_len, batch, d);
                let (states, cells) = (&states[k][..], &cells[k][..]);
                let pw = weights.packed(l, d);
                let layer = (x_l, i_l, states, cells, lengths, dy_l);
                recompute_dir(&desc, pw, layer, &mut *dx_l, dirs, w);
            }
        } else {
            let dx_shared = Shared::new(&mut *dx_l);
            let run_dir = |d: usize, mut w: DirWork<'_>| {
                init(d, &mut w);
                let k = s0 + d;
                let dirs = (t_len, batch, d);
                let w_hh = &weights.packed(l, d).back().w_hh;
                let (states, cells) = (&states[k][..], &cells[k][..]);
                let ride = dx_rides.then(|| RideDx {
                    w_ih: &weights.packed(l, d).back().w_ih,
                    dx: dx_shared,
                    i_l,
                });
                let pipe = dx_pipes.then(|| PipeDx {
                    w_ih: &weights.packed(l, d).back().w_ih,
                    dx: dx_shared,
                    i_l,
                    claimed: std::sync::atomic::AtomicUsize::new(0),
                });
                recurrence(
                    &desc,
                    w_hh,
                    states,
                    cells,
                    lengths,
                    SharedRead::new(dy_l),
                    dirs,
                    0..t_len,
                    (0, UnitBlocks::new(&desc, isa).slices),
                    &mut w,
                    (ride, pipe),
                );
                let DirWork {
                    gates, hn, pg, tn, ..
                } = w;
                let all = WeightGradRows {
                    times: (0, t_len),
                    batch,
                    d,
                    accumulate: false,
                };
                weight_grads(isa, &desc, x_l, i_l, states, gates, hn, pg, tn, all);
            };
            let fwd = work.next().expect("one direction at least");
            match work.next() {
                Some(rev) => {
                    rayon::join(|| run_dir(0, fwd), || run_dir(1, rev));
                }
                None => run_dir(0, fwd),
            }
        }
        for d in 0..nd {
            let k = s0 + d;
            finish_carried(&mut grads.h0, &mut grads.c0, k, &dh[d], &dc[d]);
            if !recompute {
                // d loss / d x_l = sum over directions of dG_in W_ih, in direction order; the
                // rows the recurrence left, where it computed the others (one direction).
                let w_ih = &weights.packed(l, d).back().w_ih;
                let rows = match (dx_rides, dx_pipes) {
                    (true, _) => RideDx::rest(t_len) * batch,
                    (false, true) => 0,
                    (false, false) => t_len * batch,
                };
                let (dg, dx) = (&gates[k][..rows * gate_w], &mut dx_l[..rows * i_l]);
                packed::gemm(rows, dg, gate_w, w_ih, dx, i_l, d > 0);
            }
        }
    }
    Ok(())
}

/// The layers of a one-direction network at once, as the forward's wavefront (see
/// `forward::wavefront`) run from the last step and the top layer: in round `w` of one team,
/// layer `l` runs chunk `w - (L - 1 - l)` of its recurrence (processing steps from the end) on
/// one thread, then d loss / d its input for the chunk's times (dG_in W_ih, rows the layer below
/// reads as its d output in the next round). Layer `l` writes its d input into the `dy` buffer
/// that layer `l - 2` writes too: layer `l - 2` two chunks behind, layer `l - 1` reading the
/// chunk between, so the rows are disjoint. The weight gradients follow, one GEMM each per
/// layer over all T*B rows, as in the layer-by-layer backward: the same results, bit for bit.
fn wavefront(
    weights: &PackedWeights,
    input: &SeqBatch<'_, f32>,
    out_grads: &OutputGrads<'_, f32>,
    grads: &mut Gradients<f32>,
    ws: &mut Workspace,
    (t_len, batch): (usize, usize),
) {
    let desc = *weights.desc();
    let (layers, isa) = (desc.num_layers, weights.isa());
    let g = desc.gates() * desc.hidden_size;
    // The buffers of one of each per layer (but `inter`, one per layer below the top, and `dy`,
    // two in turn).
    let Workspace {
        lengths,
        inter,
        states,
        cells,
        gates,
        hn,
        gh,
        dh,
        dc,
        dy,
        tn,
        ..
    } = ws;
    let lengths: &[usize] = lengths;
    for l in 0..layers {
        start_carried(out_grads, l, &mut dh[l], &mut dc[l]);
    }
    {
        // Each layer's work, taken by the one thread that runs its chunk in a round.
        let works: Vec<std::sync::Mutex<DirWork<'_>>> = gates
            .iter_mut()
            .zip(hn.iter_mut())
            .zip(gh.iter_mut())
            .zip(dh.iter_mut())
            .zip(dc.iter_mut())
            .zip(grads.params.layers.iter_mut())
            .zip(tn.iter_mut())
            .map(|((((((gates, hn), dgh), dh), dc), pg), tn)| {
                std::sync::Mutex::new(DirWork {
                    gates,
                    hn,
                    dgh,
                    dh,
                    dc,
                    pg,
                    re_gh: &mut [],
                    re_h: &mut [],
                    re_c: &mut [],
                    tn,
                })
            })
            .collect();
        let dys: Vec<Shared<'_>> = dy.iter_mut().map(|b| Shared::new(b)).collect();
        let dx_input = Shared::new(&mut grads.input);
        let chunk = wave_chunk_steps(t_len, batch);
        let chunks = t_len.div_ceil(chunk);
        team::rounds(chunks + layers - 1, layers, &|w, slice| {
            let l = layers - 1 - slice;
            let Some(c) = w.checked_sub(slice).filter(|&c| c < chunks) else {
                return;
            };
            let mut work = works[l].lock().unwrap_or_else(|e| e.into_inner());
            let pw = weights.packed(l, 0);
            let dy_l = match l + 1 == layers {
                true => SharedRead::new(out_grads.output),
                false => dys[l % 2].read(),
            };
            let rounds = c * chunk..((c + 1) * chunk).min(t_len);
            let (t0, t1) = (t_len - rounds.end, t_len - rounds.start);
            let dims = (t_len, batch, 0);
            recurrence(
                &desc,
                &pw.back().w_hh,
                &states[l],
                &cells[l],
                lengths,
                dy_l,
                dims,
                rounds,
                (0, 1),
                &mut work,
                (None, None),
            );
            let (i_l, rows) = (desc.layer_input_size(l), (t1 - t0) * batch);
            let dx = if l == 0 { dx_input } else { dys[(l - 1) % 2] };
            let dg = &work.gates[t0 * batch * g..t1 * batch * g];
            // SAFETY: dG_in of the chunk's rows, this layer's own; the rows of its d input that
            // no other layer reads or writes in this round (see above), I_l floats each.
            unsafe {
                packed::gemm_block(
                    &pw.back().w_ih,
                    dg.as_ptr(),
                    g,
                    dx.out_block(t0 * batch * i_l, rows, i_l, i_l),
                    i_l,
                    false,
                    0..rows,
                    0..pw.back().w_ih.panels(),
                    i_l,
                    PanelOrder::Forward,
                )
            };
        });
    }
    for l in 0..layers {
        let x_l: &[f32] = if l == 0 { input.x } else { &inter[l - 1] };
        let (i_l, pg) = (desc.layer_input_size(l), &mut grads.params.layers[l]);
        let all = WeightGradRows {
            times: (0, t_len),
            batch,
            d: 0,
            accumulate: false,
        };
        let (states, gates, hn, tn) = (&states[l], &gates[l], &hn[l], &mut tn[l]);
        weight_grads(isa, &desc, x_l, i_l, states, gates, hn, pg, tn, all);
        finish_carried(&mut grads.h0, &mut grads.c0, l, &dh[l], &dc[l]);
    }
}

/// Starts the carried d h and d c (empty but for LSTM) of (layer, direction) `k` from d loss /
/// d h_n and d c_n, or zeros without them.
fn start_carried(out_grads: &OutputGrads<'_, f32>, k: usize, dh: &mut [f32], dc: &mut [f32]) {
    let bh = dh.len();
    match out_grads.h_n.map(|g| &g[k * bh..][..bh]) {
        Some(g) => dh.copy_from_slice(g),
        None => dh.fill(0.0),
    }
    if !dc.is_empty() {
        match out_grads.c_n.map(|g| &g[k * bh..][..bh]) {
            Some(g) => dc.copy_from_slice(g),
            None => dc.fill(0.0),
        }
    }
}

/// The carried d h and d c after the first step, as `k`'s part of d loss / d h0 and d c0.
fn finish_carried(h0: &mut [f32], c0: &mut [f32], k: usize, dh: &[f32], dc: &[f32]) {
    let bh = dh.len();
    h0[k * bh..][..bh].copy_from_slice(dh);
    if !dc.is_empty() {
        c0[k * bh..][..bh].copy_from_slice(dc);
    }
}

/// Each buffer of `v` whole, then empty slices for ever: per-direction buffers that a mode
/// does not have still zip with those it has.
fn or_empty(v: &mut [Buf]) -> impl Iterator<Item = &mut [f32]> {
    v.iter_mut()
        .map(|b| &mut b[..])
        .chain(std::iter::repeat_with(|| -> &mut [f32] { &mut [] }))
}

/// [`Mode::TrainingRecompute`]'s backward of one (layer, direction): chunks of steps from the
/// last, each recomputed (gate activations and GRU's W_hn h + b_hn, as the forward made them),
/// run through the recurrence, and reduced into the weight gradients and d loss / d x_l.
fn recompute_dir(
    desc: &RnnDesc,
    pw: &PackedLayer,
    layer: LayerData<'_>,
    dx_l: &mut [f32],
    (t_len, batch, d): (usize, usize, usize),
    mut w: DirWork<'_>,
) {
    let (x_l, i_l, states, cells, lengths, dy_l) = layer;
    let g = desc.gates() * desc.hidden_size;
    let chunk = chunk_steps(t_len, batch);
    let isa = pw.w_hh.isa();
    let mut r0 = 0;
    while r0 < t_len {
        // Rounds r0..r1 run the processing steps from the end: times ta..tb.
        let r1 = (r0 + chunk).min(t_len);
        let (ta, tb) = if d == 0 {
            (t_len - r1, t_len - r0)
        } else {
            (r0, r1)
        };
        recompute_gates(desc, pw, layer, (ta, tb), batch, d, &mut w);
        let dirs = (t_len, batch, d);
        recurrence(
            desc,
            &pw.back().w_hh,
            states,
            cells,
            lengths,
            SharedRead::new(dy_l),
            dirs,
            r0..r1,
            (ta, UnitBlocks::new(desc, isa).slices),
            &mut w,
            (None, None),
        );
        let rows = WeightGradRows {
            times: (ta, tb),
            batch,
            d,
            accumulate: r0 > 0,
        };
        weight_grads(isa, desc, x_l, i_l, states, w.gates, w.hn, w.pg, w.tn, rows);
        let n = (tb - ta) * batch;
        let dx = &mut dx_l[ta * batch * i_l..tb * batch * i_l];
        packed::gemm(n, &w.gates[..n * g], g, &pw.back().w_ih, dx, i_l, d > 0);
        r0 = r1;
    }
}

/// A layer's input, its saved states, the lengths and d loss / d its output.
type LayerData<'a> = (
    &'a [f32],
    usize,
    &'a [f32],
    &'a [f32],
    &'a [usize],
    &'a [f32],
);

/// Recomputes the gate activations of times `ta..tb` into `w.gates` (and GRU's W_hn h + b_hn
/// into `w.hn`), row `(t - ta) * B + b`, bit for bit as the forward made them: the same
/// projection and h_prev W_hhᵀ (each element the same FMA chain), the same cells.
fn recompute_gates(
    desc: &RnnDesc,
    pw: &PackedLayer,
    (x_l, i_l, states, cells, lengths, _): LayerData<'_>,
    (ta, tb): (usize, usize),
    batch: usize,
    d: usize,
    w: &mut DirWork<'_>,
) {
    let (h, gate_count) = (desc.hidden_size, desc.gates());
    let g = gate_count * h;
    let isa = pw.w_hh.isa();
    let lay = GateLayout::new(isa, gate_count, h);
    let (ldg, bh, tc) = (lay.cols(), batch * h, lay.tail_cols);
    let rows = (tb - ta) * batch;
    // The input projection, each gate's whole panels into its unpadded block, rows in two
    // halves; the tail's panels into `re_gh` (free until the GEMM below), then each gate's
    // last units copied to its block.
    let x = &x_l[ta * batch * i_l..tb * batch * i_l];
    let gates = &mut w.gates[..rows * g];
    let (out, scratch) = (OutPtr(gates.as_mut_ptr()), OutPtr(w.re_gh.as_mut_ptr()));
    assert!(
        w.re_gh.len() >= rows * ldg && ldg >= tc,
        "recompute: re_gh too short"
    );
    let all = 0..h.div_ceil(microkernel::shape(isa).nr);
    let parts = 2;
    packed::run_tasks((gate_count + 1) * parts, |task| {
        let (k, (i0, i1)) = (task / parts, split(rows, parts, task % parts));
        if k < gate_count {
            let (panels, _, n) = lay.whole_panels(k, &all);
            // SAFETY: `x` holds `rows` rows of I floats and `gates` `rows` rows of G*H; this
            // task writes rows i0..i1 of gate k's columns in whole panels, which no other task
            // touches.
            unsafe {
                packed::gemm_block(
                    &pw.w_ih,
                    x.as_ptr(),
                    i_l,
                    OutPtr(out.at(k * h)),
                    g,
                    false,
                    i0..i1,
                    panels,
                    n,
                    PanelOrder::Forward,
                )
            };
            return;
        }
        let tail = lay.tail(&all);
        if tail.is_empty() {
            return;
        }
        // SAFETY: `re_gh` holds `rows` rows of `tc` floats (asserted); this task alone writes
        // and reads its rows i0..i1 there, and writes the tail's units of every gate block in
        // rows i0..i1 of `gates`, which the whole panels' tasks do not touch.
        unsafe {
            packed::gemm_block(
                &pw.w_ih,
                x.as_ptr(),
                i_l,
                scratch,
                tc,
                false,
                i0..i1,
                tail,
                tc,
                PanelOrder::Forward,
            );
            for r in i0..i1 {
                lay.spread_tail(scratch.at(r * tc), out.at(r * g + lay.hw), h);
            }
        }
    });
    // h_prev W_hhᵀ of every row at once (the state before step t: slot t, or t + 1 reversed).
    let first = if d == 0 { 0 } else { 1 };
    let h_prev = &states[(first + ta) * bh..(first + tb) * bh];
    packed::gemm(
        rows,
        h_prev,
        h,
        &pw.w_hh,
        &mut w.re_gh[..rows * ldg],
        ldg,
        false,
    );
    // The cells, row by row, writing the activations; their h and c go to scratch (the saved
    // states are the same values and stay as they are). A row's units in whole blocks, then
    // the tail's: their gates in `re_gh` are `hw` or `rem` columns apart.
    let (gates, re_gh) = (Shared::new(gates), Shared::new(w.re_gh));
    let (re_h, re_c, hn) = (Shared::new(w.re_h), Shared::new(w.re_c), Shared::new(w.hn));
    let parts = [
        (0, lay.hw, 0, lay.hw),
        (lay.hw, lay.rem, lay.tail_col(), lay.rem),
    ];
    (0..rows).into_par_iter().for_each(|r| {
        let (t, b) = (ta + r / batch, r % batch);
        if t >= lengths[b] {
            // Padded: the recurrence zeroes these rows' gradients without reading them.
            return;
        }
        let p = slots(d, t).0;
        for (j0, n, gh_at, stride) in parts.into_iter().filter(|part| part.1 > 0) {
            let at = b * h + j0;
            // SAFETY: row r of every chunk buffer is this task's alone; the GEMMs above are
            // done.
            let u = unsafe {
                FwdUnits {
                    isa,
                    gates: gates.gates_mut(r * g + j0, h, gate_count, n),
                    gh: re_gh.gates(r * ldg + gh_at, stride, gate_count, n),
                    b_hh: std::array::from_fn(|k| match k < gate_count {
                        true => &pw.b_hh[k * h + j0..][..n],
                        false => &[],
                    }),
                    h_prev: &states[p * bh + at..][..n],
                    c_prev: at_slot(cells, p, bh, at, n),
                    h: re_h.part_mut(r * h + j0, n),
                    c: re_c.part_mut(r * h + j0, n),
                    hn: hn.part_mut(r * h + j0, n),
                    y: &mut [],
                }
            };
            cell::forward(desc.cell, u);
        }
    });
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
    /// [`Mode::TrainingRecompute`]: a chunk's h_prev W_hhᵀ, and scratch for its recomputed h
    /// and c (empty in the other mode).
    re_gh: &'a mut [f32],
    re_h: &'a mut [f32],
    re_c: &'a mut [f32],
    /// The weight-gradient GEMMs' packed copies.
    tn: &'a mut TnScratch,
}

/// The sequential part: steps in reverse processing order, d h carried through W_hh.
#[allow(clippy::too_many_arguments)]
fn recurrence(
    desc: &RnnDesc,
    w_hh: &PackedB,
    states: &[f32],
    cells: &[f32],
    lengths: &[usize],
    dy_l: SharedRead<'_>,
    (t_len, batch, d): (usize, usize, usize),
    rounds: std::ops::Range<usize>,
    (t_base, slices): (usize, usize),
    w: &mut DirWork<'_>,
    (dx, pipe): (Option<RideDx<'_>>, Option<PipeDx<'_>>),
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
    let mut cut = UnitBlocks::new(desc, isa);
    cut.slices = slices;
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
            (&gates, (t - t_base) * batch * g)
        }
    };
    // Rounds r0..r1 of the backward (the processing steps from the end), plus one round for
    // the GEMM of the last of them; time t sits in row t - t_base of `gates` and `hn`.
    let r0 = rounds.start;
    // Local round `local` for unit blocks `units` (the first unit `j0`, `n` units) of the batch
    // rows `rows`, their cells taken from the last row with `reverse`.
    let round_of = |local: usize,
                    (units, j0, n): (std::ops::Range<usize>, usize, usize),
                    rows: std::ops::Range<usize>,
                    reverse: bool| {
        let round = r0 + local;
        if local > 0 {
            let s = round - 1;
            let (buf, at) = dg_h_at(s, time_of(d, t_len - 1 - s, t_len));
            // SAFETY: rows `rows` of dG_h of the step before, written the round before by every
            // slice (cut by units) or just before by this one (cut by rows), and written by
            // nothing now (this step's cells write the other parity or another step); this
            // slice adds into its units' columns of those rows of d h, which only it touches.
            // dG_h's rows hold G*H floats and d h's H, as the GEMM needs.
            // The riders (with `dx`): this round's share of the input gradient of a chunk of
            // steps whose gate gradients are final (see `RideDx`).
            let riders = DxRiders::new(dx.as_ref(), &gates, (round, t_len, d), &units, &cut);
            unsafe {
                let dg_h = buf.part(at + rows.start * g, rows.len() * g);
                packed::gemm_block_riding(
                    w_hh,
                    dg_h.as_ptr(),
                    g,
                    dh.out_block(rows.start * h + j0, rows.len(), h, n),
                    h,
                    true,
                    0..rows.len(),
                    units.clone(),
                    n,
                    PanelOrder::of_step(round),
                    (riders.count, &|i| riders.get(i)),
                );
            }
        }
        if round == rounds.end {
            return;
        }
        let t = time_of(d, t_len - 1 - round, t_len);
        let (p, q) = slots(d, t);
        let scratch_at = if gru { (round % 2) * batch * sw } else { 0 };
        // SAFETY: d loss / d the output at time t, which the layer above (in a wavefront, a
        // round before) finished and nothing writes meanwhile.
        let dy_t = unsafe { dy_l.part(t * batch * out_w, batch * out_w) };
        // Rows are independent: the order changes no value.
        let row_of = |i: usize| match reverse {
            true => rows.end - 1 - (i - rows.start),
            false => i,
        };
        cell::backward_rows(desc.cell, isa, rows.clone(), |i: usize| {
            let b = row_of(i);
            let (at, gates_at) = (b * h + j0, ((t - t_base) * batch + b) * g + j0);
            if i + PREFETCH_ROWS < rows.end {
                let ahead = ((t - t_base) * batch + row_of(i + PREFETCH_ROWS)) * g + j0;
                // SAFETY: reads of this slice's units of a later row (in its order) of this
                // step's gates, which only this slice touches in this round.
                unsafe { gates.prefetch_gates(ahead, h, gate_count, n) };
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
                    hn: hn.part_mut((t - t_base) * bh + at, n),
                    dh: dh.part_mut(at, n),
                    dc: dc.part_mut(at, n),
                    dy: &dy_t[b * out_w + d * h + j0..][..n],
                    h_prev: at_slot(states, p, bh, at, n),
                    h: at_slot(states, q, bh, at, n),
                    c_prev: at_slot(cells, p, bh, at, n),
                    c: at_slot(cells, q, bh, at, n),
                }
            };
            if t < lengths[b] {
                return Some(u);
            }
            // Padded step: no gradient is made here; d h and d c pass through.
            for v in u.gates.into_iter().chain(u.dgh) {
                v.fill(0.0);
            }
            u.hn.fill(0.0);
            None
        });
    };
    let all_rounds = rounds.len() + 1;
    if let Some(pipe) = &pipe {
        // Cut by rows (see `PipeDx`): round c runs each slice's rows through chunk c's rounds,
        // then the slice claims jobs of the input gradient of chunk c - 1's steps, final since
        // the round before, until none is left.
        let all = (0..cut.blocks(), 0, h);
        let chunk = pipe_chunk_steps(t_len, batch);
        let chunks = all_rounds.div_ceil(chunk);
        team::rounds(chunks + 1, cut.slices, &|c, i| {
            if c < chunks {
                let (b0, b1) = split(batch, cut.slices, i);
                for local in c * chunk..((c + 1) * chunk).min(all_rounds) {
                    round_of(local, all.clone(), b0..b1, false);
                }
            }
            if c > 0 {
                let steps = (c - 1) * chunk..(c * chunk).min(t_len);
                pipe.claim(&gates, g, (t_len, batch), steps, (c - 1, chunk * batch));
            }
        });
    } else if batch_split(desc, batch, &cut) {
        // Rows never interact: each slice runs its rows through every round, with no wait.
        let all = (0..cut.blocks(), 0, h);
        team::rounds(1, cut.slices, &|_, i| {
            let (b0, b1) = split(batch, cut.slices, i);
            for local in 0..all_rounds {
                round_of(local, all.clone(), b0..b1, false);
            }
        });
    } else {
        // Every other slice takes the rows from the last: cut by units, the slices' runs of
        // each row of dG lie side by side, so two cores on the same rows at once share the
        // lines where their runs meet and the ones the prefetchers take past them (the likely
        // cause; this VM has no counters to show it). Measured: GRU
        // 100,64,512 training 2T 0.982x the time (`ab.sh`, 8 of 10 pairs), LSTM 100,64,512
        // 0.991x, 50,64,1024 0.979x; the forward's cells the same way gained nothing.
        team::rounds(all_rounds, cut.slices, &|local, i| {
            round_of(local, cut.slice(i), 0..batch, i % 2 == 1)
        });
    }
}

/// The input gradient (dG_in W_ih, one direction at batch 1) computed by tiles that ride the
/// backward's one-row step GEMMs (see `microkernel::ride`), as the forward's projection rides
/// its steps: in the rounds of chunk `c + 1` of [`RIDE_CHUNK`] processing steps, chunk `c`'s
/// rows (whose gate gradients its rounds finished), each round one share of the slice's
/// panels of W_ih. The first [`RideDx::chunks`] chunks ride; the rows of the rest are one GEMM
/// after the recurrence. The same FMA chains either way, so the same bits.
pub(crate) struct RideDx<'r> {
    pub w_ih: &'r PackedB,
    pub dx: Shared<'r>,
    pub i_l: usize,
}

impl RideDx<'_> {
    /// Chunks that ride over `t_len` steps: those whose `RIDE_CHUNK` rounds all come after
    /// them (the last round is `t_len`).
    fn chunks(t_len: usize) -> usize {
        (t_len / RIDE_CHUNK).saturating_sub(1)
    }

    /// Whether the input gradient rides the recurrence: one direction at batch 1 over two
    /// chunks or more, on an ISA with the riding kernel.
    pub(crate) fn rides(isa: Isa, directions: usize, t_len: usize, batch: usize) -> bool {
        directions == 1 && batch == 1 && microkernel::rides(isa) && Self::chunks(t_len) > 0
    }

    /// Times `0..` this of the sequence (direction 0 processes from the end) are left to the
    /// GEMM after the recurrence.
    pub(crate) fn rest(t_len: usize) -> usize {
        t_len - RIDE_CHUNK * Self::chunks(t_len)
    }
}

/// The input gradient (dG_in W_ih, one direction) computed in the recurrence's team where it
/// is cut by batch rows: in round `c` of [`pipe_chunk_steps`]-step chunks, after its rows'
/// steps of chunk `c`, each slice claims jobs (one panel of W_ih, every row of the times of
/// chunk `c - 1`, whose gate gradients are final) from a shared count until none is left, so
/// the slice with fewer rows (or done first) takes more; in one round, the slices' rows
/// through every step, then the input gradient after, the slice with fewer rows waited for
/// the others at the end of the steps. The same FMA chains, so the same bits.
pub(crate) struct PipeDx<'r> {
    pub w_ih: &'r PackedB,
    pub dx: Shared<'r>,
    pub i_l: usize,
    /// The jobs claimed so far: every job of a chunk is claimed before its round ends, so
    /// round `c + 1` counts from `c` whole chunks' jobs.
    pub claimed: std::sync::atomic::AtomicUsize,
}

impl PipeDx<'_> {
    /// Whether the input gradient is computed in the recurrence's rounds: one direction (two
    /// sum theirs into the same rows, in order, after both recurrences), cut by batch rows
    /// with W_hh resident in L2 (past it, each step streams W_hh from L3, and the jobs' panels
    /// of W_ih beside it cost more than the wait they save: LSTM 100,16,512 training 1.026x
    /// the time).
    pub(crate) fn pipes(desc: &RnnDesc, isa: Isa, directions: usize, batch: usize) -> bool {
        let cut = UnitBlocks::new(desc, isa);
        directions == 1 && cut.slices > 1 && l2_resident(desc) && batch_split(desc, batch, &cut)
    }

    /// Claims and computes jobs of the input gradient of processing steps `steps` (chunk
    /// `chunk` of whole chunks of `chunk_rows` rows, direction 0) from the gate gradients in
    /// `gates` (rows of `g`), until none is left.
    fn claim(
        &self,
        gates: &Shared<'_>,
        g: usize,
        (t_len, batch): (usize, usize),
        steps: std::ops::Range<usize>,
        (chunk, chunk_rows): (usize, usize),
    ) {
        if steps.is_empty() {
            return;
        }
        // Processing steps s0..s1 are times t_len - s1..t_len - s0.
        let (t0, rows) = (t_len - steps.end, steps.len() * batch);
        // Jobs of a panel by runs of `JOB_ROWS` rows or more: a panel or two a slice left the
        // claims too coarse to even the slices out (LSTM 200,3,96: 3 panels). Every chunk
        // before this one is whole: the count starts at theirs.
        let panels = self.w_ih.panels();
        let runs_of = |rows: usize| (rows / JOB_ROWS).max(1);
        let (runs, whole) = (runs_of(rows), panels * runs_of(chunk_rows));
        team::claim_grid(&self.claimed, chunk * whole, (panels, runs), |q, run| {
            let (r0, r1) = split(rows, runs, run);
            let col = self.w_ih.col_start(q);
            let cols = self.w_ih.width(q).min(self.i_l - col);
            // SAFETY: rows of this direction's gate gradients of steps s0..s1, which every
            // slice finished a round before and nothing writes in this one (the recurrence
            // reads the rows of its own steps' dG_h only); this job's columns of those rows of
            // d loss / d x, which no other job touches (other panels, or other rows) and
            // nothing else reads or writes during the recurrence.
            unsafe {
                let dg = gates.part((t0 * batch + r0) * g, (r1 - r0) * g);
                let at = (t0 * batch + r0) * self.i_l + col;
                packed::gemm_block(
                    self.w_ih,
                    dg.as_ptr(),
                    g,
                    self.dx.out_block(at, r1 - r0, self.i_l, cols),
                    self.i_l,
                    false,
                    0..r1 - r0,
                    q..q + 1,
                    cols,
                    PanelOrder::Forward,
                );
            }
        });
    }
}

/// One round's riders of the input gradient (see [`RideDx`]): panels `panels` of W_ih, over the
/// rows of times `t0..t0 + rows` (batch 1).
struct DxRiders<'r> {
    ride: Option<&'r RideDx<'r>>,
    gates: *const f32,
    g: usize,
    t0: usize,
    rows: usize,
    panels: std::ops::Range<usize>,
    count: usize,
}

impl<'r> DxRiders<'r> {
    fn new(
        ride: Option<&'r RideDx<'r>>,
        gates: &Shared<'_>,
        (round, t_len, d): (usize, usize, usize),
        units: &std::ops::Range<usize>,
        cut: &UnitBlocks,
    ) -> Self {
        let mut me = DxRiders {
            ride: None,
            gates: std::ptr::null(),
            g: 0,
            t0: 0,
            rows: 0,
            panels: 0..0,
            count: 0,
        };
        let Some(r) = ride else { return me };
        // Round `round` (1..=T) runs the GEMM of step round - 1: chunk (round - 1) / CHUNK's
        // rounds, which ride the chunk before.
        let c = (round - 1) / RIDE_CHUNK;
        if c == 0 || c > RideDx::chunks(t_len) {
            return me;
        }
        let (s0, s1) = ((c - 1) * RIDE_CHUNK, c * RIDE_CHUNK);
        let (ta, tb) = (
            time_of(d, t_len - s1, t_len),
            time_of(d, t_len - 1 - s0, t_len),
        );
        me.t0 = ta.min(tb);
        me.rows = RIDE_CHUNK;
        me.g = r.w_ih.k();
        // SAFETY: rows of this direction's gate gradients of steps s0..s1, which every slice
        // finished in rounds before this one and nothing writes again in the recurrence.
        me.gates = unsafe { gates.part(me.t0 * me.g, me.rows * me.g) }.as_ptr();
        // The slice's panels of W_ih (as many, near enough, as its unit blocks are of all),
        // and this round's share of them.
        let all = r.w_ih.panels();
        let blocks = cut.blocks();
        let (q0, q1) = (units.start * all / blocks, units.end * all / blocks);
        let (m0, m1) = split(q1 - q0, RIDE_CHUNK, (round - 1) % RIDE_CHUNK);
        me.panels = q0 + m0..q0 + m1;
        me.count = me.panels.len();
        me.ride = Some(r);
        me
    }

    fn get(&self, i: usize) -> microkernel::Rider {
        let r = self.ride.expect("riders only with a RideDx");
        let q = self.panels.start + i;
        let (b, bias) = r.w_ih.panel_and_bias(q);
        let (col, width) = (r.w_ih.col_start(q), r.w_ih.width(q));
        let cols = width.min(r.i_l - col);
        let c =
            r.dx.out_block(self.t0 * r.i_l + col, self.rows, r.i_l, cols);
        microkernel::Rider {
            rows: self.rows,
            k: self.g,
            a: self.gates,
            lda: self.g,
            b,
            width,
            bias,
            c: c.at(0),
            ldc: r.i_l,
            cols,
        }
    }
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

/// Which rows the weight gradients sum: times `ta..tb` of direction `d` (rows `(t - ta) * B + b`
/// of the gate buffers), added to the gradients so far or overwriting them.
struct WeightGradRows {
    times: (usize, usize),
    batch: usize,
    d: usize,
    accumulate: bool,
}

/// The deferred weight gradients of one (layer, direction): one GEMM each over the rows of
/// `times` (all T*B of them, or a recomputed chunk's).
#[allow(clippy::too_many_arguments)]
fn weight_grads(
    isa: Isa,
    desc: &RnnDesc,
    x_l: &[f32],
    i_l: usize,
    states: &[f32],
    gates: &[f32],
    hn: &[f32],
    pg: &mut LayerParams<f32>,
    tn: &mut TnScratch,
    WeightGradRows {
        times: (ta, tb),
        batch,
        d,
        accumulate: acc,
    }: WeightGradRows,
) {
    let (h, g) = (desc.hidden_size, desc.gates() * desc.hidden_size);
    let rows = (tb - ta) * batch;
    let (dgi, hn) = (&gates[..rows * g], &hn[..hn.len().min(rows * h)]);
    let x = &x_l[ta * batch * i_l..tb * batch * i_l];
    // dW_hh = dG_hᵀ H_prev, where the state before step t sits in slot t (forward) or t+1.
    let first = if d == 0 { 0 } else { 1 };
    let h_prev = &states[(first + ta) * batch * h..(first + tb) * batch * h];
    // dG_h equals dG_in but for GRU's n block, which sits in `hn`.
    let same = if desc.cell == CellKind::Gru { 2 * h } else { g };
    let (w_same, w_n) = pg.w_hh.split_at_mut(same * h);
    // dW_ih = dG_inᵀ X and dW_hh's rows from dG_in, as one GEMM that copies dG_in once (LSTM
    // 400,8,128 training: the copies of dG were 4.6% of the time, twice over).
    let ih = Product {
        m: g,
        n: i_l,
        b: x,
        ldb: i_l,
        c: &mut pg.w_ih,
        ldc: i_l,
    };
    let hh = Product {
        m: same,
        n: h,
        b: h_prev,
        ldb: h,
        c: w_same,
        ldc: h,
    };
    // The bias gradients are dG's column sums, added up as the GEMMs copy dG.
    let (b_same, b_n) = pg.b_hh.split_at_mut(same);
    let bias = desc.bias;
    gemm_tn(
        isa,
        rows,
        dgi,
        g,
        [Some(ih), Some(hh)],
        bias.then_some(&mut pg.b_ih[..]),
        acc,
        tn,
    );
    if same < g {
        let n = Product {
            m: h,
            n: h,
            b: h_prev,
            ldb: h,
            c: w_n,
            ldc: h,
        };
        gemm_tn(
            isa,
            rows,
            hn,
            h,
            [Some(n), None],
            bias.then_some(b_n),
            acc,
            tn,
        );
    }
    if bias {
        // b_hh's share of dG_in: the same sums (from the same values in the same order), so
        // copied.
        b_same.copy_from_slice(&pg.b_ih[..same]);
    } else {
        pg.b_ih.fill(0.0);
        pg.b_hh.fill(0.0);
    }
}
