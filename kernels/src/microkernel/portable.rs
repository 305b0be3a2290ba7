//! Portable micro-kernel: up to [`MR`] rows by 16 columns, two `wide::f32x8` a row (the SIMD the
//! build targets: SSE2 on a baseline x86_64 build, NEON on aarch64), one instance per row
//! count so that the accumulators stay in registers. A multiply then an add a step, since
//! `mul_add` is a slow call on CPUs without FMA: each element rounds as `acc + x * w` would in
//! scalar code.
//!
//! It replaced a loop over `[[f32; 16]; 4]` with a run-time row count, which the compiler kept
//! in memory (see [`MR`] for the figures). Same sums in the same order, so the same bits.

use super::{by_rows, for_k_unrolled, KmajorArgs};
use wide::f32x8;

const NR: usize = 16;
/// Rows per tile: 2 rows of two f32x8 are 8 of SSE2's 16 registers, which leaves room for a
/// panel step's 4 and the copies that two-operand SSE needs; 3 rows spilled (64x2048x512 on
/// this Zen 5, SSE2 build: 2 rows 40.6-43.5 GFLOP/s, 3 rows 30.2-30.3, the loop it replaced
/// 25.8-26.7). NEON's 32 registers could take 4 rows; not measured, so not assumed.
pub(crate) const MR: usize = 2;

/// 8 floats from `p`.
///
/// # Safety
/// `p` must hold 8 readable floats.
#[inline(always)]
unsafe fn load8(p: *const f32) -> f32x8 {
    // SAFETY: forwarded to the caller.
    f32x8::from(unsafe { p.cast::<[f32; 8]>().read_unaligned() })
}

/// A row's 16 columns as two vectors.
type Row = [f32x8; 2];

/// # Safety
/// `c` must hold `cols <= 16` readable floats.
#[inline(always)]
unsafe fn load_row(c: *const f32, cols: usize) -> Row {
    let mut v = [0.0f32; NR];
    // SAFETY: `c` as the caller vouches; `v` holds 16 floats.
    unsafe {
        std::ptr::copy_nonoverlapping(c, v.as_mut_ptr(), cols);
        [load8(v.as_ptr()), load8(v.as_ptr().add(8))]
    }
}

/// # Safety
/// `c` must hold `cols <= 16` writable floats.
#[inline(always)]
unsafe fn store_row(c: *mut f32, cols: usize, row: &Row) {
    let mut v = [0.0f32; NR];
    v[..8].copy_from_slice(&row[0].to_array());
    v[8..].copy_from_slice(&row[1].to_array());
    // SAFETY: forwarded to the caller.
    unsafe { std::ptr::copy_nonoverlapping(v.as_ptr(), c, cols) };
}

/// # Safety
/// See [`super::tile`].
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn tile(
    rows: usize,
    k: usize,
    a: *const f32,
    lda: usize,
    b: *const f32,
    bias: *const f32,
    c: *mut f32,
    ldc: usize,
    cols: usize,
    acc_in: bool,
) {
    let args = (k, a, lda, b, bias, c, ldc, cols, acc_in);
    // SAFETY: forwarded; each instance reads and writes only its R rows.
    unsafe { by_rows!(rows, tile_r(args), [1], 2) }
}

type TileArgs = (
    usize,
    *const f32,
    usize,
    *const f32,
    *const f32,
    *mut f32,
    usize,
    usize,
    bool,
);

/// `R` rows by one panel.
#[inline(always)]
unsafe fn tile_r<const R: usize>((k, a, lda, b, bias, c, ldc, cols, acc_in): TileArgs) {
    // SAFETY: the caller guarantees `bias` holds 16 floats, `b` k*16, each of the R rows of `a`
    // k floats, and the R x cols block of `c` is ours (cols <= 16).
    unsafe {
        let init = [load8(bias), load8(bias.add(8))];
        let mut acc = [init; R];
        if acc_in {
            for (i, row) in acc.iter_mut().enumerate() {
                *row = load_row(c.add(i * ldc), cols);
            }
        }
        let rows: [*const f32; R] = std::array::from_fn(|i| a.add(i * lda));
        macro_rules! k_step {
            ($p:expr) => {{
                let p = $p;
                let w = [load8(b.add(p * NR)), load8(b.add(p * NR + 8))];
                for (row, a) in acc.iter_mut().zip(&rows) {
                    let x = f32x8::splat(*a.add(p));
                    row[0] += x * w[0];
                    row[1] += x * w[1];
                }
            }};
        }
        for_k_unrolled!(k, 4, k_step);
        for (i, row) in acc.iter().enumerate() {
            store_row(c.add(i * ldc), cols, row);
        }
    }
}

/// The "k-major" tile for `C (+)= Aᵀ B` (see the AVX-512 kernel).
///
/// # Safety
/// See [`super::tile_kmajor`].
pub(crate) unsafe fn tile_kmajor(rows: usize, args: KmajorArgs) {
    // SAFETY: forwarded; each instance reads and writes only its R rows.
    unsafe { by_rows!(rows, kmajor_r(args), [1], 2) }
}

/// `R` rows of `C (+)= Aᵀ B` by one panel.
#[inline(always)]
unsafe fn kmajor_r<const R: usize>((k, a, lda, b, ldb, c, ldc, cols, acc_in, _far): KmajorArgs) {
    // SAFETY: the caller guarantees step p of A holds R floats and of B a whole panel's 16
    // (read; the products past `cols` are not stored), and the R x cols block of C is ours.
    unsafe {
        let zero = [f32x8::ZERO; 2];
        let mut acc = [zero; R];
        if acc_in {
            for (i, row) in acc.iter_mut().enumerate() {
                *row = load_row(c.add(i * ldc), cols);
            }
        }
        macro_rules! k_step {
            ($p:expr) => {{
                let (ap, bp) = (a.add($p * lda), b.add($p * ldb));
                let w = [load8(bp), load8(bp.add(8))];
                for (i, row) in acc.iter_mut().enumerate() {
                    let x = f32x8::splat(*ap.add(i));
                    row[0] += x * w[0];
                    row[1] += x * w[1];
                }
            }};
        }
        for_k_unrolled!(k, 4, k_step);
        for (i, row) in acc.iter().enumerate() {
            store_row(c.add(i * ldc), cols, row);
        }
    }
}
