//! Fused CPU kernels for RNN, LSTM and GRU, forward and BPTT, with PyTorch's exact semantics.
//!
//! The crate stands alone (its dependencies are rayon, wide for the portable SIMD path, and
//! libc on Linux for one `madvise`), so an engine can embed it.
//!
//! - [`RnnDesc`] says what network runs; [`Params`] holds its weights in PyTorch's layout.
//! - [`PackedWeights`] prepares them once (for training, or with
//!   [`PackedWeights::for_inference`] for the forward only, half the packed memory); a
//!   [`Workspace`] holds every buffer for one (T, B, mode), the weight gradients' packed copies
//!   among them, so calls allocate nothing in the time loop; apart from it, each thread that
//!   runs a wide AVX-512 GEMM keeps one 1 MiB buffer for its copies of A, allocated by its
//!   first such GEMM and reused for the thread's life.
//! - [`forward_inference`], [`forward_training`] and [`backward`] run on the current rayon pool:
//!   pick the thread count with `pool.install(..)`. Results are bit-identical at any count.
//! - [`CausalAttention`] is a causal self-attention forward (PyTorch's `nn.MultiheadAttention`
//!   with a causal mask), the parallel baseline the benchmark sets beside the recurrences;
//!   with a [`KvCache`], [`CausalAttention::decode`] generates one step at a time.
//! - [`tbptt`] runs truncated BPTT in windows; [`clip_grad_norm`] / [`clip_grad_value`] clip
//!   gradients as PyTorch does; [`WeightGemm`] is the packed input projection on its own.
//! - Kernels are chosen at run time ([`Isa`]; `RECUR_ISA` or [`PackedWeights::with_isa`]
//!   force one). Call from inside your pool (`pool.install`): calls from outside it pay a
//!   cross-thread hand-off on every parallel region.
//! - [`reference`](mod@reference) is the scalar implementation, generic over f32 / f64, that tests check
//!   everything against.
//!
//! Sequences are time-major `(T, B, features)`; `lengths` gives variable lengths in any order.
//! Dropout between layers is not part of the crate.
//!
//! ```
//! use recur_kernels::*;
//!
//! let desc = RnnDesc::new(CellKind::Lstm, 8, 16).layers(2).bidirectional(true);
//! let params = Params::<f32>::random(&desc, 42);
//! let weights = PackedWeights::new(&params)?;
//! let (t, b) = (5, 3);
//! let x = vec![0.5f32; t * b * 8];
//! let lengths = [5, 2, 4];
//! let input = SeqBatch::new(t, b, &x).with_lengths(&lengths);
//!
//! let mut ws = Workspace::new(&desc, t, b, Mode::Training)?;
//! let mut out = Outputs::zeros(&desc, t, b);
//! forward_training(&weights, &mut ws, &input, &mut out)?;
//!
//! let grad_output = vec![1.0f32; out.output.len()];
//! let mut grads = Gradients::zeros(&desc, t, b);
//! backward(&weights, &mut ws, &input, &OutputGrads::new(&grad_output), &mut grads)?;
//! assert_eq!(grads.input.len(), x.len());
//! # Ok::<(), recur_kernels::Error>(())
//! ```

// Every public item says what it is: a library is read through its docs.
#![warn(missing_docs)]

pub mod activation;
mod aligned;
pub mod attention;
mod backward;
mod cache;
mod cell;
pub mod clip;
pub mod desc;
pub mod error;
pub mod float;
mod forward;
mod gemm_tn;
pub mod isa;
mod kv_cache;
mod microkernel;
mod packed;
pub mod params;
mod prefetch;
pub mod reference;
pub mod seq;
mod tbptt;
mod team;
#[cfg(test)]
mod timing;
mod weights;
mod workspace;

pub use attention::{attention_flops, AttentionParams, AttentionWorkspace, CausalAttention};
pub use backward::backward;
pub use clip::{clip_grad_norm, clip_grad_value, grad_norm, Norm};
pub use desc::{CellKind, RnnDesc};
pub use error::{Error, Result};
pub use float::Float;
pub use forward::{forward_inference, forward_training};
pub use isa::Isa;
pub use kv_cache::KvCache;
pub use packed::WeightGemm;
pub use params::{LayerParams, Params, SplitMix64};
pub use seq::{Gradients, OutputGrads, Outputs, SeqBatch};
pub use tbptt::{tbptt, TbpttWorkspace};
pub use weights::{PackedWeights, Packing};
pub use workspace::{Mode, Workspace};
