//! The in-place map over a slice and the fused LSTM and GRU forward cells, written once over
//! [`Lanes`]: each path (AVX-512, AVX2, and the portable `wide` one) brings its vector type,
//! its masked loads and stores and its sigmoid and tanh; the bodies are the same operations in
//! the same order on every path, which differ only in how their activations round.

use crate::cell::{BwdUnits, FwdUnits};

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
    fn max(self, a: Self::V, b: Self::V) -> Self::V;
    /// exp(x), x clamped to [-87, 87] (the path's exp, as its sigmoid uses).
    fn exp(self, x: Self::V) -> Self::V;
    /// The sum of the lanes, in a fixed order.
    fn sum(self, v: Self::V) -> f32;
    /// The largest lane.
    fn hmax(self, v: Self::V) -> f32;
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

/// `row[i] = exp(scale * row[i] - m) / sum_j exp(scale * row[j] - m)`, with m the largest
/// `scale * row[j]` (`scale > 0`): a row of attention scores made its softmax, scaled as
/// PyTorch's `scaled_dot_product_attention` scales them (before the max is taken). The sum
/// runs in a fixed order (lanes, then the tail), so the bits depend on the path alone.
#[inline(always)]
pub(super) fn softmax<L: Lanes>(l: L, row: &mut [f32], scale: f32) {
    let full = row.len() / L::N * L::N;
    let (body, tail) = row.split_at_mut(full);
    let mut mv = l.splat(f32::NEG_INFINITY);
    for c in body.chunks_exact(L::N) {
        // SAFETY: `c` holds exactly N floats.
        mv = l.max(mv, unsafe { l.load_all(c.as_ptr()) });
    }
    let m = tail.iter().fold(l.hmax(mv), |m, &x| m.max(x));
    let (s, shift) = (l.splat(scale), l.splat(scale * m));
    let mut acc = l.splat(0.0);
    for c in body.chunks_exact_mut(L::N) {
        // SAFETY: `c` holds exactly N floats.
        unsafe {
            let e = l.exp(l.sub(l.mul(l.load_all(c.as_ptr()), s), shift));
            l.store_all(c.as_mut_ptr(), e);
            acc = l.add(acc, e);
        }
    }
    if !tail.is_empty() {
        let mask = l.first(tail.len());
        // SAFETY: the mask selects the tail's own `tail.len()` < N floats.
        unsafe {
            let e = l.exp(l.sub(l.mul(l.load(mask, tail.as_ptr()), s), shift));
            l.store(mask, tail.as_mut_ptr(), e);
        }
    }
    // At least 1: the largest score's term is exp(0).
    let sum = tail.iter().fold(l.sum(acc), |a, &e| a + e);
    let inv = l.splat(1.0 / sum);
    map(l, row, |v| l.mul(v, inv));
}

/// Units `j..min(j + N, n)` of a row: what a cell loads and stores of each of its slices.
#[derive(Clone, Copy)]
struct Block<L: Lanes> {
    l: L,
    j: usize,
    /// `N` units from `j`, loaded and stored whole; else the lanes of `m`.
    full: bool,
    m: L::M,
}

impl<L: Lanes> Block<L> {
    /// The block of units `j..min(j + N, n)` of a row of `n` (`j < n`): whole, or masked.
    #[inline(always)]
    fn at(l: L, j: usize, n: usize) -> Self {
        let left = n - j;
        Block {
            l,
            j,
            full: left >= L::N,
            m: l.first(left),
        }
    }

    /// # Safety
    /// `s` must hold the row's `n` floats.
    #[inline(always)]
    unsafe fn ld(self, s: &[f32]) -> L::V {
        // SAFETY: whole or under the mask, the load keeps to units j..min(j + N, n) of `s`.
        unsafe {
            let p = s.as_ptr().add(self.j);
            match self.full {
                true => self.l.load_all(p),
                false => self.l.load(self.m, p),
            }
        }
    }

    /// # Safety
    /// `s` must hold the row's `n` floats.
    #[inline(always)]
    unsafe fn st(self, s: &mut [f32], v: L::V) {
        // SAFETY: whole or under the mask, the store keeps to units j..min(j + N, n) of `s`.
        unsafe {
            let p = s.as_mut_ptr().add(self.j);
            match self.full {
                true => self.l.store_all(p, v),
                false => self.l.store(self.m, p, v),
            }
        }
    }
}

impl<L: Lanes> Block<L> {
    /// A gate's pre-activation: `x W_ihᵀ + b_ih + (h W_hhᵀ + b_hh)`, summed as the portable
    /// path sums it. A function, not a closure in the cell: closures are not always inlined,
    /// and out of line one calls each intrinsic as a function (18% of LSTM 400,8,128).
    ///
    /// # Safety
    /// As [`Block::ld`], for each slice.
    #[inline(always)]
    unsafe fn pre(self, gate: &[f32], gh: &[f32], b: &[f32]) -> L::V {
        let l = self.l;
        // SAFETY: forwarded to the caller.
        unsafe { l.add(self.ld(gate), l.add(self.ld(gh), self.ld(b))) }
    }
}

/// The blocks of `N` units of a row of `n`, the last one, if partial, under a mask. An
/// iterator rather than a function taking the cell's body as a closure: a closure is compiled
/// as a function of its own where the compiler does not inline it, and one defined here has
/// no `#[target_feature]`, so out of line it calls every intrinsic as a function.
struct Blocks<L: Lanes> {
    l: L,
    j: usize,
    n: usize,
}

impl<L: Lanes> Blocks<L> {
    #[inline(always)]
    fn new(l: L, n: usize) -> Self {
        Blocks { l, j: 0, n }
    }
}

/// The whole blocks of `N` units of a row of `n` (none under a mask), then its partial
/// last block, if any. A cell whose two passes hand values through memory runs the partial
/// block in one pass, its values kept in registers: a load from a masked store is not
/// forwarded the stored value on every CPU (it waits for the store to retire), and the whole
/// blocks' loop knows at compile time that no mask is needed. ab.sh on Zen 4, 1 thread,
/// inference, 14 pairs: LSTM 200,4,50 0.983x the time, LSTM 100,16,100 0.985x; 8 pairs: GRU
/// 100,8,64,100 0.974x, LSTM 400,8,128 (no partial block) 0.999x.
#[inline(always)]
fn split_blocks<L: Lanes>(
    l: L,
    n: usize,
) -> (impl Iterator<Item = Block<L>> + Clone, Option<Block<L>>) {
    let whole = n / L::N * L::N;
    let all = l.first(L::N);
    let blocks = (0..whole).step_by(L::N).map(move |j| Block {
        l,
        j,
        full: true,
        m: all,
    });
    let tail = (whole < n).then(|| Block::at(l, whole, n));
    (blocks, tail)
}

impl<L: Lanes> Iterator for Blocks<L> {
    type Item = Block<L>;
    #[inline(always)]
    fn next(&mut self) -> Option<Block<L>> {
        let j = self.j;
        if j >= self.n {
            return None;
        }
        self.j += L::N;
        Some(Block::at(self.l, j, self.n))
    }
}

/// One LSTM step's elementwise forward for `u`'s units (see [`super::lstm_forward`]). Every
/// slice of `u` must hold `u.h.len()` floats (asserted by the caller).
#[inline(always)]
pub(super) fn lstm_forward<L: Lanes>(l: L, u: FwdUnits<'_>) {
    let FwdUnits {
        mut gates,
        gh,
        b_hh: b,
        c_prev,
        h,
        c,
        y,
        ..
    } = u;
    let out = !y.is_empty();
    // Two passes over the row's whole blocks: the gates' activations (four independent chains
    // a block), then the state (c, tanh c, h), reading them back from L1. In one pass each
    // block's chain of sigmoid -> c -> tanh c -> h (~110 cycles) was longer than the
    // out-of-order window could overlap with the next block's. The partial block, if any, in
    // one pass (see `split_blocks`).
    let (blocks, tail) = split_blocks(l, h.len());
    for k in blocks.clone() {
        // SAFETY: every slice holds the row's units (the caller), and a block keeps to its own.
        unsafe { lstm_activate(k, &mut gates, gh, b) };
    }
    for k in blocks {
        // SAFETY: as above.
        let act = unsafe {
            [
                k.ld(gates[0]),
                k.ld(gates[1]),
                k.ld(gates[2]),
                k.ld(gates[3]),
            ]
        };
        // SAFETY: as above.
        unsafe { lstm_update(k, act, c_prev, c, h, y, out) };
    }
    if let Some(k) = tail {
        // SAFETY: as above.
        let act = unsafe { lstm_activate(k, &mut gates, gh, b) };
        // SAFETY: as above.
        unsafe { lstm_update(k, act, c_prev, c, h, y, out) };
    }
}

/// The LSTM's gate activations of block `k`, written over the pre-activations and returned.
/// A function, not a closure, for the reason [`Block::pre`] gives.
///
/// # Safety
/// Every slice must hold the row's units.
#[inline(always)]
unsafe fn lstm_activate<L: Lanes>(
    k: Block<L>,
    gates: &mut [&mut [f32]; 4],
    gh: [&[f32]; 4],
    b: [&[f32]; 4],
) -> [L::V; 4] {
    let l = k.l;
    // SAFETY: forwarded to the caller.
    unsafe {
        // Each gate's pre-activation, summed as the portable path sums it.
        let pre = [
            k.pre(gates[0], gh[0], b[0]),
            k.pre(gates[1], gh[1], b[1]),
            k.pre(gates[2], gh[2], b[2]),
            k.pre(gates[3], gh[3], b[3]),
        ];
        let act = [
            l.sigmoid(pre[0]),
            l.sigmoid(pre[1]),
            l.tanh(pre[2]),
            l.sigmoid(pre[3]),
        ];
        for (gate, &v) in gates.iter_mut().zip(&act) {
            k.st(gate, v);
        }
        act
    }
}

/// The LSTM's new state of block `k` from its gate activations `[i, f, g, o]`.
///
/// # Safety
/// Every slice must hold the row's units.
#[inline(always)]
unsafe fn lstm_update<L: Lanes>(
    k: Block<L>,
    [i, f, g, o]: [L::V; 4],
    c_prev: &[f32],
    c: &mut [f32],
    h: &mut [f32],
    y: &mut [f32],
    out: bool,
) {
    let l = k.l;
    // SAFETY: forwarded to the caller.
    unsafe {
        let cc = l.add(l.mul(f, k.ld(c_prev)), l.mul(i, g));
        let hh = l.mul(l.tanh(cc), o);
        k.st(c, cc);
        k.st(h, hh);
        if out {
            k.st(y, hh);
        }
    }
}

/// One Elman RNN step's elementwise forward for `u`'s units, in one pass: act(x W_ihᵀ + b_ih +
/// (h W_hhᵀ + b_hh)) written over the gate (kept for the backward), to the new state and to the
/// output. Done as four passes over the row (the sum, the activation, two copies), the cells
/// of RnnTanh 100, 64, 512 training took 5.7% of its samples and the copies' `memmove` 2.2%.
/// `relu(NaN)` is NaN and `relu(-0)` -0, as the scalar form has them: `max(0, x)` returns `x`
/// where either is NaN or both are zero, on both x86 paths (the only ones that run this).
#[inline(always)]
pub(super) fn rnn_forward<L: Lanes, const RELU: bool>(l: L, u: FwdUnits<'_>) {
    let FwdUnits {
        gates: [g, ..],
        gh,
        b_hh,
        h,
        y,
        ..
    } = u;
    let out = !y.is_empty();
    let zero = l.splat(0.0);
    for k in Blocks::new(l, h.len()) {
        // SAFETY: every slice holds the row's units (the caller).
        unsafe {
            // Summed as the scalar form sums it.
            let pre = k.pre(g, gh[0], b_hh[0]);
            let v = if RELU { l.max(zero, pre) } else { l.tanh(pre) };
            k.st(g, v);
            k.st(h, v);
            if out {
                k.st(y, v);
            }
        }
    }
}

/// One LSTM step's elementwise backward for `u`'s units, in one pass with tanh(c') in
/// registers: the scalar form (`cell::lstm::backward`, the portable path's) copies c' to a
/// scratch row, takes its tanh in a second pass and reads it back in a third. The same
/// operations in the same order as that form, so the same bits.
#[inline(always)]
pub(super) fn lstm_backward<L: Lanes>(l: L, u: BwdUnits<'_>) {
    let BwdUnits {
        gates: [i, f, g, o],
        dh,
        dc,
        dy,
        c_prev,
        c,
        ..
    } = u;
    let one = l.splat(1.0);
    let zero = l.splat(0.0);
    for k in Blocks::new(l, dh.len()) {
        // SAFETY: every slice holds the row's units (the caller); each unit's activations are
        // read before its gradients are written over them.
        unsafe {
            let (ai, af, ag, ao) = (k.ld(i), k.ld(f), k.ld(g), k.ld(o));
            let dhj = l.add(k.ld(dh), k.ld(dy));
            let tc = l.tanh(k.ld(c));
            let dcj = l.add(k.ld(dc), l.mul(l.mul(dhj, ao), l.sub(one, l.mul(tc, tc))));
            k.st(i, l.mul(l.mul(l.mul(dcj, ag), ai), l.sub(one, ai)));
            k.st(
                f,
                l.mul(l.mul(l.mul(dcj, k.ld(c_prev)), af), l.sub(one, af)),
            );
            k.st(g, l.mul(l.mul(dcj, ai), l.sub(one, l.mul(ag, ag))));
            k.st(o, l.mul(l.mul(l.mul(dhj, tc), ao), l.sub(one, ao)));
            k.st(dc, l.mul(dcj, af));
            k.st(dh, zero);
        }
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
        y,
        ..
    } = u;
    let out = !y.is_empty();
    // Two passes over the whole blocks, as the LSTM cell's: r, z and W_hn h + b_hn, then n
    // and h; the partial block in one pass.
    let (blocks, tail) = split_blocks(l, h.len());
    for k in blocks.clone() {
        // SAFETY: every slice holds the row's units (the caller), and a block keeps to its own.
        unsafe { gru_activate(k, [r_out, z_out], gh, b, hn) };
    }
    for k in blocks {
        // SAFETY: as above.
        let rzv = unsafe { [k.ld(r_out), k.ld(z_out), k.ld(hn)] };
        // SAFETY: as above.
        unsafe { gru_update(k, rzv, n_out, h_prev, h, y, out) };
    }
    if let Some(k) = tail {
        // SAFETY: as above.
        let rzv = unsafe { gru_activate(k, [r_out, z_out], gh, b, hn) };
        // SAFETY: as above.
        unsafe { gru_update(k, rzv, n_out, h_prev, h, y, out) };
    }
}

/// The GRU's r, z and W_hn h + b_hn of block `k`, stored (r and z over their
/// pre-activations) and returned.
///
/// # Safety
/// Every slice must hold the row's units.
#[inline(always)]
unsafe fn gru_activate<L: Lanes>(
    k: Block<L>,
    [r_out, z_out]: [&mut [f32]; 2],
    gh: [&[f32]; 4],
    b: [&[f32]; 4],
    hn: &mut [f32],
) -> [L::V; 3] {
    let l = k.l;
    // SAFETY: forwarded to the caller.
    unsafe {
        let r = l.sigmoid(k.pre(r_out, gh[0], b[0]));
        let z = l.sigmoid(k.pre(z_out, gh[1], b[1]));
        let v = l.add(k.ld(gh[2]), k.ld(b[2]));
        k.st(r_out, r);
        k.st(z_out, z);
        k.st(hn, v);
        [r, z, v]
    }
}

/// The GRU's n and new state of block `k` from its `[r, z, W_hn h + b_hn]`.
///
/// # Safety
/// Every slice must hold the row's units.
#[inline(always)]
unsafe fn gru_update<L: Lanes>(
    k: Block<L>,
    [r, z, v]: [L::V; 3],
    n_out: &mut [f32],
    h_prev: &[f32],
    h: &mut [f32],
    y: &mut [f32],
    out: bool,
) {
    let l = k.l;
    // SAFETY: forwarded to the caller.
    unsafe {
        let nn = l.tanh(l.add(k.ld(n_out), l.mul(r, v)));
        let hh = l.add(l.mul(l.sub(l.splat(1.0), z), nn), l.mul(z, k.ld(h_prev)));
        k.st(n_out, nn);
        k.st(h, hh);
        if out {
            k.st(y, hh);
        }
    }
}
