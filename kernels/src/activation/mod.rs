//! Vectorized sigmoid and tanh over slices, in place, one implementation per ISA.
//!
//! All paths share one algorithm, so they differ only in rounding:
//! - exp(x) = 2^n p(r), n = round(x log2 e), r = x - n ln 2 (ln 2 split in two for accuracy),
//!   p the degree-7 Taylor polynomial (truncation below 1.2e-8 relative on |r| <= ln2 / 2);
//! - sigmoid(x) = 1 / (1 + exp(-x)), x clamped to [-87, 87] so exp stays a normal float;
//! - tanh(x) = sign(x) (1 - t) / (1 + t), t = exp(-2|x|), for 0.4 <= |x| < 9; the odd Taylor
//!   series to x^13 for |x| < 0.4 (no cancellation near 0); ±1 from 9 on.
//!
//! Maximum error against f64, measured by `tests::max_error` on every path (2026-11-25): 8.9e-8
//! absolute and 1.6e-7 relative (about 2.5 ulp) for both functions; the test holds them under
//! `MAX_ABS_ERR` and `MAX_REL_ERR`. NaN propagates.

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;
mod portable;

#[cfg(target_arch = "x86_64")]
use crate::cell::FwdUnits;
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
/// tanh's odd series, x^13 down to x^3: tanh x = x + x^3 (c3 + x^2 (c5 + ...)).
pub(crate) const TANH_POLY: [f32; 6] = [
    21844.0 / 6081075.0,
    -1382.0 / 155925.0,
    62.0 / 2835.0,
    -17.0 / 315.0,
    2.0 / 15.0,
    -1.0 / 3.0,
];
pub(crate) const EXP_CLAMP: f32 = 87.0;
pub(crate) const TANH_SERIES_BELOW: f32 = 0.4;
pub(crate) const TANH_ONE_FROM: f32 = 9.0;

/// The LSTM cell forward of `u` in one pass over the units, every gate's activation in
/// registers: the same operations in the same order as the portable cell's passes
/// (`cell/lstm.rs`), so the same bits. `u.isa` must be a SIMD path, available on this CPU.
#[cfg(target_arch = "x86_64")]
pub(crate) fn lstm_forward(u: FwdUnits<'_>) {
    let n = u.h.len();
    assert!(
        u.gates.iter().all(|v| v.len() == n)
            && u.gh.iter().chain(&u.b_hh).all(|v| v.len() == n)
            && u.c_prev.len() == n
            && u.c.len() == n,
        "lstm_forward: every slice holds the units"
    );
    match u.isa {
        // SAFETY: `isa` was checked available when it was chosen; the slices' lengths are
        // asserted above.
        Isa::Avx512 => unsafe { avx512::lstm_forward(u) },
        // SAFETY: as above.
        Isa::Avx2 => unsafe { avx2::lstm_forward(u) },
        Isa::Portable => unreachable!("the portable LSTM cell runs unfused"),
    }
}

/// The GRU cell forward of `u` in one pass over the units, as [`lstm_forward`]: the same
/// operations in the same order as the portable cell (`cell/gru.rs`).
#[cfg(target_arch = "x86_64")]
pub(crate) fn gru_forward(u: FwdUnits<'_>) {
    let n = u.h.len();
    assert!(
        u.gates[..3].iter().all(|v| v.len() == n)
            && u.gh[..3].iter().chain(&u.b_hh[..3]).all(|v| v.len() == n)
            && u.h_prev.len() == n
            && u.hn.len() == n,
        "gru_forward: every slice holds the units"
    );
    match u.isa {
        // SAFETY: `isa` was checked available when it was chosen; the slices' lengths are
        // asserted above.
        Isa::Avx512 => unsafe { avx512::gru_forward(u) },
        // SAFETY: as above.
        Isa::Avx2 => unsafe { avx2::gru_forward(u) },
        Isa::Portable => unreachable!("the portable GRU cell runs unfused"),
    }
}

/// `v[i] = sigmoid(v[i])`. `isa` must be available on this CPU (checked where it is chosen).
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
        for &b in &[
            TANH_SERIES_BELOW,
            TANH_ONE_FROM,
            EXP_CLAMP,
            87.5,
            88.0,
            100.0,
            1e30,
        ] {
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
