//! The per-row elementwise math of each cell, forward and backward.
//!
//! The drivers (`forward.rs`, `backward.rs`) run the GEMMs; a cell turns one batch row of gate
//! pre-activations into the new state, or one row of state gradients into gate gradients.
//! Gate activations are written over the pre-activations so that the backward finds them.

// Gate blocks sit at offsets j, H + j, 2H + j...: indexed loops read clearest here.
#![allow(clippy::needless_range_loop)]

pub(crate) mod gru;
pub(crate) mod lstm;
pub(crate) mod rnn;

use crate::desc::CellKind;
use crate::isa::Isa;

/// Read-only inputs of one forward step, for all batch rows.
pub(crate) struct FwdStep<'a> {
    pub isa: Isa,
    pub hidden: usize,
    /// `(B, G*H)`: h_prev W_hhᵀ, without bias.
    pub gh: &'a [f32],
    /// `(G*H)`: b_hh, zeros without bias.
    pub b_hh: &'a [f32],
    /// `(B, H)`: the state before the step.
    pub h_prev: &'a [f32],
    /// `(B, H)`: the cell state before the step (LSTM), else empty.
    pub c_prev: &'a [f32],
}

/// The outputs of one forward step for one batch row.
pub(crate) struct FwdRow<'a> {
    /// `(G*H)`: x W_ihᵀ + b_ih on entry, the gate activations on exit.
    pub gates: &'a mut [f32],
    /// `(H)`: the new state.
    pub h: &'a mut [f32],
    /// `(H)`: the new cell state (LSTM), else empty.
    pub c: &'a mut [f32],
    /// `(H)`: W_hn h_prev + b_hn (GRU), which the backward needs; else empty.
    pub hn: &'a mut [f32],
}

/// Read-only inputs of one backward step, for all batch rows.
pub(crate) struct BwdStep<'a> {
    pub isa: Isa,
    pub hidden: usize,
    pub h_prev: &'a [f32],
    /// `(B, H)`: the state after the step.
    pub h: &'a [f32],
    pub c_prev: &'a [f32],
    pub c: &'a [f32],
}

/// What one backward step reads and writes for one batch row.
///
/// The backward works in place over what the forward saved: each cell reads every saved value
/// of hidden unit `j` before it writes unit `j`'s gradients, and units do not interact.
pub(crate) struct BwdRow<'a> {
    /// `(G*H)`: on entry the gate activations the forward saved; on exit d loss / d input-side
    /// gate pre-activations (dG_in).
    pub gates: &'a mut [f32],
    /// `(G*H)`: GRU: d loss / d hidden-side pre-activations (dG_h) of this step; LSTM: scratch
    /// (tanh(c') in the first H); RNN: empty.
    pub dgh: &'a mut [f32],
    /// `(H)`: GRU: on entry W_hn h_prev + b_hn, on exit its gradient dn * r (the n block of
    /// dG_h, kept for dW_hh and b_hh); else empty.
    pub hn: &'a mut [f32],
    /// `(H)`: on entry d loss / d h (from later steps); on exit the part of d loss / d h_prev
    /// that does not go through W_hh (the GEMM with dG_h adds the rest).
    pub dh: &'a mut [f32],
    /// `(H)`: d loss / d c, carried to c_prev (LSTM), else empty.
    pub dc: &'a mut [f32],
}

/// One batch row of a forward step.
#[inline]
pub(crate) fn forward_row(cell: CellKind, s: &FwdStep<'_>, b: usize, row: FwdRow<'_>) {
    match cell {
        CellKind::RnnTanh => rnn::forward_row::<false>(s, b, row),
        CellKind::RnnRelu => rnn::forward_row::<true>(s, b, row),
        CellKind::Lstm => lstm::forward_row(s, b, row),
        CellKind::Gru => gru::forward_row(s, b, row),
    }
}

/// One batch row of a backward step; `dy` is d loss / d output of this row and direction.
#[inline]
pub(crate) fn backward_row(cell: CellKind, s: &BwdStep<'_>, b: usize, dy: &[f32], row: BwdRow<'_>) {
    match cell {
        CellKind::RnnTanh => rnn::backward_row::<false>(s, b, dy, row),
        CellKind::RnnRelu => rnn::backward_row::<true>(s, b, dy, row),
        CellKind::Lstm => lstm::backward_row(s, b, dy, row),
        CellKind::Gru => gru::backward_row(s, b, dy, row),
    }
}

/// Row `b` of a `(B, width)` buffer.
#[inline]
pub(crate) fn row(buf: &[f32], b: usize, width: usize) -> &[f32] {
    &buf[b * width..(b + 1) * width]
}
