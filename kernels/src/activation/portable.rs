//! The activations on any CPU: 8 lanes of `wide::f32x8`, which compiles to the SIMD the build
//! targets (two SSE2 registers on a baseline x86_64 build, two NEON ones on aarch64, one AVX
//! register with `-C target-cpu` past AVX), with the same algorithm as the SIMD paths. Each
//! step is a plain multiply then an add (no fused multiply-add: without FMA hardware it is a
//! slow call), in the order the scalar form below gives them, so every lane rounds as
//! `tanh1` / `sigmoid1` would. Tails go through a stack copy of 8 lanes.
//!
//! The scalar loop it replaced called `roundf` for every exp and read each tanh coefficient
//! from its table one float at a time: an LSTM cell took 275-297 ns per 16 units on this Zen 5
//! (forced portable), against 20 on AVX-512.

use super::fused::{self, Lanes};
use super::*;
use crate::cell::FwdUnits;
use wide::{f32x8, i32x8, u32x8};

/// exp(x) for x in [-87, 87] (a normal float result); n rounds half away from zero, as
/// `f32::round`.
#[inline(always)]
fn exp8(x: f32x8) -> f32x8 {
    let n = (x * f32x8::splat(LOG2E)).round();
    let r = x - n * f32x8::splat(LN2_HI);
    let r = r - n * f32x8::splat(LN2_LO);
    let mut p = f32x8::splat(EXP_POLY[0]);
    for &c in &EXP_POLY[1..] {
        p = p * r + f32x8::splat(c);
    }
    let one = f32x8::splat(1.0);
    let p = (p * r + one) * r + one;
    // 2^n from its exponent bits; n is in [-126, 126] after the clamp.
    let bits: u32x8 = wide::bytemuck::cast((n.round_int() + i32x8::splat(127)) << 23);
    p * f32x8::from_bits(bits)
}

/// The lanes of `v` where `x` is NaN are `x` (the clamps below would drop a NaN: `wide`'s
/// min and max give the other operand on some targets).
#[inline(always)]
fn keep_nan(x: f32x8, v: f32x8) -> f32x8 {
    x.is_nan().select(x, v)
}

#[inline(always)]
fn sigmoid8(x: f32x8) -> f32x8 {
    let c = x.max(f32x8::splat(-EXP_CLAMP)).min(f32x8::splat(EXP_CLAMP));
    let one = f32x8::splat(1.0);
    keep_nan(x, one / (one + exp8(f32x8::ZERO - c)))
}

/// Each lane's entry of a 16-entry table (`idx` in 0..=13): one load a lane, as no portable
/// permute exists.
#[inline(always)]
fn pick(t: &[f32; 16], idx: &[i32; 8]) -> f32x8 {
    f32x8::from(idx.map(|i| t[i as usize & 15]))
}

#[inline(always)]
fn tanh8(x: f32x8) -> f32x8 {
    let a = x.abs().min(f32x8::splat(TANH_CLAMP));
    // In 0..=13: a <= 9.5 is at most 13 half binades past 1/8.
    let idx: i32x8 = wide::bytemuck::cast(a.to_bits() >> 22);
    let idx = (idx - i32x8::splat(TANH_INDEX_BIAS))
        .max(i32x8::ZERO)
        .to_array();
    let d = a - pick(&TANH_CENTER, &idx);
    let mut p = pick(&TANH_COEF[6], &idx);
    for c in TANH_COEF[..6].iter().rev() {
        p = p * d + pick(c, &idx);
    }
    // The sign of x on |tanh(x)|.
    let sign = x.to_bits() & u32x8::splat(1 << 31);
    keep_nan(x, f32x8::from_bits(p.to_bits() | sign))
}

/// The portable token of [`Lanes`]: every CPU has it.
#[derive(Clone, Copy)]
pub(super) struct Portable;

// SAFETY (the loads and stores below): they touch what their callers vouch for, through
// unaligned reads and writes of whole lanes or of the first `m` floats.
impl Lanes for Portable {
    type V = f32x8;
    /// The number of leading lanes.
    type M = usize;
    const N: usize = 8;
    #[inline(always)]
    fn first(self, left: usize) -> usize {
        left.min(8)
    }
    #[inline(always)]
    unsafe fn load_all(self, p: *const f32) -> f32x8 {
        f32x8::from(unsafe { p.cast::<[f32; 8]>().read_unaligned() })
    }
    #[inline(always)]
    unsafe fn store_all(self, p: *mut f32, v: f32x8) {
        unsafe { p.cast::<[f32; 8]>().write_unaligned(v.to_array()) }
    }
    #[inline(always)]
    unsafe fn load(self, m: usize, p: *const f32) -> f32x8 {
        let mut lanes = [0.0f32; 8];
        unsafe { std::ptr::copy_nonoverlapping(p, lanes.as_mut_ptr(), m) };
        f32x8::from(lanes)
    }
    #[inline(always)]
    unsafe fn store(self, m: usize, p: *mut f32, v: f32x8) {
        unsafe { std::ptr::copy_nonoverlapping(v.to_array().as_ptr(), p, m) }
    }
    #[inline(always)]
    fn add(self, a: f32x8, b: f32x8) -> f32x8 {
        a + b
    }
    #[inline(always)]
    fn sub(self, a: f32x8, b: f32x8) -> f32x8 {
        a - b
    }
    #[inline(always)]
    fn mul(self, a: f32x8, b: f32x8) -> f32x8 {
        a * b
    }
    #[inline(always)]
    fn splat(self, x: f32) -> f32x8 {
        f32x8::splat(x)
    }
    #[inline(always)]
    fn sigmoid(self, x: f32x8) -> f32x8 {
        sigmoid8(x)
    }
    #[inline(always)]
    fn tanh(self, x: f32x8) -> f32x8 {
        tanh8(x)
    }
    #[inline(always)]
    fn max(self, a: f32x8, b: f32x8) -> f32x8 {
        a.max(b)
    }
    #[inline(always)]
    fn exp(self, x: f32x8) -> f32x8 {
        // wide's min / max drop a NaN: put it back, as the x86 paths keep it.
        keep_nan(
            x,
            exp8(x.min(f32x8::splat(EXP_CLAMP)).max(f32x8::splat(-EXP_CLAMP))),
        )
    }
    #[inline(always)]
    fn sum(self, v: f32x8) -> f32 {
        let a = v.to_array();
        ((a[0] + a[4]) + (a[2] + a[6])) + ((a[1] + a[5]) + (a[3] + a[7]))
    }
    #[inline(always)]
    fn hmax(self, v: f32x8) -> f32 {
        v.to_array().into_iter().fold(f32::NEG_INFINITY, f32::max)
    }
}

#[cfg(test)]
pub(super) fn sigmoid(v: &mut [f32]) {
    fused::map(Portable, v, sigmoid8)
}

pub(super) fn tanh(v: &mut [f32]) {
    fused::map(Portable, v, tanh8)
}

pub(super) fn softmax(row: &mut [f32], scale: f32) {
    fused::softmax(Portable, row, scale)
}

/// One LSTM step's elementwise forward, fused (see [`super::lstm_forward`]). Every slice must
/// hold `h.len()` floats.
pub(super) fn lstm_forward(u: FwdUnits<'_>) {
    fused::lstm_forward(Portable, u)
}

/// One GRU step's elementwise forward, fused (see [`super::gru_forward`]).
pub(super) fn gru_forward(u: FwdUnits<'_>) {
    fused::gru_forward(Portable, u)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The lanes round as the scalar form of the same algorithm: exp with `f32::round` and a
    /// multiply then an add a step, tanh from one interval's polynomial.
    fn sigmoid1(x: f32) -> f32 {
        if x.is_nan() {
            return x;
        }
        let x = x.clamp(-EXP_CLAMP, EXP_CLAMP);
        let e = {
            let x = -x;
            let n = (x * LOG2E).round();
            let r = x - n * LN2_HI;
            let r = r - n * LN2_LO;
            let mut p = EXP_POLY[0];
            for &c in &EXP_POLY[1..] {
                p = p * r + c;
            }
            let p = (p * r + 1.0) * r + 1.0;
            p * f32::from_bits(((n as i32 + 127) as u32) << 23)
        };
        1.0 / (1.0 + e)
    }

    fn tanh1(x: f32) -> f32 {
        if x.is_nan() {
            return x;
        }
        let a = x.abs().min(TANH_CLAMP);
        let i = ((a.to_bits() >> 22) as i32 - TANH_INDEX_BIAS).max(0) as usize;
        let d = a - TANH_CENTER[i];
        let mut p = TANH_COEF[6][i];
        for c in TANH_COEF[..6].iter().rev() {
            p = p * d + c[i];
        }
        p.copysign(x)
    }

    #[test]
    fn lanes_round_as_the_scalar_form() {
        let mut x: Vec<f32> = (-200_000..=200_000).map(|i| i as f32 * 1e-4).collect();
        x.extend([
            0.0, -0.0, 1e-30, -1e-30, 9.49, 9.5, 9.51, 86.9, 87.0, 87.1, 1e30, -1e30,
        ]);
        x.extend([
            f32::INFINITY,
            f32::NEG_INFINITY,
            0.5f32.next_down(),
            1.5f32.next_down(),
        ]);
        let (mut s, mut t) = (x.clone(), x.clone());
        sigmoid(&mut s);
        tanh(&mut t);
        for ((&xi, si), ti) in x.iter().zip(&s).zip(&t) {
            assert_eq!(si.to_bits(), sigmoid1(xi).to_bits(), "sigmoid({xi})");
            assert_eq!(ti.to_bits(), tanh1(xi).to_bits(), "tanh({xi})");
        }
    }
}
