//! The forward driver: layer by layer, direction by direction, one sequence at a time.

use super::cell::{self, Step};
use super::state_rows;
use crate::float::Float;
use crate::params::Params;
use crate::seq::{Outputs, SeqBatch};

/// The recorded steps of every sequence, per `[layer*D + dir][batch entry]`, in processing
/// order (the reverse direction's first step is t = len-1): what the backward replays.
pub(super) type Trace<T> = Vec<Vec<Vec<Step<T>>>>;

/// Runs every layer, direction and sequence; returns the outputs and the recorded steps.
/// The caller has validated `params` and `input`.
pub(super) fn run<T: Float>(params: &Params<T>, input: &SeqBatch<'_, T>) -> (Outputs<T>, Trace<T>) {
    let desc = params.desc;
    let (t_len, batch, h, nd) = (
        input.seq_len,
        input.batch,
        desc.hidden_size,
        desc.directions(),
    );
    let out_w = desc.output_size();
    let mut out = Outputs::zeros(&desc, t_len, batch);
    let mut trace: Trace<T> = vec![Vec::new(); desc.stacks()];
    // The current layer's input, (T, B, I_l): x for layer 0, the layer below's output above.
    let mut layer_in = input.x.to_vec();
    for l in 0..desc.num_layers {
        let i_l = desc.layer_input_size(l);
        // Zero-initialised, so padded steps stay zero.
        let mut layer_out = vec![T::ZERO; t_len * batch * out_w];
        for d in 0..nd {
            let k = l * nd + d;
            let lp = &params.layers[k];
            for b in 0..batch {
                let (mut hs, mut cs) = state_rows(params, input.h0, input.c0, k, b, batch);
                let len = input.len_of(b);
                let mut steps = Vec::with_capacity(len);
                for s in 0..len {
                    // Forward: t = 0, 1, ..., len-1. Reverse: t = len-1, ..., 0.
                    let t = if d == 0 { s } else { len - 1 - s };
                    let x = &layer_in[(t * batch + b) * i_l..][..i_l];
                    let step = cell::forward(desc.cell, lp, desc.bias, t, x, &hs, &cs);
                    layer_out[(t * batch + b) * out_w + d * h..][..h].copy_from_slice(&step.h);
                    hs.clone_from(&step.h);
                    cs.clone_from(&step.c);
                    steps.push(step);
                }
                // h_n / c_n: the state after the last step processed.
                out.h_n[(k * batch + b) * h..][..h].copy_from_slice(&hs);
                if desc.cell.has_cell_state() {
                    out.c_n[(k * batch + b) * h..][..h].copy_from_slice(&cs);
                }
                trace[k].push(steps);
            }
        }
        layer_in = layer_out;
    }
    out.output = layer_in;
    (out, trace)
}
