//! The in-place map over a slice and the fused LSTM and GRU forward cells, written once over
//! [`Lanes`]: each SIMD path brings its vector type, its masked loads and stores and its
//! sigmoid and tanh; the bodies are the same operations in the same order on every path, as
//! in the portable cells (`cell/lstm.rs`, `cell/gru.rs`), so the same bits.

use crate::cell::FwdUnits;

/// One ISA's vector of f32 lanes. A value of an implementing type is a token: it is made only
/// where its ISA is available (its constructor is `unsafe`), which is what lets its methods
/// run that ISA's intrinsics. They are `#[inline(always)]`, so the generic bodies below compile
/// into the `#[target_feature]` function of the ISA that called them.
pub(super) trait Lanes: Copy {
    type V: Copy;
    type M: Copy;
    /// Lanes per vector.
    const N: usize;
    /// The mask of the first `min(left, N)` lanes.
    fn first(self, left: usize) -> Self::M;
    /// # Safety
    /// The `N` floats from `p` must be readable.
    unsafe fn load_all(self, p: *const f32) -> Self::V;
    /// # Safety
    /// The `N` floats from `p` must be writable.
    unsafe fn store_all(self, p: *mut f32, v: Self::V);
    /// The lanes of `m` from `p`, zero in the others.
    ///
    /// # Safety
    /// The floats of the lanes `m` selects from `p` must be readable; no other is read.
    unsafe fn load(self, m: Self::M, p: *const f32) -> Self::V;
    /// # Safety
    /// The floats of the lanes `m` selects from `p` must be writable; no other is written.
    unsafe fn store(self, m: Self::M, p: *mut f32, v: Self::V);
    fn add(self, a: Self::V, b: Self::V) -> Self::V;
    fn sub(self, a: Self::V, b: Self::V) -> Self::V;
    fn mul(self, a: Self::V, b: Self::V) -> Self::V;
    fn splat(self, x: f32) -> Self::V;
    fn sigmoid(self, x: Self::V) -> Self::V;
    fn tanh(self, x: Self::V) -> Self::V;
}

/// `v[i] = f(v[i])`, `N` at a time, the tail under a mask.
#[inline(always)]
pub(super) fn map<L: Lanes>(l: L, v: &mut [f32], f: impl Fn(L::V) -> L::V) {
    let mut chunks = v.chunks_exact_mut(L::N);
    for c in &mut chunks {
        // SAFETY: `c` holds exactly N floats.
        unsafe { l.store_all(c.as_mut_ptr(), f(l.load_all(c.as_ptr()))) };
    }
    let tail = chunks.into_remainder();
    if !tail.is_empty() {
        let m = l.first(tail.len());
        // SAFETY: the mask selects the tail's own `tail.len()` < N floats.
        unsafe { l.store(m, tail.as_mut_ptr(), f(l.load(m, tail.as_ptr()))) };
    }
}

/// One LSTM step's elementwise forward for `u`'s units (see [`super::lstm_forward`]). Every
/// slice of `u` must hold `u.h.len()` floats (asserted by the caller).
#[inline(always)]
pub(super) fn lstm_forward<L: Lanes>(l: L, u: FwdUnits<'_>) {
    let FwdUnits {
        gates,
        gh,
        b_hh: b,
        c_prev,
        h,
        c,
        ..
    } = u;
    let n = h.len();
    let mut j = 0;
    while j < n {
        let m = l.first(n - j);
        // SAFETY: every slice holds n floats; the mask keeps each access to units
        // j..min(j + N, n).
        unsafe {
            let ld = |s: &[f32]| l.load(m, s.as_ptr().add(j));
            // pre-activation = x W_ihᵀ + b_ih + (h W_hhᵀ + b_hh), summed as the portable path.
            let pre: [L::V; 4] =
                std::array::from_fn(|k| l.add(ld(&gates[k][..]), l.add(ld(gh[k]), ld(b[k]))));
            let (i, f, g, o) = (
                l.sigmoid(pre[0]),
                l.sigmoid(pre[1]),
                l.tanh(pre[2]),
                l.sigmoid(pre[3]),
            );
            let cc = l.add(l.mul(f, ld(c_prev)), l.mul(i, g));
            let hh = l.mul(l.tanh(cc), o);
            for (k, v) in [i, f, g, o].into_iter().enumerate() {
                l.store(m, gates[k].as_mut_ptr().add(j), v);
            }
            l.store(m, c.as_mut_ptr().add(j), cc);
            l.store(m, h.as_mut_ptr().add(j), hh);
        }
        j += L::N;
    }
}

/// One GRU step's elementwise forward for `u`'s units (see [`super::gru_forward`]). Every
/// slice of `u` it reads must hold `u.h.len()` floats (asserted by the caller).
#[inline(always)]
pub(super) fn gru_forward<L: Lanes>(l: L, u: FwdUnits<'_>) {
    let FwdUnits {
        gates: [r_out, z_out, n_out, _],
        gh,
        b_hh: b,
        h_prev,
        h,
        hn,
        ..
    } = u;
    let n = h.len();
    let mut j = 0;
    while j < n {
        let m = l.first(n - j);
        // SAFETY: every slice holds n floats; the mask keeps each access to units
        // j..min(j + N, n).
        unsafe {
            let ld = |s: &[f32]| l.load(m, s.as_ptr().add(j));
            let r = l.sigmoid(l.add(ld(r_out), l.add(ld(gh[0]), ld(b[0]))));
            let z = l.sigmoid(l.add(ld(z_out), l.add(ld(gh[1]), ld(b[1]))));
            let v = l.add(ld(gh[2]), ld(b[2]));
            let nn = l.tanh(l.add(ld(n_out), l.mul(r, v)));
            let hh = l.add(l.mul(l.sub(l.splat(1.0), z), nn), l.mul(z, ld(h_prev)));
            l.store(m, r_out.as_mut_ptr().add(j), r);
            l.store(m, z_out.as_mut_ptr().add(j), z);
            l.store(m, n_out.as_mut_ptr().add(j), nn);
            l.store(m, hn.as_mut_ptr().add(j), v);
            l.store(m, h.as_mut_ptr().add(j), hh);
        }
        j += L::N;
    }
}
