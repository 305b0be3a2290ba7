//! Portable micro-kernel: up to 4 rows by 16 columns in plain Rust (the compiler vectorizes the
//! column loop); a multiply then an add, since `mul_add` is a slow call on CPUs without FMA.

const NR: usize = 16;
const MR: usize = 4;

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
    let rows = rows.min(MR);
    // SAFETY: the caller guarantees these ranges (see `super::tile`).
    let (bias, b) = unsafe {
        (
            std::slice::from_raw_parts(bias, NR),
            std::slice::from_raw_parts(b, k * NR),
        )
    };
    let mut acc = [[0.0f32; NR]; MR];
    for (i, row) in acc.iter_mut().enumerate().take(rows) {
        if acc_in {
            // SAFETY: the caller owns `cols` floats of row i of C.
            unsafe { std::ptr::copy_nonoverlapping(c.add(i * ldc), row.as_mut_ptr(), cols) };
        } else {
            row.copy_from_slice(bias);
        }
    }
    for (p, w) in b.chunks_exact(NR).enumerate() {
        for (i, row) in acc.iter_mut().enumerate().take(rows) {
            // SAFETY: row i of A has k floats.
            let x = unsafe { *a.add(i * lda + p) };
            for (acc, w) in row.iter_mut().zip(w) {
                *acc += x * w;
            }
        }
    }
    for (i, row) in acc.iter().enumerate().take(rows) {
        // SAFETY: the caller owns `cols` floats of row i of C.
        unsafe { std::ptr::copy_nonoverlapping(row.as_ptr(), c.add(i * ldc), cols) };
    }
}

/// The "k-major" tile for `C (+)= Aᵀ B` (see the AVX-512 kernel).
///
/// # Safety
/// See [`super::tile_kmajor`].
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn tile_kmajor(
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
) {
    let rows = rows.min(MR);
    let mut acc = [[0.0f32; NR]; MR];
    if acc_in {
        for (i, row) in acc.iter_mut().enumerate().take(rows) {
            // SAFETY: the caller owns `cols` floats of row i of C.
            unsafe { std::ptr::copy_nonoverlapping(c.add(i * ldc), row.as_mut_ptr(), cols) };
        }
    }
    for p in 0..k {
        // SAFETY: step p of A holds `rows` floats and of B `cols` floats.
        let (ap, bp) = unsafe {
            (
                std::slice::from_raw_parts(a.add(p * lda), rows),
                std::slice::from_raw_parts(b.add(p * ldb), cols),
            )
        };
        for (row, &x) in acc.iter_mut().zip(ap) {
            for (acc, w) in row.iter_mut().zip(bp) {
                *acc += x * w;
            }
        }
    }
    for (i, row) in acc.iter().enumerate().take(rows) {
        // SAFETY: the caller owns `cols` floats of row i of C.
        unsafe { std::ptr::copy_nonoverlapping(row.as_ptr(), c.add(i * ldc), cols) };
    }
}
