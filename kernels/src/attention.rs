//! Causal multi-head self-attention, forward only: the parallel baseline that the benchmark
//! sets beside the recurrences (`recur bench --contrast`). The semantics are PyTorch's
//! `nn.MultiheadAttention(D, heads)` on a time-major `(T, B, D)` input used as query, key and
//! value, with a causal mask (step t attends to steps 0..=t), no dropout; its output only.
//!
//! Every step at once, where a recurrence takes T dependent steps:
//! - `Q, K, V = x W_inᵀ + b_in`: one GEMM over all T * B rows (the packed GEMM of the RNNs'
//!   input projection);
//! - per (batch entry, head), independent tasks on the rayon pool: its keys and values packed
//!   as the micro-kernel streams them, then for each tile of query rows the scores against the
//!   keys up to the tile's last row only (the causal half of the product), each row's softmax of
//!   `scores / sqrt(D / heads)` over its own steps, and the tile's outputs `P V`, each row's over
//!   its own steps only (so a later step's value, even infinite or NaN, never reaches it);
//! - `out = O W_outᵀ + b_out`: one GEMM again.
//!
//! Results are bit-identical at any thread count: a task's arithmetic does not depend on which
//! thread runs it, and the GEMMs' splits keep every element's FMA chain. Buffers live in the
//! [`AttentionWorkspace`]; the tasks' scratch is allocated by the first forward and reused.

use crate::aligned::Buf;
use crate::error::{check_len, size, Error, Result};
use crate::float::Float;
use crate::isa::Isa;
use crate::microkernel::{self, shape};
use crate::packed::{gemm, OutPtr, PackedB};
use crate::params::SplitMix64;
use rayon::prelude::*;

/// The weights of one causal self-attention layer, as PyTorch's `nn.MultiheadAttention` holds
/// them (`in_proj_weight`, `in_proj_bias`, `out_proj.weight`, `out_proj.bias`).
#[derive(Debug, Clone, PartialEq)]
pub struct AttentionParams<T> {
    /// The model width D (`embed_dim`).
    pub d_model: usize,
    /// Heads; each attends over `D / heads` features.
    pub heads: usize,
    /// `(3D, D)` row-major: the rows of W_q, then W_k, then W_v.
    pub in_proj_weight: Vec<T>,
    /// `3D`: b_q, b_k, b_v.
    pub in_proj_bias: Vec<T>,
    /// `(D, D)` row-major.
    pub out_proj_weight: Vec<T>,
    /// `D`.
    pub out_proj_bias: Vec<T>,
}

impl<T: Float> AttentionParams<T> {
    /// Weights uniform in ±1/sqrt(D) (biases too), from `seed`.
    pub fn random(d_model: usize, heads: usize, seed: u64) -> Result<Self> {
        check_dims(d_model, heads)?;
        let d = d_model;
        let mut rng = SplitMix64(seed);
        let bound = 1.0 / (d as f64).sqrt();
        let mut fill = |n: usize| -> Result<Vec<T>> {
            let mut v = crate::error::zeros::<T>("attention weight", n)?;
            rng.fill_uniform(&mut v, bound);
            Ok(v)
        };
        Ok(AttentionParams {
            d_model,
            heads,
            in_proj_weight: fill(size("in_proj_weight", &[3, d, d])?)?,
            in_proj_bias: fill(3 * d)?,
            out_proj_weight: fill(size("out_proj_weight", &[d, d])?)?,
            out_proj_bias: fill(d)?,
        })
    }

    /// The same weights in another float type (f64 for the reference).
    pub fn cast<U: Float>(&self) -> AttentionParams<U> {
        let cast = |v: &[T]| v.iter().map(|x| U::from_f64(x.to_f64())).collect();
        AttentionParams {
            d_model: self.d_model,
            heads: self.heads,
            in_proj_weight: cast(&self.in_proj_weight),
            in_proj_bias: cast(&self.in_proj_bias),
            out_proj_weight: cast(&self.out_proj_weight),
            out_proj_bias: cast(&self.out_proj_bias),
        }
    }

    /// Every size consistent: D >= 1 divisible by heads >= 1, each buffer its length.
    pub fn check(&self) -> Result<()> {
        let d = self.d_model;
        check_dims(d, self.heads)?;
        check_len(
            "in_proj_weight",
            &self.in_proj_weight,
            size("in_proj_weight", &[3, d, d])?,
        )?;
        check_len("in_proj_bias", &self.in_proj_bias, 3 * d)?;
        check_len(
            "out_proj_weight",
            &self.out_proj_weight,
            size("out_proj_weight", &[d, d])?,
        )?;
        check_len("out_proj_bias", &self.out_proj_bias, d)
    }
}

fn check_dims(d_model: usize, heads: usize) -> Result<()> {
    match d_model >= 1 && heads >= 1 && d_model.is_multiple_of(heads) {
        true => Ok(()),
        false => Err(Error::Mismatch(format!(
            "attention of width {d_model} with {heads} heads, expected a width >= 1 that the \
             heads (>= 1) divide"
        ))),
    }
}

/// Multiply-adds, doubled, of one forward of `(T, B, D)`: the two projections (`8 T B D²`) and
/// the causal half of the scores and of `P V` (`2 B D T (T + 1)`, each query against its own
/// steps only).
pub fn attention_flops(d_model: usize, t: usize, b: usize) -> f64 {
    let (d, t, b) = (d_model as f64, t as f64, b as f64);
    8.0 * t * b * d * d + 2.0 * b * d * t * (t + 1.0)
}

/// Causal self-attention with its weights packed once for one ISA.
#[derive(Debug, Clone)]
pub struct CausalAttention {
    pub(crate) isa: Isa,
    pub(crate) d: usize,
    pub(crate) heads: usize,
    pub(crate) w_in: PackedB,
    pub(crate) w_out: PackedB,
}

impl CausalAttention {
    /// Packs `params` for the best ISA of this CPU (or the one `RECUR_ISA` names).
    pub fn new(params: &AttentionParams<f32>) -> Result<Self> {
        Self::with_isa(params, Isa::detect()?)
    }

    /// Packs `params` for `isa` (an error if this CPU lacks it).
    pub fn with_isa(params: &AttentionParams<f32>, isa: Isa) -> Result<Self> {
        let isa = isa.checked()?;
        params.check()?;
        let d = params.d_model;
        Ok(CausalAttention {
            isa,
            d,
            heads: params.heads,
            w_in: PackedB::from_weight(
                isa,
                &params.in_proj_weight,
                3 * d,
                d,
                Some(&params.in_proj_bias),
            ),
            w_out: PackedB::from_weight(
                isa,
                &params.out_proj_weight,
                d,
                d,
                Some(&params.out_proj_bias),
            ),
        })
    }

    /// The ISA the weights are packed for.
    pub fn isa(&self) -> Isa {
        self.isa
    }

    /// `out` `(T, B, D)` = the attention of `x` `(T, B, D)`, both time-major, on the current
    /// rayon pool; `ws` (made for this D) sets T and B.
    pub fn forward(&self, ws: &mut AttentionWorkspace, x: &[f32], out: &mut [f32]) -> Result<()> {
        let (t, b, d) = (ws.t, ws.b, self.d);
        if ws.d != d {
            return Err(Error::Mismatch(format!(
                "an attention workspace of width {}, expected the weights' width {d}",
                ws.d
            )));
        }
        let rows = t * b; // fits: the workspace holds rows * 3D floats
        check_len("input", x, rows * d)?;
        check_len("output", out, rows * d)?;
        gemm(rows, x, d, &self.w_in, &mut ws.qkv, 3 * d, false);
        self.attend(ws)?;
        gemm(rows, &ws.o, d, &self.w_out, out, d, false);
        Ok(())
    }

    /// O = the causal attention of each head of Q, K, V (in `ws.qkv`), into `ws.o`: a task
    /// per (batch entry, head), each with scratch buffers from the workspace's pool.
    fn attend(&self, ws: &mut AttentionWorkspace) -> Result<()> {
        let (t, b, d) = (ws.t, ws.b, self.d);
        let dh = d / self.heads;
        let nr = shape(self.isa).nr;
        let g = Geometry {
            t,
            b,
            d,
            dh,
            keys: t.div_ceil(nr) * nr,
            vcols: dh.div_ceil(nr) * nr,
        };
        let need = [g.keys * dh, t * g.vcols, shape(self.isa).mr * g.keys];
        let (qkv, o, pool) = (&ws.qkv[..], OutPtr(ws.o.as_mut_ptr()), &ws.scratch);
        (0..b * self.heads)
            .into_par_iter()
            .try_for_each(|task| -> Result<()> {
                let mut sc = Scratch::take(pool, need)?;
                self.head(&g, qkv, o, task, &mut sc);
                Scratch::give_back(pool, sc);
                Ok(())
            })
    }

    /// The outputs of task `task`'s (batch entry, head) for every step, into its block of `o`.
    fn head(&self, g: &Geometry, qkv: &[f32], o: OutPtr, task: usize, sc: &mut Scratch) {
        let Geometry {
            t, b, d, dh, keys, ..
        } = *g;
        let sh = shape(self.isa);
        let (mr, nr) = (sh.mr, sh.nr);
        let scale = 1.0 / (dh as f32).sqrt();
        let (e, h) = (task / self.heads, task % self.heads);
        // Row `i` of Q, K or V for this entry and head: step i's row of qkv.
        let at = |which: usize, i: usize| (i * b + e) * 3 * d + which * d + h * dh;
        let out = |i: usize| (i * b + e) * d + h * dh;
        pack_keys(qkv, &at, t, dh, nr, &mut sc.k);
        pack_values(qkv, &at, t, dh, nr, &mut sc.v);
        for r0 in (0..t).step_by(mr) {
            let rows = mr.min(t - r0);
            // SAFETY (both): rows <= mr; the ISA was checked when the weights were packed; the
            // output rows r0..r0+rows of this entry, this head's dh columns, are this task's
            // alone (tasks are distinct (entry, head) pairs) and inside o (T*B*D floats).
            unsafe {
                // The keys this tile's scores need: up to its last row's step.
                scores(
                    self.isa,
                    rows,
                    &qkv[at(0, r0)..],
                    b * 3 * d,
                    dh,
                    &sc.k,
                    r0 + rows,
                    &mut sc.s,
                    keys,
                );
                for i in 0..rows {
                    crate::activation::softmax(
                        self.isa,
                        &mut sc.s[i * keys..][..r0 + i + 1],
                        scale,
                    );
                }
                weighted_values(
                    self.isa,
                    rows,
                    r0,
                    &sc.s,
                    keys,
                    &sc.v,
                    t * nr,
                    dh,
                    OutPtr(o.at(out(r0))),
                    b * d,
                );
            }
        }
    }
}

/// Zeros for the tiles' bias: scores and P V start from 0.
const ZERO_BIAS: [f32; microkernel::MAX_NR] = [0.0; microkernel::MAX_NR];

/// The scores of `rows` query rows (`dh` features each, rows `ldq` apart in `q`) against keys
/// `0..width` of the packed `k` (panels of `nr` keys, `dh` steps each, see [`pack_keys`]), into
/// `s` (`rows` rows `lds` apart, whole panels of keys written). Shared by the forward's tiles
/// of query rows and the decoder's one row (`kv_cache.rs`).
///
/// # Safety
/// `rows <= mr` and the CPU has `isa`.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn scores(
    isa: Isa,
    rows: usize,
    q: &[f32],
    ldq: usize,
    dh: usize,
    k: &[f32],
    width: usize,
    s: &mut [f32],
    lds: usize,
) {
    let nr = shape(isa).nr;
    let panels = width.div_ceil(nr);
    assert!(
        crate::error::holds(q.len(), rows, ldq, dh)
            && k.len() >= panels * dh * nr
            && lds >= panels * nr
            && crate::error::holds(s.len(), rows, lds, panels * nr),
        "attention scores: a buffer too short"
    );
    for p in 0..panels {
        // SAFETY: Q's `rows` rows of dh floats at stride ldq, panel p's dh steps of nr floats
        // and the scores' columns p*nr..p*nr+nr of `rows` rows at stride lds are inside their
        // buffers (asserted); rows and the ISA are the caller's.
        unsafe {
            microkernel::tile(
                isa,
                rows,
                dh,
                q.as_ptr(),
                ldq,
                k.as_ptr().add(p * dh * nr),
                nr,
                ZERO_BIAS.as_ptr(),
                s.as_mut_ptr().add(p * nr),
                lds,
                nr,
                false,
                std::ptr::null(),
            )
        };
    }
}

/// Rows `r0..r0 + rows` of a head's output (from `o`, `ldo` apart, `dh` columns) = their
/// weights in `s` (row i: steps `0..=r0 + i`, rows `lds` apart) times the packed values `v`
/// (panels of `nr` features, `ldv` floats apart, a step of `nr` floats per key, see
/// [`pack_values`]). Each row over its own steps only, never a later one's value (a zero
/// weight times an infinite or NaN value would still reach the row): steps `0..=r0`, which
/// every row has, for all the rows; then row i's `r0 + 1..=r0 + i`, added row by row.
///
/// # Safety
/// `rows <= mr`, the CPU has `isa`, and `o.at(i * ldo + c)` is the caller's to write for
/// `i < rows`, `c < dh`, written by nobody else meanwhile.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn weighted_values(
    isa: Isa,
    rows: usize,
    r0: usize,
    s: &[f32],
    lds: usize,
    v: &[f32],
    ldv: usize,
    dh: usize,
    o: OutPtr,
    ldo: usize,
) {
    let nr = shape(isa).nr;
    let panels = dh.div_ceil(nr);
    let steps = r0 + rows;
    assert!(
        rows >= 1
            && crate::error::holds(s.len(), rows, lds, steps)
            && ldv >= steps * nr
            && crate::error::holds(v.len(), panels, ldv, steps * nr),
        "attention P V: a buffer too short"
    );
    for q in 0..panels {
        let cols = nr.min(dh - q * nr);
        // SAFETY: row i's r0+i+1 weights at stride lds and panel q's steps 0..r0+rows of nr
        // floats are inside their buffers (asserted); the output columns q*nr..q*nr+cols < dh
        // of the rows, rows and the ISA are the caller's.
        unsafe {
            let v = v.as_ptr().add(q * ldv);
            microkernel::tile(
                isa,
                rows,
                r0 + 1,
                s.as_ptr(),
                lds,
                v,
                nr,
                ZERO_BIAS.as_ptr(),
                o.at(q * nr),
                ldo,
                cols,
                false,
                std::ptr::null(),
            );
            for i in 1..rows {
                microkernel::tile(
                    isa,
                    1,
                    i,
                    s.as_ptr().add(i * lds + r0 + 1),
                    lds,
                    v.add((r0 + 1) * nr),
                    nr,
                    ZERO_BIAS.as_ptr(),
                    o.at(i * ldo + q * nr),
                    ldo,
                    cols,
                    true,
                    std::ptr::null(),
                );
            }
        }
    }
}

/// The sizes of one forward's per-head work.
#[derive(Clone, Copy)]
struct Geometry {
    t: usize,
    b: usize,
    d: usize,
    /// Features per head.
    dh: usize,
    /// The scores' row stride: T in whole panels of keys.
    keys: usize,
    /// A head's features in whole panels.
    vcols: usize,
}

/// One task's buffers: its head's packed K and V and a tile's scores. The workspace keeps them
/// in a pool, so that a forward allocates only the first time (one set per task running at
/// once, at most one per thread).
#[derive(Debug)]
struct Scratch {
    k: Buf,
    v: Buf,
    s: Buf,
}

/// The workspace's pool of [`Scratch`] sets.
type ScratchPool = std::sync::Mutex<Vec<Scratch>>;

impl Scratch {
    /// A set of the sizes `need` (K, V, scores) from `pool`, or a new one (an error where there
    /// is no room); a set of other sizes (other weights, another ISA) is dropped.
    fn take(pool: &ScratchPool, need: [usize; 3]) -> Result<Scratch> {
        let mut sets = pool.lock().unwrap_or_else(|e| e.into_inner());
        while let Some(sc) = sets.pop() {
            if [sc.k.len(), sc.v.len(), sc.s.len()] == need {
                return Ok(sc);
            }
        }
        drop(sets);
        let buf = |n: usize| {
            Buf::try_zeros(n).ok_or_else(|| crate::error::no_room::<f32>("attention scratch", n))
        };
        Ok(Scratch {
            k: buf(need[0])?,
            v: buf(need[1])?,
            s: buf(need[2])?,
        })
    }

    fn give_back(pool: &ScratchPool, sc: Scratch) {
        pool.lock().unwrap_or_else(|e| e.into_inner()).push(sc);
    }
}

/// K of one head as panels of `nr` keys: panel p, step j (feature), lane l = K[p*nr + l][j];
/// keys past T are zeros.
fn pack_keys(
    qkv: &[f32],
    at: &impl Fn(usize, usize) -> usize,
    t: usize,
    dh: usize,
    nr: usize,
    dst: &mut [f32],
) {
    for (p, panel) in dst.chunks_exact_mut(dh * nr).enumerate() {
        for l in 0..nr {
            let key = p * nr + l;
            for j in 0..dh {
                panel[j * nr + l] = match key < t {
                    true => qkv[at(1, key) + j],
                    false => 0.0,
                };
            }
        }
    }
}

/// V of one head as panels of `nr` features: panel q, step i (key), lane l = V[i][q*nr + l];
/// features past `dh` are zeros.
fn pack_values(
    qkv: &[f32],
    at: &impl Fn(usize, usize) -> usize,
    t: usize,
    dh: usize,
    nr: usize,
    dst: &mut [f32],
) {
    for (q, panel) in dst.chunks_exact_mut(t * nr).enumerate() {
        for (i, step) in panel.chunks_exact_mut(nr).enumerate() {
            let row = &qkv[at(2, i)..][..dh];
            let (c0, c1) = (q * nr, (q * nr + nr).min(dh));
            step[..c1 - c0].copy_from_slice(&row[c0..c1]);
        }
    }
}

/// The buffers of attention forwards of `(T, B, D)`: Q, K, V of every step, the heads'
/// outputs, and each running task's scratch (allocated by the first forward, reused after).
/// The workspace sets T and B: a forward's input and output hold `T * B * D` floats.
#[derive(Debug)]
pub struct AttentionWorkspace {
    d: usize,
    t: usize,
    b: usize,
    qkv: Buf,
    o: Buf,
    scratch: ScratchPool,
}

impl AttentionWorkspace {
    /// Buffers for inputs of `t` steps of `b` rows of width `d_model` (all >= 1).
    pub fn new(d_model: usize, t: usize, b: usize) -> Result<Self> {
        if d_model == 0 || t == 0 || b == 0 {
            return Err(Error::Mismatch(format!(
                "an attention workspace for width {d_model}, {t} steps, batch {b}, expected \
                 every size >= 1"
            )));
        }
        let qkv = size("attention Q, K, V", &[t, b, 3, d_model])?;
        let o = size("attention output", &[t, b, d_model])?;
        let buf = |what: &str, n: usize| {
            Buf::try_zeros(n).ok_or_else(|| crate::error::no_room::<f32>(what, n))
        };
        Ok(AttentionWorkspace {
            d: d_model,
            t,
            b,
            qkv: buf("attention Q, K, V", qkv)?,
            o: buf("attention output", o)?,
            scratch: ScratchPool::default(),
        })
    }
}
