//! The activations with AVX-512 F: 16 lanes, masked tails.

use super::fused::{self, Lanes};
use super::*;
use crate::cell::{BwdUnits, FwdUnits};
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

/// The AVX-512 token of [`Lanes`]: made only where the CPU has AVX-512 F.
#[derive(Clone, Copy)]
struct Avx512(());

impl Avx512 {
    /// # Safety
    /// The CPU must have AVX-512 F.
    #[inline(always)]
    unsafe fn new() -> Self {
        Avx512(())
    }
}

// SAFETY (every block below): a token exists only where AVX-512 F is available (`new`), and
// the loads and stores touch what their callers vouch for.
impl Lanes for Avx512 {
    type V = __m512;
    type M = __mmask16;
    const N: usize = 16;
    #[inline(always)]
    fn first(self, left: usize) -> __mmask16 {
        lanes16(left)
    }
    #[inline(always)]
    unsafe fn load_all(self, p: *const f32) -> __m512 {
        unsafe { _mm512_loadu_ps(p) }
    }
    #[inline(always)]
    unsafe fn store_all(self, p: *mut f32, v: __m512) {
        unsafe { _mm512_storeu_ps(p, v) }
    }
    #[inline(always)]
    unsafe fn load(self, m: __mmask16, p: *const f32) -> __m512 {
        unsafe { _mm512_maskz_loadu_ps(m, p) }
    }
    #[inline(always)]
    unsafe fn store(self, m: __mmask16, p: *mut f32, v: __m512) {
        unsafe { _mm512_mask_storeu_ps(p, m, v) }
    }
    #[inline(always)]
    fn add(self, a: __m512, b: __m512) -> __m512 {
        unsafe { _mm512_add_ps(a, b) }
    }
    #[inline(always)]
    fn sub(self, a: __m512, b: __m512) -> __m512 {
        unsafe { _mm512_sub_ps(a, b) }
    }
    #[inline(always)]
    fn mul(self, a: __m512, b: __m512) -> __m512 {
        unsafe { _mm512_mul_ps(a, b) }
    }
    #[inline(always)]
    fn splat(self, x: f32) -> __m512 {
        unsafe { _mm512_set1_ps(x) }
    }
    #[inline(always)]
    fn sigmoid(self, x: __m512) -> __m512 {
        unsafe { sigmoid16(x) }
    }
    #[inline(always)]
    fn tanh(self, x: __m512) -> __m512 {
        unsafe { tanh16(x) }
    }
    #[inline(always)]
    fn max(self, a: __m512, b: __m512) -> __m512 {
        unsafe { _mm512_max_ps(a, b) }
    }
    #[inline(always)]
    fn exp(self, x: __m512) -> __m512 {
        unsafe {
            let x = _mm512_min_ps(_mm512_set1_ps(EXP_CLAMP), x);
            exp16(_mm512_max_ps(_mm512_set1_ps(-EXP_CLAMP), x))
        }
    }
    #[inline(always)]
    fn sum(self, v: __m512) -> f32 {
        unsafe { _mm512_reduce_add_ps(v) }
    }
    #[inline(always)]
    fn hmax(self, v: __m512) -> f32 {
        unsafe { _mm512_reduce_max_ps(v) }
    }
}

/// # Safety
/// The CPU must have AVX-512 F.
#[cfg(test)]
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn sigmoid(v: &mut [f32]) {
    // SAFETY: the caller's CPU has AVX-512 F.
    let l = unsafe { Avx512::new() };
    fused::map(l, v, |x| l.sigmoid(x))
}

/// # Safety
/// The CPU must have AVX-512 F.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn tanh(v: &mut [f32]) {
    // SAFETY: as above.
    let l = unsafe { Avx512::new() };
    fused::map(l, v, |x| l.tanh(x))
}

/// # Safety
/// The CPU must have AVX-512 F.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn softmax(row: &mut [f32], scale: f32) {
    // SAFETY: as above.
    fused::softmax(unsafe { Avx512::new() }, row, scale)
}

/// One LSTM step's elementwise forward, fused (see [`super::lstm_forward`]).
///
/// # Safety
/// The CPU must have AVX-512 F; every slice must hold `h.len()` floats.
#[target_feature(enable = "avx512f")]
#[inline]
pub(super) unsafe fn lstm_forward(u: FwdUnits<'_>) {
    // SAFETY: forwarded; this function is compiled for AVX-512 F, so the body inlines here.
    unsafe { lstm_inline(u) }
}

/// One GRU step's elementwise forward, fused (see [`super::gru_forward`]).
///
/// # Safety
/// The CPU must have AVX-512 F; every slice must hold `h.len()` floats.
#[target_feature(enable = "avx512f")]
#[inline]
pub(super) unsafe fn gru_forward(u: FwdUnits<'_>) {
    // SAFETY: forwarded; this function is compiled for AVX-512 F, so the body inlines here.
    unsafe { gru_inline(u) }
}

/// [`lstm_forward`]'s body, to inline into a caller compiled for AVX-512 F (elsewhere each
/// intrinsic would be a call).
///
/// # Safety
/// The CPU must have AVX-512 F; every slice must hold `h.len()` floats.
#[inline(always)]
pub(super) unsafe fn lstm_inline(u: FwdUnits<'_>) {
    // SAFETY: the caller's CPU has AVX-512 F.
    fused::lstm_forward(unsafe { Avx512::new() }, u)
}

/// The Elman RNN cell's forward (see [`super::rnn_forward_avx512`]), to inline as
/// [`lstm_inline`].
///
/// # Safety
/// The CPU must have AVX-512 F; every slice must hold `h.len()` floats.
#[inline(always)]
pub(super) unsafe fn rnn_inline<const RELU: bool>(u: FwdUnits<'_>) {
    // SAFETY: the caller's CPU has AVX-512 F.
    fused::rnn_forward::<_, RELU>(unsafe { Avx512::new() }, u)
}

/// The LSTM cell's backward (see [`super::lstm_backward_avx512`]), to inline as
/// [`lstm_inline`].
///
/// # Safety
/// The CPU must have AVX-512 F; every slice must hold `dh.len()` floats.
#[inline(always)]
pub(super) unsafe fn lstm_backward_inline(u: BwdUnits<'_>) {
    // SAFETY: the caller's CPU has AVX-512 F.
    fused::lstm_backward(unsafe { Avx512::new() }, u)
}

/// [`gru_forward`]'s body, to inline as [`lstm_inline`].
///
/// # Safety
/// The CPU must have AVX-512 F; every slice must hold `h.len()` floats.
#[inline(always)]
pub(super) unsafe fn gru_inline(u: FwdUnits<'_>) {
    // SAFETY: the caller's CPU has AVX-512 F.
    fused::gru_forward(unsafe { Avx512::new() }, u)
}
