//! What network a call runs: the cell, its sizes, layers and directions.

use crate::error::{Error, Result};

/// The recurrent cell, with PyTorch's formulas and gate order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CellKind {
    /// `nn.RNN(nonlinearity="tanh")`: h' = tanh(W_ih x + b_ih + W_hh h + b_hh).
    RnnTanh,
    /// `nn.RNN(nonlinearity="relu")`: h' = relu(W_ih x + b_ih + W_hh h + b_hh).
    RnnRelu,
    /// `nn.LSTM`: gates i, f, g, o; c' = f c + i g; h' = o tanh(c').
    Lstm,
    /// `nn.GRU`: gates r, z, n; n = tanh(W_in x + b_in + r (W_hn h + b_hn)); h' = (1 - z) n + z h.
    Gru,
}

impl CellKind {
    /// Number of gate blocks of `hidden` rows in `weight_ih` / `weight_hh`: 1, 4 or 3.
    pub const fn gates(self) -> usize {
        match self {
            CellKind::RnnTanh | CellKind::RnnRelu => 1,
            CellKind::Lstm => 4,
            CellKind::Gru => 3,
        }
    }

    /// Whether the cell carries a cell state `c` beside `h` (LSTM only).
    pub const fn has_cell_state(self) -> bool {
        matches!(self, CellKind::Lstm)
    }

    /// A short lowercase name: `rnn_tanh`, `rnn_relu`, `lstm`, `gru`.
    pub const fn name(self) -> &'static str {
        match self {
            CellKind::RnnTanh => "rnn_tanh",
            CellKind::RnnRelu => "rnn_relu",
            CellKind::Lstm => "lstm",
            CellKind::Gru => "gru",
        }
    }
}

/// A stack of recurrent layers, as `nn.RNN` / `nn.LSTM` / `nn.GRU` describe it.
///
/// Dropout between layers is not part of this crate: run layers one by one if you need it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RnnDesc {
    /// The cell (and, for the Elman RNN, its nonlinearity).
    pub cell: CellKind,
    /// Features of the input of layer 0.
    pub input_size: usize,
    /// Features of the state, H.
    pub hidden_size: usize,
    /// Layers, L (each layer's input the output of the one below).
    pub num_layers: usize,
    /// Whether each layer also runs in reverse (D = 2), its output the two directions side by
    /// side.
    pub bidirectional: bool,
    /// Whether the layers have `bias_ih` / `bias_hh`; when false the biases are ignored (zero).
    pub bias: bool,
}

impl RnnDesc {
    /// One unidirectional layer with biases.
    pub fn new(cell: CellKind, input_size: usize, hidden_size: usize) -> Self {
        RnnDesc {
            cell,
            input_size,
            hidden_size,
            num_layers: 1,
            bidirectional: false,
            bias: true,
        }
    }

    /// With `num_layers` layers.
    pub fn layers(mut self, num_layers: usize) -> Self {
        self.num_layers = num_layers;
        self
    }

    /// Bidirectional or not.
    pub fn bidirectional(mut self, on: bool) -> Self {
        self.bidirectional = on;
        self
    }

    /// With biases or without.
    pub fn bias(mut self, on: bool) -> Self {
        self.bias = on;
        self
    }

    /// 1 or 2.
    pub const fn directions(&self) -> usize {
        if self.bidirectional {
            2
        } else {
            1
        }
    }

    /// Gates of the cell, G: 4 for LSTM, 3 for GRU, 1 for the RNN.
    pub const fn gates(&self) -> usize {
        self.cell.gates()
    }

    /// Features of the input of layer `layer`: `input_size` for layer 0, `D * hidden_size` above.
    pub const fn layer_input_size(&self, layer: usize) -> usize {
        if layer == 0 {
            self.input_size
        } else {
            self.directions() * self.hidden_size
        }
    }

    /// Features of each output step: `D * hidden_size`.
    pub const fn output_size(&self) -> usize {
        self.directions() * self.hidden_size
    }

    /// Number of (layer, direction) pairs, the first dimension of `h0` / `h_n`.
    pub const fn stacks(&self) -> usize {
        self.num_layers * self.directions()
    }

    /// Multiply-adds of one forward pass times 2, as the README and the peers count them:
    /// `2 T B (I_l + H) G H` summed over layers and directions.
    pub fn forward_flops(&self, seq_len: usize, batch: usize) -> f64 {
        let (h, g) = (self.hidden_size as f64, self.gates() as f64);
        (0..self.num_layers)
            .map(|l| {
                2.0 * (seq_len * batch) as f64
                    * (self.layer_input_size(l) as f64 + h)
                    * g
                    * h
                    * self.directions() as f64
            })
            .sum()
    }

    /// An error naming what is wrong: a zero size or layer count, or sizes whose weights would
    /// not fit in memory's address space.
    pub fn validate(&self) -> Result<()> {
        if self.input_size == 0 {
            return Err(Error::InvalidDesc("input_size is 0, expected >= 1".into()));
        }
        if self.hidden_size == 0 {
            return Err(Error::InvalidDesc("hidden_size is 0, expected >= 1".into()));
        }
        if self.num_layers == 0 {
            return Err(Error::InvalidDesc("num_layers is 0, expected >= 1".into()));
        }
        // Every weight matrix's size must fit (stacks * G*H * widest input), its factors too.
        let invalid = |e: Error| Error::InvalidDesc(e.to_string());
        let stacked = crate::error::size("layer outputs", &[self.directions(), self.hidden_size])
            .map_err(invalid)?;
        let gh =
            crate::error::size("gate rows", &[self.gates(), self.hidden_size]).map_err(invalid)?;
        let widest = self.input_size.max(stacked);
        crate::error::size("weights", &[self.num_layers, self.directions(), gh, widest])
            .map_err(invalid)?;
        Ok(())
    }
}
