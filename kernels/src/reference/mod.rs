//! The scalar reference: every test's oracle, written for clarity rather than speed.
//!
//! Generic over f32 and f64. Each sequence of the batch runs on its own, step by step, with
//! plain matrix-vector products: the forward direction over t = 0..len, the reverse one over
//! t = len-1 down to 0, each from its own h0 / c0. The backward is hand-written BPTT: it
//! replays the recorded steps in reverse, adding each step's parameter gradients.

mod cell;

use crate::error::Result;
use crate::float::Float;
use crate::params::Params;
use crate::seq::{Gradients, OutputGrads, Outputs, SeqBatch};
use cell::Step;

/// The forward pass.
pub fn forward<T: Float>(params: &Params<T>, input: &SeqBatch<'_, T>) -> Result<Outputs<T>> {
    params.validate()?;
    input.validate(&params.desc)?;
    Ok(run_forward(params, input).0)
}

/// The forward pass, then the gradients of
/// `L = Σ output·grad_output (valid steps) + Σ h_n·grad_h_n + Σ c_n·grad_c_n`
/// with respect to the input, h0, c0 and every parameter.
pub fn backward<T: Float>(
    params: &Params<T>,
    input: &SeqBatch<'_, T>,
    grads: &OutputGrads<'_, T>,
) -> Result<(Outputs<T>, Gradients<T>)> {
    params.validate()?;
    let desc = params.desc;
    input.validate(&desc)?;
    let (t_len, batch) = (input.seq_len, input.batch);
    grads.validate(&desc, t_len, batch)?;
    let (out, steps) = run_forward(params, input);

    let (h, nd) = (desc.hidden_size, desc.directions());
    let mut g = Gradients::zeros(&desc, t_len, batch);
    // dL/d(output of the layer being processed), (T, B, D*H).
    let mut dy = grads.output.to_vec();
    for l in (0..desc.num_layers).rev() {
        let i_l = desc.layer_input_size(l);
        let mut dx = vec![T::ZERO; t_len * batch * i_l];
        for d in 0..nd {
            let k = l * nd + d;
            let lp = params.get(l, d);
            for b in 0..batch {
                let (mut dh, mut dc) = state_rows(&desc, grads.h_n, grads.c_n, k, b, batch);
                for s in steps[k][b].iter().rev() {
                    let y = &dy[(s.t * batch + b) * desc.output_size() + d * h..][..h];
                    for (a, v) in dh.iter_mut().zip(y) {
                        *a += *v;
                    }
                    let pg = &mut g.params.layers[k];
                    let (dxs, dhp, dcp) = cell::backward(desc.cell, lp, desc.bias, s, &dh, &dc, pg);
                    for (a, v) in dx[(s.t * batch + b) * i_l..][..i_l].iter_mut().zip(dxs) {
                        *a += v;
                    }
                    (dh, dc) = (dhp, dcp);
                }
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
    Ok((out, g))
}

/// Row (stack `k`, batch entry `b`) of optional `(L*D, B, H)` h and c states, zeros when
/// absent; c is empty for cells without one.
fn state_rows<T: Float>(
    desc: &crate::RnnDesc,
    h: Option<&[T]>,
    c: Option<&[T]>,
    k: usize,
    b: usize,
    batch: usize,
) -> (Vec<T>, Vec<T>) {
    let n = desc.hidden_size;
    let at = |v: Option<&[T]>| match v {
        Some(v) => v[(k * batch + b) * n..][..n].to_vec(),
        None => vec![T::ZERO; n],
    };
    let c = if desc.cell.has_cell_state() {
        at(c)
    } else {
        vec![]
    };
    (at(h), c)
}

/// The recorded steps of every sequence, per `[layer*D + dir][batch entry]`, in processing order.
type Trace<T> = Vec<Vec<Vec<Step<T>>>>;

/// Runs every layer, direction and sequence; returns the outputs and the recorded steps.
fn run_forward<T: Float>(params: &Params<T>, input: &SeqBatch<'_, T>) -> (Outputs<T>, Trace<T>) {
    let desc = params.desc;
    let (t_len, batch, h, nd) = (
        input.seq_len,
        input.batch,
        desc.hidden_size,
        desc.directions(),
    );
    let mut out = Outputs::zeros(&desc, t_len, batch);
    let mut steps = vec![Vec::new(); desc.stacks()];
    let mut layer_in = input.x.to_vec();
    for l in 0..desc.num_layers {
        let i_l = desc.layer_input_size(l);
        let mut layer_out = vec![T::ZERO; t_len * batch * desc.output_size()];
        for d in 0..nd {
            let k = l * nd + d;
            let lp = params.get(l, d);
            for b in 0..batch {
                let (mut hs, mut cs) = state_rows(&desc, input.h0, input.c0, k, b, batch);
                let len = input.length(b);
                let mut seq = Vec::with_capacity(len);
                for s in 0..len {
                    let t = if d == 0 { s } else { len - 1 - s };
                    let x = &layer_in[(t * batch + b) * i_l..][..i_l];
                    let step = cell::forward(desc.cell, lp, desc.bias, t, x, &hs, &cs);
                    layer_out[(t * batch + b) * desc.output_size() + d * h..][..h]
                        .copy_from_slice(&step.h);
                    hs.clone_from(&step.h);
                    cs.clone_from(&step.c);
                    seq.push(step);
                }
                out.h_n[(k * batch + b) * h..][..h].copy_from_slice(&hs);
                if desc.cell.has_cell_state() {
                    out.c_n[(k * batch + b) * h..][..h].copy_from_slice(&cs);
                }
                steps[k].push(seq);
            }
        }
        layer_in = layer_out;
    }
    out.output = layer_in;
    (out, steps)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{CellKind, RnnDesc};

    #[test]
    fn one_lstm_step_by_hand() {
        // I = H = 1, weights w_ih = [a_i, a_f, a_g, a_o], w_hh = 0, bias 0: x = 1.
        let desc = RnnDesc::new(CellKind::Lstm, 1, 1).bias(false);
        let mut p = Params::<f64>::zeros(&desc);
        p.layers[0].w_ih = vec![0.5, -1.0, 2.0, 0.25];
        let x = [1.0];
        let out = forward(&p, &SeqBatch::new(1, 1, &x[..])).unwrap();
        let s = |v: f64| 1.0 / (1.0 + (-v).exp());
        let c = s(0.5) * 2.0f64.tanh();
        let h = s(0.25) * c.tanh();
        assert!((out.c_n[0] - c).abs() < 1e-15 && (out.h_n[0] - h).abs() < 1e-15);
    }

    #[test]
    fn padding_is_zero_and_h_n_is_the_last_valid_step() {
        let desc = RnnDesc::new(CellKind::Gru, 2, 3).bidirectional(true);
        let p = Params::<f64>::random(&desc, 3);
        let x: Vec<f64> = (0..4 * 2 * 2).map(|i| (i as f64 * 0.37).sin()).collect();
        let lengths = [2, 4];
        let out = forward(&p, &SeqBatch::new(4, 2, &x[..]).with_lengths(&lengths)).unwrap();
        let y = |t: usize, b: usize| &out.output[(t * 2 + b) * 6..][..6];
        assert!(y(2, 0).iter().chain(y(3, 0)).all(|&v| v == 0.0));
        // Forward direction: h_n at t = len-1; reverse direction: h_n at t = 0.
        assert_eq!(&out.h_n[0..3], &y(1, 0)[..3]);
        assert_eq!(&out.h_n[3..6], &y(3, 1)[..3]);
        assert_eq!(&out.h_n[6..9], &y(0, 0)[3..]);
        assert_eq!(&out.h_n[9..12], &y(0, 1)[3..]);
    }
}
