//! The activations with AVX-512 F: 16 lanes, masked tails.

use super::*;
use crate::cell::FwdUnits;
use std::arch::x86_64::*;

/// exp(x) for x in [-87, 87]; `scalef` applies 2^n without integer tricks.
#[inline]
#[target_feature(enable = "avx512f")]
fn exp16(x: __m512) -> __m512 {
    let n = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(
        _mm512_mul_ps(x, _mm512_set1_ps(LOG2E)),
    );
    let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(LN2_HI), x);
    let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(LN2_LO), r);
    let mut p = _mm512_set1_ps(EXP_POLY[0]);
    for &c in &EXP_POLY[1..] {
        p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(c));
    }
    let one = _mm512_set1_ps(1.0);
    p = _mm512_fmadd_ps(p, r, one);
    p = _mm512_fmadd_ps(p, r, one);
    _mm512_scalef_ps(p, n)
}

#[inline]
#[target_feature(enable = "avx512f")]
fn sigmoid16(x: __m512) -> __m512 {
    // min / max with the constant first: a NaN in x comes through.
    let x = _mm512_min_ps(_mm512_set1_ps(EXP_CLAMP), x);
    let x = _mm512_max_ps(_mm512_set1_ps(-EXP_CLAMP), x);
    let e = exp16(_mm512_sub_ps(_mm512_setzero_ps(), x));
    let one = _mm512_set1_ps(1.0);
    _mm512_div_ps(one, _mm512_add_ps(one, e))
}

/// A 16-entry table in a register, for the permutes that pick each lane's interval.
#[inline]
#[target_feature(enable = "avx512f")]
fn table16(t: &[f32; 16]) -> __m512 {
    // SAFETY: `t` holds 16 floats.
    unsafe { _mm512_loadu_ps(t.as_ptr()) }
}

#[inline]
#[target_feature(enable = "avx512f")]
fn tanh16(x: __m512) -> __m512 {
    let sign = _mm512_set1_epi32(i32::MIN);
    let xi = _mm512_castps_si512(x);
    // min with the constant first: a NaN comes through (its lane's index is any; d is NaN).
    let a = _mm512_min_ps(
        _mm512_set1_ps(TANH_CLAMP),
        _mm512_castsi512_ps(_mm512_andnot_si512(sign, xi)),
    );
    let idx = _mm512_max_epi32(
        _mm512_sub_epi32(
            _mm512_srli_epi32::<22>(_mm512_castps_si512(a)),
            _mm512_set1_epi32(TANH_INDEX_BIAS),
        ),
        _mm512_setzero_si512(),
    );
    let pick = |t: &[f32; 16]| _mm512_permutexvar_ps(idx, table16(t));
    let d = _mm512_sub_ps(a, pick(&TANH_CENTER));
    let mut p = pick(&TANH_COEF[6]);
    for c in TANH_COEF[..6].iter().rev() {
        p = _mm512_fmadd_ps(p, d, pick(c));
    }
    _mm512_castsi512_ps(_mm512_or_si512(
        _mm512_castps_si512(p),
        _mm512_and_si512(xi, sign),
    ))
}

/// The mask of the first `min(left, 16)` lanes.
#[inline]
fn lanes16(left: usize) -> __mmask16 {
    if left >= 16 {
        u16::MAX
    } else {
        ((1u32 << left) - 1) as u16
    }
}

/// Applies `f` to every element, 16 at a time, the tail under a mask.
#[inline]
#[target_feature(enable = "avx512f")]
fn map16(v: &mut [f32], f: impl Fn(__m512) -> __m512) {
    let mut chunks = v.chunks_exact_mut(16);
    for c in &mut chunks {
        // SAFETY: `c` holds exactly 16 f32s, read and written unaligned.
        unsafe { _mm512_storeu_ps(c.as_mut_ptr(), f(_mm512_loadu_ps(c.as_ptr()))) };
    }
    let tail = chunks.into_remainder();
    if !tail.is_empty() {
        let mask = lanes16(tail.len());
        // SAFETY: the mask covers only the `tail.len()` < 16 elements of `tail`; masked-off
        // lanes are neither read nor written.
        unsafe {
            let x = _mm512_maskz_loadu_ps(mask, tail.as_ptr());
            _mm512_mask_storeu_ps(tail.as_mut_ptr(), mask, f(x));
        }
    }
}

/// # Safety
/// The CPU must have AVX-512 F.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn sigmoid(v: &mut [f32]) {
    map16(v, |x| sigmoid16(x))
}

/// # Safety
/// The CPU must have AVX-512 F.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn tanh(v: &mut [f32]) {
    map16(v, |x| tanh16(x))
}

/// One LSTM step's elementwise forward, fused (see [`super::lstm_forward`]).
///
/// # Safety
/// The CPU must have AVX-512 F; every slice must hold `h.len()` floats.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn lstm_forward(u: FwdUnits<'_>) {
    let FwdUnits {
        gates,
        gh,
        b_hh: b,
        c_prev,
        h,
        c,
        ..
    } = u;
    let n = h.len();
    let mut j = 0;
    while j < n {
        let m = lanes16(n - j);
        // SAFETY: every slice holds n floats (the caller); the mask keeps each access to
        // units j..min(j + 16, n).
        unsafe {
            let ld = |s: &[f32]| _mm512_maskz_loadu_ps(m, s.as_ptr().add(j));
            // pre-activation = x W_ihᵀ + b_ih + (h W_hhᵀ + b_hh), summed as the portable path.
            let pre: [__m512; 4] = std::array::from_fn(|k| {
                _mm512_add_ps(ld(&gates[k][..]), _mm512_add_ps(ld(gh[k]), ld(b[k])))
            });
            let (i, f, g, o) = (
                sigmoid16(pre[0]),
                sigmoid16(pre[1]),
                tanh16(pre[2]),
                sigmoid16(pre[3]),
            );
            let cc = _mm512_add_ps(_mm512_mul_ps(f, ld(c_prev)), _mm512_mul_ps(i, g));
            let hh = _mm512_mul_ps(tanh16(cc), o);
            for (k, v) in [i, f, g, o].into_iter().enumerate() {
                _mm512_mask_storeu_ps(gates[k].as_mut_ptr().add(j), m, v);
            }
            _mm512_mask_storeu_ps(c.as_mut_ptr().add(j), m, cc);
            _mm512_mask_storeu_ps(h.as_mut_ptr().add(j), m, hh);
        }
        j += 16;
    }
}

/// One GRU step's elementwise forward, fused (see [`super::gru_forward`]).
///
/// # Safety
/// The CPU must have AVX-512 F; every slice must hold `h.len()` floats.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn gru_forward(u: FwdUnits<'_>) {
    let FwdUnits {
        gates: [r_out, z_out, n_out, _],
        gh,
        b_hh: b,
        h_prev,
        h,
        hn,
        ..
    } = u;
    let n = h.len();
    let mut j = 0;
    while j < n {
        let m = lanes16(n - j);
        // SAFETY: every slice holds n floats (the caller); the mask keeps each access to
        // units j..min(j + 16, n).
        unsafe {
            let ld = |s: &[f32]| _mm512_maskz_loadu_ps(m, s.as_ptr().add(j));
            let r = sigmoid16(_mm512_add_ps(ld(r_out), _mm512_add_ps(ld(gh[0]), ld(b[0]))));
            let z = sigmoid16(_mm512_add_ps(ld(z_out), _mm512_add_ps(ld(gh[1]), ld(b[1]))));
            let v = _mm512_add_ps(ld(gh[2]), ld(b[2]));
            let nn = tanh16(_mm512_add_ps(ld(n_out), _mm512_mul_ps(r, v)));
            let one = _mm512_set1_ps(1.0);
            let hh = _mm512_add_ps(
                _mm512_mul_ps(_mm512_sub_ps(one, z), nn),
                _mm512_mul_ps(z, ld(h_prev)),
            );
            _mm512_mask_storeu_ps(r_out.as_mut_ptr().add(j), m, r);
            _mm512_mask_storeu_ps(z_out.as_mut_ptr().add(j), m, z);
            _mm512_mask_storeu_ps(n_out.as_mut_ptr().add(j), m, nn);
            _mm512_mask_storeu_ps(hn.as_mut_ptr().add(j), m, v);
            _mm512_mask_storeu_ps(h.as_mut_ptr().add(j), m, hh);
        }
        j += 16;
    }
}
