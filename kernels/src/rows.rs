//! Splitting per-row buffers across the rayon pool, safely.
//!
//! A time step touches several buffers with one row per batch entry. `par_rows` halves all of
//! them at the same row with `split_at_mut` until chunks reach the grain, so every task owns
//! its rows outright: no unsafe, no allocation. Buffers a cell does not use are passed empty
//! with width 0.

/// Calls `f(first_row, rows, bufs)` on disjoint row ranges of `bufs`, in parallel.
/// Buffer `i` holds `widths[i]` values per row.
pub(crate) fn par_rows<const N: usize, F>(
    bufs: [&mut [f32]; N],
    widths: [usize; N],
    rows: usize,
    grain: usize,
    f: &F,
) where
    F: Fn(usize, usize, [&mut [f32]; N]) + Sync,
{
    split(bufs, widths, 0, rows, grain.max(1), f)
}

fn split<const N: usize, F>(
    bufs: [&mut [f32]; N],
    widths: [usize; N],
    start: usize,
    rows: usize,
    grain: usize,
    f: &F,
) where
    F: Fn(usize, usize, [&mut [f32]; N]) + Sync,
{
    if rows <= grain {
        return f(start, rows, bufs);
    }
    let mid = rows / 2;
    let mut lo = bufs;
    let mut hi: [&mut [f32]; N] = std::array::from_fn(|_| Default::default());
    for i in 0..N {
        let buf = std::mem::take(&mut lo[i]);
        let (a, b) = buf.split_at_mut((mid * widths[i]).min(buf.len()));
        lo[i] = a;
        hi[i] = b;
    }
    rayon::join(
        || split(lo, widths, start, mid, grain, f),
        || split(hi, widths, start + mid, rows - mid, grain, f),
    );
}

/// The grain that gives each thread of the current pool about one chunk of `rows`.
pub(crate) fn grain_for(rows: usize) -> usize {
    rows.div_ceil(rayon::current_num_threads()).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_row_visited_once_with_its_own_slices() {
        let (rows, wa, wb) = (37, 3, 5);
        let mut a = vec![0.0f32; rows * wa];
        let mut b = vec![0.0f32; rows * wb];
        let mut empty: [f32; 0] = [];
        par_rows(
            [&mut a, &mut b, &mut empty],
            [wa, wb, 0],
            rows,
            4,
            &|start, n, [a, b, e]: [&mut [f32]; 3]| {
                assert_eq!((a.len(), b.len(), e.len()), (n * wa, n * wb, 0));
                for r in 0..n {
                    a[r * wa..(r + 1) * wa]
                        .iter_mut()
                        .for_each(|v| *v += (start + r) as f32);
                    b[r * wb] += 1.0;
                }
            },
        );
        for r in 0..rows {
            assert!(a[r * wa..(r + 1) * wa].iter().all(|&v| v == r as f32));
            assert_eq!(b[r * wb], 1.0);
        }
    }
}
