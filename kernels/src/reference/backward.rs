//! The BPTT driver: layers from the top down, each sequence's steps replayed in reverse.

use super::cell;
use super::forward::Trace;
use super::state_rows;
use crate::float::Float;
use crate::params::Params;
use crate::seq::{Gradients, OutputGrads, SeqBatch};

/// Gradients of `L = Σ_valid output·grad_output + Σ h_n·grad_h_n + Σ c_n·grad_c_n` from the
/// forward's recorded steps. The caller has validated `params`, `input` and `grads`.
pub(super) fn run<T: Float>(
    params: &Params<T>,
    input: &SeqBatch<'_, T>,
    grads: &OutputGrads<'_, T>,
    trace: &Trace<T>,
) -> Gradients<T> {
    let desc = params.desc;
    let (t_len, batch, h, nd) = (
        input.seq_len,
        input.batch,
        desc.hidden_size,
        desc.directions(),
    );
    let out_w = desc.output_size();
    let mut g = Gradients::zeros(&desc, t_len, batch);
    // dL/d(output of the layer being processed), (T, B, D*H): grad_output for the top layer,
    // then the input gradient of the layer above. Only valid positions are ever read.
    let mut dy = grads.output.to_vec();
    for l in (0..desc.num_layers).rev() {
        let i_l = desc.layer_input_size(l);
        // dL/d(this layer's input), (T, B, I_l); padded positions stay zero.
        let mut dx = vec![T::ZERO; t_len * batch * i_l];
        for d in 0..nd {
            let k = l * nd + d;
            let lp = &params.layers[k];
            for b in 0..batch {
                // dh, dc after the last step processed: grad_h_n, grad_c_n (zero when absent).
                let (mut dh, mut dc) = state_rows(params, grads.h_n, grads.c_n, k, b, batch);
                for s in trace[k][b].iter().rev() {
                    // The step's h' is also its output at position t: add that gradient.
                    let dy_t = &dy[(s.t * batch + b) * out_w + d * h..][..h];
                    for (a, v) in dh.iter_mut().zip(dy_t) {
                        *a += *v;
                    }
                    let pg = &mut g.params.layers[k];
                    let (dxs, dh_prev, dc_prev) =
                        cell::backward(desc.cell, lp, desc.bias, s, &dh, &dc, pg);
                    for (a, v) in dx[(s.t * batch + b) * i_l..][..i_l].iter_mut().zip(dxs) {
                        *a += v;
                    }
                    (dh, dc) = (dh_prev, dc_prev);
                }
                // What is left after the first step flows into h0 / c0.
                g.h0[(k * batch + b) * h..][..h].copy_from_slice(&dh);
                if desc.cell.has_cell_state() {
                    g.c0[(k * batch + b) * h..][..h].copy_from_slice(&dc);
                }
            }
        }
        if l == 0 {
            g.input = dx;
        } else {
            dy = dx;
        }
    }
    g
}
