//! `C = Aᵀ B` with both operands stored k-major: the weight gradients `dW = dGᵀ X`, reduced over
//! all T*B rows at once (or a recomputed chunk's rows, added to C).
//!
//! For each k the micro-kernel reads `MR` consecutive floats of A (a row of dG) and `NR` of B.
//! Both are copied first, a k-block at a time, into per-task buffers: the k-block of the task's
//! panels of B, each row of B read in one run, each panel contiguous (a panel's block, 96 KiB,
//! stays in L2 while the row tiles of a block of A pass over it); and the k-block of a block
//! of A's row tiles, one contiguous stream per tile. Read in place, a tile of A is 48 bytes per k at a
//! stride of G*H floats, and a panel of B 128 bytes at a stride of I: a new page every k or
//! every few, which the hardware prefetchers do not follow. Each element of C is one FMA chain
//! over k in order, whatever the split across threads.
//!
//! One call takes up to two products of the same A (dW_ih = dGᵀ X and dW_hh = dGᵀ H), so that
//! A is copied once for both, and adds up A's column sums (the bias gradients) as it copies.

use crate::aligned::Buf;
use crate::error::holds;
use crate::isa::Isa;
use crate::microkernel::{self, shape};
use crate::packed::{run_tasks, split, OutPtr, MIN_TASK_WORK};

/// Floats of a k-block of one panel of B (96 KiB, in L2): sets the k-block length, 768 on
/// AVX-512. Longer k-blocks load and store each tile of C fewer times (C, a weight gradient of
/// up to 16 MiB, lives in L3): 4096x1024x3200 123 -> 139 GFLOP/s, 2048x512x6400 127 -> 134
/// against 192 steps (24 KiB, a panel's block in L1), same minutes; 1536 steps was no better.
const PANEL_BLOCK: usize = 24 << 10;
/// Row tiles of A per block: its k-block (288 KiB on AVX-512) and the k-block of the task's
/// panels of B stay in a 1 MiB L2 together while B is narrow (the input of a small layer: 4
/// panels, 384 KiB); with 16 tiles (576 KiB) they did not: dW_ih of LSTM 400,8,128
/// (512x128x3200) 175 -> 188 GFLOP/s, LSTM 400,8,128 training 2.6% faster (9 of 9 pairs), the
/// wide shapes within the noise (2026-12-01).
const BLOCK_TILES: usize = 8;

/// One product of [`gemm_tn`]: `C = Aᵀ B` over A's first `m` columns, B `(k, n)` with
/// leading dimension `ldb`, C `(m, n)` with `ldc`.
pub(crate) struct Product<'a> {
    pub m: usize,
    pub n: usize,
    pub b: &'a [f32],
    pub ldb: usize,
    pub c: &'a mut [f32],
    pub ldc: usize,
}

/// Up to two products `C_i (+)= A[.., ..m_i]ᵀ B_i` of one A, as one GEMM whose panels are the
/// first B's then the second's: each k-block of A is copied once for both (dW_ih = dGᵀ X and
/// dW_hh = dGᵀ H share dG). Each element is the same FMA chain, in the same k-blocks, as in a
/// call of its own, so the same bits.
///
/// With `sums` (A's `m` columns, `m` the products' largest), also `sums[i] (+)= Σ_p A[p][i]`,
/// added in blocks of [`SUM_BLOCK`] values of p as the copies of A read them (the bias
/// gradients, column sums of dG, without another pass over dG).
///
/// The packed copies go in `scratch`, grown if it is too short.
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm_tn(
    isa: Isa,
    k: usize,
    a: &[f32],
    lda: usize,
    products: [Option<Product<'_>>; 2],
    sums: Option<&mut [f32]>,
    accumulate: bool,
    scratch: &mut TnScratch,
) {
    let sh = shape(isa);
    let (mr, nr) = (sh.mr, sh.nr);
    // Each non-empty product as raw parts, in order from the first slot, its panels numbered
    // after the ones before.
    let mut parts: [Option<Part<'_>>; 2] = [None, None];
    let (mut m, mut panels, mut work, mut count) = (0, 0, 0, 0);
    for pr in products.into_iter().flatten() {
        let Product {
            m: pm,
            n,
            b,
            ldb,
            c,
            ldc,
        } = pr;
        if pm == 0 || n == 0 {
            continue;
        }
        // Checked arithmetic: these asserts are what the unsafe code below relies on.
        assert!(
            ldc >= n && holds(c.len(), pm, ldc, n),
            "gemm_tn: C too short"
        );
        m = m.max(pm);
        if k == 0 {
            if !accumulate {
                for row in c.chunks_mut(ldc).take(pm) {
                    row[..n].fill(0.0);
                }
            }
            continue;
        }
        assert!(
            ldb >= n && holds(b.len(), k, ldb, n),
            "gemm_tn: B too short"
        );
        let first = panels;
        panels += n.div_ceil(nr);
        work += pm * n * k;
        parts[count] = Some(Part {
            m: pm,
            n,
            b,
            ldb,
            c: OutPtr(c.as_mut_ptr()),
            ldc,
            first,
        });
        count += 1;
    }
    let sums = sums.map(|v| {
        assert_eq!(v.len(), m, "gemm_tn: sums of {m} columns");
        if !accumulate {
            v.fill(0.0);
        }
        OutPtr(v.as_mut_ptr())
    });
    if panels == 0 || k == 0 {
        return;
    }
    assert!(
        lda >= m && holds(a.len(), k, lda, m),
        "gemm_tn: A too short"
    );
    // The product of global panel `p`, and `p`'s index among its own.
    let part_of = |p: usize| {
        let pt = match &parts[1] {
            Some(q) if p >= q.first => q,
            _ => parts[0].as_ref().expect("panels, so a first product"),
        };
        (pt, p - pt.first)
    };
    let row_tiles = m.div_ceil(mr);
    let (row_tasks, panel_tasks) = grid(mr, nr, row_tiles, panels, work);
    // Each task's room in `scratch`: the k-block of a block of its row tiles of A, then of its
    // panels of B, each on cache lines (the panels are whole lines: no load spans two). Sized
    // for the longest k-block ([`k_block`] returns at most the full one) and the largest share
    // ([`split`]'s parts differ by one at most); no longer than k (batch 1, T = 100 has k = 100).
    let kc_max = (PANEL_BLOCK / nr).max(1).min(k);
    let a_len = (BLOCK_TILES.min(row_tiles.div_ceil(row_tasks)) * mr * kc_max).next_multiple_of(16);
    let stride = a_len + (panels.div_ceil(panel_tasks) * kc_max * nr).next_multiple_of(16);
    let room = OutPtr(
        scratch
            .reserve(row_tasks * panel_tasks * stride)
            .as_mut_ptr(),
    );
    let task = |t: usize| {
        let (r0, r1) = split(row_tiles, row_tasks, t / panel_tasks);
        let (p0, p1) = split(panels, panel_tasks, t % panel_tasks);
        let kc = k_block(mr, nr, p1 - p0).min(k);
        // SAFETY: task t's `stride` floats at t * stride lie inside the room reserved above for
        // all the tasks, and no other task's.
        let mine = unsafe { std::slice::from_raw_parts_mut(room.at(t * stride), stride) };
        let (a_tiles, b_panels) = mine.split_at_mut(a_len);
        for k0 in (0..k).step_by(kc) {
            let kl = kc.min(k - k0);
            // Panel p's k-block: kl steps of nr floats, each row of B read in one run; once per
            // k-block, for every block of A's row tiles.
            for pt in parts.iter().flatten() {
                let (q0, q1) = (p0.max(pt.first), p1.min(pt.first + pt.n.div_ceil(nr)));
                if q0 >= q1 {
                    continue;
                }
                let b_block = &pt.b[k0 * pt.ldb..];
                let b_cols = (q0 - pt.first) * nr..((q1 - pt.first) * nr).min(pt.n);
                let dst = &mut b_panels[(q0 - p0) * kc * nr..];
                by_width!(nr, pack_b(b_block, pt.ldb, kl, b_cols, kc, dst));
            }
            for rb in (r0..r1).step_by(BLOCK_TILES) {
                let rb1 = (rb + BLOCK_TILES).min(r1);
                let (i_lo, i_hi) = (rb * mr, (rb1 * mr).min(m));
                // Tile t's k-block: kl steps of mr floats (the last tile's rows past m unused).
                let a_block = &a[k0 * lda..];
                // The sums of these rows of A: each of the tasks that copy them takes a share.
                let sums = sums.map(|v| {
                    let (s0, s1) = split(i_hi - i_lo, panel_tasks, t % panel_tasks);
                    // SAFETY: `v` holds m floats (asserted) and i_lo + s0..i_lo + s1 is within
                    // m; the tasks of one row range take disjoint shares of it, and tasks of
                    // other row ranges other rows.
                    let share = unsafe { std::slice::from_raw_parts_mut(v.at(i_lo + s0), s1 - s0) };
                    (share, s0)
                });
                by_width!(mr, pack_a(a_block, lda, kl, i_lo..i_hi, kc, a_tiles, sums));
                // Only where the block of A and the panels of B do not stay in L2 together.
                let streams = 4 * kc * (BLOCK_TILES * mr + (p1 - p0) * nr) > L2_SHARE;
                for p in p0..p1 {
                    let (pt, q) = part_of(p);
                    let cols = nr.min(pt.n - q * nr);
                    let panel = &b_panels[(p - p0) * kc * nr..][..kc * nr];
                    // The panel after this one (this block's next, or the next block's first),
                    // half of which each of the last two tiles prefetches into L2: the k-block
                    // of all the task's panels outgrows L2 on wide products (32 panels, 3 MiB,
                    // for dW_ih and dW_hh of LSTM H = 512), and each panel's first tile then
                    // streamed it from L3 alone. On an Intel Xeon (2026-12-03): 4096x1024x3200
                    // 142.6 -> 148.3 GFLOP/s (5 rounds); training (`ab.sh`, 6 pairs) LSTM
                    // 50,64,1024 1T 0.988x the time, 100,64,512 0.995x, 2T 0.983x.
                    let next = match (streams, p + 1 < p1, rb1 < r1) {
                        (false, _, _) => None,
                        (true, true, _) => Some(p + 1 - p0),
                        (true, false, true) => Some(0),
                        (true, false, false) => None,
                    }
                    .map_or(std::ptr::null(), |i| b_panels[i * kc * nr..].as_ptr());
                    for rt in rb..rb1 {
                        let far = microkernel::far_half(next, kl * nr, rt - rb, rb1 - rb);
                        let i0 = rt * mr;
                        if i0 >= pt.m {
                            break;
                        }
                        let rows = mr.min(pt.m - i0);
                        // SAFETY: `a_tiles` holds this tile's kl steps of mr floats (rows <= mr
                        // read); the asserts above bound every access to this product's C (rows
                        // i0..i0+rows < m, columns q*nr..q*nr+cols < n); `panel` holds kl steps
                        // of nr floats; tasks cover disjoint (row tile, panel) pairs; `isa` is
                        // available (caller).
                        unsafe {
                            microkernel::tile_kmajor(
                                isa,
                                rows,
                                kl,
                                a_tiles.as_ptr().add((rt - rb) * mr * kc),
                                mr,
                                panel.as_ptr(),
                                nr,
                                pt.c.at(i0 * pt.ldc + q * nr),
                                pt.ldc,
                                cols,
                                accumulate || k0 > 0,
                                far,
                            )
                        };
                    }
                }
            }
        }
    };
    run_tasks(row_tasks * panel_tasks, task);
}

/// The per-task packed copies of [`gemm_tn`]'s operands, kept by the caller between calls
/// (the workspace, one per direction that may run at once): allocated and zeroed in each call,
/// the panels of B (up to 6 MiB for dW of LSTM H = 1024) were fresh pages to fault in on every
/// training step. Grows to what a call needs, never shrinks. What a previous call left in it is
/// harmless: the lanes of a partial tile or panel that no copy fills reach no output.
#[derive(Debug)]
pub(crate) struct TnScratch(Buf);

impl Default for TnScratch {
    fn default() -> Self {
        TnScratch(Buf::zeros(0))
    }
}

impl TnScratch {
    /// Floats held.
    pub(crate) fn floats(&self) -> usize {
        self.0.len()
    }

    /// The first `len` floats, grown to them if shorter.
    fn reserve(&mut self, len: usize) -> &mut [f32] {
        if self.0.len() < len {
            self.0 = Buf::zeros(len);
        }
        &mut self.0[..len]
    }
}

/// Steps of a k-block for a task of `panels` panels: [`PANEL_BLOCK`]'s, unless a shorter one
/// (down to half) lets a block of A's row tiles and the k-block of all the task's panels stay
/// in L2 together, as [`BLOCK_TILES`] counts on (two products of a small layer: dW_ih and
/// dW_hh of LSTM 400,8,128, 8 panels, 1.08 MiB at 768 steps). The k-blocks do not change any
/// element's FMA chain (a block after the first starts from C), so the bits.
fn k_block(mr: usize, nr: usize, panels: usize) -> usize {
    let full = (PANEL_BLOCK / nr).max(1);
    let fit = L2_SHARE / (4 * (BLOCK_TILES * mr + panels * nr));
    match fit >= full || fit < full / 2 {
        true => full,
        false => fit / 16 * 16,
    }
}

/// Bytes of L2 that a block of A and the panels of B may fill between them (of 1 MiB).
const L2_SHARE: usize = 768 << 10;

/// A [`Product`] inside [`gemm_tn`]: C as a pointer tasks share, and the global index of
/// its first panel.
struct Part<'a> {
    m: usize,
    n: usize,
    b: &'a [f32],
    ldb: usize,
    c: OutPtr,
    ldc: usize,
    first: usize,
}

/// How the (row tile, panel) grid is cut: one task per thread at most, because every task packs
/// each k-block of its share of both operands, so more tasks pack the same rows of A or B more
/// times (with 8 tasks of row tiles at 2 threads, each packed all of B: 12% of RNN training
/// went to copying). Of the cuts into that many tasks, the one whose largest task costs least:
/// its multiply-adds, plus its floats packed at [`PACK_COST`] each.
fn grid(mr: usize, nr: usize, row_tiles: usize, panels: usize, work: usize) -> (usize, usize) {
    let tasks = (work / MIN_TASK_WORK).clamp(1, rayon::current_num_threads());
    (1..=tasks)
        .filter(|r| tasks.is_multiple_of(*r) && *r <= row_tiles && tasks / r <= panels)
        .map(|r| (r, tasks / r))
        .min_by_key(|&(r, c)| {
            let (rt, pt) = (row_tiles.div_ceil(r), panels.div_ceil(c));
            let packed = rt * mr + pt * nr;
            rt * pt * mr * nr + PACK_COST * packed
        })
        .unwrap_or((tasks.min(row_tiles), 1))
}

/// What copying one float into a packed buffer costs, in multiply-adds of the kernel (it reads
/// dG, X or H from memory: ~0.5 ns a float, ~90 multiply-adds a core at peak; counted low).
const PACK_COST: usize = 64;

/// `f::<W>(args)` for the packing width `w`: the copies of a run of `W` floats inline (a run
/// of a length unknown to the compiler is a `memmove` call, 11% of the time when it was).
macro_rules! by_width {
    ($w:expr, $f:ident $args:tt) => {
        match $w {
            2 => $f::<2> $args,
            6 => $f::<6> $args,
            12 => $f::<12> $args,
            16 => $f::<16> $args,
            32 => $f::<32> $args,
            w => unreachable!("no packing width {w}: every ISA's tile is listed"),
        }
    };
}
use by_width;

/// Steps ahead whose run of A [`pack_a`] prefetches.
const PACK_AHEAD: usize = 16;

/// Copies the rows `rows` of each of the `kl` first k steps of `a` (leading dimension `lda`)
/// into `tiles`, tile by tile: tile `t`'s step `q` is the `W` floats at `t * W * kc + q * W`.
/// Step by step, each step's rows read in one run (not tile by tile, `W` floats at a time).
/// With `sums` `(s, at)`, also adds each step's rows `rows.start + at..` (as many as `s` has)
/// to `s`, [`SUM_BLOCK`] steps at a time: each block of steps is added up on its own, then to
/// `s`, in order.
fn pack_a<const W: usize>(
    a: &[f32],
    lda: usize,
    kl: usize,
    rows: std::ops::Range<usize>,
    kc: usize,
    tiles: &mut [f32],
    mut sums: Option<(&mut [f32], usize)>,
) {
    let mut block = [0.0f32; SUM_ROOM];
    if let Some((s, _)) = &sums {
        assert!(
            s.len() <= SUM_ROOM,
            "pack_a: {} sums, room for {SUM_ROOM}",
            s.len()
        );
        debug_assert!(
            kc == kl || kc.is_multiple_of(SUM_BLOCK),
            "k-blocks of whole sum blocks"
        );
    }
    for q in 0..kl {
        // The hardware prefetchers do not follow runs a page or more apart: ask for the run
        // `PACK_AHEAD` steps on (2048x512x6400: 142 -> 145 GFLOP/s).
        let at = (q + PACK_AHEAD) * lda;
        if let Some(ahead) = a.get(at + rows.start..at + rows.end) {
            crate::prefetch::lines(ahead);
        }
        let run = &a[q * lda..][rows.clone()];
        for (t, src) in run.chunks(W).enumerate() {
            copy_run::<W>(&mut tiles[t * W * kc + q * W..], src);
        }
        if let Some((s, at)) = sums.as_mut() {
            for (acc, v) in block.iter_mut().zip(&run[*at..][..s.len()]) {
                *acc += v;
            }
            if (q + 1).is_multiple_of(SUM_BLOCK) || q + 1 == kl {
                for (acc, b) in s.iter_mut().zip(&mut block) {
                    *acc += std::mem::take(b);
                }
            }
        }
    }
}

/// Rows of A whose column sums [`pack_a`] adds up on their own before adding them to the bias
/// gradients: summed in one chain, the rounding error of 3,080 rows (RnnTanh T 70, B 44)
/// reached 1.2e-4 of a bias gradient; in blocks, the chain is 16 plus k / 16 additions long.
/// A divisor of every k-block ([`k_block`] returns multiples of 16, or the whole k), so the
/// blocks are the same rows of A whatever the k-blocks and the split across threads.
const SUM_BLOCK: usize = 16;

/// The most sums one [`pack_a`] takes: a block of row tiles, at the tallest tile (AVX-512's 12).
const SUM_ROOM: usize = BLOCK_TILES * 12;

/// Copies the columns `cols` of each of the `kl` first k steps of `b` (leading dimension
/// `ldb`) into panels of `W` columns, panel `p`'s step `q` at `p * kc * W + q * W`: each row of
/// B is read in one run (a panel at a time, it was `W` floats at a stride of `ldb`, a new page
/// every few k for the input of a layer).
fn pack_b<const W: usize>(
    b: &[f32],
    ldb: usize,
    kl: usize,
    cols: std::ops::Range<usize>,
    kc: usize,
    panels: &mut [f32],
) {
    for q in 0..kl {
        for (p, src) in b[q * ldb..][cols.clone()].chunks(W).enumerate() {
            copy_run::<W>(&mut panels[p * kc * W + q * W..], src);
        }
    }
}

/// `dst[..src.len()] = src`, inline for a whole run of `W`.
#[inline(always)]
fn copy_run<const W: usize>(dst: &mut [f32], src: &[f32]) {
    if src.len() == W {
        dst[..W].copy_from_slice(&src[..W]);
    } else {
        copy_short(dst, src);
    }
}

/// The rare partial run, out of line so that the compiler cannot merge it with the whole runs'
/// copy into one call of variable length.
#[cold]
#[inline(never)]
fn copy_short(dst: &mut [f32], src: &[f32]) {
    dst[..src.len()].copy_from_slice(src);
}

/// `C (+)= Aᵀ B` as a [`gemm_tn`] of one product (the tests' and timings' shorthand), its
/// packed copies in `scratch`.
#[cfg(test)]
#[allow(clippy::too_many_arguments)]
fn gemm_tn_one(
    isa: Isa,
    m: usize,
    n: usize,
    k: usize,
    a: &[f32],
    lda: usize,
    b: &[f32],
    ldb: usize,
    c: &mut [f32],
    ldc: usize,
    accumulate: bool,
    scratch: &mut TnScratch,
) {
    let product = Product {
        m,
        n,
        b,
        ldb,
        c,
        ldc,
    };
    gemm_tn(
        isa,
        k,
        a,
        lda,
        [Some(product), None],
        None,
        accumulate,
        scratch,
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::SplitMix64;

    #[test]
    fn matches_naive_on_edge_shapes_every_isa_and_split() {
        let mut rng = SplitMix64(11);
        for isa in Isa::available() {
            for &(m, n, k) in &[
                (1, 1, 1),
                (4, 33, 1),
                (7, 17, 5),
                (9, 64, 300),
                (64, 257, 67),
                (100, 31, 1000),
                // More row tiles than one block holds (BLOCK_TILES), a partial last panel.
                (12 * BLOCK_TILES + 17, 40, 200),
            ] {
                let (lda, ldb, ldc) = (m + 2, n + 3, n + 1);
                let mut a = vec![0.0f32; k * lda];
                let mut b = vec![0.0f32; k * ldb];
                rng.fill_uniform(&mut a, 1.0);
                rng.fill_uniform(&mut b, 1.0);
                let run = |threads: usize| {
                    let mut c = vec![9.0f32; m * ldc];
                    let pool = rayon::ThreadPoolBuilder::new()
                        .num_threads(threads)
                        .build()
                        .unwrap();
                    let fresh = &mut TnScratch::default();
                    pool.install(|| {
                        gemm_tn_one(isa, m, n, k, &a, lda, &b, ldb, &mut c, ldc, false, fresh)
                    });
                    c
                };
                let one = run(1);
                for i in 0..m {
                    for j in 0..n {
                        let want: f64 = (0..k)
                            .map(|p| a[p * lda + i] as f64 * b[p * ldb + j] as f64)
                            .sum();
                        let got = one[i * ldc + j] as f64;
                        assert!((got - want).abs() < 1e-4 * (1.0 + want.abs()), "{isa:?}");
                    }
                    assert_eq!(one[i * ldc + n], 9.0, "{isa:?}: padding column written");
                }
                for threads in [2, 3] {
                    assert_eq!(
                        run(threads),
                        one,
                        "{isa:?} {m}x{n}x{k} at {threads} threads"
                    );
                }
            }
        }
    }

    /// Two products of one A (the second over fewer of A's columns, as GRU's dW_hh over dG's
    /// first 2H) and A's column sums, with several k-blocks, the shorter ones of a task whose
    /// panels fill L2 (see `k_block`), written and then added to: each C as a one-product call
    /// computes it and the sums as a plain loop over blocks of rows in order, to the bit, at 1-3
    /// threads (with two row tasks at 2, each of several blocks of row tiles); near the f64
    /// sums; C2's padding column and row untouched.
    #[test]
    fn shared_a_matches_separate_calls_every_isa() {
        let mut rng = SplitMix64(21);
        for isa in Isa::available() {
            let nr = shape(isa).nr;
            for &(m, m2, n1, n2, k) in &[
                (1, 1, 1, 1, 1),
                (7, 5, 3 * nr + 5, 2 * nr + 3, 1100),
                (50, 33, 4 * nr, 3 * nr - 1, 1300),
                // Two row tasks at 2 threads, each of more row tiles than a block holds.
                (240, 170, 40, 10, 300),
            ] {
                let lda = m + 1;
                // C2 with a padding column and row, which must keep their value.
                let ldc2 = n2 + 1;
                let mut a = vec![0.0f32; k * lda];
                let (mut b1, mut b2) = (vec![0.0f32; k * n1], vec![0.0f32; k * (n2 + 2)]);
                rng.fill_uniform(&mut a, 1.0);
                rng.fill_uniform(&mut b1, 1.0);
                rng.fill_uniform(&mut b2, 1.0);
                // Written, then added to: (C1, C2, sums).
                let mut want = (
                    vec![3.0f32; m * n1],
                    vec![3.0f32; (m2 + 1) * ldc2],
                    vec![3.0f32; m],
                );
                let mut wants = Vec::new();
                for acc in [false, true] {
                    // Each call with a fresh scratch: the oracle shares nothing.
                    let (s1, s2) = (&mut TnScratch::default(), &mut TnScratch::default());
                    gemm_tn_one(isa, m, n1, k, &a, lda, &b1, n1, &mut want.0, n1, acc, s1);
                    let (b2, want2) = (&b2, &mut want.1);
                    gemm_tn_one(isa, m2, n2, k, &a, lda, b2, n2 + 2, want2, ldc2, acc, s2);
                    if !acc {
                        want.2.fill(0.0);
                    }
                    for rows in a[..k * lda].chunks(SUM_BLOCK * lda) {
                        let mut block = vec![0.0f32; m];
                        for row in rows.chunks(lda) {
                            for (s, v) in block.iter_mut().zip(row) {
                                *s += v;
                            }
                        }
                        for (s, v) in want.2.iter_mut().zip(&block) {
                            *s += v;
                        }
                    }
                    wants.push(want.clone());
                }
                // Written, then added to: the exact product, then twice it (both products).
                let near =
                    |got: f32, exact: f64| (got as f64 - exact).abs() < 2e-3 * (1.0 + exact.abs());
                for i in 0..m2 {
                    for j in 0..n2 {
                        let exact: f64 = (0..k)
                            .map(|p| a[p * lda + i] as f64 * b2[p * (n2 + 2) + j] as f64)
                            .sum();
                        assert!(near(wants[0].1[i * ldc2 + j], exact), "{isa:?}");
                        assert!(near(wants[1].1[i * ldc2 + j], 2.0 * exact), "{isa:?}");
                    }
                    assert_eq!(wants[1].1[i * ldc2 + n2], 3.0, "{isa:?}: padding written");
                }
                for i in 0..m {
                    for j in 0..n1 {
                        let exact: f64 = (0..k)
                            .map(|p| a[p * lda + i] as f64 * b1[p * n1 + j] as f64)
                            .sum();
                        assert!(near(wants[0].0[i * n1 + j], exact), "{isa:?}");
                        assert!(near(wants[1].0[i * n1 + j], 2.0 * exact), "{isa:?}");
                    }
                }
                assert!(wants[1].1[m2 * ldc2..].iter().all(|&v| v == 3.0), "{isa:?}");
                // One scratch for every call, poisoned after each: what a call leaves in it
                // must reach no output of the next (partial tiles and panels).
                let mut scratch = TnScratch::default();
                for threads in [1, 2, 3] {
                    let pool = rayon::ThreadPoolBuilder::new()
                        .num_threads(threads)
                        .build()
                        .unwrap();
                    let mut got = (
                        vec![3.0f32; m * n1],
                        vec![3.0f32; (m2 + 1) * ldc2],
                        vec![3.0f32; m],
                    );
                    for (acc, want) in [false, true].into_iter().zip(&wants) {
                        let (c1, c2, sums) = (&mut got.0, &mut got.1, &mut got.2);
                        pool.install(|| {
                            let p1 = Product {
                                m,
                                n: n1,
                                b: &b1,
                                ldb: n1,
                                c: c1,
                                ldc: n1,
                            };
                            let p2 = Product {
                                m: m2,
                                n: n2,
                                b: &b2,
                                ldb: n2 + 2,
                                c: c2,
                                ldc: ldc2,
                            };
                            let products = [Some(p1), Some(p2)];
                            gemm_tn(isa, k, &a, lda, products, Some(sums), acc, &mut scratch)
                        });
                        let held = scratch.floats();
                        scratch.reserve(held).fill(f32::NAN);
                        assert_eq!(
                            &got, want,
                            "{isa:?} {m},{m2},{n1},{n2},{k} x{threads}, accumulate {acc}"
                        );
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod timing {
    use super::*;

    /// `cargo test --release -p recur-kernels --lib gemm_tn::timing -- --ignored --nocapture`
    /// (RECUR_TIMING_ISA=avx512, say, times one ISA only). Shapes of the weight gradients:
    /// dW_ih of LSTM 100,64,512 and 50,64,1024, GRU 100,16,512, LSTM 400,8,128, and LSTM
    /// 100,1,512's (k = 100: 110 GFLOP/s, 95% of the peak, on Zen 4 on 2026-12-04).
    #[test]
    #[ignore = "a measurement, not a test"]
    fn gflops() {
        for isa in crate::timing::isas() {
            for &(m, n, k) in &[
                (2048, 512, 6400),
                (4096, 1024, 3200),
                (1536, 512, 1600),
                (512, 128, 3200),
                (2048, 512, 100),
            ] {
                if !crate::timing::wants(m, n, k) {
                    continue;
                }
                // Workspace buffers, as the backward's dG and states are.
                let (mut a, mut b) = (Buf::zeros(k * m), Buf::zeros(k * n));
                a.fill(0.5);
                b.fill(0.25);
                let mut c = vec![0.0f32; m * n];
                // Kept from call to call, as the workspace keeps the backward's.
                let mut scratch = TnScratch::default();
                let reps = (4e9 / (2.0 * (m * n * k) as f64)).max(1.0) as usize;
                let s = crate::timing::median_secs(reps, || {
                    gemm_tn_one(isa, m, n, k, &a, m, &b, n, &mut c, n, false, &mut scratch)
                });
                println!(
                    "{isa:?} gemm_tn {m}x{n}x{k}: {:.1} GFLOP/s",
                    2.0 * (m * n * k) as f64 / s / 1e9
                );
            }
        }
    }

    /// The k-major tile alone, its operands in L1 (k <= 192) or L2, one panel or eight a turn:
    /// the ceiling `gflops` reads against (RECUR_TIMING_ISA as there).
    #[test]
    #[ignore = "a measurement, not a test"]
    fn tile_alone() {
        for isa in crate::timing::isas() {
            let (mr, nr) = (shape(isa).mr, shape(isa).nr);
            for &k in &[64usize, 192, 768, 1536] {
                let (mut a, mut b) = (Buf::zeros(k * mr), Buf::zeros(8 * k * nr));
                a.fill(0.5);
                b.fill(0.25);
                let mut c = vec![0.0f32; mr * nr];
                for panels in [1usize, 8] {
                    let reps = (2e8 / (2.0 * (mr * nr * k * panels) as f64)).max(1.0) as usize;
                    let s = crate::timing::median_secs(reps, || {
                        for p in 0..panels {
                            // SAFETY: `a` holds k steps of mr floats, `b` 8 panels of k steps
                            // of nr, `c` the mr x nr tile; `isa` is this CPU's (`isas`).
                            unsafe {
                                microkernel::tile_kmajor(
                                    isa,
                                    mr,
                                    k,
                                    a.as_ptr(),
                                    mr,
                                    b.as_ptr().add(p * k * nr),
                                    nr,
                                    c.as_mut_ptr(),
                                    nr,
                                    nr,
                                    true,
                                    std::ptr::null(),
                                )
                            };
                        }
                    });
                    println!(
                        "{isa:?} tile_kmajor {mr}x{nr}x{k}, {panels} panel(s): {:.1} GFLOP/s",
                        2.0 * (mr * nr * k * panels) as f64 / s / 1e9
                    );
                }
            }
        }
    }
}
