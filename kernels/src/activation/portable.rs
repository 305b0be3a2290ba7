//! The activations in plain Rust: the same algorithm as the SIMD paths, for any CPU.

use super::*;

/// exp(x) for x in [-87, 87] (a normal float result).
#[inline]
fn exp(x: f32) -> f32 {
    let n = (x * LOG2E).round();
    let r = x - n * LN2_HI;
    let r = r - n * LN2_LO;
    let mut p = EXP_POLY[0];
    for &c in &EXP_POLY[1..] {
        p = p * r + c;
    }
    let p = (p * r + 1.0) * r + 1.0;
    // 2^n from its exponent bits; n is in [-126, 126] after the clamp.
    p * f32::from_bits(((n as i32 + 127) as u32) << 23)
}

#[inline]
fn sigmoid1(x: f32) -> f32 {
    if x.is_nan() {
        return x;
    }
    let x = x.clamp(-EXP_CLAMP, EXP_CLAMP);
    1.0 / (1.0 + exp(-x))
}

#[inline]
fn tanh1(x: f32) -> f32 {
    if x.is_nan() {
        return x;
    }
    let a = x.abs().min(TANH_CLAMP);
    // In 0..=13: a <= 9.5 is at most 13 half binades past 1/8.
    let i = ((a.to_bits() >> 22) as i32 - TANH_INDEX_BIAS).max(0) as usize;
    let d = a - TANH_CENTER[i];
    let mut p = TANH_COEF[6][i];
    for c in TANH_COEF[..6].iter().rev() {
        p = p * d + c[i];
    }
    p.copysign(x)
}

pub(super) fn sigmoid(v: &mut [f32]) {
    v.iter_mut().for_each(|x| *x = sigmoid1(*x));
}

pub(super) fn tanh(v: &mut [f32]) {
    v.iter_mut().for_each(|x| *x = tanh1(*x));
}
