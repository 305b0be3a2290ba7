//! GEMM micro-kernels over a packed B operand, one per ISA.
//!
//! A micro-kernel computes a tile of `mr <= MR` rows by one panel of `NR` columns:
//! `C[i][j] = bias[j] + Σ_k A[i][k] · B[k][j]`, with A row-major (any leading dimension) and the
//! panel of B packed k-major (`NR` consecutive floats per k, see [`crate::packed::PackedB`]).
//! Each element is one FMA chain over k in order, whatever the tile or thread, so results do not
//! depend on how the work is split.

#[cfg(target_arch = "x86_64")]
pub(crate) mod avx2;
#[cfg(target_arch = "x86_64")]
pub(crate) mod avx512;
pub(crate) mod portable;

use crate::isa::Isa;

/// `match rows { 1 => f::<1>(args), ..., MAX => f::<MAX>(args) }`: one monomorphized kernel
/// per row count, so the accumulators of a partial tile stay in registers too. Any other count
/// (0, or past a tile) is a broken caller: a panic, not a kernel touching rows it was not given.
macro_rules! by_rows {
    // `f::<_, W, S>(args)`: the row count first, then two fixed parameters.
    ($rows:expr, $f:ident::<_, $w:tt, $s:tt> $args:tt, [$($r:literal),*], $max:literal) => {
        match $rows {
            $($r => $f::<$r, $w, $s> $args,)*
            $max => $f::<$max, $w, $s> $args,
            r => panic!("a tile of {r} rows, expected 1..={}", $max),
        }
    };
    // `f::<_, W>(args)`: the row count first, then a fixed second parameter.
    ($rows:expr, $f:ident::<_, $w:literal> $args:tt, [$($r:literal),*], $max:literal) => {
        match $rows {
            $($r => $f::<$r, $w> $args,)*
            $max => $f::<$max, $w> $args,
            r => panic!("a tile of {r} rows, expected 1..={}", $max),
        }
    };
    ($rows:expr, $f:ident $args:tt, [$($r:literal),*], $max:literal) => {
        match $rows {
            $($r => $f::<$r> $args,)*
            $max => $f::<$max> $args,
            r => panic!("a tile of {r} rows, expected 1..={}", $max),
        }
    };
}
pub(crate) use by_rows;

/// `$step!(p)` for every k step `p < $k`: `$u` steps a turn (the tiles' inner loop, unrolled by
/// the compiler since `$u` is a constant, so each row's address is computed once a turn), then
/// the rest one at a time.
macro_rules! for_k_unrolled {
    ($k:expr, $u:expr, $step:ident) => {{
        let (k, u) = ($k, $u);
        let unrolled = k - k % u;
        for p0 in (0..unrolled).step_by(u) {
            for p in p0..p0 + u {
                $step!(p);
            }
        }
        for p in unrolled..k {
            $step!(p);
        }
    }};
}
pub(crate) use for_k_unrolled;

/// `match panels { 1 => f::<R, 1>(args), ... }` for the few-rows kernels (x86 only).
#[cfg(target_arch = "x86_64")]
macro_rules! by_panels {
    ($panels:expr, $f:ident::<$r:literal> $args:tt, [$($p:literal),*], $max:literal) => {
        match $panels {
            $($p => $f::<$r, $p> $args,)*
            $max => $f::<$r, $max> $args,
            p => panic!("a run of {p} panels, expected 1..={}", $max),
        }
    };
    // `f::<R, _, H>(args)`: the panel count second, then a fixed third parameter.
    ($panels:expr, $f:ident::<$r:literal, _, $h:literal> $args:tt, [$($p:literal),*], $max:literal) => {
        match $panels {
            $($p => $f::<$r, $p, $h> $args,)*
            $max => $f::<$r, $max, $h> $args,
            p => panic!("a run of {p} panels, expected 1..={}", $max),
        }
    };
}
#[cfg(target_arch = "x86_64")]
pub(crate) use by_panels;

/// The shape of one ISA's micro-kernel.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Shape {
    /// Rows per tile.
    pub mr: usize,
    /// Columns per packed panel.
    pub nr: usize,
}

/// How many panels the few-rows kernel of `isa` takes at once for a `rows`-row GEMM, or 0 where
/// the ordinary tile is the better kernel (or the ISA has no few-rows kernel).
///
/// With one to a few rows, a tile of one panel has only `2 * rows` accumulators: too few FMA
/// chains to hide the FMA latency, so it runs at a fraction of peak. The batch-1 step GEMM is
/// such a case; the few-rows kernel keeps 8-24 chains (AVX-512; 6-12 on AVX2) by walking several
/// panels at once. With
/// so few rows there is one row tile, which reuses no panel, so nothing is lost by not keeping
/// a panel's k-block in L1 (5 rows on AVX-512, 2 panels: LSTM 37,5,300,200 1.135 -> 1.09 ms).
/// No more panels than keep every accumulator, broadcast and panel load in a register
/// (`rows * panels * 2 + rows + 2`, of 32 zmm or 16 ymm): 7 rows of 2 AVX-512 panels (37) and
/// 3 of 2 AVX2 panels (17) spilled an accumulator a k step, whose store and reload then sat on
/// its FMA chain (and the same kernel ran 1.8x slower in a build that changed only its
/// callers, the spill's stack slot elsewhere); with one panel, LSTM 200,7,256 infer 1T 0.84x the
/// time, GRU 100,7,333,128 0.88x; AVX2 LSTM 200,3,256 0.80x, GRU 100,3,333,128 0.86x.
///
/// `bytes` is how much of B the call streams (its panels). One AVX-512 row takes 8 panels a
/// call (16 chains) where those are at least [`ONE_ROW_WIDE_MIN`] and at most half of L2 (so
/// that they stay there from step to step beside what else the step keeps), else 4. Measured
/// (`ab.sh`, 6 pairs each, Intel Xeon, 2 MiB L2, 2026-12-02), batch 1: inference 1T LSTM H =
/// 128 0.959x the time, 256 0.944x, GRU 256 0.946x; 2T GRU 384 0.978x, LSTM 512 (512 KiB a
/// gate's call) 0.976x; training 1T LSTM 128 0.980x, 2T GRU 384 0.981x, LSTM 512 0.985x. Up to
/// all of L2, 8 was slower where the rest of the step crowds it: LSTM 100,1,512 training 2T
/// (its backward's 2 MiB calls) 1.116x, GRU 768 and LSTM 1024 inference 2T 1.02x (though GRU
/// 384 1T, 1.7 MiB, 0.911x); from L3 (LSTM 512 1T 1.013x, GRU 768 1.012x, RNN 1024 1.039x) and
/// tiny (LSTM H = 64, 64 KiB, 1.05x; GRU 100, 117 KiB, 1.017x; LSTM 96, 144 KiB, 0.993x).
pub(crate) fn wide_panels(isa: Isa, rows: usize, bytes: usize) -> usize {
    match (isa, rows) {
        (Isa::Avx512, 1) => {
            match (ONE_ROW_WIDE_MIN..=crate::cache::l2_bytes() / 2).contains(&bytes) {
                true => 8,
                false => 4,
            }
        }
        (Isa::Avx512, 2) => 6,
        (Isa::Avx512, 3) => 4,
        (Isa::Avx512, 4) => 3,
        (Isa::Avx512, 5 | 6) => 2,
        (Isa::Avx512, 7) => 1,
        (Isa::Avx2, 1) => 6,
        (Isa::Avx2, 2) => 3,
        (Isa::Avx2, 3) => 1,
        _ => 0,
    }
}

/// The least of B (bytes) that one AVX-512 row streams 8 panels a call (see [`wide_panels`]).
pub(crate) const ONE_ROW_WIDE_MIN: usize = 256 << 10;

/// The row stride of A that the AVX-512 tile knows at compile time (see `packed::ACopy`): a
/// k-block's 576 steps and 16 floats more, so that rows fall 2368 bytes apart (not on the
/// same L1 sets, as rows a multiple of 4 KiB apart do). Any A at this stride takes that tile.
pub(crate) const A_STRIDE: usize = 592;

/// The widest panel of any ISA; every `nr` divides it, so a buffer whose gate blocks are padded
/// to a multiple of it fits any ISA's layout (see `packed::GateLayout`).
pub(crate) const MAX_NR: usize = 32;

pub(crate) fn shape(isa: Isa) -> Shape {
    match isa {
        Isa::Avx512 => Shape { mr: 12, nr: 32 },
        Isa::Avx2 => Shape { mr: 6, nr: 16 },
        Isa::Portable => Shape {
            mr: portable::MR,
            nr: 16,
        },
    }
}

/// The part of `next` (the packed block a GEMM runs after this one, `block` floats, or null)
/// that row tile `tile` of a block's `tiles` prefetches as its `far` (see [`tile`]): the first
/// half for the last tile but one, the second half for the last, nothing for the others or
/// with a single tile.
#[inline]
pub(crate) fn far_half(next: *const f32, block: usize, tile: usize, tiles: usize) -> *const f32 {
    match tiles >= 2 && tile + 2 >= tiles && !next.is_null() {
        true => next.wrapping_add((tile + 2 - tiles) * block / 2),
        false => std::ptr::null(),
    }
}

/// One tile: `rows` (1..=MR) rows of A from `a` (leading dimension `lda`, `k` columns), one
/// packed panel `b` of `width` columns (`k * width` floats: `NR`, or `NR / 2` for an operand's
/// half-width last panel on AVX-512, see [`crate::packed::GateLayout`]), `bias` (`width` floats),
/// into the first `cols` (1..=width) columns of `rows` rows of C at `c` (leading dimension
/// `ldc`). With `acc_in` the sums start from C's values instead of the bias: the next block of
/// k of the same elements.
///
/// `far`, unless null, is half of the packed block the caller runs next (see
/// `packed::gemm_block`): the tile prefetches it into L2 while it runs (AVX-512: a line a k
/// step, tiles of up to 8 rows, or of any at `A_STRIDE`; AVX2: a line every other step), so
/// that the next block's first tile does not stream it from L3 alone. A hint: any address,
/// never dereferenced, no result changed.
///
/// # Safety
/// `isa` must be available; `width` must be `NR`, or `NR / 2` on AVX-512; `a` must hold
/// `(rows - 1) * lda + k` floats, `b` `k * width`, `bias` `width`; `c` must be valid for reads
/// and writes at `i * ldc + j` for `i < rows`, `j < cols`, and no other thread may touch those
/// elements meanwhile.
#[allow(clippy::too_many_arguments)]
#[inline]
pub(crate) unsafe fn tile(
    isa: Isa,
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
    debug_assert!(width == shape(isa).nr || (isa == Isa::Avx512 && width == 16));
    // SAFETY: forwarded from this function's contract.
    unsafe {
        match isa {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => avx512::tile(rows, k, a, lda, b, width, bias, c, ldc, cols, acc_in, far),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => avx2::tile(rows, k, a, lda, b, bias, c, ldc, cols, acc_in, far),
            _ => portable::tile(rows, k, a, lda, b, bias, c, ldc, cols, acc_in),
        }
    }
}

/// Few rows by several panels: `rows` rows of A (as in [`tile`]) times `panels` consecutive
/// packed panels, the first at `b` and each `panel_stride` floats after the one before, with
/// `bias` holding `panels * NR` floats; every panel but the last is written in full, the last
/// in its first `cols` columns. With `half` (AVX-512 only) the last panel is the operand's
/// half-width one (`k * NR / 2` floats, `cols <= NR / 2`), whose 1-zmm tile alone would have
/// too few FMA chains. The same FMA chains as [`tile`], so the same results.
///
/// # Safety
/// `isa` must be available and `rows`, `panels` within [`wide_panels`]; `a` as in [`tile`];
/// each panel must hold `k * NR` floats (the last `k * NR / 2` with `half`); C must be ours at
/// `i * ldc + j` for `i < rows` and `j < (panels - 1) * NR + cols`.
#[allow(clippy::too_many_arguments)]
// Elsewhere no ISA has a few-rows kernel (`wide_panels` is 0): the body is the unreachable arm.
#[cfg_attr(not(target_arch = "x86_64"), allow(unused_variables, unused_unsafe))]
#[inline]
pub(crate) unsafe fn wide(
    isa: Isa,
    rows: usize,
    panels: usize,
    k: usize,
    a: *const f32,
    lda: usize,
    b: *const f32,
    panel_stride: usize,
    bias: *const f32,
    c: *mut f32,
    ldc: usize,
    cols: usize,
    acc_in: bool,
    half: bool,
) {
    debug_assert!(!half || isa == Isa::Avx512);
    // SAFETY: forwarded from this function's contract.
    unsafe {
        match isa {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => avx512::wide(
                rows,
                panels,
                k,
                a,
                lda,
                b,
                panel_stride,
                bias,
                c,
                ldc,
                cols,
                acc_in,
                half,
            ),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => avx2::wide(
                rows,
                panels,
                k,
                a,
                lda,
                b,
                panel_stride,
                bias,
                c,
                ldc,
                cols,
                acc_in,
            ),
            _ => unreachable!("no few-rows kernel for {isa:?}"),
        }
    }
}

/// A tile of other work (the input projection, or the input gradient) that rides a one-row
/// step GEMM (see [`ride`]): `rows` (1..=[`RIDER_ROWS`]) rows of A, `k` floats each at `lda`,
/// by one packed panel `b` of `width` columns (`k * width` floats) and its `width` floats of
/// `bias`, written to the `rows x cols` block of C at `c` (`cols <= width`), rows `ldc` apart.
/// Only a whole panel rides; a half-width one runs alone.
#[derive(Clone, Copy)]
pub(crate) struct Rider {
    pub rows: usize,
    pub k: usize,
    pub a: *const f32,
    pub lda: usize,
    pub b: *const f32,
    pub width: usize,
    pub bias: *const f32,
    pub c: *mut f32,
    pub ldc: usize,
    pub cols: usize,
}

/// The most rows a rider has: a projection tile of 8 rows and one row of the step over 4
/// panels take 24 accumulators.
pub(crate) const RIDER_ROWS: usize = 8;

/// The most panels a one-row call carries with a rider.
pub(crate) const RIDE_PANELS: usize = 4;

/// Whether `isa` has the kernel that runs a rider in a one-row step's k loop (AVX-512 only:
/// the panel of 32 columns its riders are packed in).
pub(crate) fn rides(isa: Isa) -> bool {
    isa == Isa::Avx512
}

/// The one-row step GEMM of [`wide`] over `panels` (1..=[`RIDE_PANELS`]) whole panels, with
/// the rider's tile computed in the same k loop: the row streams its panels from L2 or L3,
/// which leaves the FMA units mostly idle, and the rider's tile fills them (a C prototype,
/// `benches/compare/overlap.c`: 0.83-0.89x the time of the two in turn on Zen 4). Every
/// element of both is the same FMA chain as in [`wide`] and [`tile`], so the same results.
///
/// # Safety
/// `rides(isa)`; A holds `k` floats, each panel `k * NR` floats `panel_stride` apart with
/// `NR` floats of bias each, and C's row is ours up to `(panels - 1) * NR + cols`; the rider's
/// fields as [`Rider`] says, its block of C disjoint from the row's.
#[allow(clippy::too_many_arguments)]
#[cfg_attr(not(target_arch = "x86_64"), allow(unused_variables, unused_unsafe))]
#[inline]
pub(crate) unsafe fn ride(
    isa: Isa,
    panels: usize,
    k: usize,
    a: *const f32,
    b: *const f32,
    panel_stride: usize,
    bias: *const f32,
    c: *mut f32,
    cols: usize,
    acc_in: bool,
    rider: &Rider,
) {
    // SAFETY: forwarded from this function's contract.
    unsafe {
        match isa {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => {
                avx512::ride(panels, k, a, b, panel_stride, bias, c, cols, acc_in, rider)
            }
            _ => unreachable!("no riding kernel for {isa:?}"),
        }
    }
}

/// The arguments of every ISA's few-rows kernel instance (see [`wide`]) past `rows` and
/// `panels`: `(k, a, lda, b, panel_stride, bias, c, ldc, cols, acc_in)`.
#[cfg(target_arch = "x86_64")]
pub(crate) type WideArgs = (
    usize,
    *const f32,
    usize,
    *const f32,
    usize,
    *const f32,
    *mut f32,
    usize,
    usize,
    bool,
);

/// The arguments of every ISA's [`tile_kmajor`] instance past `isa` and `rows`: `(k, a, lda,
/// b, ldb, c, ldc, cols, acc_in, far)`.
pub(crate) type KmajorArgs = (
    usize,
    *const f32,
    usize,
    *const f32,
    usize,
    *mut f32,
    usize,
    usize,
    bool,
    *const f32,
);

/// One tile of `C (+)= Aᵀ B` with both operands k-major and unpacked (the weight gradients'
/// `dGᵀ X`): `A[p][i]` at `a + p * lda + i` for `i < rows`, `B[p][j]` at `b + p * ldb + j` for
/// `j < cols`; `acc_in` adds to C instead of overwriting it. `far`, unless null, is half of the
/// packed panel block the caller runs next, prefetched into L2 as in [`tile`].
///
/// # Safety
/// `isa` must be available; for every `p < k`, `a + p * lda` must hold `rows` floats and
/// `b + p * ldb` a whole panel's `NR` floats (read; the products past `cols` are not stored);
/// C as in [`tile`].
#[allow(clippy::too_many_arguments)]
#[inline]
pub(crate) unsafe fn tile_kmajor(
    isa: Isa,
    rows: usize,
    k: usize,
    a: *const f32,
    lda: usize,
    b: *const f32,
    ldb: usize,
    c: *mut f32,
    ldc: usize,
    cols: usize,
    acc_in: bool,
    far: *const f32,
) {
    let args = (k, a, lda, b, ldb, c, ldc, cols, acc_in, far);
    // SAFETY: forwarded from this function's contract.
    unsafe {
        match isa {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => avx512::tile_kmajor(rows, args),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => avx2::tile_kmajor(rows, args),
            _ => portable::tile_kmajor(rows, args),
        }
    }
}

#[cfg(test)]
mod shape_tests {
    use super::*;

    #[test]
    fn one_avx512_row_takes_eight_panels_only_within_half_of_l2() {
        let half = crate::cache::l2_bytes() / 2;
        assert_eq!(wide_panels(Isa::Avx512, 1, ONE_ROW_WIDE_MIN - 1), 4);
        assert_eq!(wide_panels(Isa::Avx512, 1, half + 1), 4);
        if half >= ONE_ROW_WIDE_MIN {
            assert_eq!(wide_panels(Isa::Avx512, 1, ONE_ROW_WIDE_MIN), 8);
            assert_eq!(wide_panels(Isa::Avx512, 1, half), 8);
        }
        // More rows, other ISAs: whatever the size.
        for bytes in [0, ONE_ROW_WIDE_MIN, half] {
            assert_eq!(wide_panels(Isa::Avx512, 2, bytes), 6);
            assert_eq!(wide_panels(Isa::Avx2, 1, bytes), 6);
            assert_eq!(wide_panels(Isa::Portable, 1, bytes), 0);
        }
    }

    #[test]
    fn every_panel_width_divides_max_nr() {
        for isa in [Isa::Avx512, Isa::Avx2, Isa::Portable] {
            assert_eq!(MAX_NR % shape(isa).nr, 0, "{isa:?}");
        }
    }
}
