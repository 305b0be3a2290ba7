//! LSTM, gates i, f, g, o: c' = f c + i g, h' = o tanh(c').

use super::{row, BwdRow, BwdStep, FwdRow, FwdStep};
use crate::float::sigmoid;

pub(crate) fn forward_row(s: &FwdStep<'_>, b: usize, r: FwdRow<'_>) {
    let n = s.hidden;
    let gh = row(s.gh, b, 4 * n);
    let c_prev = row(s.c_prev, b, n);
    let (g, bh) = (r.gates, s.b_hh);
    for j in 0..n {
        let i = sigmoid(g[j] + gh[j] + bh[j]);
        let f = sigmoid(g[n + j] + gh[n + j] + bh[n + j]);
        let gg = (g[2 * n + j] + gh[2 * n + j] + bh[2 * n + j]).tanh();
        let o = sigmoid(g[3 * n + j] + gh[3 * n + j] + bh[3 * n + j]);
        let c = f * c_prev[j] + i * gg;
        r.c[j] = c;
        r.h[j] = o * c.tanh();
        g[j] = i;
        g[n + j] = f;
        g[2 * n + j] = gg;
        g[3 * n + j] = o;
    }
}

pub(crate) fn backward_row(s: &BwdStep<'_>, b: usize, dy: &[f32], r: BwdRow<'_>) {
    let n = s.hidden;
    let g = row(s.gates, b, 4 * n);
    let (c_prev, c) = (row(s.c_prev, b, n), row(s.c, b, n));
    let dg = r.dgi;
    for j in 0..n {
        let (i, f, gg, o) = (g[j], g[n + j], g[2 * n + j], g[3 * n + j]);
        let dh = r.dh[j] + dy[j];
        let tc = c[j].tanh();
        let dc = r.dc[j] + dh * o * (1.0 - tc * tc);
        dg[j] = dc * gg * i * (1.0 - i);
        dg[n + j] = dc * c_prev[j] * f * (1.0 - f);
        dg[2 * n + j] = dc * i * (1.0 - gg * gg);
        dg[3 * n + j] = dh * tc * o * (1.0 - o);
        r.dc[j] = dc * f;
        r.dh[j] = 0.0;
    }
}
