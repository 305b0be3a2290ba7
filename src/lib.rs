//! `recur`: RNN, LSTM and GRU with PyTorch's semantics on the `recur-kernels` CPU kernels.
//!
//! The thin layer between PyTorch's world and the kernels: state_dict keys and shapes
//! ([`state_dict`]), safetensors files ([`tensors`]), batch-first layouts and named results
//! ([`model`]), and the timing harness behind `recur bench` ([`bench`](mod@bench)).

#![warn(missing_docs)]

pub mod bench;
pub mod error;
pub mod model;
pub mod state_dict;
pub mod tensors;

pub use error::{Error, Result};
pub use recur_kernels as kernels;
