//! AVX-512 micro-kernel: up to 12 rows by 32 columns (two zmm per row), 24 accumulators: per
//! k step 2 loads of B and 12 broadcasts feed 24 FMAs (an 8-row tile's 16 chains ran the
//! in-cache tile at 85% of peak, 12 rows at 92%).

use super::{by_panels, by_rows, for_k_unrolled, KmajorArgs, WideArgs, A_STRIDE};
use std::arch::x86_64::*;

const NR: usize = 32;
/// How far ahead (floats: 96 k steps, ~1.2k cycles, 12 KiB of a whole panel) the tile
/// prefetches its panel into L1, one line at a time. The first row tile of a panel's k-block
/// streams it from L3 or memory (the recurrent weight of H = 1024 is 16 MiB) faster than the
/// hardware prefetcher, which stops at each 4 KiB page, keeps up; on 64x4096x1024 a prefetch
/// took the GEMM from 66 to 106 GFLOP/s. It was two a line, into L1 16 steps ahead and into L2
/// 96 ahead (LSTM 50,64,1024 infer 1T 439 -> 415 ms for the second); one into L1 96 ahead
/// takes half the load slots and covers L3's and memory's latency as well (`ab.sh`, 8 pairs,
/// 2026-12-02: LSTM 50,64,1024 infer 1T 0.915x the time, 2T 0.848x, train 1T 0.979x; GRU
/// 100,64,512 0.971x; LSTM 100,16,512 and 100,64,512 0.98-1.00x; 64 or 160 steps ahead 1.04x
/// and 1.05x the time of 96 at H = 1024).
const PF: usize = NR * 96;
/// The few-rows kernel's prefetch distance (floats: 16 k steps), into L1.
const WIDE_PF: usize = NR * 16;
/// k steps per turn of the tile's loop (see `tile_rw`). Measured, LSTM 100,64,512 infer 1T:
/// 1 step 174.7 ms, 4 steps 173.0; 8 steps 175.3 and 2 steps 271 (the compiler kept every row
/// address live and spilled): the register allocation decides, so measure after a change here.
const K_UNROLL: usize = 4;
/// How far ahead (k steps) the k-major tile prefetches its packed operands into L1: the panel
/// of B (96 KiB a k-block) and the tile of A (36 KiB) both come from L2 for every tile, and the
/// hardware prefetcher does not keep them ahead. On an Intel Xeon with AVX-512 (2026-12-03,
/// `gemm_tn::timing`, 5 interleaved rounds, B faster in 3-5 of 5): 2048x512x6400 142.2 ->
/// 144.4 GFLOP/s, 4096x1024x3200 138.6 -> 144.7, 1536x512x1600 141.4 -> 146.2, 512x128x3200
/// 128.8 -> 130.3. The tile alone in L1 runs at 176 there (`tile_alone`, peak 214).
const KMAJOR_PF: usize = 64;
/// k steps per turn of the k-major tile's loop.
const KMAJOR_UNROLL: usize = 2;

/// # Safety
/// See [`super::tile`]; the CPU must have AVX-512 F. A panel of `width` 16 is an operand's
/// half-width last one (16 columns past a multiple of 32, which a whole panel would pad with 16
/// columns of zeros), run with one zmm a row.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn tile(
    rows: usize,
    k: usize,
    a: *const f32,
    lda: usize,
    b: *const f32,
    width: usize,
    bias: *const f32,
    c: *mut f32,
    ldc: usize,
    cols: usize,
    acc_in: bool,
    far: *const f32,
) {
    let args = (k, a, lda, b, bias, c, ldc, cols, acc_in, far);
    // SAFETY: forwarded; each instance reads and writes only `R` rows.
    unsafe {
        match width {
            16 if lda == A_STRIDE => by_rows!(
                rows,
                tile_rw::<_, 1, A_STRIDE>(args),
                [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11],
                12
            ),
            16 => by_rows!(
                rows,
                tile_rw::<_, 1, 0>(args),
                [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11],
                12
            ),
            _ if lda == A_STRIDE => by_rows!(
                rows,
                tile_rw::<_, 2, A_STRIDE>(args),
                [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11],
                12
            ),
            _ => by_rows!(
                rows,
                tile_rw::<_, 2, 0>(args),
                [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11],
                12
            ),
        }
    }
}

/// The arguments of [`tile_rw`].
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
    *const f32,
);

/// `R` rows by a panel of `W` zmm (16 floats each, `16 * W` floats per k step), A's rows `S`
/// floats apart when `S > 0` (a copy at [`A_STRIDE`]), else `lda` apart.
///
/// With `S` known, every broadcast is one base register plus a constant: with `lda` known only
/// at run time the 12-row tile kept a register per row (or an add per row a turn), which left no
/// register for the prefetch of the next block (spilled, 64x2048x512 at 0.63x) and cost issue
/// slots (see `packed::ACopy`).
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn tile_rw<const R: usize, const W: usize, const S: usize>(
    (k, a, lda, b, bias, c, ldc, cols, acc_in, far): TileArgs,
) {
    // SAFETY: the caller guarantees `bias` holds 16*W floats, `b` k*16*W, each of the R rows of
    // `a` k floats, and the R x cols block of `c` is ours to write (cols <= 16*W); the masks
    // keep C's accesses inside `cols` (a masked-off half's address formed with wrapping_add).
    unsafe {
        let step = 16 * W;
        let m = {
            let (m0, m1) = masks(cols);
            [m0, m1]
        };
        let zero = _mm512_setzero_ps();
        let mut init = [zero; 2];
        for (h, v) in init.iter_mut().enumerate().take(W) {
            *v = _mm512_loadu_ps(bias.add(16 * h));
        }
        let mut acc = [init; R];
        if acc_in {
            for (i, acc) in acc.iter_mut().enumerate() {
                for (h, v) in acc.iter_mut().enumerate().take(W) {
                    *v = _mm512_maskz_loadu_ps(m[h], c.wrapping_add(i * ldc + 16 * h));
                }
            }
        }
        // One pointer per row of A, so each broadcast is a plain base + index load (unused,
        // and dropped by the compiler, at a known stride).
        let rows: [*const f32; R] = std::array::from_fn(|i| a.add(i * lda));
        // The prefetch distance in k steps, as for a whole panel.
        let pf = PF / NR * step;
        // Half of the next block into L2, a line a step (see `super::tile`). Not with 9 rows or
        // more at a run-time stride: the pointer spilled their registers (64x2048x512 at 0.63x,
        // 256x2048x512 0.53x).
        let far_on = (S > 0 || R <= 8) && !far.is_null();
        macro_rules! k_step {
            ($p:expr) => {{
                let p = $p;
                let bp = b.add(p * step);
                // Hints: they cannot fault, even past the end of a panel.
                if far_on {
                    _mm_prefetch::<_MM_HINT_T1>(far.wrapping_add(p * 16).cast());
                }
                for h in 0..W {
                    _mm_prefetch::<_MM_HINT_T0>(bp.wrapping_add(pf + 16 * h).cast());
                }
                let mut w = [zero; 2];
                for (h, v) in w.iter_mut().enumerate().take(W) {
                    *v = _mm512_loadu_ps(bp.add(16 * h));
                }
                for (i, acc) in acc.iter_mut().enumerate() {
                    let x = match S {
                        0 => _mm512_set1_ps(*rows[i].add(p)),
                        _ => _mm512_set1_ps(*a.add(i * S + p)),
                    };
                    for h in 0..W {
                        acc[h] = _mm512_fmadd_ps(x, w[h], acc[h]);
                    }
                }
            }};
        }
        // Four k steps a turn: each row's address is computed once for the four broadcasts,
        // which then differ by a constant offset (12 address adds a step otherwise, beside 24
        // FMAs, kept the loop from issuing at full rate).
        for_k_unrolled!(k, K_UNROLL, k_step);
        for (i, acc) in acc.iter().enumerate() {
            for h in 0..W {
                _mm512_mask_storeu_ps(c.wrapping_add(i * ldc + 16 * h), m[h], acc[h]);
            }
        }
    }
}

/// The few-rows kernel: up to 7 rows by up to 8 panels (see [`super::wide`]).
///
/// # Safety
/// See [`super::wide`]; the CPU must have AVX-512 F.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f")]
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
    half: bool,
) {
    let args = (k, a, lda, b, stride, bias, c, ldc, cols, acc_in);
    // SAFETY: forwarded; each instance touches only its R rows and P panels.
    unsafe {
        macro_rules! by_rows_panels {
            ($h:literal) => {
                match rows {
                    1 => by_panels!(panels, wide_rp::<1, _, $h>(args), [1, 2, 3, 4, 5, 6, 7], 8),
                    2 => by_panels!(panels, wide_rp::<2, _, $h>(args), [1, 2, 3, 4, 5], 6),
                    3 => by_panels!(panels, wide_rp::<3, _, $h>(args), [1, 2, 3], 4),
                    4 => by_panels!(panels, wide_rp::<4, _, $h>(args), [1, 2], 3),
                    5 => by_panels!(panels, wide_rp::<5, _, $h>(args), [1], 2),
                    6 => by_panels!(panels, wide_rp::<6, _, $h>(args), [1], 2),
                    // One panel: two would take 28 accumulators, 7 broadcasts and 2 loads, past
                    // the 32 registers (see `super::wide_panels`).
                    7 => by_panels!(panels, wide_rp::<7, _, $h>(args), [], 1),
                    r => panic!("the few-rows kernel given {r} rows, expected 1..=7"),
                }
            };
        }
        match half {
            false => by_rows_panels!(false),
            true => by_rows_panels!(true),
        }
    }
}

#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn wide_rp<const R: usize, const P: usize, const HALF: bool>(
    (k, a, lda, b, stride, bias, c, ldc, cols, acc_in): WideArgs,
) {
    // SAFETY: the caller guarantees R rows of k floats of A, P panels of k*NR floats at
    // `stride` (with HALF the last of k*NR/2 floats), P*NR floats of bias (the last panel's
    // width with HALF), and the R x ((P-1)*NR + cols) block of C; the masks keep the last
    // panel's accesses of C inside `cols` (a masked-off half's address, which may lie past C,
    // is formed with wrapping_add and never dereferenced).
    unsafe {
        // The zmm of panel j: two, or one for a half-width last panel (16 floats a k step).
        let zmms = |j: usize| match HALF && j + 1 == P {
            true => 1,
            false => 2,
        };
        let (m0, m1) = masks(cols);
        let full = u16::MAX;
        let mask = |j: usize, half: usize| match (j + 1 == P, half) {
            (false, _) => full,
            (true, 0) => m0,
            (true, _) => m1,
        };
        let mut acc = [[[_mm512_setzero_ps(); 2]; P]; R];
        for (i, acc) in acc.iter_mut().enumerate() {
            for (j, acc) in acc.iter_mut().enumerate() {
                for (h, acc) in acc.iter_mut().enumerate().take(zmms(j)) {
                    *acc = if acc_in {
                        _mm512_maskz_loadu_ps(mask(j, h), c.wrapping_add(i * ldc + j * NR + h * 16))
                    } else {
                        _mm512_loadu_ps(bias.add(j * NR + h * 16))
                    };
                }
            }
        }
        let rows: [*const f32; R] = std::array::from_fn(|i| a.add(i * lda));
        let panels: [*const f32; P] = std::array::from_fn(|j| b.add(j * stride));
        for p in 0..k {
            let x: [__m512; R] = std::array::from_fn(|i| _mm512_set1_ps(*rows[i].add(p)));
            for (j, panel) in panels.iter().enumerate() {
                // Each panel is read once, from L2 (or further).
                // With 4 rows or more a panel's line feeds as many FMAs as in a tile, and the
                // hint pays (7 rows: LSTM 200,7,256 12.5 -> 11.6 ms); with 1-3 the kernel is a
                // pure stream from L2 that the hardware prefetchers now keep up with (the
                // panels on cache lines), and the hint's load slots cost more than it brings
                // (LSTM 100,1,256 1.34 -> 1.27 ms, 100,2,256 1.79 -> 1.69, GRU 61,3 2.20 ->
                // 1.97; same minutes, medians of 4).
                let step = 16 * zmms(j);
                if R >= 4 {
                    for h in 0..zmms(j) {
                        let ahead = panel.wrapping_add(p * step + WIDE_PF / NR * step + 16 * h);
                        _mm_prefetch::<_MM_HINT_T0>(ahead.cast());
                    }
                }
                let w0 = _mm512_loadu_ps(panel.add(p * step));
                match zmms(j) {
                    2 => {
                        let w1 = _mm512_loadu_ps(panel.add(p * step + 16));
                        for (acc, x) in acc.iter_mut().zip(&x) {
                            acc[j][0] = _mm512_fmadd_ps(*x, w0, acc[j][0]);
                            acc[j][1] = _mm512_fmadd_ps(*x, w1, acc[j][1]);
                        }
                    }
                    _ => {
                        for (acc, x) in acc.iter_mut().zip(&x) {
                            acc[j][0] = _mm512_fmadd_ps(*x, w0, acc[j][0]);
                        }
                    }
                }
            }
        }
        for (i, acc) in acc.iter().enumerate() {
            for (j, acc) in acc.iter().enumerate() {
                for (h, acc) in acc.iter().enumerate().take(zmms(j)) {
                    _mm512_mask_storeu_ps(
                        c.wrapping_add(i * ldc + j * NR + h * 16),
                        mask(j, h),
                        *acc,
                    );
                }
            }
        }
    }
}

/// Store masks of the two halves of a panel's first `cols` columns.
#[inline]
fn masks(cols: usize) -> (u16, u16) {
    let m0 = if cols >= 16 {
        u16::MAX
    } else {
        (1u16 << cols) - 1
    };
    let m1 = if cols >= 32 {
        u16::MAX
    } else if cols > 16 {
        (1u16 << (cols - 16)) - 1
    } else {
        0
    };
    (m0, m1)
}

/// The "k-major" tile for `C (+)= Aᵀ B`: A and B both stored k-major, `A[p][i]` at
/// `a + p * lda + i`, `B[p][j]` at `b + p * ldb + j` (all NR read, `cols` stored).
///
/// # Safety
/// See [`super::tile_kmajor`]; the CPU must have AVX-512 F.
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn tile_kmajor(rows: usize, args: KmajorArgs) {
    // SAFETY: forwarded; each instance reads and writes only `R` rows.
    unsafe {
        // A panel of 16 columns or fewer (the last of an odd n) in one zmm a row: half the
        // FMAs, 12 chains still (dW of LSTM H = 100: 3.5 panels' work, not 4).
        let (.., cols, _, _) = args;
        match cols <= 16 {
            true => by_rows!(
                rows,
                tile_kmajor_r::<_, true>(args),
                [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11],
                12
            ),
            false => by_rows!(
                rows,
                tile_kmajor_r::<_, false>(args),
                [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11],
                12
            ),
        }
    }
}

#[allow(clippy::too_many_arguments)]
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn tile_kmajor_r<const R: usize, const HALF: bool>(
    (k, a, lda, b, ldb, c, ldc, cols, acc_in, far): KmajorArgs,
) {
    // SAFETY: the caller guarantees k steps of R floats of A, of NR floats of B, and the
    // R x cols block of C (cols <= 16 with HALF); the masks keep every access of C inside
    // `cols` (the second half's address, past C when masked off, formed with wrapping_add);
    // the prefetches' addresses may lie past A and B (wrapping_add), and a prefetch never
    // faults.
    unsafe {
        let (m0, m1) = masks(cols);
        let zero = _mm512_setzero_ps();
        let mut acc = [[zero, zero]; R];
        if acc_in {
            for (i, acc) in acc.iter_mut().enumerate() {
                let ci = c.add(i * ldc);
                acc[0] = _mm512_maskz_loadu_ps(m0, ci);
                if !HALF {
                    acc[1] = _mm512_maskz_loadu_ps(m1, ci.wrapping_add(16));
                }
            }
        }
        let far_on = !far.is_null();
        macro_rules! k_step {
            ($p:expr) => {{
                let p = $p;
                let (ap, bp) = (a.add(p * lda), b.add(p * ldb));
                // Half of the next panel block into L2, a line a step (see `super::tile`).
                if far_on {
                    _mm_prefetch::<_MM_HINT_T1>(far.wrapping_add(p * 16).cast());
                }
                // B's two lines of this step and A's, KMAJOR_PF steps ahead (see KMAJOR_PF).
                let bf = bp.wrapping_add(KMAJOR_PF * ldb);
                _mm_prefetch::<_MM_HINT_T0>(bf.cast());
                _mm_prefetch::<_MM_HINT_T0>(bf.wrapping_add(16).cast());
                _mm_prefetch::<_MM_HINT_T0>(ap.wrapping_add(KMAJOR_PF * lda).cast());
                // Plain loads (a masked one costs an FMA port slot); columns past `cols` are
                // computed and never stored.
                let w0 = _mm512_loadu_ps(bp);
                let w1 = if HALF {
                    zero
                } else {
                    _mm512_loadu_ps(bp.add(16))
                };
                for (i, acc) in acc.iter_mut().enumerate() {
                    let x = _mm512_set1_ps(*ap.add(i));
                    acc[0] = _mm512_fmadd_ps(x, w0, acc[0]);
                    if !HALF {
                        acc[1] = _mm512_fmadd_ps(x, w1, acc[1]);
                    }
                }
            }};
        }
        for_k_unrolled!(k, KMAJOR_UNROLL, k_step);
        for (i, acc) in acc.iter().enumerate() {
            let ci = c.add(i * ldc);
            _mm512_mask_storeu_ps(ci, m0, acc[0]);
            if !HALF {
                _mm512_mask_storeu_ps(ci.wrapping_add(16), m1, acc[1]);
            }
        }
    }
}

/// The one-row kernel over `panels` (1..=4) whole panels with a tile of the input projection
/// riding in its k loop (see [`super::ride`]): the row streams W_hh from L3 or L2 and leaves
/// most FMA slots idle, which the rider's tile takes (`benches/compare/overlap.c`).
///
/// # Safety
/// See [`super::ride`]; the CPU must have AVX-512 F.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn ride(
    panels: usize,
    k: usize,
    a: *const f32,
    b: *const f32,
    stride: usize,
    bias: *const f32,
    c: *mut f32,
    cols: usize,
    acc_in: bool,
    rider: &super::Rider,
) {
    let args = (k, a, b, stride, bias, c, cols, acc_in, rider);
    // SAFETY: forwarded; each instance touches only its P panels and the rider's rows.
    unsafe {
        macro_rules! by_rider_rows {
            ($p:literal) => {
                match rider.rows {
                    1 => ride_pr::<$p, 1>(args),
                    2 => ride_pr::<$p, 2>(args),
                    3 => ride_pr::<$p, 3>(args),
                    4 => ride_pr::<$p, 4>(args),
                    5 => ride_pr::<$p, 5>(args),
                    6 => ride_pr::<$p, 6>(args),
                    7 => ride_pr::<$p, 7>(args),
                    8 => ride_pr::<$p, 8>(args),
                    r => panic!("a rider of {r} rows, expected 1..=8"),
                }
            };
        }
        match panels {
            1 => by_rider_rows!(1),
            2 => by_rider_rows!(2),
            3 => by_rider_rows!(3),
            4 => by_rider_rows!(4),
            p => panic!("a riding run of {p} panels, expected 1..=4"),
        }
    }
}

/// The arguments of [`ride_pr`].
type RideArgs<'r> = (
    usize,
    *const f32,
    *const f32,
    usize,
    *const f32,
    *mut f32,
    usize,
    bool,
    &'r super::Rider,
);

/// One row by `P` whole panels, and the rider's `T` rows by one whole panel, in one k loop:
/// `2 P + 2 T` accumulators (24 at most), the same FMA chains as [`wide_rp`] and [`tile_rw`].
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn ride_pr<const P: usize, const T: usize>(
    (k, a, b, stride, bias, c, cols, acc_in, r): RideArgs<'_>,
) {
    // SAFETY: the caller guarantees k floats of A, P whole panels of k*NR floats at `stride`
    // and their P*NR floats of bias, and the row of C up to (P-1)*NR + cols; the rider's T rows
    // of r.k floats at r.lda, its whole panel of r.k*NR floats and NR of bias, and its T x
    // r.cols block of C at r.ldc. The masks keep C's accesses inside `cols` and `r.cols` (a
    // masked-off half's address formed with wrapping_add, never dereferenced).
    unsafe {
        let (m0, m1) = masks(cols);
        let mask = |j: usize, h: usize| match (j + 1 == P, h) {
            (false, _) => u16::MAX,
            (true, 0) => m0,
            (true, _) => m1,
        };
        let mut acc = [[_mm512_setzero_ps(); 2]; P];
        for (j, acc) in acc.iter_mut().enumerate() {
            for (h, acc) in acc.iter_mut().enumerate() {
                *acc = match acc_in {
                    true => _mm512_maskz_loadu_ps(mask(j, h), c.wrapping_add(j * NR + h * 16)),
                    false => _mm512_loadu_ps(bias.add(j * NR + h * 16)),
                };
            }
        }
        let (t0, t1) = masks(r.cols);
        let tmask = [t0, t1];
        let mut tacc = [[_mm512_loadu_ps(r.bias), _mm512_loadu_ps(r.bias.add(16))]; T];
        let panels: [*const f32; P] = std::array::from_fn(|j| b.add(j * stride));
        let rows: [*const f32; T] = std::array::from_fn(|i| r.a.add(i * r.lda));
        macro_rules! row_step {
            ($p:expr) => {{
                let x = _mm512_set1_ps(*a.add($p));
                for (acc, panel) in acc.iter_mut().zip(&panels) {
                    let w = panel.add($p * NR);
                    acc[0] = _mm512_fmadd_ps(x, _mm512_loadu_ps(w), acc[0]);
                    acc[1] = _mm512_fmadd_ps(x, _mm512_loadu_ps(w.add(16)), acc[1]);
                }
            }};
        }
        macro_rules! tile_step {
            ($p:expr) => {{
                let w = r.b.add($p * NR);
                let (w0, w1) = (_mm512_loadu_ps(w), _mm512_loadu_ps(w.add(16)));
                for (acc, row) in tacc.iter_mut().zip(&rows) {
                    let x = _mm512_set1_ps(*row.add($p));
                    acc[0] = _mm512_fmadd_ps(x, w0, acc[0]);
                    acc[1] = _mm512_fmadd_ps(x, w1, acc[1]);
                }
            }};
        }
        let both = k.min(r.k);
        for p in 0..both {
            row_step!(p);
            tile_step!(p);
        }
        for p in both..k {
            row_step!(p);
        }
        for p in both..r.k {
            tile_step!(p);
        }
        for (j, acc) in acc.iter().enumerate() {
            for (h, acc) in acc.iter().enumerate() {
                _mm512_mask_storeu_ps(c.wrapping_add(j * NR + h * 16), mask(j, h), *acc);
            }
        }
        for (i, acc) in tacc.iter().enumerate() {
            for (h, acc) in acc.iter().enumerate() {
                _mm512_mask_storeu_ps(r.c.wrapping_add(i * r.ldc + h * 16), tmask[h], *acc);
            }
        }
    }
}
