//! One step of one cell for one sequence, forward and backward, in plain scalar loops.
//!
//! Both sides work on the two pre-activations of PyTorch's formulas,
//! `gi = W_ih x + b_ih` and `gh = W_hh h_prev + b_hh` (`G*H` each, gate blocks in PyTorch's
//! order), which keeps the GRU's `r * (W_hn h + b_hn)` exact.

use crate::desc::CellKind;
use crate::float::{sigmoid, Float};
use crate::params::LayerParams;

/// Everything one forward step computed: what its backward needs.
#[derive(Debug, Clone)]
pub(super) struct Step<T> {
    /// The time index of the step.
    pub t: usize,
    pub x: Vec<T>,
    pub h_prev: Vec<T>,
    /// LSTM: the previous cell state; empty otherwise.
    pub c_prev: Vec<T>,
    /// Gate activations, `G*H`: RNN [h']; LSTM [i, f, g, o]; GRU [r, z, n].
    pub act: Vec<T>,
    /// GRU: `gh_n = W_hn h_prev + b_hn` (`H`); empty otherwise.
    pub hn: Vec<T>,
    pub h: Vec<T>,
    /// LSTM: the new cell state; empty otherwise.
    pub c: Vec<T>,
}

/// `W v (+ b)`: `W` is `(rows, v.len())` row-major.
fn matvec<T: Float>(w: &[T], v: &[T], b: Option<&[T]>) -> Vec<T> {
    let cols = v.len();
    w.chunks_exact(cols)
        .enumerate()
        .map(|(r, row)| {
            let dot: T = row.iter().zip(v).map(|(a, x)| *a * *x).sum();
            dot + b.map_or(T::ZERO, |b| b[r])
        })
        .collect()
}

/// The forward step: `gi = W_ih x + b_ih`, `gh = W_hh h_prev + b_hh`, then the cell's formulas.
/// Biases count as zero when `bias` is false.
pub(super) fn forward<T: Float>(
    cell: CellKind,
    lp: &LayerParams<T>,
    bias: bool,
    t: usize,
    x: &[T],
    h_prev: &[T],
    c_prev: &[T],
) -> Step<T> {
    let n = h_prev.len();
    let gi = matvec(&lp.w_ih, x, bias.then_some(&lp.b_ih[..]));
    let gh = matvec(&lp.w_hh, h_prev, bias.then_some(&lp.b_hh[..]));
    let (mut hn, mut h, mut c) = (vec![], vec![T::ZERO; n], vec![]);
    let act: Vec<T>;
    match cell {
        CellKind::RnnTanh | CellKind::RnnRelu => {
            // h' = act(gi + gh).
            for j in 0..n {
                let pre = gi[j] + gh[j];
                h[j] = if cell == CellKind::RnnRelu {
                    // Not max, which drops a NaN: relu(NaN) is NaN, as in PyTorch.
                    if pre < T::ZERO {
                        T::ZERO
                    } else {
                        pre
                    }
                } else {
                    pre.tanh()
                };
            }
            act = h.clone();
        }
        CellKind::Lstm => {
            let mut a = vec![T::ZERO; 4 * n];
            c = vec![T::ZERO; n];
            for j in 0..n {
                let i = sigmoid(gi[j] + gh[j]); // input gate
                let f = sigmoid(gi[n + j] + gh[n + j]); // forget gate
                let g = (gi[2 * n + j] + gh[2 * n + j]).tanh(); // cell candidate
                let o = sigmoid(gi[3 * n + j] + gh[3 * n + j]); // output gate
                c[j] = f * c_prev[j] + i * g; // c' = f c + i g
                h[j] = o * c[j].tanh(); // h' = o tanh(c')
                (a[j], a[n + j], a[2 * n + j], a[3 * n + j]) = (i, f, g, o);
            }
            act = a;
        }
        CellKind::Gru => {
            let mut a = vec![T::ZERO; 3 * n];
            hn = gh[2 * n..].to_vec();
            for j in 0..n {
                let r = sigmoid(gi[j] + gh[j]); // reset gate
                let z = sigmoid(gi[n + j] + gh[n + j]); // update gate
                let nn = (gi[2 * n + j] + r * hn[j]).tanh(); // n = tanh(gi_n + r gh_n)
                h[j] = (T::ONE - z) * nn + z * h_prev[j]; // h' = (1 - z) n + z h
                (a[j], a[n + j], a[2 * n + j]) = (r, z, nn);
            }
            act = a;
        }
    }
    Step {
        t,
        x: x.to_vec(),
        h_prev: h_prev.to_vec(),
        c_prev: c_prev.to_vec(),
        act,
        hn,
        h,
        c,
    }
}

/// The backward step. Given `dh = dL/dh'` and `dc = dL/dc'` (LSTM; empty otherwise), adds the
/// step's parameter gradients to `grad` and returns `(dL/dx, dL/dh_prev, dL/dc_prev)`.
pub(super) fn backward<T: Float>(
    cell: CellKind,
    lp: &LayerParams<T>,
    bias: bool,
    s: &Step<T>,
    dh: &[T],
    dc: &[T],
    grad: &mut LayerParams<T>,
) -> (Vec<T>, Vec<T>, Vec<T>) {
    let n = dh.len();
    let one = T::ONE;
    // dgi = dL/dgi, dgh = dL/dgh: equal except for the GRU's n block.
    let (mut dgi, mut dgh) = (vec![T::ZERO; s.act.len()], vec![T::ZERO; s.act.len()]);
    // The direct path h_prev -> h' (GRU's z h); W_hhᵀ dgh is added below.
    let mut dh_prev = vec![T::ZERO; n];
    let mut dc_prev = vec![];
    match cell {
        CellKind::RnnTanh | CellKind::RnnRelu => {
            for j in 0..n {
                // tanh'(pre) = 1 - h'^2; relu'(pre) = 1 where h' > 0, else 0 (as PyTorch).
                dgi[j] = if cell == CellKind::RnnRelu {
                    if s.h[j] > T::ZERO {
                        dh[j]
                    } else {
                        T::ZERO
                    }
                } else {
                    dh[j] * (one - s.h[j] * s.h[j])
                };
            }
            dgh.clone_from(&dgi);
        }
        CellKind::Lstm => {
            dc_prev = vec![T::ZERO; n];
            for j in 0..n {
                let (i, f, g, o) = (s.act[j], s.act[n + j], s.act[2 * n + j], s.act[3 * n + j]);
                let tc = s.c[j].tanh();
                // h' = o tanh(c'): do = dh tanh(c'), dc' += dh o (1 - tanh(c')^2).
                let d_o = dh[j] * tc;
                let d_c = dc[j] + dh[j] * o * (one - tc * tc);
                // c' = f c + i g: di = dc' g, df = dc' c, dg = dc' i, dc = dc' f.
                let (d_i, d_f, d_g) = (d_c * g, d_c * s.c_prev[j], d_c * i);
                dc_prev[j] = d_c * f;
                // Through the activations: σ' = σ (1 - σ), tanh' = 1 - tanh^2.
                dgi[j] = d_i * i * (one - i);
                dgi[n + j] = d_f * f * (one - f);
                dgi[2 * n + j] = d_g * (one - g * g);
                dgi[3 * n + j] = d_o * o * (one - o);
            }
            dgh.clone_from(&dgi);
        }
        CellKind::Gru => {
            for j in 0..n {
                let (r, z, nn) = (s.act[j], s.act[n + j], s.act[2 * n + j]);
                // h' = (1 - z) n + z h: dn = dh (1 - z), dz = dh (h - n), dh_prev = dh z.
                let d_n = dh[j] * (one - z);
                let d_z = dh[j] * (s.h_prev[j] - nn);
                dh_prev[j] = dh[j] * z;
                // n = tanh(n_pre), n_pre = gi_n + r gh_n: dn_pre = dn (1 - n^2),
                // dr = dn_pre gh_n, dgi_n = dn_pre, dgh_n = dn_pre r.
                let d_npre = d_n * (one - nn * nn);
                let d_r = d_npre * s.hn[j];
                // r, z = σ(gi + gh): the same gradient on both sides.
                dgi[j] = d_r * r * (one - r);
                dgi[n + j] = d_z * z * (one - z);
                dgi[2 * n + j] = d_npre;
                dgh[j] = dgi[j];
                dgh[n + j] = dgi[n + j];
                dgh[2 * n + j] = d_npre * r;
            }
        }
    }
    // Through the two products gi = W_ih x + b_ih, gh = W_hh h_prev + b_hh:
    // dx = W_ihᵀ dgi, dh_prev += W_hhᵀ dgh, dW_ih += dgi xᵀ, dW_hh += dgh h_prevᵀ,
    // db_ih += dgi, db_hh += dgh.
    let i_l = s.x.len();
    let mut dx = vec![T::ZERO; i_l];
    for (row, (&gi, &gh)) in dgi.iter().zip(&dgh).enumerate() {
        let (wi, wh) = (&lp.w_ih[row * i_l..][..i_l], &lp.w_hh[row * n..][..n]);
        for (k, &xk) in s.x.iter().enumerate() {
            dx[k] += wi[k] * gi;
            grad.w_ih[row * i_l + k] += gi * xk;
        }
        for (k, &hk) in s.h_prev.iter().enumerate() {
            dh_prev[k] += wh[k] * gh;
            grad.w_hh[row * n + k] += gh * hk;
        }
        if bias {
            grad.b_ih[row] += gi;
            grad.b_hh[row] += gh;
        }
    }
    (dx, dh_prev, dc_prev)
}
