//! Dense f32 GEMM on strided views, through matrixmultiply, split across the rayon pool.
//!
//! Work is split along the rows of C only: every element of C is the same dot product in the
//! same order whichever thread computes it, so results are bit-identical at any thread count.
//! (matrixmultiply packs both operands on every call; issue #4 replaces this with packed
//! weights and our own micro-kernels.)

use rayon::prelude::*;

/// A read-only matrix view: element (i, j) is `data[i * rs + j * cs]`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct MatRef<'a> {
    data: &'a [f32],
    rs: usize,
    cs: usize,
}

impl<'a> MatRef<'a> {
    /// A row-major matrix with leading dimension `ld`.
    pub fn rows(data: &'a [f32], ld: usize) -> Self {
        MatRef {
            data,
            rs: ld,
            cs: 1,
        }
    }

    /// The transposed view (no copy).
    pub fn t(self) -> Self {
        MatRef {
            data: self.data,
            rs: self.cs,
            cs: self.rs,
        }
    }

    /// The view starting at row `i`.
    fn skip_rows(self, i: usize) -> Self {
        MatRef {
            data: &self.data[i * self.rs..],
            ..self
        }
    }

    /// Whether every element of an `m x n` view lies inside `data`.
    fn covers(&self, m: usize, n: usize) -> bool {
        m == 0 || n == 0 || (m - 1) * self.rs + (n - 1) * self.cs < self.data.len()
    }
}

/// `C = beta * C + A B` for `A: m x k`, `B: k x n`, `C: m x n` row-major with leading
/// dimension `ldc`, on the calling thread. `beta == 0` ignores C's previous contents.
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm(
    m: usize,
    n: usize,
    k: usize,
    a: MatRef<'_>,
    b: MatRef<'_>,
    beta: f32,
    c: &mut [f32],
    ldc: usize,
) {
    if m == 0 || n == 0 {
        return;
    }
    assert!(
        a.covers(m, k) && b.covers(k, n),
        "gemm: operand view too short"
    );
    assert!(
        ldc >= n && (m - 1) * ldc + n <= c.len(),
        "gemm: output too short"
    );
    // SAFETY: the asserts above show that every element matrixmultiply reads (A, B) or writes
    // (C) lies inside the borrowed slices; C is borrowed mutably, so nothing aliases it.
    unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            1.0,
            a.data.as_ptr(),
            a.rs as isize,
            a.cs as isize,
            b.data.as_ptr(),
            b.rs as isize,
            b.cs as isize,
            beta,
            c.as_mut_ptr(),
            ldc as isize,
            1,
        );
    }
}

/// [`gemm`] with the rows of C shared across the current rayon pool.
///
/// `min_rows` keeps chunks big enough to be worth a task.
#[allow(clippy::too_many_arguments)]
pub(crate) fn par_gemm(
    m: usize,
    n: usize,
    k: usize,
    a: MatRef<'_>,
    b: MatRef<'_>,
    beta: f32,
    c: &mut [f32],
    ldc: usize,
    min_rows: usize,
) {
    let threads = rayon::current_num_threads();
    let rows = m.div_ceil(threads).max(min_rows).max(1);
    if rows >= m {
        return gemm(m, n, k, a, b, beta, c, ldc);
    }
    let c = &mut c[..(m - 1) * ldc + n];
    // The last chunk is shorter than `rows * ldc` by `ldc - n`; chunks_mut handles that.
    c.par_chunks_mut(rows * ldc)
        .enumerate()
        .for_each(|(i, c_chunk)| {
            let r0 = i * rows;
            let mr = rows.min(m - r0);
            gemm(mr, n, k, a.skip_rows(r0), b, beta, c_chunk, ldc);
        });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(m: usize, n: usize, k: usize, a: &[f32], b: &[f32]) -> Vec<f32> {
        let mut c = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                c[i * n + j] = (0..k).map(|p| a[i * k + p] * b[p * n + j]).sum();
            }
        }
        c
    }

    #[test]
    fn matches_naive_on_edge_shapes_and_any_split() {
        let mut rng = crate::params::SplitMix64(7);
        for &(m, n, k) in &[(1, 1, 1), (3, 17, 5), (33, 16, 7), (64, 63, 70)] {
            let mut a = vec![0.0f32; m * k];
            let mut b = vec![0.0f32; k * n];
            rng.fill_uniform(&mut a, 1.0);
            rng.fill_uniform(&mut b, 1.0);
            let want = naive(m, n, k, &a, &b);
            let mut one = vec![0.0; m * n];
            gemm(
                m,
                n,
                k,
                MatRef::rows(&a, k),
                MatRef::rows(&b, n),
                0.0,
                &mut one,
                n,
            );
            for (x, y) in one.iter().zip(&want) {
                assert!((x - y).abs() < 1e-4, "{x} vs {y}");
            }
            let mut split = vec![0.0; m * n];
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(3)
                .build()
                .unwrap();
            pool.install(|| {
                par_gemm(
                    m,
                    n,
                    k,
                    MatRef::rows(&a, k),
                    MatRef::rows(&b, n),
                    0.0,
                    &mut split,
                    n,
                    1,
                )
            });
            assert_eq!(one, split, "split changes bits for {m}x{n}x{k}");
        }
    }
}
