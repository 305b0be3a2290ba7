//! Elman RNN: h' = act(x W_ihᵀ + b_ih + h W_hhᵀ + b_hh), act = tanh or relu.

use super::{row, BwdRow, BwdStep, FwdRow, FwdStep};
use crate::activation;

pub(crate) fn forward_row<const RELU: bool>(s: &FwdStep<'_>, b: usize, r: FwdRow<'_>) {
    let gh = row(s.gh, b, s.hidden);
    for ((g, h), bh) in r.gates.iter_mut().zip(gh).zip(s.b_hh) {
        *g += h + bh;
    }
    if RELU {
        r.gates.iter_mut().for_each(|g| *g = g.max(0.0));
    } else {
        activation::tanh(s.isa, r.gates);
    }
    r.h.copy_from_slice(r.gates);
}

pub(crate) fn backward_row<const RELU: bool>(s: &BwdStep<'_>, b: usize, dy: &[f32], r: BwdRow<'_>) {
    let h = row(s.h, b, s.hidden);
    for j in 0..s.hidden {
        let dh = r.dh[j] + dy[j];
        // relu'(pre) is 1 where the output is positive (PyTorch's threshold_backward).
        let d = if RELU {
            if h[j] > 0.0 {
                dh
            } else {
                0.0
            }
        } else {
            dh * (1.0 - h[j] * h[j])
        };
        r.gates[j] = d;
        r.dh[j] = 0.0;
    }
}
