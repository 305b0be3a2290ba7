//! The activations with AVX2 + FMA: 8 lanes, the tail through a small buffer.

use super::*;
use crate::cell::FwdUnits;
use std::arch::x86_64::*;

/// exp(x) for x in [-87, 87]; 2^n is built in the exponent bits (n in [-126, 126]).
#[inline]
#[target_feature(enable = "avx2,fma")]
fn exp8(x: __m256) -> __m256 {
    let n = _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(_mm256_mul_ps(
        x,
        _mm256_set1_ps(LOG2E),
    ));
    let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(LN2_HI), x);
    let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(LN2_LO), r);
    let mut p = _mm256_set1_ps(EXP_POLY[0]);
    for &c in &EXP_POLY[1..] {
        p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(c));
    }
    let one = _mm256_set1_ps(1.0);
    p = _mm256_fmadd_ps(p, r, one);
    p = _mm256_fmadd_ps(p, r, one);
    let bits = _mm256_slli_epi32::<23>(_mm256_add_epi32(
        _mm256_cvtps_epi32(n),
        _mm256_set1_epi32(127),
    ));
    _mm256_mul_ps(p, _mm256_castsi256_ps(bits))
}

#[inline]
#[target_feature(enable = "avx2,fma")]
fn sigmoid8(x: __m256) -> __m256 {
    let x = _mm256_min_ps(_mm256_set1_ps(EXP_CLAMP), x);
    let x = _mm256_max_ps(_mm256_set1_ps(-EXP_CLAMP), x);
    let e = exp8(_mm256_sub_ps(_mm256_setzero_ps(), x));
    let one = _mm256_set1_ps(1.0);
    _mm256_div_ps(one, _mm256_add_ps(one, e))
}

/// Lane `idx & 15` of a 16-entry table: two 8-lane permutes, the half chosen by bit 3.
#[inline]
#[target_feature(enable = "avx2,fma")]
fn pick16(t: &[f32; 16], idx: __m256i, upper: __m256) -> __m256 {
    // SAFETY: `t` holds 16 floats: 8 from its start and 8 from its middle.
    let (lo, hi) = unsafe {
        (
            _mm256_loadu_ps(t.as_ptr()),
            _mm256_loadu_ps(t.as_ptr().add(8)),
        )
    };
    _mm256_blendv_ps(
        _mm256_permutevar8x32_ps(lo, idx),
        _mm256_permutevar8x32_ps(hi, idx),
        upper,
    )
}

#[inline]
#[target_feature(enable = "avx2,fma")]
fn tanh8(x: __m256) -> __m256 {
    let sign = _mm256_set1_ps(-0.0);
    // min with the constant first: a NaN comes through (its lane's index is any; d is NaN).
    let a = _mm256_min_ps(_mm256_set1_ps(TANH_CLAMP), _mm256_andnot_ps(sign, x));
    let idx = _mm256_max_epi32(
        _mm256_sub_epi32(
            _mm256_srli_epi32::<22>(_mm256_castps_si256(a)),
            _mm256_set1_epi32(TANH_INDEX_BIAS),
        ),
        _mm256_setzero_si256(),
    );
    // Bit 3 of the index in the sign bit, which blendv reads.
    let upper = _mm256_castsi256_ps(_mm256_slli_epi32::<28>(idx));
    let d = _mm256_sub_ps(a, pick16(&TANH_CENTER, idx, upper));
    let mut p = pick16(&TANH_COEF[6], idx, upper);
    for c in TANH_COEF[..6].iter().rev() {
        p = _mm256_fmadd_ps(p, d, pick16(c, idx, upper));
    }
    _mm256_or_ps(p, _mm256_and_ps(x, sign))
}

#[inline]
#[target_feature(enable = "avx2,fma")]
fn map8(v: &mut [f32], f: impl Fn(__m256) -> __m256) {
    let mut chunks = v.chunks_exact_mut(8);
    for c in &mut chunks {
        // SAFETY: `c` holds exactly 8 f32s, read and written unaligned.
        unsafe { _mm256_storeu_ps(c.as_mut_ptr(), f(_mm256_loadu_ps(c.as_ptr()))) };
    }
    let tail = chunks.into_remainder();
    if !tail.is_empty() {
        let mut buf = [0.0f32; 8];
        buf[..tail.len()].copy_from_slice(tail);
        // SAFETY: `buf` holds exactly 8 f32s.
        unsafe { _mm256_storeu_ps(buf.as_mut_ptr(), f(_mm256_loadu_ps(buf.as_ptr()))) };
        tail.copy_from_slice(&buf[..tail.len()]);
    }
}

/// # Safety
/// The CPU must have AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn sigmoid(v: &mut [f32]) {
    map8(v, |x| sigmoid8(x))
}

/// # Safety
/// The CPU must have AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn tanh(v: &mut [f32]) {
    map8(v, |x| tanh8(x))
}

/// The mask (all ones in a lane) of the first `min(left, 8)` lanes, for maskload / maskstore.
#[inline]
#[target_feature(enable = "avx2,fma")]
fn lanes8(left: usize) -> __m256i {
    let idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    _mm256_cmpgt_epi32(_mm256_set1_epi32(left.min(8) as i32), idx)
}

/// One LSTM step's elementwise forward, fused (see [`super::lstm_forward`]).
///
/// # Safety
/// The CPU must have AVX2 and FMA; every slice must hold `h.len()` floats.
#[target_feature(enable = "avx2,fma")]
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
        let m = lanes8(n - j);
        // SAFETY: every slice holds n floats (the caller); the mask keeps each access to
        // units j..min(j + 8, n).
        unsafe {
            let ld = |s: &[f32]| _mm256_maskload_ps(s.as_ptr().add(j), m);
            let pre: [__m256; 4] = std::array::from_fn(|k| {
                _mm256_add_ps(ld(&gates[k][..]), _mm256_add_ps(ld(gh[k]), ld(b[k])))
            });
            let (i, f, g, o) = (
                sigmoid8(pre[0]),
                sigmoid8(pre[1]),
                tanh8(pre[2]),
                sigmoid8(pre[3]),
            );
            let cc = _mm256_add_ps(_mm256_mul_ps(f, ld(c_prev)), _mm256_mul_ps(i, g));
            let hh = _mm256_mul_ps(tanh8(cc), o);
            for (k, v) in [i, f, g, o].into_iter().enumerate() {
                _mm256_maskstore_ps(gates[k].as_mut_ptr().add(j), m, v);
            }
            _mm256_maskstore_ps(c.as_mut_ptr().add(j), m, cc);
            _mm256_maskstore_ps(h.as_mut_ptr().add(j), m, hh);
        }
        j += 8;
    }
}

/// One GRU step's elementwise forward, fused (see [`super::gru_forward`]).
///
/// # Safety
/// The CPU must have AVX2 and FMA; every slice must hold `h.len()` floats.
#[target_feature(enable = "avx2,fma")]
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
        let m = lanes8(n - j);
        // SAFETY: every slice holds n floats (the caller); the mask keeps each access to
        // units j..min(j + 8, n).
        unsafe {
            let ld = |s: &[f32]| _mm256_maskload_ps(s.as_ptr().add(j), m);
            let r = sigmoid8(_mm256_add_ps(ld(r_out), _mm256_add_ps(ld(gh[0]), ld(b[0]))));
            let z = sigmoid8(_mm256_add_ps(ld(z_out), _mm256_add_ps(ld(gh[1]), ld(b[1]))));
            let v = _mm256_add_ps(ld(gh[2]), ld(b[2]));
            let nn = tanh8(_mm256_add_ps(ld(n_out), _mm256_mul_ps(r, v)));
            let one = _mm256_set1_ps(1.0);
            let hh = _mm256_add_ps(
                _mm256_mul_ps(_mm256_sub_ps(one, z), nn),
                _mm256_mul_ps(z, ld(h_prev)),
            );
            _mm256_maskstore_ps(r_out.as_mut_ptr().add(j), m, r);
            _mm256_maskstore_ps(z_out.as_mut_ptr().add(j), m, z);
            _mm256_maskstore_ps(n_out.as_mut_ptr().add(j), m, nn);
            _mm256_maskstore_ps(hn.as_mut_ptr().add(j), m, v);
            _mm256_maskstore_ps(h.as_mut_ptr().add(j), m, hh);
        }
        j += 8;
    }
}
