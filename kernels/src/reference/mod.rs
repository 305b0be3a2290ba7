//! The scalar reference: every test's oracle, written for clarity rather than speed.
//!
//! Generic over f32 and f64, with exactly the semantics of PyTorch's `nn.RNN`, `nn.LSTM` and
//! `nn.GRU` (time-major, no dropout). Nothing is fused or batched: each sequence of the batch
//! runs on its own, step by step, with plain matrix-vector products.
//!
//! # Forward ([`forward`], `forward.rs`)
//!
//! For each layer l, direction d and batch entry b with length `len_b`, the forward
//! direction runs t = 0..len_b and the reverse one t = len_b-1 down to 0, each from its own
//! h0 / c0 row `(l*D + d, b)`. With the pre-activations
//!
//! - `gi = W_ih x_t + b_ih` (input side) and `gh = W_hh h + b_hh` (hidden side),
//!
//! one step computes (`cell.rs`, σ the logistic function):
//!
//! - RNN: `h' = tanh(gi + gh)` or `relu(gi + gh)`;
//! - LSTM (gates i, f, g, o): `i = σ(gi_i + gh_i)`, `f = σ(gi_f + gh_f)`,
//!   `g = tanh(gi_g + gh_g)`, `o = σ(gi_o + gh_o)`, `c' = f c + i g`, `h' = o tanh(c')`;
//! - GRU (gates r, z, n): `r = σ(gi_r + gh_r)`, `z = σ(gi_z + gh_z)`,
//!   `n = tanh(gi_n + r gh_n)`, `h' = (1 - z) n + z h`.
//!
//! Layer l writes its h' into the forward half `[0, H)` or the reverse half `[H, 2H)` of its
//! output `(T, B, D*H)`, which is layer l+1's input. Outputs at padded steps (t >= len_b) stay
//! zero; `h_n` / `c_n` are the states after the last step processed: t = len_b-1 forward,
//! t = 0 reverse. Without biases (`desc.bias == false`) `b_ih` and `b_hh` count as zero.
//!
//! # Backward ([`backward`], `backward.rs`)
//!
//! Hand-written BPTT of
//! `L = Σ_valid output·grad_output + Σ h_n·grad_h_n + Σ c_n·grad_c_n`.
//! Layers run from the top down; in each, every (direction, batch entry) replays its recorded
//! steps in reverse processing order, carrying `dh` (and `dc`) from step to step:
//! `dh` starts at `grad_h_n` and each step adds the `grad_output` of its own position, so
//! padded positions of `grad_output` are never read. Each step's cell backward gives the
//! pre-activation gradients `dgi`, `dgh`, and through the two products
//!
//! - `dx = W_ihᵀ dgi`, `dh_prev += W_hhᵀ dgh`,
//! - `dW_ih += dgi xᵀ`, `dW_hh += dgh h_prevᵀ`, `db_ih += dgi`, `db_hh += dgh`.
//!
//! Layer l's `dx` is layer l-1's `grad_output` (non-zero at valid positions only), and layer
//! 0's is the input gradient; the `dh` / `dc` left after the first step are `grad_h0` /
//! `grad_c0`. Bias gradients stay zero when the descriptor has no bias.

mod attention;
mod backward;
mod cell;
mod forward;

use crate::error::Result;
use crate::float::Float;
use crate::params::Params;
use crate::seq::{Gradients, OutputGrads, Outputs, SeqBatch};

pub use attention::causal_attention;

/// The forward pass: the top layer's output `(T, B, D*H)` and every layer's `h_n` (and `c_n`).
///
/// Checks the parameters and the input first and returns their error, never panics.
pub fn forward<T: Float>(params: &Params<T>, input: &SeqBatch<'_, T>) -> Result<Outputs<T>> {
    params.validate()?;
    input.validate(&params.desc)?;
    Ok(forward::run(params, input).0)
}

/// The forward pass (recomputed, and returned too), then the gradients of
/// `L = Σ_valid output·grad_output + Σ h_n·grad_h_n + Σ c_n·grad_c_n`
/// with respect to the input, h0, c0 (LSTM) and every parameter.
///
/// Checks the parameters, the input and the gradients first and returns their error, never
/// panics.
pub fn backward<T: Float>(
    params: &Params<T>,
    input: &SeqBatch<'_, T>,
    grads: &OutputGrads<'_, T>,
) -> Result<(Outputs<T>, Gradients<T>)> {
    params.validate()?;
    input.validate(&params.desc)?;
    grads.validate(&params.desc, input.seq_len, input.batch)?;
    let (out, trace) = forward::run(params, input);
    let g = backward::run(params, input, grads, &trace);
    Ok((out, g))
}

/// Row (stack `k`, batch entry `b`) of optional `(L*D, B, H)` h and c states, zeros when
/// absent; c is empty for cells without one.
fn state_rows<T: Float>(
    params: &Params<T>,
    h: Option<&[T]>,
    c: Option<&[T]>,
    k: usize,
    b: usize,
    batch: usize,
) -> (Vec<T>, Vec<T>) {
    let n = params.desc.hidden_size;
    let at = |v: Option<&[T]>| match v {
        Some(v) => v[(k * batch + b) * n..][..n].to_vec(),
        None => vec![T::ZERO; n],
    };
    let c = if params.desc.cell.has_cell_state() {
        at(c)
    } else {
        vec![]
    };
    (at(h), c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;
    use crate::{CellKind, RnnDesc};

    fn wave(n: usize, k: f64) -> Vec<f64> {
        (0..n).map(|i| (i as f64 * k).sin()).collect()
    }

    #[test]
    fn one_lstm_step_by_hand() {
        // I = H = 1, w_ih = [a_i, a_f, a_g, a_o], w_hh = 0, no bias, x = 1, c0 = 0.5:
        // i = σ(0.5), f = σ(-1), g = tanh(2), o = σ(0.25); c = f c0 + i g; h = o tanh(c).
        let desc = RnnDesc::new(CellKind::Lstm, 1, 1).bias(false);
        let mut p = Params::<f64>::zeros(&desc);
        p.layers[0].w_ih = vec![0.5, -1.0, 2.0, 0.25];
        let (x, h0, c0) = ([1.0], [0.0], [0.5]);
        let input = SeqBatch::new(1, 1, &x[..]).with_h0(&h0).with_c0(&c0);
        let out = forward(&p, &input).unwrap();
        let s = |v: f64| 1.0 / (1.0 + (-v).exp());
        let c = s(-1.0) * 0.5 + s(0.5) * 2.0f64.tanh();
        let h = s(0.25) * c.tanh();
        assert!((out.c_n[0] - c).abs() < 1e-15, "{} vs {c}", out.c_n[0]);
        assert!((out.h_n[0] - h).abs() < 1e-15, "{} vs {h}", out.h_n[0]);
        assert_eq!(out.output, vec![h]);
    }

    #[test]
    fn one_gru_step_by_hand() {
        // I = H = 1, h0 = 0.5, x = 1: r = σ(w_ir + w_hr h0), z = σ(w_iz + w_hz h0),
        // n = tanh(w_in + r (w_hn h0 + b_hn)), h = (1 - z) n + z h0.
        let desc = RnnDesc::new(CellKind::Gru, 1, 1);
        let mut p = Params::<f64>::zeros(&desc);
        p.layers[0].w_ih = vec![0.3, -0.2, 0.7];
        p.layers[0].w_hh = vec![0.1, 0.4, -0.6];
        p.layers[0].b_hh = vec![0.0, 0.0, 0.25];
        let (x, h0) = ([1.0], [0.5]);
        let out = forward(&p, &SeqBatch::new(1, 1, &x[..]).with_h0(&h0)).unwrap();
        let s = |v: f64| 1.0 / (1.0 + (-v).exp());
        let (r, z) = (s(0.3 + 0.1 * 0.5), s(-0.2 + 0.4 * 0.5));
        let n = (0.7 + r * (-0.6 * 0.5 + 0.25)).tanh();
        let h = (1.0 - z) * n + z * 0.5;
        assert!((out.h_n[0] - h).abs() < 1e-15, "{} vs {h}", out.h_n[0]);
    }

    #[test]
    fn padding_is_zero_and_h_n_is_the_last_valid_step() {
        let desc = RnnDesc::new(CellKind::Gru, 2, 3).bidirectional(true);
        let p = Params::<f64>::random(&desc, 3);
        let x = wave(4 * 2 * 2, 0.37);
        let lengths = [2, 4];
        let out = forward(&p, &SeqBatch::new(4, 2, &x[..]).with_lengths(&lengths)).unwrap();
        let y = |t: usize, b: usize| &out.output[(t * 2 + b) * 6..][..6];
        assert!(y(2, 0).iter().chain(y(3, 0)).all(|&v| v == 0.0));
        assert!(y(1, 0).iter().all(|&v| v != 0.0));
        // Forward direction: h_n at t = len-1; reverse direction: h_n at t = 0.
        assert_eq!(&out.h_n[0..3], &y(1, 0)[..3]);
        assert_eq!(&out.h_n[3..6], &y(3, 1)[..3]);
        assert_eq!(&out.h_n[6..9], &y(0, 0)[3..]);
        assert_eq!(&out.h_n[9..12], &y(0, 1)[3..]);
    }

    #[test]
    fn a_short_sequence_matches_running_it_alone() {
        // Entry 0 of a padded batch gives what the same sequence gives on its own, T = len.
        let desc = RnnDesc::new(CellKind::Lstm, 2, 3)
            .layers(2)
            .bidirectional(true);
        let p = Params::<f64>::random(&desc, 5);
        let x = wave(4 * 2 * 2, 0.61);
        let lengths = [2, 4];
        let all = forward(&p, &SeqBatch::new(4, 2, &x[..]).with_lengths(&lengths)).unwrap();
        let x0: Vec<f64> = (0..2).flat_map(|t| x[t * 4..][..2].to_vec()).collect();
        let alone = forward(&p, &SeqBatch::new(2, 1, &x0[..])).unwrap();
        for t in 0..2 {
            assert_eq!(&all.output[t * 12..][..6], &alone.output[t * 6..][..6]);
        }
        for k in 0..desc.stacks() {
            assert_eq!(&all.h_n[k * 6..][..3], &alone.h_n[k * 3..][..3]);
            assert_eq!(&all.c_n[k * 6..][..3], &alone.c_n[k * 3..][..3]);
        }
    }

    #[test]
    fn padded_grad_output_is_ignored_and_grad_input_there_is_zero() {
        let desc = RnnDesc::new(CellKind::RnnTanh, 2, 3)
            .layers(2)
            .bidirectional(true);
        let p = Params::<f64>::random(&desc, 9);
        let (t, b) = (3, 2);
        let x = wave(t * b * 2, 0.43);
        let lengths = [1, 3];
        let input = SeqBatch::new(t, b, &x[..]).with_lengths(&lengths);
        let go = wave(t * b * 6, 0.29);
        let mut go_pad = go.clone();
        for t in 1..3 {
            go_pad[(t * b) * 6..][..6].fill(7.0); // entry 0, padded steps
        }
        let (_, g) = backward(&p, &input, &OutputGrads::new(&go)).unwrap();
        let (_, g_pad) = backward(&p, &input, &OutputGrads::new(&go_pad)).unwrap();
        assert_eq!(g, g_pad);
        for t in 1..3 {
            assert!(g.input[(t * b) * 2..][..2].iter().all(|&v| v == 0.0));
        }
    }

    #[test]
    fn f32_agrees_with_f64() {
        let desc = RnnDesc::new(CellKind::Gru, 3, 4)
            .layers(2)
            .bidirectional(true);
        let p = Params::<f64>::random(&desc, 11);
        let (t, b) = (3, 2);
        let x = wave(t * b * 3, 0.77);
        let go = wave(t * b * 8, 0.53);
        let (o64, g64) =
            backward(&p, &SeqBatch::new(t, b, &x[..]), &OutputGrads::new(&go)).unwrap();
        let f = |v: &[f64]| v.iter().map(|&a| a as f32).collect::<Vec<f32>>();
        let (x32, go32) = (f(&x), f(&go));
        let (o32, g32) = backward(
            &p.cast::<f32>(),
            &SeqBatch::new(t, b, &x32[..]),
            &OutputGrads::new(&go32),
        )
        .unwrap();
        let close = |a: &[f32], b: &[f64]| {
            a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (*x as f64 - y).abs() < 1e-5)
        };
        assert!(close(&o32.output, &o64.output) && close(&o32.h_n, &o64.h_n));
        assert!(close(&g32.input, &g64.input) && close(&g32.h0, &g64.h0));
        let p32: Vec<f32> = g32.params.iter().copied().collect();
        let p64: Vec<f64> = g64.params.iter().copied().collect();
        assert!(close(&p32, &p64));
    }

    #[test]
    fn bad_input_is_an_error() {
        let desc = RnnDesc::new(CellKind::Lstm, 2, 3);
        let p = Params::<f64>::random(&desc, 1);
        let x = [0.1; 2 * 2 * 2];
        let go = [0.1; 2 * 2 * 3];
        let lengths = [2, 3];
        let bad = SeqBatch::new(2, 2, &x[..]).with_lengths(&lengths);
        let err = Error::Length {
            index: 1,
            length: 3,
            max: 2,
        };
        assert_eq!(forward(&p, &bad).unwrap_err(), err);
        assert_eq!(backward(&p, &bad, &OutputGrads::new(&go)).unwrap_err(), err);
        let good = SeqBatch::new(2, 2, &x[..]);
        let short = OutputGrads::new(&go[1..]);
        assert!(matches!(
            backward(&p, &good, &short),
            Err(Error::Shape { .. })
        ));
        assert!(matches!(
            forward(&p, &SeqBatch::new(2, 2, &x[1..])),
            Err(Error::Shape { .. })
        ));
        let mut broken = p.clone();
        broken.layers[0].w_hh.pop();
        assert!(matches!(forward(&broken, &good), Err(Error::Shape { .. })));
        let gru = Params::<f64>::random(&RnnDesc::new(CellKind::Gru, 2, 3), 1);
        let c0 = vec![0.0; 6];
        assert!(matches!(
            forward(&gru, &good.with_c0(&c0)),
            Err(Error::Mismatch(_))
        ));
    }
}
