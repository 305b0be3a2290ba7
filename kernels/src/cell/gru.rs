//! GRU, gates r, z, n (PyTorch's "linear before reset"):
//! n = tanh(x W_inᵀ + b_in + r (h W_hnᵀ + b_hn)), h' = (1 - z) n + z h.

use super::{row, BwdRow, BwdStep, FwdRow, FwdStep};
use crate::activation;

pub(crate) fn forward_row(s: &FwdStep<'_>, b: usize, r: FwdRow<'_>) {
    let n = s.hidden;
    let gh = row(s.gh, b, 3 * n);
    let g = r.gates;
    for ((g, h), bh) in g[..2 * n].iter_mut().zip(gh).zip(s.b_hh) {
        *g += h + bh;
    }
    activation::sigmoid(s.isa, &mut g[..2 * n]);
    for j in 0..n {
        let hn = gh[2 * n + j] + s.b_hh[2 * n + j];
        r.hn[j] = hn;
        g[2 * n + j] += g[j] * hn;
    }
    activation::tanh(s.isa, &mut g[2 * n..]);
    let h_prev = row(s.h_prev, b, n);
    for j in 0..n {
        let (z, nn) = (g[n + j], g[2 * n + j]);
        r.h[j] = (1.0 - z) * nn + z * h_prev[j];
    }
}

pub(crate) fn backward_row(s: &BwdStep<'_>, b: usize, dy: &[f32], r: BwdRow<'_>) {
    let n = s.hidden;
    let h_prev = row(s.h_prev, b, n);
    // In place: unit j's activations and hn are read before its gradients are written.
    let g = r.gates;
    for j in 0..n {
        let (rr, z, nn) = (g[j], g[n + j], g[2 * n + j]);
        let dh = r.dh[j] + dy[j];
        let dn = dh * (1.0 - z) * (1.0 - nn * nn);
        let dz = dh * (h_prev[j] - nn) * z * (1.0 - z);
        let dr = dn * r.hn[j] * rr * (1.0 - rr);
        g[j] = dr;
        g[n + j] = dz;
        g[2 * n + j] = dn;
        r.dgh[j] = dr;
        r.dgh[n + j] = dz;
        r.dgh[2 * n + j] = dn * rr;
        r.hn[j] = dn * rr;
        r.dh[j] = dh * z;
    }
}
