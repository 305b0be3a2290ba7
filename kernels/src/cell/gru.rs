//! GRU, gates r, z, n (PyTorch's "linear before reset"):
//! n = tanh(x W_inᵀ + b_in + r (h W_hnᵀ + b_hn)), h' = (1 - z) n + z h.

use super::{BwdUnits, FwdUnits};
use crate::activation;

/// The forward: fused, the same body on every path (`activation/fused.rs`).
#[inline(always)]
pub(crate) fn forward(u: FwdUnits<'_>) {
    activation::gru_forward(u)
}

#[inline(always)]
pub(crate) fn backward(u: BwdUnits<'_>) {
    let BwdUnits {
        gates: [r, z, n, _],
        dgh: [dr_h, dz_h, dn_h, _],
        hn,
        dh,
        dy,
        h_prev,
        ..
    } = u;
    let n_units = dh.len();
    // Equal lengths up front, so the loop below needs no bounds checks.
    let (r, z, n, hn, dy, h_prev) = (
        &mut r[..n_units],
        &mut z[..n_units],
        &mut n[..n_units],
        &mut hn[..n_units],
        &dy[..n_units],
        &h_prev[..n_units],
    );
    let (dr_h, dz_h, dn_h) = (
        &mut dr_h[..n_units],
        &mut dz_h[..n_units],
        &mut dn_h[..n_units],
    );
    // In place: unit j's activations and hn are read before its gradients are written.
    for j in 0..n_units {
        let (ar, az, an) = (r[j], z[j], n[j]);
        let dhj = dh[j] + dy[j];
        let dn = dhj * (1.0 - az) * (1.0 - an * an);
        let dz = dhj * (h_prev[j] - an) * az * (1.0 - az);
        let dr = dn * hn[j] * ar * (1.0 - ar);
        r[j] = dr;
        z[j] = dz;
        n[j] = dn;
        dr_h[j] = dr;
        dz_h[j] = dz;
        dn_h[j] = dn * ar;
        hn[j] = dn * ar;
        dh[j] = dhj * az;
    }
}
