//! The data a call reads and writes: padded sequences, final states, their gradients.
//!
//! Every sequence buffer is time-major and contiguous: `x` is `(T, B, I)`, `output` is
//! `(T, B, D*H)`, states are `(L*D, B, H)`. (`batch_first` is a transpose the caller does.)

use crate::desc::RnnDesc;
use crate::error::{check_len, size, zeros, Error, Result};
use crate::float::Float;
use crate::params::Params;

/// A batch of padded sequences and optional initial states.
#[derive(Debug, Clone, Copy)]
pub struct SeqBatch<'a, T> {
    /// Padded length T.
    pub seq_len: usize,
    /// Sequences, B.
    pub batch: usize,
    /// `(T, B, input_size)`, time-major.
    pub x: &'a [T],
    /// Valid steps of each batch entry, each in `1..=T`, in any order; `None` means all `T`.
    /// Padded positions of the output are zero and pass no gradient, as with
    /// `pack_padded_sequence(enforce_sorted=False)`.
    pub lengths: Option<&'a [usize]>,
    /// `(L*D, B, H)`; zeros when `None`.
    pub h0: Option<&'a [T]>,
    /// `(L*D, B, H)`, LSTM only; zeros when `None`.
    pub c0: Option<&'a [T]>,
}

impl<'a, T> SeqBatch<'a, T> {
    /// `T` equal-length sequences with zero initial states.
    pub fn new(seq_len: usize, batch: usize, x: &'a [T]) -> Self {
        SeqBatch {
            seq_len,
            batch,
            x,
            lengths: None,
            h0: None,
            c0: None,
        }
    }

    /// With the valid steps of each sequence (see [`SeqBatch::lengths`]).
    pub fn with_lengths(mut self, lengths: &'a [usize]) -> Self {
        self.lengths = Some(lengths);
        self
    }

    /// With initial hidden states, `(L*D, B, H)`.
    pub fn with_h0(mut self, h0: &'a [T]) -> Self {
        self.h0 = Some(h0);
        self
    }

    /// With initial cell states (LSTM), `(L*D, B, H)`.
    pub fn with_c0(mut self, c0: &'a [T]) -> Self {
        self.c0 = Some(c0);
        self
    }

    /// Valid steps of batch entry `b` (`seq_len` without lengths); `None` past the batch.
    pub fn length(&self, b: usize) -> Option<usize> {
        match self.lengths {
            _ if b >= self.batch => None,
            Some(l) => l.get(b).copied(),
            None => Some(self.seq_len),
        }
    }

    /// [`SeqBatch::length`] for a `b` below the validated batch.
    #[inline]
    pub(crate) fn len_of(&self, b: usize) -> usize {
        self.lengths.map_or(self.seq_len, |l| l[b])
    }

    /// Checks every buffer and length against the descriptor.
    pub fn validate(&self, desc: &RnnDesc) -> Result<()> {
        desc.validate()?;
        if self.seq_len == 0 {
            return Err(Error::Mismatch("seq_len is 0, expected >= 1".into()));
        }
        if self.batch == 0 {
            return Err(Error::Mismatch("batch is 0, expected >= 1".into()));
        }
        // Every (T, B, features) buffer of the call, the widest included, must fit
        // (`desc.validate` bounds G*H and the output's width).
        let widest = desc
            .input_size
            .max(desc.gates() * desc.hidden_size)
            .max(desc.output_size());
        let steps = size("sequence steps", &[self.seq_len])? + 1;
        size("sequence buffers", &[steps, self.batch, widest])?;
        check_len("input", self.x, self.seq_len * self.batch * desc.input_size)?;
        let state = desc.stacks() * self.batch * desc.hidden_size;
        if let Some(h0) = self.h0 {
            check_len("h0", h0, state)?;
        }
        match (self.c0, desc.cell.has_cell_state()) {
            (Some(c0), true) => check_len("c0", c0, state)?,
            (Some(_), false) => {
                return Err(Error::Mismatch(format!(
                    "c0 given for a {} cell, expected c0 only for lstm",
                    desc.cell.name()
                )))
            }
            _ => {}
        }
        if let Some(lengths) = self.lengths {
            check_len("lengths", lengths, self.batch)?;
            for (index, &length) in lengths.iter().enumerate() {
                if length == 0 || length > self.seq_len {
                    return Err(Error::Length {
                        index,
                        length,
                        max: self.seq_len,
                    });
                }
            }
        }
        Ok(())
    }
}

/// What a forward pass returns: the top layer's outputs and every layer's final states.
#[derive(Debug, Clone, PartialEq)]
pub struct Outputs<T> {
    /// `(T, B, D*H)`; zero at padded positions.
    pub output: Vec<T>,
    /// `(L*D, B, H)`, taken at each sequence's last valid step.
    pub h_n: Vec<T>,
    /// `(L*D, B, H)` for LSTM, empty otherwise.
    pub c_n: Vec<T>,
}

impl<T: Float> Outputs<T> {
    /// Zeros, every buffer at its size for `seq_len` steps of `batch` sequences.
    ///
    /// # Panics
    /// If a size is too large or memory runs out (as `vec!` would); [`Outputs::try_zeros`]
    /// returns an error instead.
    pub fn zeros(desc: &RnnDesc, seq_len: usize, batch: usize) -> Self {
        Self::try_zeros(desc, seq_len, batch).unwrap_or_else(|e| panic!("{e}"))
    }

    /// [`Outputs::zeros`], or an error naming the size that is too large (or has no room).
    pub fn try_zeros(desc: &RnnDesc, seq_len: usize, batch: usize) -> Result<Self> {
        let state = size("h_n", &[desc.stacks(), batch, desc.hidden_size])?;
        let output = size("output", &[seq_len, batch, desc.output_size()])?;
        let c = if desc.cell.has_cell_state() { state } else { 0 };
        Ok(Outputs {
            output: zeros("output", output)?,
            h_n: zeros("h_n", state)?,
            c_n: zeros("c_n", c)?,
        })
    }

    pub(crate) fn validate(&self, desc: &RnnDesc, seq_len: usize, batch: usize) -> Result<()> {
        let state = desc.stacks() * batch * desc.hidden_size;
        check_len("output", &self.output, seq_len * batch * desc.output_size())?;
        check_len("h_n", &self.h_n, state)?;
        let c = if desc.cell.has_cell_state() { state } else { 0 };
        check_len("c_n", &self.c_n, c)
    }
}

/// Gradients of the loss with respect to the forward's outputs.
#[derive(Debug, Clone, Copy)]
pub struct OutputGrads<'a, T> {
    /// `(T, B, D*H)`; values at padded positions are ignored.
    pub output: &'a [T],
    /// `(L*D, B, H)`; zeros when `None`.
    pub h_n: Option<&'a [T]>,
    /// `(L*D, B, H)`, LSTM only; zeros when `None`.
    pub c_n: Option<&'a [T]>,
}

impl<'a, T> OutputGrads<'a, T> {
    /// The gradient of the output alone (the final states' are zero).
    pub fn new(output: &'a [T]) -> Self {
        OutputGrads {
            output,
            h_n: None,
            c_n: None,
        }
    }

    /// An error naming the buffer whose length does not fit `seq_len` steps of `batch`
    /// sequences of `desc` (or a c_n gradient for a cell without one).
    pub fn validate(&self, desc: &RnnDesc, seq_len: usize, batch: usize) -> Result<()> {
        desc.validate()?;
        let output = size("grad_output", &[seq_len, batch, desc.output_size()])?;
        check_len("grad_output", self.output, output)?;
        let state = size("grad_h_n", &[desc.stacks(), batch, desc.hidden_size])?;
        if let Some(g) = self.h_n {
            check_len("grad_h_n", g, state)?;
        }
        match (self.c_n, desc.cell.has_cell_state()) {
            (Some(g), true) => check_len("grad_c_n", g, state),
            (Some(_), false) => Err(Error::Mismatch(format!(
                "grad_c_n given for a {} cell, expected it only for lstm",
                desc.cell.name()
            ))),
            _ => Ok(()),
        }
    }
}

/// What a backward pass returns.
#[derive(Debug, Clone, PartialEq)]
pub struct Gradients<T> {
    /// `(T, B, I)`; zero at padded positions.
    pub input: Vec<T>,
    /// `(L*D, B, H)`.
    pub h0: Vec<T>,
    /// `(L*D, B, H)` for LSTM, empty otherwise.
    pub c0: Vec<T>,
    /// Same layout as the parameters; bias gradients are zero when the descriptor has no bias.
    pub params: Params<T>,
}

impl<T: Float> Gradients<T> {
    /// Zeros, every buffer at its size for `seq_len` steps of `batch` sequences.
    ///
    /// # Panics
    /// If a size is too large or memory runs out (as `vec!` would); [`Gradients::try_zeros`]
    /// returns an error instead.
    pub fn zeros(desc: &RnnDesc, seq_len: usize, batch: usize) -> Self {
        Self::try_zeros(desc, seq_len, batch).unwrap_or_else(|e| panic!("{e}"))
    }

    /// [`Gradients::zeros`], or an error naming the size that is too large (or has no room).
    pub fn try_zeros(desc: &RnnDesc, seq_len: usize, batch: usize) -> Result<Self> {
        let state = size("grad h0", &[desc.stacks(), batch, desc.hidden_size])?;
        let input = size("grad input", &[seq_len, batch, desc.input_size])?;
        let c = if desc.cell.has_cell_state() { state } else { 0 };
        Ok(Gradients {
            input: zeros("grad input", input)?,
            h0: zeros("grad h0", state)?,
            c0: zeros("grad c0", c)?,
            params: Params::try_zeros(desc)?,
        })
    }

    pub(crate) fn validate(&self, desc: &RnnDesc, seq_len: usize, batch: usize) -> Result<()> {
        let state = desc.stacks() * batch * desc.hidden_size;
        check_len("grad input", &self.input, seq_len * batch * desc.input_size)?;
        check_len("grad h0", &self.h0, state)?;
        let c = if desc.cell.has_cell_state() { state } else { 0 };
        check_len("grad c0", &self.c0, c)?;
        if self.params.desc != *desc {
            return Err(Error::Mismatch(format!(
                "gradients are for {:?}, expected {desc:?}",
                self.params.desc
            )));
        }
        self.params.validate()
    }
}
