//! Buffers sized once per (descriptor, T, B, mode) and reused across calls.

use crate::aligned::Buf;
use crate::desc::RnnDesc;
use crate::error::{Error, Result};
use crate::gemm_tn::TnScratch;
use crate::microkernel::MAX_NR;

/// Whether a workspace serves inference only or the training forward plus backward.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Forward only: nothing is saved; buffers are shared across layers (but for a wavefront).
    Inference,
    /// The forward saves what the backward needs: every layer's gate activations and states.
    Training,
    /// Training that saves only the states (h, c and the layers' outputs): the backward
    /// recomputes the gate activations a chunk of steps at a time (`forward::chunk_steps`, about
    /// 256 rows), with one GEMM of the chunk's inputs and one of its states, then runs the
    /// chunk's steps and adds the chunk's share of the weight gradients. Keeps one chunk of gate
    /// activations instead of T·B·G·H floats, for about one more forward of GEMM work. The
    /// weight gradients are summed chunk by chunk: equal to [`Mode::Training`]'s to rounding,
    /// not bit for bit; every other result is the same bits.
    TrainingRecompute,
}

/// Every buffer a forward or backward call needs, so that the time loop allocates nothing.
///
/// Per (layer, direction) "slot" (in inference, one per direction, or per layer where the
/// layers run as a wavefront):
/// - `gates`: `(T, B, G*H)`, the input projection, then the gate activations, then (in the
///   backward, in place) the input-side gate gradients; in inference, one chunk of steps of the
///   projection (`forward::chunk_steps`);
/// - `states`: `(T+1, B, H)`, slot `t` / `t+1` hold the state before / after step `t` going
///   forward, and the other way round going backward (so h0 sits in slot 0 or slot T); in
///   inference `(2, B, H)`, slot `t % 2` for slot `t` (the cells write the layer's output);
/// - `cells` (LSTM): the same for c; `hn` (GRU): W_hn h_prev + b_hn per step, then (in the
///   backward, in place) its gradient.
#[derive(Debug)]
pub struct Workspace {
    pub(crate) desc: RnnDesc,
    pub(crate) seq_len: usize,
    pub(crate) batch: usize,
    pub(crate) mode: Mode,
    pub(crate) lengths: Vec<usize>,
    /// Outputs of the layers below the top: all of them in training, two alternating otherwise.
    pub(crate) inter: Vec<Buf>,
    pub(crate) gates: Vec<Buf>,
    pub(crate) states: Vec<Buf>,
    pub(crate) cells: Vec<Buf>,
    pub(crate) hn: Vec<Buf>,
    /// Per direction (per layer in a wavefront): h_prev W_hhᵀ of the current step, `B` rows of
    /// `packed::GateLayout::cols` (at most `G*Hp`, Hp = H rounded up to 32); in the backward,
    /// GRU's dG_h of two steps (one written while the other is read) or LSTM's scratch,
    /// `(2, B, G*H)`.
    pub(crate) gh: Vec<Buf>,
    /// Per step slot (as `gh`): the input projection's tail columns of a chunk (see
    /// `packed::GateLayout`), empty where no ISA's layout has a tail (H a multiple of 32).
    pub(crate) tail: Vec<Buf>,
    /// [`Mode::TrainingRecompute`], per direction: a chunk's h_prev W_hhᵀ (`S * B` rows, as
    /// `gh`'s, room for `G*Hp`; the chunk's projection's tail columns before that), and
    /// the chunk's recomputed h (and c) that nothing reads, `(S, B, H)`.
    pub(crate) re_gh: Vec<Buf>,
    pub(crate) re_h: Vec<Buf>,
    pub(crate) re_c: Vec<Buf>,
    /// Backward, per direction (per layer in a wavefront): the carried d loss / d h and
    /// d loss / d c, `(B, H)`.
    pub(crate) dh: Vec<Buf>,
    pub(crate) dc: Vec<Buf>,
    /// Backward: d loss / d output of the layer below, two alternating `(T, B, D*H)`.
    pub(crate) dy: Vec<Buf>,
    /// Backward, per direction (per layer in a wavefront): the weight-gradient GEMMs' packed
    /// copies, sized by the first backward (they depend on the ISA and the thread count).
    pub(crate) tn: Vec<TnScratch>,
    /// Set by a training forward, which the backward needs first: the stamp of the weights it
    /// ran with (the backward must be given the same values).
    pub(crate) saved: Option<u64>,
}

fn bufs(count: usize, len: usize) -> Result<Vec<Buf>> {
    (0..count)
        .map(|_| {
            Buf::try_zeros(len).ok_or_else(|| crate::error::no_room::<f32>("workspace buffer", len))
        })
        .collect()
}

impl Workspace {
    /// Sizes every buffer for `seq_len` padded steps of `batch` sequences.
    pub fn new(desc: &RnnDesc, seq_len: usize, batch: usize, mode: Mode) -> Result<Self> {
        desc.validate()?;
        if seq_len == 0 || batch == 0 {
            return Err(Error::Mismatch(format!(
                "workspace for seq_len {seq_len} and batch {batch}, expected both >= 1"
            )));
        }
        // The widest buffer: a row of every step's slot (seq_len + 1 of them) of the widest of
        // the input, the output and the gates padded to whole panels (the step's and the tail's
        // scratch); `validate` bounds the factors.
        let padded = desc.hidden_size.div_ceil(MAX_NR) * MAX_NR;
        let widest = desc
            .input_size
            .max(crate::error::size("gate columns", &[desc.gates(), padded])?)
            .max(desc.output_size());
        let steps = crate::error::size("workspace steps", &[seq_len])? + 1;
        crate::error::size("workspace buffers", &[steps, batch, widest])?;
        let (t, b, h, d) = (seq_len, batch, desc.hidden_size, desc.directions());
        let gh = desc.gates() * h;
        // States are saved per layer in both training modes; gate activations in one only.
        let training = mode != Mode::Inference;
        let recompute = mode == Mode::TrainingRecompute;
        let keep_gates = mode == Mode::Training;
        // One set of step buffers per direction, or per layer where the layers run at once.
        let wave = crate::forward::wavefront_shape(desc);
        let step_slots = if wave { desc.num_layers } else { d };
        let slots = if training { desc.stacks() } else { step_slots };
        let gate_slots = if keep_gates {
            desc.stacks()
        } else {
            step_slots
        };
        // State slots: every step's when saved, else two in turn.
        let state_len = if training { (t + 1) * b * h } else { 2 * b * h };
        let chunk = crate::forward::chunk_steps(t, b);
        let re =
            |on: bool, len: usize| bufs(if recompute { d } else { 0 }, if on { len } else { 0 });
        let lstm = desc.cell.has_cell_state();
        let gru = desc.cell == crate::CellKind::Gru;
        let below = desc.num_layers - 1;
        let inter = if training { below } else { below.min(2) };
        // The backward's carried d h and d c: per direction, or per layer in a wavefront.
        let per_dir = |on: bool, len: usize| {
            bufs(
                if training { step_slots.max(d) } else { 0 },
                if on { len } else { 0 },
            )
        };
        Ok(Workspace {
            desc: *desc,
            seq_len,
            batch,
            mode,
            lengths: vec![t; b],
            inter: bufs(inter, t * b * desc.output_size())?,
            gates: bufs(
                gate_slots,
                match keep_gates {
                    true => t * b * gh,
                    false => chunk * b * gh,
                },
            )?,
            states: bufs(slots, state_len)?,
            // Unused buffers stay as empty Vecs, so per-slot code can zip over all of them.
            cells: bufs(slots, if lstm { state_len } else { 0 })?,
            hn: bufs(
                gate_slots,
                match (gru, keep_gates, recompute) {
                    (false, _, _) => 0,
                    (true, true, _) => t * b * h,
                    (true, false, true) => chunk * b * h,
                    (true, false, false) => b * h,
                },
            )?,
            gh: bufs(step_slots.max(d), 2 * b * desc.gates() * padded)?,
            tail: bufs(
                step_slots.max(d),
                match h % MAX_NR {
                    0 => 0,
                    _ => chunk * b * desc.gates() * MAX_NR,
                },
            )?,
            re_gh: re(true, chunk * b * desc.gates() * padded)?,
            re_h: re(true, chunk * b * h)?,
            re_c: re(lstm, chunk * b * h)?,
            dh: per_dir(true, b * h)?,
            dc: per_dir(lstm, b * h)?,
            dy: bufs(
                if training { below.min(2) } else { 0 },
                t * b * desc.output_size(),
            )?,
            tn: (0..if training { step_slots.max(d) } else { 0 })
                .map(|_| TnScratch::default())
                .collect(),
            saved: None,
        })
    }

    /// What it was made for.
    pub fn desc(&self) -> &RnnDesc {
        &self.desc
    }

    /// The padded length it takes.
    pub fn seq_len(&self) -> usize {
        self.seq_len
    }

    /// The sequences it takes.
    pub fn batch(&self) -> usize {
        self.batch
    }

    /// What it keeps for a backward.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Bytes held by the workspace's buffers (the weight-gradient scratch once a backward has
    /// sized it).
    pub fn bytes(&self) -> usize {
        let all = [
            &self.inter,
            &self.gates,
            &self.states,
            &self.cells,
            &self.hn,
            &self.gh,
            &self.tail,
            &self.re_gh,
            &self.re_h,
            &self.re_c,
            &self.dh,
            &self.dc,
            &self.dy,
        ];
        let floats: usize = all
            .iter()
            .flat_map(|v| v.iter())
            .map(|b| b.len())
            .sum::<usize>()
            + self.tn.iter().map(TnScratch::floats).sum::<usize>();
        floats * std::mem::size_of::<f32>()
    }

    /// Checks that a call's descriptor and sizes are the ones this workspace was made for.
    pub(crate) fn check(&self, desc: &RnnDesc, seq_len: usize, batch: usize) -> Result<()> {
        if *desc != self.desc {
            return Err(Error::Mismatch(format!(
                "weights are for {desc:?}, but the workspace was made for {:?}",
                self.desc
            )));
        }
        if (seq_len, batch) != (self.seq_len, self.batch) {
            return Err(Error::Mismatch(format!(
                "input has seq_len {seq_len} and batch {batch}, but the workspace was made for \
                 seq_len {} and batch {}",
                self.seq_len, self.batch
            )));
        }
        Ok(())
    }
}
