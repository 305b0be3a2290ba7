//! Truncated BPTT: windows of `k` steps run forward and back in turn, each starting from the
//! previous window's final state, detached (no gradient flows between windows).
//!
//! The same as calling the module on consecutive chunks of the sequence, feeding each chunk
//! the `(h_n, c_n)` of the one before after `.detach()`, and calling `.backward()` on every
//! chunk without zeroing the gradients: the parameter gradients are summed over the windows,
//! `grad_input` is each window's own, `grad_h0` / `grad_c0` come from the first window only,
//! and `grad_h_n` / `grad_c_n` enter the last window.

use crate::backward::backward;
use crate::desc::RnnDesc;
use crate::error::{Error, Result};
use crate::forward::forward_training;
use crate::seq::{Gradients, OutputGrads, Outputs, SeqBatch};
use crate::weights::PackedWeights;
use crate::workspace::{Mode, Workspace};

/// One window length's buffers.
#[derive(Debug)]
struct Window {
    steps: usize,
    ws: Workspace,
    out: Outputs<f32>,
    grads: Gradients<f32>,
}

impl Window {
    fn new(desc: &RnnDesc, steps: usize, batch: usize) -> Result<Self> {
        Ok(Window {
            steps,
            ws: Workspace::new(desc, steps, batch, Mode::Training)?,
            out: Outputs::try_zeros(desc, steps, batch)?,
            grads: Gradients::try_zeros(desc, steps, batch)?,
        })
    }
}

/// Everything truncated BPTT needs for one (descriptor, T, B, window), sized once.
#[derive(Debug)]
pub struct TbpttWorkspace {
    desc: RnnDesc,
    seq_len: usize,
    batch: usize,
    full: Window,
    /// The last, shorter window when `window` does not divide T.
    tail: Option<Window>,
    /// The state carried between windows, detached.
    h: Vec<f32>,
    c: Vec<f32>,
}

impl TbpttWorkspace {
    /// Sized once for `seq_len` steps of `batch` sequences in windows of `window` steps
    /// (`1..=seq_len`; the last window shorter where it does not divide).
    pub fn new(desc: &RnnDesc, seq_len: usize, batch: usize, window: usize) -> Result<Self> {
        desc.validate()?;
        if window == 0 || window > seq_len {
            return Err(Error::Mismatch(format!(
                "truncated BPTT window {window}, expected 1..={seq_len} (the sequence length)"
            )));
        }
        let rest = seq_len % window;
        let state = crate::error::size("state", &[desc.stacks(), batch, desc.hidden_size])?;
        let lstm = desc.cell.has_cell_state();
        Ok(TbpttWorkspace {
            desc: *desc,
            seq_len,
            batch,
            full: Window::new(desc, window, batch)?,
            tail: if rest > 0 {
                Some(Window::new(desc, rest, batch)?)
            } else {
                None
            },
            h: vec![0.0; state],
            c: vec![0.0; if lstm { state } else { 0 }],
        })
    }
}

/// Truncated BPTT over `input` in windows of the workspace's length: `out` gets the windows'
/// outputs and the last window's final states (the values of an untruncated forward when
/// unidirectional; a reverse direction restarts at the end of every window), `grads` the
/// gradients above.
///
/// Variable lengths are not supported here (a window may hold no step of a short sequence).
pub fn tbptt(
    weights: &PackedWeights,
    tw: &mut TbpttWorkspace,
    input: &SeqBatch<'_, f32>,
    out_grads: &OutputGrads<'_, f32>,
    out: &mut Outputs<f32>,
    grads: &mut Gradients<f32>,
) -> Result<()> {
    let desc = *weights.desc();
    weights.check_trains("tbptt")?;
    input.validate(&desc)?;
    if desc != tw.desc || (input.seq_len, input.batch) != (tw.seq_len, tw.batch) {
        return Err(Error::Mismatch(format!(
            "input of seq_len {} and batch {} for {desc:?}, but the workspace was made for \
             seq_len {} and batch {} of {:?}",
            input.seq_len, input.batch, tw.seq_len, tw.batch, tw.desc
        )));
    }
    if let Some(&n) = input
        .lengths
        .into_iter()
        .flatten()
        .find(|&&n| n != input.seq_len)
    {
        return Err(Error::Mismatch(format!(
            "truncated BPTT over a sequence of length {n}: variable lengths are not supported, \
             expected every length = seq_len {} (or no lengths)",
            input.seq_len
        )));
    }
    let (t_len, batch) = (input.seq_len, input.batch);
    out_grads.validate(&desc, t_len, batch)?;
    out.validate(&desc, t_len, batch)?;
    grads.validate(&desc, t_len, batch)?;

    let (in_w, out_w) = (batch * desc.input_size, batch * desc.output_size());
    let lstm = desc.cell.has_cell_state();
    grads.params.iter_mut().for_each(|g| *g = 0.0);
    let mut t0 = 0;
    while t0 < t_len {
        let win = match &mut tw.tail {
            Some(tail) if t_len - t0 < tw.full.steps => tail,
            _ => &mut tw.full,
        };
        let (k, first, last) = (win.steps, t0 == 0, t0 + win.steps == t_len);
        let x = &input.x[t0 * in_w..(t0 + k) * in_w];
        let mut batch_in = SeqBatch::new(k, batch, x);
        if first {
            batch_in.h0 = input.h0;
            batch_in.c0 = input.c0;
        } else {
            batch_in.h0 = Some(&tw.h);
            batch_in.c0 = lstm.then_some(&tw.c[..]);
        }
        forward_training(weights, &mut win.ws, &batch_in, &mut win.out)?;
        let mut og = OutputGrads::new(&out_grads.output[t0 * out_w..(t0 + k) * out_w]);
        if last {
            og.h_n = out_grads.h_n;
            og.c_n = out_grads.c_n;
        }
        backward(weights, &mut win.ws, &batch_in, &og, &mut win.grads)?;

        out.output[t0 * out_w..(t0 + k) * out_w].copy_from_slice(&win.out.output);
        grads.input[t0 * in_w..(t0 + k) * in_w].copy_from_slice(&win.grads.input);
        if first {
            grads.h0.copy_from_slice(&win.grads.h0);
            grads.c0.copy_from_slice(&win.grads.c0);
        }
        for (acc, g) in grads.params.iter_mut().zip(win.grads.params.iter()) {
            *acc += g;
        }
        tw.h.copy_from_slice(&win.out.h_n);
        tw.c.copy_from_slice(&win.out.c_n);
        t0 += k;
    }
    out.h_n.copy_from_slice(&tw.h);
    out.c_n.copy_from_slice(&tw.c);
    Ok(())
}
