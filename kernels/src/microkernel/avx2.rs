//! AVX2 + FMA micro-kernel: up to 6 rows by 16 columns (two ymm per row), 12 accumulators.

use super::{by_panels, by_rows, for_k_unrolled, KmajorArgs, WideArgs};
use std::arch::x86_64::*;

const NR: usize = 16;
/// How far ahead (floats: 96 k steps, one 64-byte line each) the tile prefetches its panel into
/// L1, as the AVX-512 tile (32 steps before: `RECUR_ISA=avx2`, `ab.sh`, 6-8 pairs, 2026-12-02:
/// LSTM 50,64,1024 infer 1T 0.964x the time, LSTM 100,64,512 0.969x and 0.973x, 100,16,512
/// 0.988x).
const PF: usize = NR * 96;
/// k steps per turn of the tile's loop: two, each row's address computed once for both (LSTM
/// 400,8,128 13.77 -> 13.34 ms, LSTM 100,64,512 344.0 -> 340.8, medians of 5). Four and eight
/// ran out of the 16 ymm registers: 11% and 35% slower.
const K_UNROLL: usize = 2;
/// How far ahead (k steps) the k-major tile prefetches its packed panel of B (a line a step)
/// and tile of A (a line every other step: 6 rows are 24 bytes a step) into L1. `gemm_tn::
/// timing`, 1 thread, medians of interleaved rounds: on an AMD Zen 3 (2026-12-02, 7 rounds)
/// 1536x512x1600 50.5 -> 59.5 GFLOP/s, 2048x512x6400 59.9 -> 65.4, 4096x1024x3200 61.0 ->
/// 65.4, 512x128x3200 56.8 -> 59.4 (32 steps 1.01-1.14x, 128 1.05-1.20x: 64 the steadiest);
/// on an Intel Xeon's AVX2 path (2026-12-03, 5 rounds, 5 of 5 faster) 87.1 -> 88.9, 86.4 ->
/// 89.8, 91.5 -> 96.9, 84.0 -> 91.1. Whole training moved within the noise on Zen 3 (`ab.sh`,
/// 10 pairs: LSTM 100,64,512 0.977x the time, 50,64,1024 1.003x, GRU 100,16,512 0.961x).
const KMAJOR_PF: usize = 64;

/// # Safety
/// See [`super::tile`]; the CPU must have AVX2 and FMA.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx2,fma")]
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
    far: *const f32,
) {
    // SAFETY: forwarded; each instance reads and writes only `R` rows.
    unsafe {
        by_rows!(
            rows,
            tile_r(k, a, lda, b, bias, c, ldc, cols, acc_in, far),
            [1, 2, 3, 4, 5],
            6
        )
    }
}

#[allow(clippy::too_many_arguments)]
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn tile_r<const R: usize>(
    k: usize,
    a: *const f32,
    lda: usize,
    b: *const f32,
    bias: *const f32,
    c: *mut f32,
    ldc: usize,
    cols: usize,
    acc_in: bool,
    far: *const f32,
) {
    // SAFETY: as in the AVX-512 kernel: the caller owns these ranges; prefetches never fault.
    unsafe {
        let b0 = _mm256_loadu_ps(bias);
        let b1 = _mm256_loadu_ps(bias.add(8));
        let mut acc = [[b0, b1]; R];
        if acc_in {
            for (i, acc) in acc.iter_mut().enumerate() {
                let mut buf = [0.0f32; NR];
                std::ptr::copy_nonoverlapping(c.add(i * ldc), buf.as_mut_ptr(), cols);
                acc[0] = _mm256_loadu_ps(buf.as_ptr());
                acc[1] = _mm256_loadu_ps(buf.as_ptr().add(8));
            }
        }
        // One pointer per row of A, so each broadcast is a plain base + index load.
        let rows: [*const f32; R] = std::array::from_fn(|i| a.add(i * lda));
        let far_on = !far.is_null();
        macro_rules! k_step {
            ($p:expr) => {{
                let p = $p;
                let bp = b.add(p * NR);
                // Half of the next block into L2, a line every other step (see `super::tile`).
                if far_on && p % 2 == 0 {
                    _mm_prefetch::<_MM_HINT_T1>(far.wrapping_add(p * NR / 2).cast());
                }
                // One line of the panel per k step, 96 steps ahead (see `PF`).
                _mm_prefetch::<_MM_HINT_T0>(bp.wrapping_add(PF).cast());
                let w0 = _mm256_loadu_ps(bp);
                let w1 = _mm256_loadu_ps(bp.add(8));
                for (i, acc) in acc.iter_mut().enumerate() {
                    let x = _mm256_set1_ps(*rows[i].add(p));
                    acc[0] = _mm256_fmadd_ps(x, w0, acc[0]);
                    acc[1] = _mm256_fmadd_ps(x, w1, acc[1]);
                }
            }};
        }
        for_k_unrolled!(k, K_UNROLL, k_step);
        for (i, acc) in acc.iter().enumerate() {
            let ci = c.add(i * ldc);
            if cols == NR {
                _mm256_storeu_ps(ci, acc[0]);
                _mm256_storeu_ps(ci.add(8), acc[1]);
            } else {
                let mut buf = [0.0f32; NR];
                _mm256_storeu_ps(buf.as_mut_ptr(), acc[0]);
                _mm256_storeu_ps(buf.as_mut_ptr().add(8), acc[1]);
                std::ptr::copy_nonoverlapping(buf.as_ptr(), ci, cols);
            }
        }
    }
}

/// The few-rows kernel: up to 3 rows by up to 6 panels (see [`super::wide`]).
///
/// # Safety
/// See [`super::wide`]; the CPU must have AVX2 and FMA.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn wide(
    rows: usize,
    panels: usize,
    k: usize,
    a: *const f32,
    lda: usize,
    b: *const f32,
    stride: usize,
    bias: *const f32,
    c: *mut f32,
    ldc: usize,
    cols: usize,
    acc_in: bool,
) {
    let args = (k, a, lda, b, stride, bias, c, ldc, cols, acc_in);
    // SAFETY: forwarded; each instance touches only its R rows and P panels.
    unsafe {
        match rows {
            1 => by_panels!(panels, wide_rp::<1>(args), [1, 2, 3, 4, 5], 6),
            2 => by_panels!(panels, wide_rp::<2>(args), [1, 2], 3),
            // One panel (see `super::wide_panels`).
            3 => by_panels!(panels, wide_rp::<3>(args), [], 1),
            r => panic!("the few-rows kernel given {r} rows, expected 1..=3"),
        }
    }
}

#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn wide_rp<const R: usize, const P: usize>(
    (k, a, lda, b, stride, bias, c, ldc, cols, acc_in): WideArgs,
) {
    // SAFETY: the caller guarantees R rows of k floats of A, P panels of k*NR floats at
    // `stride`, P*NR floats of bias, and the R x ((P-1)*NR + cols) block of C; the masks keep
    // the last panel's accesses of C inside `cols` (a masked-off half's address, which may lie
    // past C, is formed with wrapping_add and never dereferenced).
    unsafe {
        let (m0, m1) = masks(cols);
        let all = _mm256_set1_epi32(-1);
        let mask = |j: usize, half: usize| match (j + 1 == P, half) {
            (false, _) => all,
            (true, 0) => m0,
            (true, _) => m1,
        };
        let mut acc = [[[_mm256_setzero_ps(); 2]; P]; R];
        for (i, acc) in acc.iter_mut().enumerate() {
            for (j, acc) in acc.iter_mut().enumerate() {
                for (h, acc) in acc.iter_mut().enumerate() {
                    *acc = if acc_in {
                        _mm256_maskload_ps(c.wrapping_add(i * ldc + j * NR + h * 8), mask(j, h))
                    } else {
                        _mm256_loadu_ps(bias.add(j * NR + h * 8))
                    };
                }
            }
        }
        let rows: [*const f32; R] = std::array::from_fn(|i| a.add(i * lda));
        let panels: [*const f32; P] = std::array::from_fn(|j| b.add(j * stride));
        for p in 0..k {
            let x: [__m256; R] = std::array::from_fn(|i| _mm256_set1_ps(*rows[i].add(p)));
            for (j, panel) in panels.iter().enumerate() {
                // No software prefetch: with 1-3 rows (all this kernel takes) it is a stream
                // from L2 the hardware prefetchers keep up with (LSTM 100,1,256 1.91 -> 1.77
                // ms without the hint, 2 and 3 rows unchanged; see the AVX-512 kernel).
                let w0 = _mm256_loadu_ps(panel.add(p * NR));
                let w1 = _mm256_loadu_ps(panel.add(p * NR + 8));
                for (acc, x) in acc.iter_mut().zip(&x) {
                    acc[j][0] = _mm256_fmadd_ps(*x, w0, acc[j][0]);
                    acc[j][1] = _mm256_fmadd_ps(*x, w1, acc[j][1]);
                }
            }
        }
        for (i, acc) in acc.iter().enumerate() {
            for (j, acc) in acc.iter().enumerate() {
                for (h, acc) in acc.iter().enumerate() {
                    _mm256_maskstore_ps(c.wrapping_add(i * ldc + j * NR + h * 8), mask(j, h), *acc);
                }
            }
        }
    }
}

/// The "k-major" tile for `C (+)= Aᵀ B` (see the AVX-512 kernel), loads of B masked to `cols`.
///
/// # Safety
/// See [`super::tile_kmajor`]; the CPU must have AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn tile_kmajor(rows: usize, args: KmajorArgs) {
    // SAFETY: forwarded; each instance reads and writes only `R` rows.
    unsafe {
        // A panel of 8 columns or fewer in one ymm a row, as on AVX-512.
        let (.., cols, _, _) = args;
        match cols <= 8 {
            true => by_rows!(rows, tile_kmajor_r::<_, true>(args), [1, 2, 3, 4, 5], 6),
            false => by_rows!(rows, tile_kmajor_r::<_, false>(args), [1, 2, 3, 4, 5], 6),
        }
    }
}

/// Lane masks for `_mm256_maskload_ps` covering the first `cols` of 16 floats.
#[inline]
#[target_feature(enable = "avx2,fma")]
fn masks(cols: usize) -> (__m256i, __m256i) {
    let idx0 = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    let idx1 = _mm256_setr_epi32(8, 9, 10, 11, 12, 13, 14, 15);
    let n = _mm256_set1_epi32(cols as i32);
    (_mm256_cmpgt_epi32(n, idx0), _mm256_cmpgt_epi32(n, idx1))
}

#[allow(clippy::too_many_arguments)]
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn tile_kmajor_r<const R: usize, const HALF: bool>(
    (k, a, lda, b, ldb, c, ldc, cols, acc_in, far): KmajorArgs,
) {
    // SAFETY: as in the AVX-512 kernel: NR floats of B per k; masked accesses of C stay inside
    // `cols` (<= 8 with HALF); prefetches past A and B never fault.
    unsafe {
        let (k0, k1) = masks(cols);
        let zero = _mm256_setzero_ps();
        let mut acc = [[zero, zero]; R];
        if acc_in {
            for (i, acc) in acc.iter_mut().enumerate() {
                let ci = c.add(i * ldc);
                acc[0] = _mm256_maskload_ps(ci, k0);
                if !HALF {
                    acc[1] = _mm256_maskload_ps(ci.wrapping_add(8), k1);
                }
            }
        }
        let far_on = !far.is_null();
        macro_rules! k_step {
            ($p:expr) => {{
                let p = $p;
                let (ap, bp) = (a.add(p * lda), b.add(p * ldb));
                // Half of the next panel block into L2, a line every other step.
                if far_on && p % 2 == 0 {
                    _mm_prefetch::<_MM_HINT_T1>(far.wrapping_add(p * NR / 2).cast());
                }
                // B's line of this step, and A's every other step, KMAJOR_PF steps ahead.
                _mm_prefetch::<_MM_HINT_T0>(bp.wrapping_add(KMAJOR_PF * ldb).cast());
                if p % 2 == 0 {
                    _mm_prefetch::<_MM_HINT_T0>(ap.wrapping_add(KMAJOR_PF * lda).cast());
                }
                let w0 = _mm256_loadu_ps(bp);
                let w1 = if HALF {
                    zero
                } else {
                    _mm256_loadu_ps(bp.add(8))
                };
                for (i, acc) in acc.iter_mut().enumerate() {
                    let x = _mm256_set1_ps(*ap.add(i));
                    acc[0] = _mm256_fmadd_ps(x, w0, acc[0]);
                    if !HALF {
                        acc[1] = _mm256_fmadd_ps(x, w1, acc[1]);
                    }
                }
            }};
        }
        for_k_unrolled!(k, K_UNROLL, k_step);
        for (i, acc) in acc.iter().enumerate() {
            let ci = c.add(i * ldc);
            _mm256_maskstore_ps(ci, k0, acc[0]);
            if !HALF {
                _mm256_maskstore_ps(ci.wrapping_add(8), k1, acc[1]);
            }
        }
    }
}
