//! GRU, gates r, z, n (PyTorch's "linear before reset"):
//! n = tanh(x W_inᵀ + b_in + r (h W_hnᵀ + b_hn)), h' = (1 - z) n + z h.

use super::{add_hidden, copy_out, BwdUnits, FwdUnits};
use crate::activation;
#[cfg(target_arch = "x86_64")]
use crate::isa::Isa;

#[inline(always)]
pub(crate) fn forward(u: FwdUnits<'_>) {
    #[cfg(target_arch = "x86_64")]
    if matches!(u.isa, Isa::Avx512 | Isa::Avx2) {
        // The same operations in one pass, in registers.
        return activation::gru_forward(u);
    }
    let FwdUnits {
        isa,
        gates: [r, z, n, _],
        gh,
        b_hh,
        h_prev,
        h,
        hn,
        y,
        ..
    } = u;
    add_hidden(r, gh[0], b_hh[0]);
    add_hidden(z, gh[1], b_hh[1]);
    activation::sigmoid(isa, r);
    activation::sigmoid(isa, z);
    for j in 0..h.len() {
        let v = gh[2][j] + b_hh[2][j];
        hn[j] = v;
        n[j] += r[j] * v;
    }
    activation::tanh(isa, n);
    for j in 0..h.len() {
        h[j] = (1.0 - z[j]) * n[j] + z[j] * h_prev[j];
    }
    copy_out(y, h);
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
