//! LSTM, gates i, f, g, o: c' = f c + i g, h' = o tanh(c').

use super::{row, BwdRow, BwdStep, FwdRow, FwdStep};
use crate::activation;

pub(crate) fn forward_row(s: &FwdStep<'_>, b: usize, r: FwdRow<'_>) {
    let n = s.hidden;
    let g = r.gates;
    for ((g, h), bh) in g.iter_mut().zip(row(s.gh, b, 4 * n)).zip(s.b_hh) {
        *g += h + bh;
    }
    activation::sigmoid(s.isa, &mut g[..2 * n]);
    activation::tanh(s.isa, &mut g[2 * n..3 * n]);
    activation::sigmoid(s.isa, &mut g[3 * n..]);
    let c_prev = row(s.c_prev, b, n);
    for j in 0..n {
        let c = g[n + j] * c_prev[j] + g[j] * g[2 * n + j];
        r.c[j] = c;
        r.h[j] = c;
    }
    activation::tanh(s.isa, r.h);
    for (h, o) in r.h.iter_mut().zip(&g[3 * n..]) {
        *h *= o;
    }
}

pub(crate) fn backward_row(s: &BwdStep<'_>, b: usize, dy: &[f32], r: BwdRow<'_>) {
    let n = s.hidden;
    let (c_prev, c) = (row(s.c_prev, b, n), row(s.c, b, n));
    let tanh_c = &mut r.dgh[..n];
    tanh_c.copy_from_slice(c);
    activation::tanh(s.isa, tanh_c);
    // In place: unit j's four activations are read before its four gradients are written.
    let dg = r.gates;
    for j in 0..n {
        let (i, f, gg, o) = (dg[j], dg[n + j], dg[2 * n + j], dg[3 * n + j]);
        let dh = r.dh[j] + dy[j];
        let tc = tanh_c[j];
        let dc = r.dc[j] + dh * o * (1.0 - tc * tc);
        dg[j] = dc * gg * i * (1.0 - i);
        dg[n + j] = dc * c_prev[j] * f * (1.0 - f);
        dg[2 * n + j] = dc * i * (1.0 - gg * gg);
        dg[3 * n + j] = dh * tc * o * (1.0 - o);
        r.dc[j] = dc * f;
        r.dh[j] = 0.0;
    }
}
