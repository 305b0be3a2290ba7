//! Elman RNN: h' = act(x W_ihᵀ + b_ih + h W_hhᵀ + b_hh), act = tanh or relu.

use super::{add_hidden, copy_out, BwdUnits, FwdUnits};
use crate::activation;

#[inline(always)]
pub(crate) fn forward<const RELU: bool>(u: FwdUnits<'_>) {
    let FwdUnits {
        isa,
        gates: [g, ..],
        gh,
        b_hh,
        h,
        y,
        ..
    } = u;
    add_hidden(g, gh[0], b_hh[0]);
    if RELU {
        // Not f32::max, which returns 0 for a NaN: relu(NaN) is NaN, as in PyTorch.
        g.iter_mut()
            .for_each(|v| *v = if *v < 0.0 { 0.0 } else { *v });
    } else {
        activation::tanh(isa, g);
    }
    h.copy_from_slice(g);
    copy_out(y, g);
}

#[inline(always)]
pub(crate) fn backward<const RELU: bool>(u: BwdUnits<'_>) {
    let BwdUnits {
        gates: [g, ..],
        dh,
        dy,
        h,
        ..
    } = u;
    for j in 0..dh.len() {
        let dhj = dh[j] + dy[j];
        // relu'(pre) is 1 where the output is positive (PyTorch's threshold_backward).
        g[j] = if RELU {
            if h[j] > 0.0 {
                dhj
            } else {
                0.0
            }
        } else {
            dhj * (1.0 - h[j] * h[j])
        };
        dh[j] = 0.0;
    }
}
