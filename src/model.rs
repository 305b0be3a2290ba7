//! A stack of recurrent layers with PyTorch's interface: weights from a state_dict, inputs in
//! `(T, B, I)` or `batch_first` `(B, T, I)` layout, outputs and gradients named as PyTorch
//! names them. The numbers come from `recur-kernels`.

use crate::bail;
use crate::error::{Error, Result};
use crate::state_dict;
use crate::tensors::{Data, TensorFile};
use recur_kernels::{
    backward, forward_inference, forward_training, tbptt, Gradients, Mode, OutputGrads, Outputs,
    PackedWeights, Params, RnnDesc, SeqBatch, TbpttWorkspace, Workspace,
};

/// Weights ready to run: the parameters and their packed copy, which a public field would let
/// drift apart (new values in `params` that the kernels never see).
pub struct Model {
    params: Params<f32>,
    weights: PackedWeights,
}

/// One batch of inputs, time-major.
#[derive(Debug, Clone)]
pub struct Inputs {
    /// Padded length T.
    pub seq_len: usize,
    /// Sequences, B.
    pub batch: usize,
    /// `(T, B, I)`.
    pub x: Vec<f32>,
    /// Valid steps of each sequence; all T when `None`.
    pub lengths: Option<Vec<usize>>,
    /// `(L*D, B, H)`; zeros when `None`.
    pub h0: Option<Vec<f32>>,
    /// `(L*D, B, H)`, LSTM only; zeros when `None`.
    pub c0: Option<Vec<f32>>,
}

/// Gradients of the outputs, time-major.
#[derive(Debug, Clone)]
pub struct OutputGradients {
    /// `(T, B, D*H)`.
    pub output: Vec<f32>,
    /// `(L*D, B, H)`; zeros when `None`.
    pub h_n: Option<Vec<f32>>,
    /// `(L*D, B, H)`, LSTM only; zeros when `None`.
    pub c_n: Option<Vec<f32>>,
}

/// `(A, B, F)` <-> `(B, A, F)`; `v` holds `a * b * f` values (the callers check it).
fn swap01(v: &[f32], a: usize, b: usize, f: usize) -> Vec<f32> {
    let mut out = vec![0.0; v.len()];
    for i in 0..a {
        for j in 0..b {
            out[(j * a + i) * f..][..f].copy_from_slice(&v[(i * b + j) * f..][..f]);
        }
    }
    out
}

impl Model {
    /// With the best kernels this CPU has (or those `RECUR_ISA` names).
    pub fn new(params: Params<f32>) -> Result<Self> {
        let weights = PackedWeights::new(&params)?;
        Ok(Model { params, weights })
    }

    /// With the kernels of `isa`.
    pub fn with_isa(params: Params<f32>, isa: recur_kernels::Isa) -> Result<Self> {
        let weights = PackedWeights::with_isa(&params, isa)?;
        Ok(Model { params, weights })
    }

    /// For [`Model::infer`] only: half the packed weights of [`Model::new`] (`grad` and
    /// `grad_tbptt` are then errors).
    pub fn for_inference(params: Params<f32>) -> Result<Self> {
        let weights = PackedWeights::for_inference(&params)?;
        Ok(Model { params, weights })
    }

    /// What the model is.
    pub fn desc(&self) -> &RnnDesc {
        &self.params.desc
    }

    /// Its parameters, in PyTorch's layout.
    pub fn params(&self) -> &Params<f32> {
        &self.params
    }

    /// Reads `input` (and `h0`, `c0`, `lengths`) from a file; with `grad`, also `grad_output`,
    /// `grad_h_n` and `grad_c_n`. Any other tensor is an error.
    pub fn read_inputs(
        &self,
        file: &mut TensorFile,
        batch_first: bool,
        grad: bool,
    ) -> Result<(Inputs, Option<OutputGradients>)> {
        let desc = *self.desc();
        let path = file.path.clone();
        let layout = if batch_first {
            "(B, T, I)"
        } else {
            "(T, B, I)"
        };
        let Some(shape) = file.shape("input").map(<[usize]>::to_vec) else {
            bail!("{path}: missing tensor 'input', expected float32 of shape {layout}");
        };
        if shape.len() != 3 || shape[2] != desc.input_size || shape[0] == 0 || shape[1] == 0 {
            bail!(
                "{path}: 'input' has shape {shape:?}, expected {layout} with I = {} and T, B >= 1",
                desc.input_size
            );
        }
        let (seq_len, batch) = if batch_first {
            (shape[1], shape[0])
        } else {
            (shape[0], shape[1])
        };
        let x = file.require_f32("input", &shape)?;
        let x = if batch_first {
            swap01(&x, batch, seq_len, desc.input_size)
        } else {
            x
        };
        let state = [desc.stacks(), batch, desc.hidden_size];
        let lstm = desc.cell.has_cell_state();
        let h0 = file.take_f32("h0", &state)?;
        let c0 = if lstm {
            file.take_f32("c0", &state)?
        } else {
            None
        };
        let lengths = match file.tensors.remove("lengths") {
            None => None,
            Some(t) => {
                let Data::I64(v) = t.data else {
                    bail!("{path}: 'lengths' is float32, expected int64 of shape [{batch}]");
                };
                if t.shape != [batch] {
                    bail!(
                        "{path}: 'lengths' has shape {:?}, expected [{batch}]",
                        t.shape
                    );
                }
                let mut out = Vec::with_capacity(batch);
                for (i, &l) in v.iter().enumerate() {
                    if l < 1 || l as u64 > seq_len as u64 {
                        bail!("{path}: lengths[{i}] = {l}, expected a length in 1..={seq_len}");
                    }
                    out.push(l as usize);
                }
                Some(out)
            }
        };
        let grads = if grad {
            let out_w = desc.output_size();
            let go_shape = if batch_first {
                [batch, seq_len, out_w]
            } else {
                [seq_len, batch, out_w]
            };
            let go = file.require_f32("grad_output", &go_shape)?;
            let output = if batch_first {
                swap01(&go, batch, seq_len, out_w)
            } else {
                go
            };
            let h_n = file.take_f32("grad_h_n", &state)?;
            let c_n = if lstm {
                file.take_f32("grad_c_n", &state)?
            } else {
                None
            };
            Some(OutputGradients { output, h_n, c_n })
        } else {
            None
        };
        let known = match (grad, lstm) {
            (false, false) => "input, h0, lengths",
            (false, true) => "input, h0, c0, lengths",
            (true, false) => "input, h0, lengths, grad_output, grad_h_n",
            (true, true) => "input, h0, c0, lengths, grad_output, grad_h_n, grad_c_n",
        };
        file.expect_empty(known)?;
        let inputs = Inputs {
            seq_len,
            batch,
            x,
            lengths,
            h0,
            c0,
        };
        Ok((inputs, grads))
    }

    fn batch<'a>(inputs: &'a Inputs) -> SeqBatch<'a, f32> {
        SeqBatch {
            seq_len: inputs.seq_len,
            batch: inputs.batch,
            x: &inputs.x,
            lengths: inputs.lengths.as_deref(),
            h0: inputs.h0.as_deref(),
            c0: inputs.c0.as_deref(),
        }
    }

    /// The forward pass on the current rayon pool.
    pub fn infer(&self, inputs: &Inputs) -> Result<Outputs<f32>> {
        let desc = self.desc();
        let mut ws = Workspace::new(desc, inputs.seq_len, inputs.batch, Mode::Inference)?;
        let mut out = Outputs::try_zeros(desc, inputs.seq_len, inputs.batch)?;
        forward_inference(&self.weights, &mut ws, &Self::batch(inputs), &mut out)?;
        Ok(out)
    }

    /// The training forward and the full backward on the current rayon pool; with
    /// `recompute`, the gate activations are recomputed in the backward instead of saved
    /// (`Mode::TrainingRecompute`: less memory, about a third more time).
    pub fn grad(
        &self,
        inputs: &Inputs,
        og: &OutputGradients,
        recompute: bool,
    ) -> Result<(Outputs<f32>, Gradients<f32>)> {
        let desc = self.desc();
        let (t, b) = (inputs.seq_len, inputs.batch);
        let mode = match recompute {
            true => Mode::TrainingRecompute,
            false => Mode::Training,
        };
        let mut ws = Workspace::new(desc, t, b, mode)?;
        let mut out = Outputs::try_zeros(desc, t, b)?;
        let input = Self::batch(inputs);
        forward_training(&self.weights, &mut ws, &input, &mut out)?;
        let mut grads = Gradients::try_zeros(desc, t, b)?;
        let g = OutputGrads {
            output: &og.output,
            h_n: og.h_n.as_deref(),
            c_n: og.c_n.as_deref(),
        };
        backward(&self.weights, &mut ws, &input, &g, &mut grads)?;
        Ok((out, grads))
    }

    /// Truncated BPTT in windows of `window` steps (see `recur_kernels::tbptt`), on the current
    /// rayon pool.
    pub fn grad_tbptt(
        &self,
        inputs: &Inputs,
        og: &OutputGradients,
        window: usize,
    ) -> Result<(Outputs<f32>, Gradients<f32>)> {
        let desc = self.desc();
        let (t, b) = (inputs.seq_len, inputs.batch);
        let mut tw = TbpttWorkspace::new(desc, t, b, window)?;
        let mut out = Outputs::try_zeros(desc, t, b)?;
        let mut grads = Gradients::try_zeros(desc, t, b)?;
        let g = OutputGrads {
            output: &og.output,
            h_n: og.h_n.as_deref(),
            c_n: og.c_n.as_deref(),
        };
        tbptt(
            &self.weights,
            &mut tw,
            &Self::batch(inputs),
            &g,
            &mut out,
            &mut grads,
        )?;
        Ok((out, grads))
    }

    /// The named tensors of a result file: outputs, and with `grads` every gradient.
    pub fn named_results(
        &self,
        inputs: &Inputs,
        out: Outputs<f32>,
        grads: Option<Gradients<f32>>,
        batch_first: bool,
    ) -> Vec<(String, Vec<usize>, Vec<f32>)> {
        let desc = self.desc();
        let (t, b) = (inputs.seq_len, inputs.batch);
        let seq = |v: Vec<f32>, f: usize| {
            if batch_first {
                (vec![b, t, f], swap01(&v, t, b, f))
            } else {
                (vec![t, b, f], v)
            }
        };
        let state = vec![desc.stacks(), b, desc.hidden_size];
        let lstm = desc.cell.has_cell_state();
        let mut named = Vec::new();
        let (shape, v) = seq(out.output, desc.output_size());
        named.push(("output".to_string(), shape, v));
        named.push(("h_n".to_string(), state.clone(), out.h_n));
        if lstm {
            named.push(("c_n".to_string(), state.clone(), out.c_n));
        }
        if let Some(g) = grads {
            let (shape, v) = seq(g.input, desc.input_size);
            named.push(("grad_input".to_string(), shape, v));
            named.push(("grad_h0".to_string(), state.clone(), g.h0));
            if lstm {
                named.push(("grad_c0".to_string(), state, g.c0));
            }
            for (k, shape, v) in state_dict::named(&g.params) {
                named.push((format!("grad.{k}"), shape, v));
            }
        }
        named
    }
}

/// Builds a rayon pool of `threads` threads (at least 1).
pub fn thread_pool(threads: usize) -> Result<rayon::ThreadPool> {
    if threads == 0 {
        bail!("--threads 0, expected at least 1");
    }
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .map_err(|e| Error(format!("cannot start {threads} threads: {e}")))
}
