//! Vectorized sigmoid and tanh over slices, in place, one implementation per ISA.
//!
//! All paths share one algorithm, so they differ only in rounding:
//! - exp(x) = 2^n p(r), n = round(x log2 e), r = x - n ln 2 (ln 2 split in two for accuracy),
//!   p the degree-7 Taylor polynomial (truncation below 1.2e-8 relative on |r| <= ln2 / 2);
//! - sigmoid(x) = 1 / (1 + exp(-x)), x clamped to [-87, 87] so exp stays a normal float;
//! - tanh(x) = sign(x) p_i(|x| - center_i), with |x| clamped to 9.5 (where tanh is 1 in f32):
//!   one degree-6 polynomial per interval i, [0, 1/8) and then half binades up to [8, 9.5]. The
//!   interval is the float's exponent and first mantissa bit, so a lane picks its coefficients
//!   with one permute per coefficient (16-entry tables, one AVX-512 register); no division, no
//!   exp, no branch. Against the exp-and-divide tanh it replaced, an LSTM cell took 28 ns per 16
//!   units instead of 37 (an isolated loop, same instructions) and LSTM 400,8,128 6.28 ms
//!   instead of 6.52. On [0, 1/8) the center and constant term are 0: tanh keeps its relative
//!   accuracy near 0.
//!
//! Each path (`avx512.rs`, `avx2.rs`, and `portable.rs` over `wide::f32x8` for any CPU) has
//! its own exp, sigmoid and tanh and a token type for its lanes; the slice map and the fused
//! LSTM / GRU cells are written once over that token (`fused.rs`).
//!
//! Maximum error against f64, measured by `tests::max_error` on every path (2026-11-25):
//! sigmoid 8.9e-8 absolute and 1.5e-7 relative (about 2.5 ulp); tanh 7.9e-8 absolute and
//! 1.1e-7 relative (1.3 ulp; `kernels/tools/fit_tanh.py` shows the same for its f32 model); the
//! test holds both under `MAX_ABS_ERR` and `MAX_REL_ERR`. NaN propagates; tanh is odd and
//! monotonic to within 1 ulp where two intervals meet.

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;
mod fused;
mod portable;

use crate::cell::{BwdUnits, FwdUnits};
use crate::isa::Isa;

/// Largest |approx - exact| over all f32 inputs the tests sweep, for both functions.
pub const MAX_ABS_ERR: f64 = 1.0e-7;
/// Largest |approx - exact| / |exact| for |exact| >= 1e-30.
pub const MAX_REL_ERR: f64 = 2.0e-7;

pub(crate) const LOG2E: f32 = std::f32::consts::LOG2_E;
pub(crate) const LN2_HI: f32 = 0.693_359_4;
pub(crate) const LN2_LO: f32 = -2.121_944_4e-4;
/// 1/k! for k = 7 down to 2 (the k = 1 and k = 0 terms are 1).
pub(crate) const EXP_POLY: [f32; 6] = [
    1.0 / 5040.0,
    1.0 / 720.0,
    1.0 / 120.0,
    1.0 / 24.0,
    1.0 / 6.0,
    0.5,
];
pub(crate) const EXP_CLAMP: f32 = 87.0;
/// tanh(|x|) is taken as tanh(9.5) = 1 from 9.5 on (it rounds to 1 in f32 from 9.01).
pub(crate) const TANH_CLAMP: f32 = 9.5;
/// `(bits(|x|) >> 22) - TANH_INDEX_BIAS` is the half binade of |x| from 1/8 on (1 for
/// [1/8, 3/16), 2 for [3/16, 1/4), ...; 13 for [8, 9.5]); below 1/8 it is negative: interval 0.
pub(crate) const TANH_INDEX_BIAS: i32 = 247;
/// The centers of tanh's 14 intervals (then 2 unused lanes): d = |x| - center is exact.
/// This and [`TANH_COEF`] are `kernels/tools/fit_tanh.py`'s output.
pub(crate) const TANH_CENTER: [f32; 16] = [
    0.0, 1.5625e-1, 2.34375e-1, 3.125e-1, 4.6875e-1, 6.25e-1, 9.375e-1, 1.25, 1.875, 2.5, 3.75,
    5.0, 7.5, 8.75, 0.0, 0.0,
];
/// Per interval, the coefficients of d^0 .. d^6 of tanh(|x|) (relative error under 1e-9).
#[rustfmt::skip]
pub(crate) const TANH_COEF: [[f32; 16]; 7] = [
    [
        0.0, 1.5499073e-1, 2.301757e-1, 3.0270973e-1,
        4.3718877e-1, 5.545997e-1, 7.340715e-1, 8.4828365e-1,
        9.5404524e-1, 9.866143e-1, 9.9889445e-1, 9.999092e-1,
        9.999994e-1, 9.9999994e-1, 0.0, 0.0,
    ],
    [
        1.0, 9.759779e-1, 9.4701916e-1, 9.083668e-1,
        8.0886596e-1, 6.924192e-1, 4.61139e-1, 2.8041476e-1,
        8.979769e-2, 2.6592331e-2, 2.2098252e-3, 1.8186131e-4,
        1.2191126e-6, 1.0046631e-7, 0.0, 0.0,
    ],
    [
        -6.386027e-8, -1.5126753e-1, -2.179808e-1, -2.749715e-1,
        -3.5362712e-1, -3.840155e-1, -3.385089e-1, -2.3787133e-1,
        -8.567154e-2, -2.6236013e-2, -2.2071123e-3, -1.8181285e-4,
        -1.2092045e-6, -1.0046345e-7, 0.0, 0.0,
    ],
    [
        -3.3332777e-1, -3.0188087e-1, -2.6549917e-1, -2.195524e-1,
        -1.150197e-1, -1.7837819e-2, 9.4780244e-2, 1.08326115e-1,
        5.1791877e-2, 1.7017487e-2, 1.4716279e-3, 1.1882171e-4,
        8.7096805e-7, 6.658755e-8, 0.0, 0.0,
    ],
    [
        -1.8492091e-4, 9.721104e-2, 1.337719e-1, 1.5811723e-1,
        1.6816102e-1, 1.3790314e-1, 4.325523e-2, -1.2585986e-2,
        -2.0854965e-2, -8.052114e-3, -7.3224556e-4, -5.9477003e-5,
        -4.3253348e-7, -3.330732e-8, 0.0, 0.0,
    ],
    [
        1.3615306e-1, 1.07186444e-1, 7.883431e-2, 4.550628e-2,
        -1.7529778e-2, -5.4335933e-2, -5.3727787e-2, -1.9690678e-2,
        5.064077e-3, 2.8872746e-3, 2.5365988e-4, 2.8481883e-5,
        3.0162641e-9, 1.4698953e-8, 0.0, 0.0,
    ],
    [
        -2.0017633e-2, -5.221813e-2, -6.520734e-2, -7.236338e-2,
        -6.1695654e-2, -2.4366409e-2, 1.2852914e-2, 1.5104991e-2,
        2.1090687e-3, -6.955861e-4, -1.5780926e-4, -9.418633e-6,
        -1.7328118e-7, -4.883568e-9, 0.0, 0.0,
    ],
];

/// The LSTM cell forward of `u`, fused: two passes over the units, the gates' activations
/// (from their pre-activations in registers), then the state (`fused.rs`, the same body on
/// every path). `u.isa` must be available on this CPU.
#[inline(always)]
pub(crate) fn lstm_forward(u: FwdUnits<'_>) {
    check_lstm(&u);
    match u.isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `isa` was checked available when it was chosen; the slices' lengths are
        // checked above.
        Isa::Avx512 => unsafe { avx512::lstm_forward(u) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above.
        Isa::Avx2 => unsafe { avx2::lstm_forward(u) },
        _ => portable::lstm_forward(u),
    }
}

/// The GRU cell forward of `u`, fused in two passes as [`lstm_forward`].
#[inline(always)]
pub(crate) fn gru_forward(u: FwdUnits<'_>) {
    check_gru(&u);
    match u.isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `isa` was checked available when it was chosen; the slices' lengths are
        // checked above.
        Isa::Avx512 => unsafe { avx512::gru_forward(u) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above.
        Isa::Avx2 => unsafe { avx2::gru_forward(u) },
        _ => portable::gru_forward(u),
    }
}

/// [`lstm_forward`] on AVX-512, inlined into its caller, which should be a function compiled
/// for AVX-512 F (`cell::forward_rows`'s): called through [`lstm_forward`], the compiler keeps
/// the ISA's cell out of line and passes it the row's slices through memory.
///
/// # Safety
/// The CPU must have AVX-512 F.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(crate) unsafe fn lstm_forward_avx512(u: FwdUnits<'_>) {
    check_lstm(&u);
    // SAFETY: the caller's CPU has AVX-512 F; the slices' lengths are checked above.
    unsafe { avx512::lstm_inline(u) }
}

/// [`gru_forward`] on AVX-512, inlined as [`lstm_forward_avx512`].
///
/// # Safety
/// The CPU must have AVX-512 F.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(crate) unsafe fn gru_forward_avx512(u: FwdUnits<'_>) {
    check_gru(&u);
    // SAFETY: as above.
    unsafe { avx512::gru_inline(u) }
}

/// The Elman RNN cell's forward on AVX-512, fused in one pass (`fused::rnn_forward`; the
/// portable path keeps the scalar form, `cell::rnn`), inlined as [`lstm_forward_avx512`].
///
/// # Safety
/// The CPU must have AVX-512 F.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(crate) unsafe fn rnn_forward_avx512<const RELU: bool>(u: FwdUnits<'_>) {
    check_rnn(&u);
    // SAFETY: the caller's CPU has AVX-512 F; the slices' lengths are checked above.
    unsafe { avx512::rnn_inline::<RELU>(u) }
}

/// [`rnn_forward_avx512`] on AVX2.
///
/// # Safety
/// The CPU must have AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(crate) unsafe fn rnn_forward_avx2<const RELU: bool>(u: FwdUnits<'_>) {
    check_rnn(&u);
    // SAFETY: the caller's CPU has AVX2 and FMA; the slices' lengths are checked above.
    unsafe { avx2::rnn_inline::<RELU>(u) }
}

/// The LSTM cell's backward on AVX-512, fused in one pass (`fused::lstm_backward`; the
/// portable path keeps the scalar form, `cell::lstm`), inlined as [`lstm_forward_avx512`].
///
/// # Safety
/// The CPU must have AVX-512 F.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(crate) unsafe fn lstm_backward_avx512(u: BwdUnits<'_>) {
    check_lstm_backward(&u);
    // SAFETY: the caller's CPU has AVX-512 F; the slices' lengths are checked above.
    unsafe { avx512::lstm_backward_inline(u) }
}

/// [`lstm_backward_avx512`] on AVX2.
///
/// # Safety
/// The CPU must have AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(crate) unsafe fn lstm_backward_avx2(u: BwdUnits<'_>) {
    check_lstm_backward(&u);
    // SAFETY: the caller's CPU has AVX2 and FMA; the slices' lengths are checked above.
    unsafe { avx2::lstm_backward_inline(u) }
}

/// [`lstm_forward`] on AVX2, inlined as [`lstm_forward_avx512`].
///
/// # Safety
/// The CPU must have AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(crate) unsafe fn lstm_forward_avx2(u: FwdUnits<'_>) {
    check_lstm(&u);
    // SAFETY: the caller's CPU has AVX2 and FMA; the slices' lengths are checked above.
    unsafe { avx2::lstm_inline(u) }
}

/// [`gru_forward`] on AVX2, inlined as [`lstm_forward_avx512`].
///
/// # Safety
/// The CPU must have AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(crate) unsafe fn gru_forward_avx2(u: FwdUnits<'_>) {
    check_gru(&u);
    // SAFETY: as above.
    unsafe { avx2::gru_inline(u) }
}

/// What the fused LSTM cell's unchecked loads and stores rely on.
#[inline(always)]
fn check_lstm(u: &FwdUnits<'_>) {
    let n = u.h.len();
    assert!(
        u.gates.iter().all(|v| v.len() == n)
            && u.gh.iter().chain(&u.b_hh).all(|v| v.len() == n)
            && u.c_prev.len() == n
            && u.c.len() == n
            && (u.y.is_empty() || u.y.len() == n),
        "lstm_forward: every slice holds the units"
    );
}

/// What the fused RNN cell's unchecked loads and stores rely on.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn check_rnn(u: &FwdUnits<'_>) {
    let n = u.h.len();
    assert!(
        u.gates[0].len() == n
            && u.gh[0].len() == n
            && u.b_hh[0].len() == n
            && (u.y.is_empty() || u.y.len() == n),
        "rnn_forward: every slice holds the units"
    );
}

/// What the fused LSTM backward's unchecked loads and stores rely on.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn check_lstm_backward(u: &BwdUnits<'_>) {
    let n = u.dh.len();
    assert!(
        u.gates.iter().all(|v| v.len() == n)
            && u.dc.len() == n
            && u.dy.len() == n
            && u.c_prev.len() == n
            && u.c.len() == n,
        "lstm_backward: every slice holds the units"
    );
}

/// What the fused GRU cell's unchecked loads and stores rely on.
#[inline(always)]
fn check_gru(u: &FwdUnits<'_>) {
    let n = u.h.len();
    assert!(
        u.gates[..3].iter().all(|v| v.len() == n)
            && u.gh[..3].iter().chain(&u.b_hh[..3]).all(|v| v.len() == n)
            && u.h_prev.len() == n
            && u.hn.len() == n
            && (u.y.is_empty() || u.y.len() == n),
        "gru_forward: every slice holds the units"
    );
}

/// `v[i] = sigmoid(v[i])`. `isa` must be available on this CPU (checked where it is chosen).
/// The cells take their sigmoids in registers (`fused.rs`); this runs the same per-vector
/// function over a slice, for the accuracy tests.
#[cfg(test)]
pub(crate) fn sigmoid(isa: Isa, v: &mut [f32]) {
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `isa` was checked available when it was chosen (Isa::checked / detect).
        Isa::Avx512 => unsafe { avx512::sigmoid(v) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above: this CPU has AVX2 and FMA.
        Isa::Avx2 => unsafe { avx2::sigmoid(v) },
        _ => portable::sigmoid(v),
    }
}

/// A row of attention scores made its softmax in place, the scores scaled by `scale` (> 0)
/// first (see `fused::softmax`). `isa` must be available on this CPU.
pub(crate) fn softmax(isa: Isa, row: &mut [f32], scale: f32) {
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `isa` was checked available when it was chosen.
        Isa::Avx512 => unsafe { avx512::softmax(row, scale) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above: this CPU has AVX2 and FMA.
        Isa::Avx2 => unsafe { avx2::softmax(row, scale) },
        _ => portable::softmax(row, scale),
    }
}

/// `v[i] = tanh(v[i])`. `isa` must be available on this CPU.
pub(crate) fn tanh(isa: Isa, v: &mut [f32]) {
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `isa` was checked available when it was chosen.
        Isa::Avx512 => unsafe { avx512::tanh(v) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above: this CPU has AVX2 and FMA.
        Isa::Avx2 => unsafe { avx2::tanh(v) },
        _ => portable::tanh(v),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Inputs: a dense sweep of [-20, 20], tiny values, the branch points and both clamps.
    fn inputs() -> Vec<f32> {
        let mut v: Vec<f32> = (-400_000..=400_000).map(|i| i as f32 * 5e-5).collect();
        for e in -40..=6 {
            let x = 2f32.powi(e);
            v.extend([x, -x, x * 1.37, -x * 1.37]);
        }
        // Every interval's edges, where a lane changes polynomial.
        let edges = (1..14).map(|e| f32::from_bits(((e + TANH_INDEX_BIAS) as u32) << 22));
        for b in edges.chain([TANH_CLAMP, 9.0, EXP_CLAMP, 87.5, 88.0, 100.0, 1e30]) {
            for x in [b, -b, b.next_up(), b.next_down()] {
                v.extend([x, -x]);
            }
        }
        v.push(0.0);
        // A length that is not a multiple of any vector width, to cover the tails.
        v.push(0.123);
        v
    }

    fn errors(f: fn(Isa, &mut [f32]), exact: fn(f64) -> f64, isa: Isa) -> (f64, f64) {
        let x = inputs();
        let mut y = x.clone();
        f(isa, &mut y);
        let (mut abs, mut rel) = (0.0f64, 0.0f64);
        for (&xi, &yi) in x.iter().zip(&y) {
            let e = exact(xi as f64);
            let d = (yi as f64 - e).abs();
            abs = abs.max(d);
            if e.abs() >= 1e-30 {
                rel = rel.max(d / e.abs());
            }
        }
        (abs, rel)
    }

    fn sigmoid64(x: f64) -> f64 {
        1.0 / (1.0 + (-x).exp())
    }

    #[test]
    fn max_error() {
        for isa in Isa::available() {
            for (name, f, exact) in [
                (
                    "sigmoid",
                    sigmoid as fn(Isa, &mut [f32]),
                    sigmoid64 as fn(f64) -> f64,
                ),
                ("tanh", tanh, f64::tanh),
            ] {
                let (abs, rel) = errors(f, exact, isa);
                println!("{isa:?} {name}: max abs error {abs:.2e}, rel {rel:.2e}");
                assert!(abs <= MAX_ABS_ERR, "{isa:?} {name}: abs error {abs:.3e}");
                assert!(rel <= MAX_REL_ERR, "{isa:?} {name}: rel error {rel:.3e}");
            }
        }
    }

    /// tanh is odd, within [-1, 1] and never decreasing by more than 1 ulp where its intervals
    /// meet (today only at 1.5, on every path: tanh(1.5 - ulp) rounds up, tanh(1.5) down).
    #[test]
    fn tanh_odd_bounded_monotonic() {
        for isa in Isa::available() {
            let mut x: Vec<f32> = inputs().into_iter().filter(|v| v.is_finite()).collect();
            x.sort_by(f32::total_cmp);
            x.dedup();
            let mut y = x.clone();
            tanh(isa, &mut y);
            let mut neg: Vec<f32> = x.iter().map(|v| -v).collect();
            tanh(isa, &mut neg);
            for i in 0..x.len() {
                assert_eq!(
                    neg[i].to_bits(),
                    (-y[i]).to_bits(),
                    "{isa:?}: odd at {}",
                    x[i]
                );
                assert!(
                    y[i].abs() <= 1.0,
                    "{isa:?}: |tanh({})| = {} > 1",
                    x[i],
                    y[i]
                );
                // Where a lane changes polynomial, the two may round 1 ulp apart.
                if i > 0 && y[i] < y[i - 1] {
                    assert!(
                        y[i].next_up() >= y[i - 1],
                        "{isa:?}: decreasing at {}",
                        x[i]
                    );
                }
            }
        }
    }

    #[test]
    fn nan_propagates_and_limits_hold() {
        for isa in Isa::available() {
            let mut v = [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, 0.0, -0.0];
            let mut s = v;
            tanh(isa, &mut v);
            sigmoid(isa, &mut s);
            assert!(v[0].is_nan() && s[0].is_nan(), "{isa:?}");
            assert_eq!(&v[1..], &[1.0, -1.0, 0.0, 0.0], "{isa:?}");
            assert_eq!(s[1], 1.0, "{isa:?}");
            assert!(s[2] < 1e-37 && s[3] == 0.5, "{isa:?}");
        }
    }

    /// Rows of every length to 70 (tails of each vector width), the largest value placed first,
    /// last (in the tail) and in the middle, with scores close together and far apart (a gap
    /// past the exp's clamp of 87, whose weights are ~0), against f64; a NaN anywhere makes
    /// the whole row NaN, on every path.
    #[test]
    fn softmax_matches_f64_at_every_length() {
        let mut rng = crate::params::SplitMix64(17);
        for isa in Isa::available() {
            for n in 1..=70 {
                for (spread, at) in [(1.0, 0), (30.0, n - 1), (400.0, n / 2), (400.0, n - 1)] {
                    let mut x: Vec<f32> = (0..n).map(|_| rng.uniform(spread) as f32).collect();
                    x[at] = spread as f32 * 1.5;
                    let scale = 0.35f32;
                    let s: Vec<f64> = x.iter().map(|&v| (scale * v) as f64).collect();
                    let m = s.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v));
                    let total: f64 = s.iter().map(|v| (v - m).exp()).sum();
                    let mut y = x.clone();
                    softmax(isa, &mut y, scale);
                    for (i, (&a, &v)) in y.iter().zip(&s).enumerate() {
                        let want = (v - m).exp() / total;
                        assert!(
                            (a as f64 - want).abs() <= 1e-6 * want.max(1e-3),
                            "{isa:?} n={n} [{i}]: {a}, expected {want}"
                        );
                    }
                    let mut y = x.clone();
                    y[(at + n / 3) % n] = f32::NAN;
                    softmax(isa, &mut y, scale);
                    assert!(y.iter().all(|v| v.is_nan()), "{isa:?} n={n}: {y:?}");
                }
            }
        }
    }

    #[test]
    fn empty_and_short_slices() {
        for isa in Isa::available() {
            for n in 0..40 {
                let mut v: Vec<f32> = (0..n).map(|i| i as f32 * 0.3 - 4.0).collect();
                let want: Vec<f64> = v.iter().map(|&x| (x as f64).tanh()).collect();
                tanh(isa, &mut v);
                for (a, b) in v.iter().zip(&want) {
                    assert!((*a as f64 - b).abs() < 1e-6, "{isa:?} n={n}");
                }
            }
        }
    }
}
