//! `C = Aᵀ B` with both operands stored k-major and read in place: the weight gradients
//! `dW = dGᵀ X`, reduced over all T*B rows at once.
//!
//! For each k the micro-kernel reads `MR` consecutive floats of A (a row of dG) and `NR` of B.
//! A is read in place; each k-block of a panel of B is first copied into a contiguous buffer on
//! the stack (leading dimensions such as 512 floats would map its rows onto a few L1 sets), and
//! stays in L1 while the row tiles of a block of A pass over it. Each element of C is one FMA
//! chain over k in order, whatever the split across threads.

use crate::error::holds;
use crate::isa::Isa;
use crate::microkernel::{self, shape};
use crate::packed::{run_tasks, split, task_grid, OutPtr};

/// Floats of a k-block of one panel of B (24 KiB).
const PANEL_BLOCK: usize = 6 << 10;
/// Row tiles of A per block.
const BLOCK_TILES: usize = 64;

/// `C = Aᵀ B`: A stored `(k, m)` with leading dimension `lda`, B `(k, n)` with `ldb`, C `(m, n)`
/// with `ldc`, overwritten. `isa` must be available on this CPU.
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm_tn(
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
) {
    if m == 0 || n == 0 {
        return;
    }
    // Checked arithmetic: these asserts are what the unsafe code below relies on.
    assert!(
        ldc >= n && holds(c.len(), m, ldc, n),
        "gemm_tn: C too short"
    );
    if k == 0 {
        for row in c.chunks_mut(ldc).take(m) {
            row[..n].fill(0.0);
        }
        return;
    }
    assert!(
        lda >= m && holds(a.len(), k, lda, m),
        "gemm_tn: A too short"
    );
    assert!(
        ldb >= n && holds(b.len(), k, ldb, n),
        "gemm_tn: B too short"
    );
    let sh = shape(isa);
    let (mr, nr) = (sh.mr, sh.nr);
    let (row_tiles, panels) = (m.div_ceil(mr), n.div_ceil(nr));
    let (row_tasks, panel_tasks) = task_grid(row_tiles, panels, m * n * k);
    let kc = (PANEL_BLOCK / nr).max(1);
    let out = OutPtr(c.as_mut_ptr());
    let task = |t: usize| {
        let (r0, r1) = split(row_tiles, row_tasks, t / panel_tasks);
        let (p0, p1) = split(panels, panel_tasks, t % panel_tasks);
        let mut panel = [0.0f32; PANEL_BLOCK];
        for rb in (r0..r1).step_by(BLOCK_TILES) {
            for k0 in (0..k).step_by(kc) {
                let kl = kc.min(k - k0);
                for p in p0..p1 {
                    let cols = nr.min(n - p * nr);
                    for (dst, q) in panel.chunks_exact_mut(nr).zip(k0..k0 + kl) {
                        dst[..cols].copy_from_slice(&b[q * ldb + p * nr..q * ldb + p * nr + cols]);
                    }
                    for rt in rb..(rb + BLOCK_TILES).min(r1) {
                        let (i0, rows) = (rt * mr, mr.min(m - rt * mr));
                        // SAFETY: the asserts above bound every read of A (k steps, columns
                        // i0..i0+rows < m <= lda) and every access to C (rows i0..i0+rows,
                        // columns p*nr..p*nr+cols); `panel` holds kl steps of nr floats; tasks
                        // cover disjoint (row tile, panel) pairs; `isa` is available (caller).
                        unsafe {
                            microkernel::tile_kmajor(
                                isa,
                                rows,
                                kl,
                                a.as_ptr().add(k0 * lda + i0),
                                lda,
                                panel.as_ptr(),
                                nr,
                                out.at(i0 * ldc + p * nr),
                                ldc,
                                cols,
                                k0 > 0,
                            )
                        };
                    }
                }
            }
        }
    };
    run_tasks(row_tasks * panel_tasks, task);
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
                    pool.install(|| gemm_tn(isa, m, n, k, &a, lda, &b, ldb, &mut c, ldc));
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
}
