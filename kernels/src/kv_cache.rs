//! Decoding with causal self-attention one step at a time, the way a generator runs it: the
//! keys and values of the steps so far stay in a [`KvCache`], and each new step attends over
//! them and itself. A step's cost grows with the steps before it (its scores read every cached
//! key, its output every cached value), where a recurrence's step costs the same at any length:
//! the other half of `recur bench --contrast`.
//!
//! A decoded step's output has the bits of the same step in [`CausalAttention::forward`] over
//! the whole sequence: the same projections (every element the same FMA chain), the same
//! scores, softmax and P V chains (the forward's per-row remainder continues the same chain).

use crate::aligned::Buf;
use crate::attention::{scores, weighted_values, CausalAttention};
use crate::error::{check_len, size, Error, Result};
use crate::microkernel::shape;
use crate::packed::{gemm, OutPtr};
use rayon::prelude::*;

/// The cached keys and values of up to `capacity` steps of `batch` sequences, for one
/// [`CausalAttention`] (its width, heads and ISA), packed as the micro-kernel streams them.
#[derive(Debug)]
pub struct KvCache {
    d: usize,
    heads: usize,
    isa: crate::Isa,
    batch: usize,
    capacity: usize,
    len: usize,
    /// Per (entry, head): `keys` keys as panels of `nr` (lane = key, step = feature).
    k: Buf,
    /// Per (entry, head): `vcols / nr` panels of `capacity` steps (lane = feature, step = key).
    v: Buf,
    /// Per (entry, head): the new step's scores, then its weights.
    s: Buf,
    /// The new step's Q, K, V rows and its heads' outputs.
    qkv: Buf,
    o: Buf,
}

impl KvCache {
    /// An empty cache for `att`, `batch` sequences of up to `capacity` steps (both >= 1).
    pub fn new(att: &CausalAttention, batch: usize, capacity: usize) -> Result<Self> {
        if batch == 0 || capacity == 0 {
            return Err(Error::Mismatch(format!(
                "a KV cache for batch {batch} and {capacity} steps, expected both >= 1"
            )));
        }
        let (d, heads, nr) = (att.d, att.heads, shape(att.isa).nr);
        let dh = d / heads;
        let tasks = size("KV cache tasks", &[batch, heads])?;
        let vcols = dh.div_ceil(nr) * nr;
        let buf = |what: &str, dims: &[usize]| -> Result<Buf> {
            let n = size(what, dims)?;
            Buf::try_zeros(n).ok_or_else(|| crate::error::no_room::<f32>(what, n))
        };
        // Checked first: the key panels' length in whole panels, which `keys` then is.
        let k = buf("KV cache keys", &[tasks, capacity.div_ceil(nr), nr, dh])?;
        let keys = capacity.div_ceil(nr) * nr;
        Ok(KvCache {
            d,
            heads,
            isa: att.isa,
            batch,
            capacity,
            len: 0,
            k,
            v: buf("KV cache values", &[tasks, capacity, vcols])?,
            s: buf("KV cache scores", &[tasks, keys])?,
            qkv: buf("KV cache Q, K, V", &[batch, 3, d])?,
            o: buf("KV cache outputs", &[batch, d])?,
        })
    }

    /// Steps cached so far.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no step is cached.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Keeps the first `len` steps only (at most those cached): the next step decoded is step
    /// `len`.
    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }
}

impl CausalAttention {
    /// The output `(B, D)` of step `cache.len()` for its input `x` `(B, D)`, attending over the
    /// cached steps and itself; its keys and values join the cache.
    pub fn decode(&self, cache: &mut KvCache, x: &[f32], out: &mut [f32]) -> Result<()> {
        if (cache.d, cache.heads, cache.isa) != (self.d, self.heads, self.isa) {
            return Err(Error::Mismatch(format!(
                "a KV cache for width {}, {} heads, {:?}, expected the attention's {}, {}, {:?}",
                cache.d, cache.heads, cache.isa, self.d, self.heads, self.isa
            )));
        }
        if cache.len == cache.capacity {
            return Err(Error::Mismatch(format!(
                "a KV cache full at {} steps, expected one with room for another step",
                cache.capacity
            )));
        }
        let (b, d, heads) = (cache.batch, self.d, self.heads);
        check_len("input", x, b * d)?;
        check_len("output", out, b * d)?;
        gemm(b, x, d, &self.w_in, &mut cache.qkv, 3 * d, false);
        let (nr, cap, j) = (shape(self.isa).nr, cache.capacity, cache.len);
        let dh = d / heads;
        let keys = cap.div_ceil(nr) * nr;
        let vcols = dh.div_ceil(nr) * nr;
        let scale = 1.0 / (dh as f32).sqrt();
        let (qkv, o) = (&cache.qkv[..], OutPtr(cache.o.as_mut_ptr()));
        cache
            .k
            .par_chunks_exact_mut(keys * dh)
            .zip(cache.v.par_chunks_exact_mut(cap * vcols))
            .zip(cache.s.par_chunks_exact_mut(keys))
            .enumerate()
            .for_each(|(task, ((k, v), s))| {
                let (e, h) = (task / heads, task % heads);
                let row = &qkv[e * 3 * d..][..3 * d];
                let (q, new_k, new_v) = (
                    &row[h * dh..][..dh],
                    &row[d + h * dh..][..dh],
                    &row[2 * d + h * dh..][..dh],
                );
                // Step j joins the cache: lane j % nr of key panel j / nr, and step j of every
                // value panel.
                let panel = &mut k[j / nr * dh * nr..][..dh * nr];
                for (f, &kf) in new_k.iter().enumerate() {
                    panel[f * nr + j % nr] = kf;
                }
                for (c, &vf) in new_v.iter().enumerate() {
                    v[c / nr * cap * nr + j * nr + c % nr] = vf;
                }
                // SAFETY (both): one row; the ISA was checked when the weights were packed;
                // the output row e's columns h*dh..h*dh+dh are this task's alone (tasks are
                // distinct (entry, head) pairs) and inside o (B*D floats).
                unsafe {
                    scores(self.isa, 1, q, dh, dh, k, j + 1, s, keys);
                    crate::activation::softmax(self.isa, &mut s[..j + 1], scale);
                    weighted_values(
                        self.isa,
                        1,
                        j,
                        s,
                        keys,
                        v,
                        cap * nr,
                        dh,
                        OutPtr(o.at(e * d + h * dh)),
                        d,
                    );
                }
            });
        cache.len += 1;
        gemm(b, &cache.o, d, &self.w_out, out, d, false);
        Ok(())
    }
}
