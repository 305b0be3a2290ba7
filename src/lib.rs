//! `recur`: RNN, LSTM and GRU with PyTorch's semantics on the `recur-kernels` CPU kernels.
//!
//! The thin layer between PyTorch's world and the kernels: state_dict keys and shapes
//! ([`state_dict`]), safetensors files ([`tensors`]), batch-first layouts and named results
//! ([`model`]), the timing harness behind `recur bench` ([`bench`](mod@bench)), and its
//! contrast of a recurrence with causal self-attention ([`contrast`]).

#![warn(missing_docs)]

pub mod bench;
pub mod contrast;
pub mod error;
pub mod model;
pub mod state_dict;
pub mod tensors;

pub use error::{Error, Result};
pub use recur_kernels as kernels;
