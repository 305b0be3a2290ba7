//! LSTM, gates i, f, g, o: c' = f c + i g, h' = o tanh(c').

use super::{BwdUnits, FwdUnits};
use crate::activation;

/// The forward: fused, the same body on every path (`activation/fused.rs`).
#[inline(always)]
pub(crate) fn forward(u: FwdUnits<'_>) {
    activation::lstm_forward(u)
}

#[inline(always)]
pub(crate) fn backward(u: BwdUnits<'_>) {
    let BwdUnits {
        isa,
        gates: [i, f, g, o],
        dgh: [tanh_c, ..],
        dh,
        dc,
        dy,
        c_prev,
        c,
        ..
    } = u;
    tanh_c.copy_from_slice(c);
    activation::tanh(isa, tanh_c);
    let n = c.len();
    // Equal lengths up front, so the loop below needs no bounds checks.
    let (i, f, g, o) = (&mut i[..n], &mut f[..n], &mut g[..n], &mut o[..n]);
    let (dh, dc, dy, c_prev, tanh_c) = (
        &mut dh[..n],
        &mut dc[..n],
        &dy[..n],
        &c_prev[..n],
        &tanh_c[..n],
    );
    // In place: unit j's four activations are read before its four gradients are written.
    for j in 0..n {
        let (ai, af, ag, ao) = (i[j], f[j], g[j], o[j]);
        let dhj = dh[j] + dy[j];
        let tc = tanh_c[j];
        let dcj = dc[j] + dhj * ao * (1.0 - tc * tc);
        i[j] = dcj * ag * ai * (1.0 - ai);
        f[j] = dcj * c_prev[j] * af * (1.0 - af);
        g[j] = dcj * ai * (1.0 - ag * ag);
        o[j] = dhj * tc * ao * (1.0 - ao);
        dc[j] = dcj * af;
        dh[j] = 0.0;
    }
}
