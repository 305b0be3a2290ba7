//! GRU, gates r, z, n (PyTorch's "linear before reset"):
//! n = tanh(x W_inᵀ + b_in + r (h W_hnᵀ + b_hn)), h' = (1 - z) n + z h.

use super::{row, BwdRow, BwdStep, FwdRow, FwdStep};
use crate::float::sigmoid;

pub(crate) fn forward_row(s: &FwdStep<'_>, b: usize, r: FwdRow<'_>) {
    let n = s.hidden;
    let gh = row(s.gh, b, 3 * n);
    let h_prev = row(s.h_prev, b, n);
    let (g, bh) = (r.gates, s.b_hh);
    for j in 0..n {
        let rr = sigmoid(g[j] + gh[j] + bh[j]);
        let z = sigmoid(g[n + j] + gh[n + j] + bh[n + j]);
        let hn = gh[2 * n + j] + bh[2 * n + j];
        let nn = (g[2 * n + j] + rr * hn).tanh();
        r.h[j] = (1.0 - z) * nn + z * h_prev[j];
        r.hn[j] = hn;
        g[j] = rr;
        g[n + j] = z;
        g[2 * n + j] = nn;
    }
}

pub(crate) fn backward_row(s: &BwdStep<'_>, b: usize, dy: &[f32], r: BwdRow<'_>) {
    let n = s.hidden;
    let g = row(s.gates, b, 3 * n);
    let (h_prev, hn) = (row(s.h_prev, b, n), row(s.hn, b, n));
    for j in 0..n {
        let (rr, z, nn) = (g[j], g[n + j], g[2 * n + j]);
        let dh = r.dh[j] + dy[j];
        let dn = dh * (1.0 - z) * (1.0 - nn * nn);
        let dz = dh * (h_prev[j] - nn) * z * (1.0 - z);
        let dr = dn * hn[j] * rr * (1.0 - rr);
        r.dgi[j] = dr;
        r.dgi[n + j] = dz;
        r.dgi[2 * n + j] = dn;
        r.dgh[j] = dr;
        r.dgh[n + j] = dz;
        r.dgh[2 * n + j] = dn * rr;
        r.dh[j] = dh * z;
    }
}
