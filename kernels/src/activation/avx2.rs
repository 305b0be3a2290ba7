//! The activations with AVX2 + FMA: 8 lanes, masked tails (maskload / maskstore).

use super::fused::{self, Lanes};
use super::*;
use crate::cell::{BwdUnits, FwdUnits};
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

/// The mask (all ones in a lane) of the first `min(left, 8)` lanes, for maskload / maskstore.
#[inline]
#[target_feature(enable = "avx2,fma")]
fn lanes8(left: usize) -> __m256i {
    let idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    _mm256_cmpgt_epi32(_mm256_set1_epi32(left.min(8) as i32), idx)
}

/// The AVX2 + FMA token of [`Lanes`]: made only where the CPU has both.
#[derive(Clone, Copy)]
struct Avx2(());

impl Avx2 {
    /// # Safety
    /// The CPU must have AVX2 and FMA.
    #[inline(always)]
    unsafe fn new() -> Self {
        Avx2(())
    }
}

// SAFETY (every block below): a token exists only where AVX2 and FMA are available (`new`),
// and the loads and stores touch what their callers vouch for.
impl Lanes for Avx2 {
    type V = __m256;
    type M = __m256i;
    const N: usize = 8;
    #[inline(always)]
    fn first(self, left: usize) -> __m256i {
        unsafe { lanes8(left) }
    }
    #[inline(always)]
    unsafe fn load_all(self, p: *const f32) -> __m256 {
        unsafe { _mm256_loadu_ps(p) }
    }
    #[inline(always)]
    unsafe fn store_all(self, p: *mut f32, v: __m256) {
        unsafe { _mm256_storeu_ps(p, v) }
    }
    #[inline(always)]
    unsafe fn load(self, m: __m256i, p: *const f32) -> __m256 {
        unsafe { _mm256_maskload_ps(p, m) }
    }
    #[inline(always)]
    unsafe fn store(self, m: __m256i, p: *mut f32, v: __m256) {
        unsafe { _mm256_maskstore_ps(p, m, v) }
    }
    #[inline(always)]
    fn add(self, a: __m256, b: __m256) -> __m256 {
        unsafe { _mm256_add_ps(a, b) }
    }
    #[inline(always)]
    fn sub(self, a: __m256, b: __m256) -> __m256 {
        unsafe { _mm256_sub_ps(a, b) }
    }
    #[inline(always)]
    fn mul(self, a: __m256, b: __m256) -> __m256 {
        unsafe { _mm256_mul_ps(a, b) }
    }
    #[inline(always)]
    fn splat(self, x: f32) -> __m256 {
        unsafe { _mm256_set1_ps(x) }
    }
    #[inline(always)]
    fn sigmoid(self, x: __m256) -> __m256 {
        unsafe { sigmoid8(x) }
    }
    #[inline(always)]
    fn tanh(self, x: __m256) -> __m256 {
        unsafe { tanh8(x) }
    }
    #[inline(always)]
    fn max(self, a: __m256, b: __m256) -> __m256 {
        unsafe { _mm256_max_ps(a, b) }
    }
    #[inline(always)]
    fn exp(self, x: __m256) -> __m256 {
        unsafe {
            let x = _mm256_min_ps(_mm256_set1_ps(EXP_CLAMP), x);
            exp8(_mm256_max_ps(_mm256_set1_ps(-EXP_CLAMP), x))
        }
    }
    #[inline(always)]
    fn sum(self, v: __m256) -> f32 {
        // Halves, then pairs: a fixed order.
        unsafe {
            let q = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
            let d = _mm_add_ps(q, _mm_movehl_ps(q, q));
            _mm_cvtss_f32(_mm_add_ss(d, _mm_shuffle_ps::<1>(d, d)))
        }
    }
    #[inline(always)]
    fn hmax(self, v: __m256) -> f32 {
        unsafe {
            let q = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
            let d = _mm_max_ps(q, _mm_movehl_ps(q, q));
            _mm_cvtss_f32(_mm_max_ss(d, _mm_shuffle_ps::<1>(d, d)))
        }
    }
}

/// # Safety
/// The CPU must have AVX2 and FMA.
#[cfg(test)]
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn sigmoid(v: &mut [f32]) {
    // SAFETY: the caller's CPU has AVX2 and FMA.
    let l = unsafe { Avx2::new() };
    fused::map(l, v, |x| l.sigmoid(x))
}

/// # Safety
/// The CPU must have AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn tanh(v: &mut [f32]) {
    // SAFETY: as above.
    let l = unsafe { Avx2::new() };
    fused::map(l, v, |x| l.tanh(x))
}

/// # Safety
/// The CPU must have AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn softmax(row: &mut [f32], scale: f32) {
    // SAFETY: as above.
    fused::softmax(unsafe { Avx2::new() }, row, scale)
}

/// One LSTM step's elementwise forward, fused (see [`super::lstm_forward`]).
///
/// # Safety
/// The CPU must have AVX2 and FMA; every slice must hold `h.len()` floats.
#[target_feature(enable = "avx2,fma")]
#[inline]
pub(super) unsafe fn lstm_forward(u: FwdUnits<'_>) {
    // SAFETY: forwarded; this function is compiled for AVX2 and FMA, so the body inlines here.
    unsafe { lstm_inline(u) }
}

/// One GRU step's elementwise forward, fused (see [`super::gru_forward`]).
///
/// # Safety
/// The CPU must have AVX2 and FMA; every slice must hold `h.len()` floats.
#[target_feature(enable = "avx2,fma")]
#[inline]
pub(super) unsafe fn gru_forward(u: FwdUnits<'_>) {
    // SAFETY: forwarded; this function is compiled for AVX2 and FMA, so the body inlines here.
    unsafe { gru_inline(u) }
}

/// [`lstm_forward`]'s body, to inline into a caller compiled for AVX2 and FMA (elsewhere each
/// intrinsic would be a call).
///
/// # Safety
/// The CPU must have AVX2 and FMA; every slice must hold `h.len()` floats.
#[inline(always)]
pub(super) unsafe fn lstm_inline(u: FwdUnits<'_>) {
    // SAFETY: the caller's CPU has AVX2 and FMA.
    fused::lstm_forward(unsafe { Avx2::new() }, u)
}

/// The Elman RNN cell's forward (see [`super::rnn_forward_avx2`]), to inline as
/// [`lstm_inline`].
///
/// # Safety
/// The CPU must have AVX2 and FMA; every slice must hold `h.len()` floats.
#[inline(always)]
pub(super) unsafe fn rnn_inline<const RELU: bool>(u: FwdUnits<'_>) {
    // SAFETY: the caller's CPU has AVX2 and FMA.
    fused::rnn_forward::<_, RELU>(unsafe { Avx2::new() }, u)
}

/// The LSTM cell's backward (see [`super::lstm_backward_avx2`]), to inline as
/// [`lstm_inline`].
///
/// # Safety
/// The CPU must have AVX2 and FMA; every slice must hold `dh.len()` floats.
#[inline(always)]
pub(super) unsafe fn lstm_backward_inline(u: BwdUnits<'_>) {
    // SAFETY: the caller's CPU has AVX2 and FMA.
    fused::lstm_backward(unsafe { Avx2::new() }, u)
}

/// [`gru_forward`]'s body, to inline as [`lstm_inline`].
///
/// # Safety
/// The CPU must have AVX2 and FMA; every slice must hold `h.len()` floats.
#[inline(always)]
pub(super) unsafe fn gru_inline(u: FwdUnits<'_>) {
    // SAFETY: the caller's CPU has AVX2 and FMA.
    fused::gru_forward(unsafe { Avx2::new() }, u)
}
