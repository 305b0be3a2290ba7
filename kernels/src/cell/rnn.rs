//! Elman RNN: h' = act(x W_ihᵀ + b_ih + h W_hhᵀ + b_hh), act = tanh or relu.

use super::{row, BwdRow, BwdStep, FwdRow, FwdStep};

pub(crate) fn forward_row<const RELU: bool>(s: &FwdStep<'_>, b: usize, r: FwdRow<'_>) {
    let gh = row(s.gh, b, s.hidden);
    for j in 0..s.hidden {
        let pre = r.gates[j] + gh[j] + s.b_hh[j];
        let h = if RELU { pre.max(0.0) } else { pre.tanh() };
        r.gates[j] = h;
        r.h[j] = h;
    }
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
        r.dgi[j] = d;
        r.dh[j] = 0.0;
    }
}
