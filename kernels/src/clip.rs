//! Gradient clipping over every gradient at once, as `torch.nn.utils.clip_grad_norm_` and
//! `clip_grad_value_` do it.
//!
//! The norm is one pass over all the values, in a fixed order (so the same at any thread count),
//! with 16 f32 partial sums per block of 1024 values folded into an f64 total: the compiler
//! vectorizes the inner loop, and the f64 fold keeps long sums accurate.

use crate::error::{Error, Result};

/// Which vector norm `clip_grad_norm` measures.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Norm {
    /// `(Σ |g|^p)^(1/p)` for a finite `p > 0` (PyTorch's `norm_type=p`; 2 is the default).
    P(f64),
    /// `max |g|` (PyTorch's `norm_type=inf`).
    Inf,
}

/// The norm of all the values of `grads`, taken together, as PyTorch's total norm.
pub fn grad_norm(grads: &[&[f32]], norm: Norm) -> Result<f64> {
    match norm {
        Norm::Inf => Ok(grads.iter().flat_map(|g| g.iter()).fold(0.0f32, |m, &v| {
            // f32::max drops a NaN: keep it, as PyTorch's norm does.
            if m.is_nan() || v.is_nan() {
                f32::NAN
            } else {
                m.max(v.abs())
            }
        }) as f64),
        Norm::P(p) if p.is_finite() && p > 0.0 => {
            let total: f64 = grads.iter().map(|g| power_sum(g, p)).sum();
            Ok(if p == 2.0 {
                total.sqrt()
            } else if p == 1.0 {
                total
            } else {
                total.powf(1.0 / p)
            })
        }
        Norm::P(p) => Err(Error::Mismatch(format!(
            "norm type {p}, expected a finite p > 0 or infinity"
        ))),
    }
}

/// `Σ |v|^p` in blocks: 16 f32 lanes per block, folded into f64.
fn power_sum(v: &[f32], p: f64) -> f64 {
    const LANES: usize = 16;
    const BLOCK: usize = 1024;
    let pf = p as f32;
    let term = |x: f32| -> f32 {
        if p == 2.0 {
            x * x
        } else if p == 1.0 {
            x.abs()
        } else {
            x.abs().powf(pf)
        }
    };
    let mut total = 0.0f64;
    for block in v.chunks(BLOCK) {
        let mut acc = [0.0f32; LANES];
        let mut chunks = block.chunks_exact(LANES);
        for c in &mut chunks {
            for (a, &x) in acc.iter_mut().zip(c) {
                *a += term(x);
            }
        }
        let tail: f32 = chunks.remainder().iter().map(|&x| term(x)).sum();
        total += acc.iter().map(|&a| a as f64).sum::<f64>() + tail as f64;
    }
    total
}

/// Scales every gradient by `min(1, max_norm / (total_norm + 1e-6))`, as
/// `clip_grad_norm_(max_norm, norm_type)`, and returns the total norm before clipping.
/// A non-finite total norm is returned as it is and, as in PyTorch, makes the gradients NaN
/// (a NaN norm) or zero (an infinite one: |g|^p overflows f32 for a large p, as PyTorch's
/// does, e.g. p = 50 and g = 10).
pub fn clip_grad_norm(grads: &mut [&mut [f32]], max_norm: f64, norm: Norm) -> Result<f64> {
    if max_norm.is_nan() || max_norm < 0.0 {
        return Err(Error::Mismatch(format!(
            "max_norm {max_norm}, expected a number >= 0"
        )));
    }
    let total = {
        let views: Vec<&[f32]> = grads.iter().map(|g| &**g).collect();
        grad_norm(&views, norm)?
    };
    // clamp(max = 1) keeps a NaN coefficient NaN, as torch.clamp does.
    let coef = max_norm / (total + 1e-6);
    let coef = if coef > 1.0 { 1.0 } else { coef as f32 };
    for g in grads.iter_mut() {
        g.iter_mut().for_each(|v| *v *= coef);
    }
    Ok(total)
}

/// Clamps every gradient to `[-clip, clip]`, as `clip_grad_value_(clip)`.
pub fn clip_grad_value(grads: &mut [&mut [f32]], clip: f32) -> Result<()> {
    if clip.is_nan() || clip < 0.0 {
        return Err(Error::Mismatch(format!(
            "clip value {clip}, expected a number >= 0"
        )));
    }
    for g in grads.iter_mut() {
        g.iter_mut().for_each(|v| *v = v.clamp(-clip, clip));
    }
    Ok(())
}

impl crate::seq::Gradients<f32> {
    /// Every parameter gradient (not the input or state gradients), in the order of
    /// [`crate::Params::iter`]: what PyTorch's `model.parameters()` clipping sees.
    pub fn param_grads_mut(&mut self) -> Vec<&mut [f32]> {
        self.params
            .layers
            .iter_mut()
            .flat_map(|lp| {
                [
                    &mut lp.w_ih[..],
                    &mut lp.w_hh[..],
                    &mut lp.b_ih[..],
                    &mut lp.b_hh[..],
                ]
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A non-finite total norm, as PyTorch has it: NaN makes every gradient NaN; infinity
    /// (|10|^50 overflows f32, in PyTorch too) makes them zero; the norm is returned as it is.
    #[test]
    fn non_finite_norms_as_in_pytorch() {
        let (mut a, mut b) = (vec![1.0f32, f32::NAN], vec![0.5f32; 3]);
        let total = clip_grad_norm(&mut [&mut a, &mut b], 1.0, Norm::P(2.0)).unwrap();
        assert!(total.is_nan());
        assert!(a.iter().chain(&b).all(|v| v.is_nan()), "{a:?} {b:?}");
        let (mut a, mut b) = (vec![10.0f32, 1.0], vec![0.5f32; 3]);
        let total = clip_grad_norm(&mut [&mut a, &mut b], 1.0, Norm::P(50.0)).unwrap();
        assert_eq!(total, f64::INFINITY);
        assert!(a.iter().chain(&b).all(|&v| v == 0.0), "{a:?} {b:?}");
        let mut c = vec![1.0f32, f32::NAN, -3.0];
        let total = clip_grad_norm(&mut [&mut c], 1.0, Norm::Inf).unwrap();
        assert!(total.is_nan() && c.iter().all(|v| v.is_nan()));
    }

    #[test]
    fn norms_match_f64_and_clipping_scales() {
        let a: Vec<f32> = (0..3001)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) * 0.01)
            .collect();
        let b: Vec<f32> = vec![3.0, -4.0];
        let exact = |p: f64| {
            a.iter()
                .chain(&b)
                .map(|&x| (x as f64).abs().powf(p))
                .sum::<f64>()
                .powf(1.0 / p)
        };
        for p in [1.0, 2.0, 3.0] {
            let n = grad_norm(&[&a, &b], Norm::P(p)).unwrap();
            assert!((n - exact(p)).abs() < 1e-6 * exact(p), "p = {p}");
        }
        assert_eq!(grad_norm(&[&a, &b], Norm::Inf).unwrap(), 4.0);
        let (mut a2, mut b2) = (a.clone(), b.clone());
        let total = clip_grad_norm(&mut [&mut a2, &mut b2], 1.0, Norm::P(2.0)).unwrap();
        let after = grad_norm(&[&a2, &b2], Norm::P(2.0)).unwrap();
        assert!((total - exact(2.0)).abs() < 1e-6 * total && (after - 1.0).abs() < 1e-5);
        // Below the threshold nothing changes.
        let mut c = b.clone();
        clip_grad_norm(&mut [&mut c], 10.0, Norm::P(2.0)).unwrap();
        assert_eq!(c, b);
        clip_grad_value(&mut [&mut c], 3.5).unwrap();
        assert_eq!(c, vec![3.0, -3.5]);
        assert!(clip_grad_value(&mut [&mut c], -1.0).is_err());
        assert!(grad_norm(&[&a], Norm::P(0.0)).is_err());
        assert!(grad_norm(&[&[f32::NAN, 1.0]], Norm::Inf).unwrap().is_nan());
    }
}
