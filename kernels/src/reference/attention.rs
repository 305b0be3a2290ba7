//! The scalar reference of causal self-attention (see `crate::attention`): each output as its
//! definition writes it, one query at a time.

use crate::attention::AttentionParams;
use crate::error::{check_len, Result};
use crate::float::Float;

/// `y = x Wᵀ + b` for one row: `w` is `(n, k)` row-major.
fn affine<T: Float>(x: &[T], w: &[T], bias: &[T]) -> Vec<T> {
    let k = x.len();
    bias.iter()
        .enumerate()
        .map(|(j, &b)| {
            x.iter()
                .zip(&w[j * k..][..k])
                .fold(b, |s, (&a, &w)| s + a * w)
        })
        .collect()
}

/// PyTorch's `nn.MultiheadAttention(D, heads)(x, x, x, attn_mask=causal)[0]` for `x` `(T, B,
/// D)` time-major: per batch entry and head, query t attends to steps 0..=t with weights
/// `softmax(q·k / sqrt(D / heads))`.
pub fn causal_attention<T: Float>(
    p: &AttentionParams<T>,
    t: usize,
    b: usize,
    x: &[T],
) -> Result<Vec<T>> {
    p.check()?;
    let (d, heads) = (p.d_model, p.heads);
    check_len("input", x, t * b * d)?;
    let dh = d / heads;
    let scale = T::from_f64(1.0 / (dh as f64).sqrt());
    // qkv[i * b + e]: Q, K, V of step i, entry e, each D wide.
    let qkv: Vec<Vec<T>> = x
        .chunks_exact(d)
        .map(|row| affine(row, &p.in_proj_weight, &p.in_proj_bias))
        .collect();
    let mut out = Vec::with_capacity(t * b * d);
    for i in 0..t {
        for e in 0..b {
            let q = &qkv[i * b + e];
            let mut o = vec![T::ZERO; d];
            for h in 0..heads {
                let head = h * dh..(h + 1) * dh;
                let scores: Vec<T> = (0..=i)
                    .map(|j| {
                        let k = &qkv[j * b + e][d..];
                        head.clone().fold(T::ZERO, |s, c| s + q[c] * k[c]) * scale
                    })
                    .collect();
                let m = scores.iter().fold(scores[0], |m, &s| m.max(s));
                let w: Vec<T> = scores.iter().map(|&s| (s - m).exp()).collect();
                let sum = w.iter().fold(T::ZERO, |a, &v| a + v);
                for (j, &wj) in w.iter().enumerate() {
                    let v = &qkv[j * b + e][2 * d..];
                    for c in head.clone() {
                        o[c] += wj / sum * v[c];
                    }
                }
            }
            out.extend(affine(&o, &p.out_proj_weight, &p.out_proj_bias));
        }
    }
    Ok(out)
}
