//! The forward sequence driver: layers, directions, time steps, variable lengths.
//!
//! Per layer and direction: the input projection of a chunk of steps at a time (out of the
//! recurrence: it depends on no state), then each step runs one GEMM of the state with W_hh
//! for all gates and the cell's elementwise math, whose new state goes straight to the layer's
//! output. Directions run in parallel; within a direction the steps run in one team
//! (`team.rs`), each thread owning a block of hidden units: their columns of the projection and
//! of the step GEMM, then their cells, one wait per step. With a W_hh small enough to stay in
//! each thread's L2, the steps are cut by batch rows instead, no wait within a chunk, the next
//! chunk's projection shared by whoever is done with its steps ([`batch_split`],
//! [`pipe_steps`]), and the layers of a one-direction network run as a wavefront, a thread
//! per layer, one wait per chunk ([`wavefront`]). Rows past their sequence's length hold their
//! state, so h_n is simply the last slot and the reverse direction starts at each sequence's
//! own last step.

use crate::aligned::Buf;
use crate::cell::{self, FwdUnits};
use crate::desc::RnnDesc;
use crate::error::{Error, Result};
use crate::microkernel;
use crate::packed;
use crate::packed::{split, GateLayout, PanelOrder};
use crate::seq::{Outputs, SeqBatch};
use crate::team::{self, Shared, SharedRead, MAX_SLICES};
use crate::weights::PackedWeights;
use crate::workspace::{Mode, Workspace};

/// Runs the network forward without saving anything for a backward.
///
/// `ws` may be of either mode; it must have been made for this descriptor, `seq_len` and batch.
/// `out` must be sized as [`Outputs::zeros`] sizes it; it is overwritten.
pub fn forward_inference(
    weights: &PackedWeights,
    ws: &mut Workspace,
    input: &SeqBatch<'_, f32>,
    out: &mut Outputs<f32>,
) -> Result<()> {
    run(weights, ws, input, out, false)
}

/// Runs the network forward and saves in `ws` what [`crate::backward`] needs.
///
/// `ws` must be a [`Mode::Training`] or [`Mode::TrainingRecompute`] workspace.
pub fn forward_training(
    weights: &PackedWeights,
    ws: &mut Workspace,
    input: &SeqBatch<'_, f32>,
    out: &mut Outputs<f32>,
) -> Result<()> {
    weights.check_trains("forward_training")?;
    if ws.mode == Mode::Inference {
        return Err(Error::Mismatch(
            "forward_training needs a workspace made with Mode::Training or \
             Mode::TrainingRecompute"
                .into(),
        ));
    }
    run(weights, ws, input, out, true)
}

/// Rows ahead whose saved activations the backward's cells prefetch: they come from memory in
/// short runs of units per row, which the hardware prefetcher does not follow. (The forward's
/// cells read the input projection of their chunk from cache.)
pub(crate) const PREFETCH_ROWS: usize = 2;

/// Rows of the input projection computed at once: enough for the GEMM to reuse each panel of
/// W_ih over many rows, few enough for a chunk of gates to stay in L2.
const PROJECTION_ROWS: usize = 256;

/// Rows of a job of `DirStep::project_claims` and `backward::PipeDx` at least (by a panel of
/// W_ih): two row tiles.
pub(crate) const JOB_ROWS: usize = 24;

/// Steps per chunk of the input projection where the projection rides the steps (see
/// [`rides_steps`]), and of the backward's ridden input gradient: one rider's rows.
pub(crate) const RIDE_CHUNK: usize = microkernel::RIDER_ROWS;

/// Whether the input projection of each chunk of steps (but the first) is computed by tiles
/// that ride the one-row step GEMMs of the chunk before (see [`microkernel::ride`]), where
/// alone it would be one GEMM over the whole sequence before the steps: at batch 1, on an ISA
/// with the riding kernel, over two chunks or more. The step streams W_hh from L2 or L3 with
/// most FMA slots idle, which the projection's tiles take.
fn rides_steps(isa: crate::isa::Isa, t_len: usize, batch: usize) -> bool {
    batch == 1 && microkernel::rides(isa) && t_len >= 2 * RIDE_CHUNK
}

/// Steps per chunk of the input projection (see `direction`): two or more where the sequence
/// has them, so that a chunk's gates hold two of [`pipe_steps`]'s.
pub(crate) fn chunk_steps(seq_len: usize, batch: usize) -> usize {
    PROJECTION_ROWS.div_ceil(batch).max(2).min(seq_len.max(1))
}

/// How a direction's steps are cut across a team: blocks of `nr` hidden units (one panel of
/// each gate's columns of W_hh; a partial last block is the layout's tail, shared by the
/// gates, see `GateLayout`), a near-equal range of blocks per slice.
pub(crate) struct UnitBlocks {
    nr: usize,
    h: usize,
    blocks: usize,
    pub slices: usize,
}

/// Multiply-adds of a step's GEMM below which a slice of a team cut by units does not pay for
/// its wait each step (a hand-over between cores, ~0.5 us here): LSTM 100,1,64 (16K a step)
/// took 0.064 ms at 2 threads against 0.057 at 1 (with one slice at 2 threads: 0.889x the time,
/// 9 of 10 pairs); H = 128 (65K) 0.177 against 0.245. H = 96 (37K, 0.186 against 0.170) stays
/// cut in two: at 2 threads these sub-0.2 ms runs move by 25% from one pair to the next.
const MIN_SLICE_WORK: usize = 1 << 14;

impl UnitBlocks {
    /// The cut of a direction's steps on the current pool: a slice per thread (the directions'
    /// share of them), at most one per block.
    pub(crate) fn new(desc: &RnnDesc, isa: crate::isa::Isa) -> Self {
        let (nr, h) = (microkernel::shape(isa).nr, desc.hidden_size);
        let blocks = h.div_ceil(nr);
        let slices =
            (rayon::current_num_threads() / desc.directions()).clamp(1, MAX_SLICES.min(blocks));
        UnitBlocks {
            nr,
            h,
            blocks,
            slices,
        }
    }

    /// Slice `i`'s blocks and its units: the first and how many.
    pub(crate) fn slice(&self, i: usize) -> (std::ops::Range<usize>, usize, usize) {
        let (u0, u1) = split(self.blocks, self.slices, i);
        let (j0, n) = self.units(&(u0..u1));
        (u0..u1, j0, n)
    }

    /// The units of `blocks`: the first and how many.
    pub(crate) fn units(&self, blocks: &std::ops::Range<usize>) -> (usize, usize) {
        let j0 = blocks.start * self.nr;
        (j0, (blocks.end * self.nr).min(self.h).saturating_sub(j0))
    }

    pub(crate) fn blocks(&self) -> usize {
        self.blocks
    }

    /// Inference's cut of `batch` rows: where its steps are cut by units (not by rows, see
    /// [`batch_split`]), no more slices than a step's work pays for. Training keeps a slice per
    /// thread, as its backward does, so that each thread finds its units' saved states in its
    /// own cache (with one slice for the training forward only, LSTM 100,1,96 training took
    /// 1.26x the time at 2 threads; with one for the backward too, 1.31x).
    pub(crate) fn inference(mut self, desc: &RnnDesc, batch: usize) -> Self {
        if !batch_split(desc, batch, &self) {
            let work = batch.saturating_mul(desc.gates() * self.h * self.h);
            self.slices = self.slices.min((work / MIN_SLICE_WORK).max(1));
        }
        self
    }

    /// Whether every slice has the same columns to compute: as many blocks, all whole.
    pub(crate) fn even(&self) -> bool {
        self.blocks.is_multiple_of(self.slices) && self.h.is_multiple_of(self.nr)
    }
}

/// The buffers one direction of one layer works in.
#[derive(Clone, Copy)]
struct DirBufs<'a> {
    gates: Shared<'a>,
    states: Shared<'a>,
    cells: Shared<'a>,
    hn: Shared<'a>,
    gh: Shared<'a>,
    /// The input projection's tail columns (see [`GateLayout`]) of a chunk's rows, before they
    /// go to their gates' blocks.
    tail: Shared<'a>,
}

/// Slots (before, after) step `t` in direction `dir`.
#[inline]
pub(crate) fn slots(dir: usize, t: usize) -> (usize, usize) {
    if dir == 0 {
        (t, t + 1)
    } else {
        (t + 1, t)
    }
}

/// The step index of processing step `step` in direction `dir`.
#[inline]
pub(crate) fn time_of(dir: usize, step: usize, seq_len: usize) -> usize {
    if dir == 0 {
        step
    } else {
        seq_len - 1 - step
    }
}

/// Whether this network's layers run as a wavefront (see [`wavefront`]) when there are threads
/// to share: one direction, several layers, and a recurrent weight small enough for one core's
/// L2 to keep whole (in the wavefront one thread streams all of a layer's W_hh each step; cut
/// by units, each streams its part, which may fit where the whole does not: GRU 100,16,512 with
/// 2 layers ran 12% slower as a wavefront, its 3 MiB W_hh past a 2 MiB L2). The workspace gives
/// such a network one set of step buffers per layer.
pub(crate) fn wavefront_shape(desc: &RnnDesc) -> bool {
    !desc.bidirectional && (2..=MAX_SLICES).contains(&desc.num_layers) && l2_resident(desc)
}

/// Whether a thread's L2 can keep a layer's whole W_hh from step to step: no bigger than the
/// core's L2 (read at start-up; 1 MiB on Zen 5, where LSTM H = 256's 1 MiB was measured
/// resident, 2 MiB on the Intel Xeon VM).
pub(crate) fn l2_resident(desc: &RnnDesc) -> bool {
    (desc.gates() * desc.hidden_size)
        .checked_mul(desc.hidden_size * 4)
        .is_some_and(|bytes| bytes <= crate::cache::l2_bytes())
}

/// Whether a direction's steps are cut by rows of the batch rather than by units: with W_hh
/// resident in each thread's L2, a thread that owns some rows runs them through a whole chunk
/// of steps with no wait (rows never interact), where cut by units every step waits for every
/// unit of the new state (20% of LSTM 400,8,128's time at 2 threads); past L2, where the CPU is
/// one on which that still pays with enough rows a thread (see `cache::rows_past_l2`), each
/// thread streams all of W_hh each step instead of its part. The input projection of the
/// next chunk is shared, job by job, by the slices done with this chunk's steps (see
/// [`pipe_steps`]), or in inference each slice projects its own rows (see [`own_rows`]).
///
/// With fewer rows than two a slice (B = 3 at 2 threads), by rows still where the layer's
/// weights are small and the rows' larger share costs less than the units' wait (see
/// [`few_rows_pay`]).
pub(crate) fn batch_split(desc: &RnnDesc, batch: usize, cut: &UnitBlocks) -> bool {
    // Weights in half the L2 are a W_hh resident in it.
    let every_layer = desc.input_size.max(desc.output_size());
    rows_cut(
        batch,
        cut.slices,
        l2_resident(desc),
        crate::cache::rows_past_l2(),
    ) || in_half_l2(desc, every_layer) && few_rows_pay(batch, cut, desc.gates())
}

/// Whether W_ih and W_hh of a layer whose input has `input` features take no more than half of
/// a core's L2 together: cut by rows, each thread streams all of both.
fn in_half_l2(desc: &RnnDesc, input: usize) -> bool {
    (input + desc.hidden_size)
        .checked_mul(desc.gates() * desc.hidden_size * 4)
        .is_some_and(|bytes| bytes <= crate::cache::l2_bytes() / 2)
}

/// Whether a batch of fewer than two rows a slice, but two in the largest, runs faster cut by
/// rows than by units: where the largest slice's extra share of a step's multiply-adds, cut
/// by rows against cut by units, is less than [`MIN_SLICE_WORK`], about the price of the wait
/// each step cut by units. `ab.sh`, 2 threads, B = 3, 6-8 pairs, inference / training
/// (2026-12-04): LSTM 200,3,96 (blocks cut 2:1, so no extra share) 0.846x / 0.769x the time,
/// 0.881x / 0.910x in a faster hour; LSTM 100,3,64 (8.2K) 0.988x / 0.970x. Past it: GRU
/// 100,3,128 (24.6K) 0.960x / 0.890x in a slow hour, 1.068-1.078x / 1.017x in a fast one;
/// LSTM 100,3,128 and RNN 100,3,256 (32.8K) 1.008x / 1.024x and 1.094x / 1.063x. Over half the
/// L2 of weights (see `small_weights`) rows lost where this rule would take them: LSTM
/// 100,3,256,200 (1.4 MiB, 12.8K) 1.130x / 1.062x. One row a slice (B = 2) lost everywhere:
/// 1.007-1.334x.
fn few_rows_pay(batch: usize, cut: &UnitBlocks, gates: usize) -> bool {
    let (s, h) = (cut.slices, cut.h);
    // More rows than slices: two in the largest.
    if s < 2 || batch <= s || batch >= 2 * s {
        return false;
    }
    // The largest slice's units cut by units; its rows cut by rows.
    let units = (0..s).map(|i| cut.slice(i).2).max().unwrap_or(h);
    let rows = batch.div_ceil(s);
    // (rows / B - units / H) of the step's B * G * H * H multiply-adds.
    let extra = (gates * h) as i128 * ((rows * h) as i128 - (units * batch) as i128);
    extra < MIN_SLICE_WORK as i128
}

/// Whether each slice of a team cut by rows projects its own rows of layer `l`'s input, one
/// GEMM a step (the rows are a run of their own in each), so that its steps read gates from
/// its own cache rather than gates another core wrote: with 8 rows a slice or more, and W_ih
/// and W_hh together in half of a core's L2, since each of those GEMMs streams all of W_ih
/// (2 to 4 rows a slice lost 3-5%). In inference with as many rows in every slice, the whole
/// sequence in one round, chunk by chunk, with no wait at all; else in the pipelined rounds
/// (see [`pipe_steps`]), where a slice done with its own rows' jobs takes the others'.
///
/// At 2 threads (`ab.sh`, 8 pairs, Zen 4, 2026-12-06), inference in one round against the
/// pipelined rounds whose jobs are panels of every row: LSTM 100,64,128 0.921x the time, GRU
/// 100,16,128 1.001x; against the pipelined rounds of own rows' jobs, LSTM 100,64,128 0.976x,
/// GRU 100,16,128 0.991x, LSTM 100,16,100 0.986x. Rows that do not cut evenly: LSTM 100,17,100
/// in one round 1.077x the time of the panels' jobs, which take 1.047x that of the own rows'
/// (0.955x); training, own rows' jobs against panels': LSTM 100,16,100 0.988x, GRU 100,16,256
/// 0.996x.
fn own_rows(desc: &RnnDesc, l: usize, batch: usize, slices: usize) -> bool {
    batch >= 8 * slices && in_half_l2(desc, desc.layer_input_size(l))
}

/// [`batch_split`]'s rule: two rows a slice or more where W_hh is resident in L2, `past_l2`
/// rows a slice where it is not (if this CPU has such a number, see `cache::rows_past_l2`).
fn rows_cut(batch: usize, slices: usize, resident: bool, past_l2: Option<usize>) -> bool {
    let need = match resident {
        true => Some(2),
        false => past_l2,
    };
    slices > 1 && need.is_some_and(|rows| batch >= rows.max(2) * slices)
}

/// Steps per chunk of a team cut by rows outside [`own_rows`], whose rounds are
/// pipelined: in round `c`, each slice runs its rows through chunk `c - 1`'s steps, then takes
/// jobs of chunk `c`'s projection until none is left (`DirStep::project_claims`), one wait a
/// chunk, so the slices with fewer rows (or done first) take more of the projection. The
/// projection in a round of its own before the steps (cut evenly by units or rows) left a
/// slice waiting for the others' steps: at 2 threads (`ab.sh`, 6 pairs, Zen 4, 2026-12-06)
/// LSTM 37,5,300,200 took 0.915x the inference time, GRU 100,7,333,129 0.955x, LSTM
/// 400,9,128 0.914x, LSTM 200,3,96 0.939x; where the rows cut evenly, no loss: LSTM 100,8,256
/// 0.988x, 400,8,128 1.004x (training 0.977x), GRU 100,16,256 training 0.995x. With W_hh past
/// L2 (cut by rows on Zen 4, see `cache::rows_past_l2`), the projection keeps a round of its
/// own (see `run`).
///
/// [`pipe_chunk_steps`]' chunks, two of which fit in the workspace's one (`chunk`, which is
/// of two steps or more where the sequence has them).
fn pipe_steps(seq_len: usize, batch: usize, chunk: usize) -> usize {
    pipe_chunk_steps(seq_len, batch).min(chunk / 2).max(1)
}

/// Steps per chunk of pipelined rounds (the forward's cut by rows, `backward::PipeDx`): 8
/// chunks or more, so that the last round, whose work is not shared, is a small part; 32 rows
/// or more, for a job's GEMM to reuse each panel of W_ih.
pub(crate) fn pipe_chunk_steps(seq_len: usize, batch: usize) -> usize {
    seq_len.div_ceil(8).max(32usize.div_ceil(batch)).max(1)
}

/// Steps per chunk in the wavefront: few, so that the rounds where fewer than all layers have
/// work (the first and last `L - 1` of `chunks + L - 1`) stay a small part, but with enough rows
/// (32) for the chunk's projection to reuse each panel of W_ih, at most 8 steps, and at least
/// 16 chunks where the sequence has the steps. At 2 threads, 2 layers (`ab.sh`, 4 pairs,
/// 2026-12-04), against the chunk of T / 16 steps before: LSTM 400,8,128 (4 steps, not 25)
/// 0.956x the inference time, GRU 100,16,256 (2, not 7) 0.957x and 0.974x the training time,
/// RNN 200,32,512 (1, not 13) 0.950x and 0.980x; LSTM 400,1,256 (8, not 25) 0.974x. 16 or 64
/// rows instead of 32 were within 2%. (A chunk of 64 steps left LSTM 100,1,256 with 2 layers
/// three rounds, 1.9 -> 2.8 ms.)
pub(crate) fn wave_chunk_steps(seq_len: usize, batch: usize) -> usize {
    let short = 32usize.div_ceil(batch).min(8).min(seq_len.div_ceil(16));
    chunk_steps(seq_len, batch).min(short.max(1))
}

fn run(
    weights: &PackedWeights,
    ws: &mut Workspace,
    input: &SeqBatch<'_, f32>,
    out: &mut Outputs<f32>,
    training: bool,
) -> Result<()> {
    let desc = *weights.desc();
    input.validate(&desc)?;
    ws.check(&desc, input.seq_len, input.batch)?;
    out.validate(&desc, input.seq_len, input.batch)?;
    ws.saved = None;
    for (b, len) in ws.lengths.iter_mut().enumerate() {
        *len = input.len_of(b);
    }
    let (t_len, batch) = (input.seq_len, input.batch);
    let (nd, bh) = (desc.directions(), batch * desc.hidden_size);
    // Gate activations (and GRU's W_hn h + b_hn) are kept for the backward in one mode only.
    let keep_gates = training && ws.mode == Mode::Training;
    let wave = wavefront_shape(&desc);
    // Which buffer of each kind (layer l, direction d) works in: its own when saved for the
    // backward or when the layers run at once (the wavefront), else one per direction.
    let state_slot = |l: usize, d: usize| if training || wave { l * nd + d } else { d };
    let gate_slot = |l: usize, d: usize| if keep_gates || wave { l * nd + d } else { d };
    let step_slot = |l: usize, d: usize| if wave { l } else { d };
    // The layers' outputs below the top: every one in training, else two in turn.
    let inter_index = |l: usize| if training { l } else { l % 2 };
    let Workspace {
        lengths,
        inter,
        gates,
        states,
        cells,
        hn,
        gh,
        tail,
        ..
    } = &mut *ws;
    let lengths: &[usize] = lengths;
    let inter = shared_all(inter);
    let (gates, states, cells, hn, gh, tail) = (
        shared_all(gates),
        shared_all(states),
        shared_all(cells),
        shared_all(hn),
        shared_all(gh),
        shared_all(tail),
    );
    let Outputs { output, h_n, c_n } = out;
    let (output, h_n, c_n) = (Shared::new(output), Shared::new(h_n), Shared::new(c_n));
    // Layer l, direction d: its input, its output and its buffers.
    let make = |l: usize, d: usize, slices: (usize, StepCut), chunk: usize| {
        let x = match l {
            0 => SharedRead::new(input.x),
            _ => inter[inter_index(l - 1)].read(),
        };
        let y = match l + 1 == desc.num_layers {
            true => output,
            false => inter[inter_index(l)],
        };
        let k = l * nd + d;
        let h0 = input.h0.map(|v| &v[k * bh..(k + 1) * bh]);
        let c0 = input.c0.map(|v| &v[k * bh..(k + 1) * bh]);
        let (s, g) = (state_slot(l, d), gate_slot(l, d));
        let bufs = DirBufs {
            gates: gates[g],
            states: states[s],
            cells: cells[s],
            hn: hn[g],
            gh: gh[step_slot(l, d)],
            tail: tail[step_slot(l, d)],
        };
        let io = DirIo { x, y, lengths };
        DirStep::new(
            &desc,
            weights,
            (l, d),
            io,
            (h0, c0),
            bufs,
            keep_gates,
            (t_len, batch),
            (slices, chunk),
        )
    };
    // h_n and c_n of layer l: its last state slot (slot 0 going backward).
    let finish = |l: usize| {
        for d in 0..nd {
            let (k, s) = (l * nd + d, state_slot(l, d));
            let ring = states[s].len() / bh;
            let last = if d == 0 { t_len % ring } else { 0 };
            // SAFETY: the layer's steps are over; nothing writes its slots meanwhile, and each
            // (layer, direction) has its own part of h_n and c_n.
            unsafe {
                h_n.part_mut(k * bh, bh)
                    .copy_from_slice(states[s].part(last * bh, bh));
                let c = c_n.part_mut(k * bh, bh);
                if !c.is_empty() {
                    c.copy_from_slice(cells[s].part(last * bh, bh));
                }
            }
        }
    };
    if wave && rayon::current_num_threads() > 1 {
        wavefront(&desc, t_len, batch, &make);
        (0..desc.num_layers).for_each(finish);
    } else {
        for l in 0..desc.num_layers {
            let run_dir = |d: usize| {
                let cut = UnitBlocks::new(&desc, weights.isa());
                let cut = if training {
                    cut
                } else {
                    cut.inference(&desc, batch)
                };
                let chunk = chunk_steps(t_len, batch);
                let by = match batch_split(&desc, batch, &cut) {
                    true => StepCut::Rows,
                    false => StepCut::Units,
                };
                if by == StepCut::Units {
                    let ride = rides_steps(weights.isa(), t_len, batch);
                    let chunk = if ride { RIDE_CHUNK } else { chunk };
                    let mut run = make(l, d, (cut.slices, by), chunk);
                    (run.ride, run.turns) = (ride, ride);
                    return team::rounds(t_len, cut.slices, &|step, i| run.step(step, i));
                }
                let all = (0..cut.blocks(), 0, desc.hidden_size);
                let own = own_rows(&desc, l, batch, cut.slices);
                if !training && own && batch.is_multiple_of(cut.slices) {
                    // Rows never interact: one round, each slice its own rows' projection and
                    // steps, chunk by chunk, with no wait.
                    let run = make(l, d, (cut.slices, by), chunk);
                    return team::rounds(1, cut.slices, &|_, i| {
                        let (b0, b1) = split(batch, cut.slices, i);
                        for s0 in (0..t_len).step_by(chunk) {
                            run.project_own(s0, b0..b1);
                            for step in s0..(s0 + chunk).min(t_len) {
                                run.advance(step, all.clone(), b0..b1);
                            }
                        }
                    });
                }
                if !l2_resident(&desc) {
                    // Past L2 (each step streams W_hh from L3), chunk c's projection in round
                    // 2c, by units where that cuts it evenly (each thread streams half of W_ih;
                    // by rows, all of it: LSTM 100,9,512,256 2T 1.023x the time), else by rows;
                    // round 2c + 1: its steps by rows. The pipelined rounds' chunks, half as
                    // long (two take turns in the workspace's gates), stream W_ih twice as
                    // often: LSTM 50,64,1024 2T 1.057x the inference time, 1.019x training.
                    let run = make(l, d, (cut.slices, by), chunk);
                    return team::rounds(2 * t_len.div_ceil(chunk), cut.slices, &|r, i| {
                        let s0 = r / 2 * chunk;
                        if r % 2 == 0 {
                            return match cut.even() {
                                true => run.project(s0, cut.slice(i).0, (0, 1)),
                                false => run.project(s0, all.0.clone(), (i, cut.slices)),
                            };
                        }
                        let (b0, b1) = split(batch, cut.slices, i);
                        for step in s0..(s0 + chunk).min(t_len) {
                            run.advance(step, all.clone(), b0..b1);
                        }
                    });
                }
                let chunk = pipe_steps(t_len, batch, chunk);
                let mut run = make(l, d, (cut.slices, by), chunk);
                run.turns = true;
                run.own_rows = own;
                let chunks = t_len.div_ceil(chunk);
                // Round c: chunk c - 1's steps, each slice its rows, then chunk c's
                // projection, job by job, shared by whoever is done with its steps.
                team::rounds(chunks + 1, cut.slices, &|c, i| {
                    if c > 0 {
                        let (b0, b1) = split(batch, cut.slices, i);
                        let s0 = (c - 1) * chunk;
                        for step in s0..(s0 + chunk).min(t_len) {
                            run.advance(step, all.clone(), b0..b1);
                        }
                    }
                    if c < chunks {
                        run.project_claims(c, i);
                    }
                });
            };
            match nd {
                2 => _ = rayon::join(|| run_dir(0), || run_dir(1)),
                _ => run_dir(0),
            }
            // Before the next layer reuses these slots (inference).
            finish(l);
        }
    }
    ws.saved = training.then_some(weights.stamp());
    Ok(())
}

fn shared_all(bufs: &mut [Buf]) -> Vec<Shared<'_>> {
    bufs.iter_mut().map(|b| Shared::new(b)).collect()
}

/// The layers of a one-direction network at once, as a wavefront over chunks of steps: in
/// round `w` of one team, layer `l` runs its chunk `w - l` whole, on one thread. Layer `l + 1`
/// needs layer `l`'s outputs of a chunk only, so with as many threads as layers every thread
/// runs a layer step after step with one wait per chunk, where the unit-split team
/// (`DirStep::step`) waits every step (20% of a small step's time at 2 threads).
///
/// Each layer's chunk `c` reads rows of chunk `c` of the buffer below and writes rows of chunk
/// `c` of its own output; with the outputs of layers `l` and `l + 2` in one buffer (inference),
/// layer `l + 2` writes chunk `c - 2` there while layer `l + 1` reads chunk `c - 1` and layer
/// `l` writes chunk `c`: disjoint rows, each written after the round that read it.
fn wavefront<'a>(
    desc: &RnnDesc,
    t_len: usize,
    batch: usize,
    make: &(dyn Fn(usize, usize, (usize, StepCut), usize) -> DirStep<'a> + Sync),
) {
    let layers = desc.num_layers;
    let chunk = wave_chunk_steps(t_len, batch);
    let runs: Vec<DirStep<'a>> = (0..layers)
        .map(|l| make(l, 0, (1, StepCut::Units), chunk))
        .collect();
    let chunks = t_len.div_ceil(chunk);
    team::rounds(chunks + layers - 1, layers, &|w, l| {
        if let Some(c) = w.checked_sub(l).filter(|&c| c < chunks) {
            for step in c * chunk..((c + 1) * chunk).min(t_len) {
                runs[l].step(step, 0);
            }
        }
    });
}

/// How a team of `slices` cuts a direction's steps: by blocks of hidden units, one round a step
/// (`DirStep::step`), or by batch rows, a chunk of steps a round (see [`batch_split`]). Chosen
/// once in `run`, which runs the rounds, and handed to `DirStep::new`, which lays the gates out
/// for it (see [`GatePlace`]).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum StepCut {
    Units,
    Rows,
}

/// A direction's input and output rows and the sequences' lengths.
struct DirIo<'a> {
    /// The layer's input, `(T, B, I_l)`.
    x: SharedRead<'a>,
    /// The layer's output, `(T, B, D*H)`: this direction writes its `H` columns.
    y: Shared<'a>,
    lengths: &'a [usize],
}

/// One direction of one layer, ready to run its steps: [`DirStep::step`] runs one slice of one
/// step. Made once per call; its buffers are the workspace's.
struct DirStep<'a> {
    desc: RnnDesc,
    pw: &'a crate::weights::PackedLayer,
    isa: crate::isa::Isa,
    d: usize,
    /// The layer's input size.
    i_l: usize,
    io: DirIo<'a>,
    bufs: DirBufs<'a>,
    keep_gates: bool,
    t_len: usize,
    batch: usize,
    cut: UnitBlocks,
    /// Where each gate's columns sit in the packed weights and in `gh`.
    lay: GateLayout,
    /// Steps per chunk of the input projection.
    chunk: usize,
    /// Whether each slice keeps its units' gates in a region of `gates` of its own (see
    /// [`GatePlace`]).
    sliced_gates: bool,
    /// State slots in `states` (and `cells`): T + 1 in a training workspace, else 2 in turn.
    ring: usize,
    /// Whether the next chunk's projection rides this chunk's steps (see [`rides_steps`]).
    ride: bool,
    /// Whether, unless the gates are kept, two chunks of them take turns in `gates`: the next
    /// chunk's rows are written while the current one's are read (riding, or the pipelined cut
    /// by rows, see [`DirStep::project_claims`]).
    turns: bool,
    /// Whether the jobs of [`DirStep::project_claims`] are a slice's rows at one step (each
    /// slice first takes its own rows'), not a panel of every row.
    own_rows: bool,
    /// The projection jobs claimed so far (see [`DirStep::project_claims`]): one count, or
    /// with `own_rows` one per slice.
    claimed: [std::sync::atomic::AtomicUsize; team::MAX_SLICES],
}

impl<'a> DirStep<'a> {
    /// Also writes the initial state in the slot before the first step.
    #[allow(clippy::too_many_arguments)]
    fn new(
        desc: &RnnDesc,
        weights: &'a PackedWeights,
        (l, d): (usize, usize),
        io: DirIo<'a>,
        (h0, c0): (Option<&[f32]>, Option<&[f32]>),
        bufs: DirBufs<'a>,
        keep_gates: bool,
        (t_len, batch): (usize, usize),
        ((slices, by), chunk): ((usize, StepCut), usize),
    ) -> Self {
        let isa = weights.isa();
        let mut cut = UnitBlocks::new(desc, isa);
        cut.slices = slices;
        let bh = batch * desc.hidden_size;
        let ring = bufs.states.len() / bh;
        let first = if d == 0 { 0 } else { t_len % ring };
        for (buf, v) in [(bufs.states, h0), (bufs.cells, c0)] {
            // SAFETY: nothing else touches this direction's state buffers before its steps.
            let slot = unsafe { buf.part_mut(first * bh, bh) };
            match v {
                Some(v) if !slot.is_empty() => slot.copy_from_slice(v),
                _ => slot.fill(0.0),
            }
        }
        DirStep {
            desc: *desc,
            pw: weights.packed(l, d),
            isa,
            d,
            i_l: desc.layer_input_size(l),
            io,
            bufs,
            keep_gates,
            t_len,
            batch,
            cut,
            lay: GateLayout::new(isa, desc.gates(), desc.hidden_size),
            chunk,
            // Kept for the backward, the gates stay in its layout; cut by rows (or one slice),
            // every slice's cells read whole rows.
            sliced_gates: !keep_gates && slices > 1 && by == StepCut::Units,
            ring,
            ride: false,
            turns: false,
            own_rows: false,
            claimed: std::array::from_fn(|_| std::sync::atomic::AtomicUsize::new(0)),
        }
    }

    /// The steps (first, end) of the chunk that holds processing step `step`, as times.
    fn chunk_times(&self, step: usize) -> (usize, usize) {
        let s0 = step / self.chunk * self.chunk;
        let s1 = (s0 + self.chunk).min(self.t_len);
        if self.d == 0 {
            (s0, s1)
        } else {
            (self.t_len - s1, self.t_len - s0)
        }
    }

    /// The row of `gates` holding time `t`: all of them when kept for the backward, else one
    /// chunk's (two in turn with `turns`).
    fn gate_row(&self, t: usize, step: usize) -> usize {
        match (self.keep_gates, self.turns) {
            (true, _) => t,
            (false, false) => t - self.chunk_times(step).0,
            (false, true) => t - self.chunk_times(step).0 + step / self.chunk % 2 * self.chunk,
        }
    }

    /// Where the gates of a slice whose units are `j0..j0 + n` sit in `gates` (see
    /// [`GatePlace`]).
    fn gate_place(&self, j0: usize, n: usize) -> GatePlace {
        let g = self.desc.gates() * self.desc.hidden_size;
        if !self.sliced_gates {
            return GatePlace {
                base: 0,
                row: g,
                gate: self.desc.hidden_size,
                origin: 0,
            };
        }
        let gate_count = self.desc.gates();
        GatePlace {
            base: self.bufs.gates.len() / g * gate_count * j0,
            row: gate_count * n,
            gate: n,
            origin: j0,
        }
    }

    /// Where the step GEMM puts the columns of units `j0..j0 + n` in `gh` (see [`GhPlace`]).
    fn gh_place(&self, j0: usize, n: usize) -> GhPlace {
        let (lay, gate_count) = (self.lay, self.desc.gates());
        let whole = n.min(lay.hw.saturating_sub(j0));
        GhPlace {
            // The slices before hold whole blocks only: `gate_count * j0` columns a row.
            base: self.batch * gate_count * j0,
            row: gate_count * whole + if whole < n { lay.tail_cols } else { 0 },
            gate: whole,
        }
    }

    /// Slice `i` of processing step `step`.
    ///
    /// Each step is one round of a team (see team.rs; the wavefront and the cut by batch rows
    /// run whole chunks of steps a round instead, through `advance`), cut by blocks of hidden
    /// units: a slice
    /// computes its units' columns of every gate in the step GEMM (so each thread streams the
    /// same part of W_hh step after step, from its own cache), then runs their cells at once and
    /// writes their outputs. One wait per step: the next step's GEMM needs every unit of the
    /// new state.
    ///
    /// The input projection (X W_ihᵀ + b_ih, no dependence between steps) is computed a chunk
    /// of steps ahead, in the round that starts the chunk, by each slice for its own units'
    /// columns (W_ih is packed by gate like W_hh): the cells then read it from cache, not from
    /// memory, and inference keeps one chunk of it instead of the whole sequence.
    fn step(&self, step: usize, i: usize) {
        if step.is_multiple_of(self.chunk) {
            self.project(step, self.cut.slice(i).0, (0, 1));
        }
        self.advance(step, self.cut.slice(i), 0..self.batch);
    }

    /// The riders of processing step `step` for gates `gates` of unit blocks `units`: this
    /// step's share (one of `chunk`) of each gate's whole panels of the next chunk's input
    /// projection. None in the last chunk, or without `ride`.
    fn riders(
        &self,
        step: usize,
        units: &std::ops::Range<usize>,
        gates: std::ops::Range<usize>,
    ) -> StepRiders<'_, 'a> {
        let next = (step / self.chunk + 1) * self.chunk;
        let mut share = StepRiders {
            step: self,
            x: std::ptr::null(),
            rows: 0,
            base: 0,
            place: self.gate_place(0, 0),
            gates: std::array::from_fn(|_| (0, 0..0, 0, 0, 0)),
            count: 0,
        };
        if !self.ride || next >= self.t_len {
            return share;
        }
        let (batch, i_l) = (self.batch, self.i_l);
        let (t0, t1) = self.chunk_times(next);
        share.rows = (t1 - t0) * batch;
        // SAFETY: rows of X within the layer's input (T*B rows of I floats), which nothing
        // writes during the forward of this layer.
        share.x = unsafe { self.io.x.part(t0 * batch * i_l, share.rows * i_l) }.as_ptr();
        let (u0, n_units) = self.cut.units(units);
        share.place = self.gate_place(u0, n_units);
        share.base = share.place.base + self.gate_row(t0, next) * batch * share.place.row;
        let part = step % self.chunk;
        for k in gates {
            let (panels, j0, n) = self.lay.whole_panels(k, units);
            let (m0, m1) = split(panels.len(), self.chunk, part);
            let mine = panels.start + m0..panels.start + m1;
            share.gates[k] = (k, mine.clone(), panels.start, j0, n);
            share.count += mine.len();
        }
        share
    }

    /// The input projection of the chunk that starts at processing step `step`: the columns
    /// of unit blocks `units`, in part `part.0` of the chunk's rows cut into `part.1`
    /// near-equal runs of row tiles.
    ///
    /// A slice of a team cut by units projects its own units, all rows, in the round of the
    /// chunk's first step (its cells then read them, with no wait between). Cut by batch rows
    /// past L2, the projection has a round of its own, cut by units where they cut evenly, else
    /// by rows.
    fn project(&self, step: usize, units: std::ops::Range<usize>, (part, parts): (usize, usize)) {
        let (t0, t1) = self.chunk_times(step);
        let all_rows = (t1 - t0) * self.batch;
        let mr = microkernel::shape(self.isa).mr;
        let (r0, r1) = split(all_rows.div_ceil(mr), parts, part);
        self.project_rows(step, units, r0 * mr..(r1 * mr).min(all_rows));
    }

    /// Claims and computes jobs of chunk `chunk`'s input projection until none is left, slice
    /// `i` first its own, so that the slices that finish their steps first take more of them
    /// (see [`pipe_steps`]). A job is one gate's panel (or the tail's panels) of a run of the
    /// chunk's rows, or with `own_rows` one slice's rows at one step, every column: those are
    /// slice `i`'s own first, then the others', so that a slice mostly reads gates it wrote.
    /// Whoever computes a job, each element is the same FMA chain, so the claims change no
    /// bit. Every job of a chunk is claimed before the round ends, so round `c` counts from
    /// `c` whole chunks' jobs (with `own_rows`, each slice's count from `c * chunk` steps).
    fn project_claims(&self, chunk: usize, i: usize) {
        let step = chunk * self.chunk;
        let (t0, t1) = self.chunk_times(step);
        if self.own_rows {
            let (slices, batch) = (self.cut.slices, self.batch);
            let (end, all) = (step + t1 - t0, 0..self.cut.blocks());
            for j in (0..slices).map(|k| (i + k) % slices) {
                let (b0, b1) = split(batch, slices, j);
                while let Some(c) = team::claim(&self.claimed[j], end) {
                    let t = c - step;
                    self.project_rows(step, all.clone(), t * batch + b0..t * batch + b1);
                }
            }
            return;
        }
        let lay = self.lay;
        let whole_jobs = lay.gates * lay.whole;
        let jobs = whole_jobs + usize::from(lay.rem > 0);
        // Where the panels are few, each one's jobs by runs of `JOB_ROWS` rows or more, so that
        // the claims are fine enough to even the slices out: 8 jobs a slice or more. (H = 50
        // has 5 jobs a chunk: LSTM 200,4,50 at 2 threads, 4 runs, 0.939-0.962x the inference
        // time, `ab.sh` 8-10 pairs; H = 96, 2 runs, 1.009x; runs of every panel, 3 at H = 96
        // and 5 at 128, lost 1.032x and 1.019x.) Every chunk before this one is whole: the
        // count starts at theirs.
        let rows = (t1 - t0) * self.batch;
        let few = (8 * self.cut.slices).div_ceil(jobs);
        let runs_of = |rows: usize| (rows / JOB_ROWS).clamp(1, few.max(1));
        let (runs, first) = (
            runs_of(rows),
            chunk * jobs * runs_of(self.chunk * self.batch),
        );
        team::claim_grid(&self.claimed[0], first, (jobs, runs), |j, run| {
            let (r0, r1) = split(rows, runs, run);
            match j < whole_jobs {
                true => {
                    let (u, k) = (j / lay.gates, j % lay.gates);
                    self.project_part(step, u..u + 1, r0..r1, k..k + 1, false);
                }
                false => self.project_part(step, lay.whole..lay.whole + 1, r0..r1, 0..0, true),
            }
        });
    }

    /// The input projection of batch rows `rows` at every step of the chunk that starts at
    /// processing step `step`, every unit: the rows a slice of a team cut by rows runs through
    /// the chunk's steps, so that it reads its gates from its own cache (see
    /// [`own_rows`]). One GEMM a step: the rows are a run of their own in each.
    fn project_own(&self, step: usize, rows: std::ops::Range<usize>) {
        let (t0, t1) = self.chunk_times(step);
        let (batch, all) = (self.batch, 0..self.cut.blocks());
        for t in 0..t1 - t0 {
            self.project_rows(
                step,
                all.clone(),
                t * batch + rows.start..t * batch + rows.end,
            );
        }
    }

    /// The input projection of rows `r0..r1` (time-major, `t * B + b` from the chunk's first
    /// time) of the chunk that starts at processing step `step`, the columns of unit blocks
    /// `units`.
    fn project_rows(
        &self,
        step: usize,
        units: std::ops::Range<usize>,
        rows: std::ops::Range<usize>,
    ) {
        // Riding, the chunk's whole panels were computed by the steps of the one before.
        let whole_gates = match self.ride && step > 0 {
            true => 0,
            false => self.desc.gates(),
        };
        self.project_part(step, units, rows, 0..whole_gates, true);
    }

    /// [`DirStep::project_rows`] for the whole panels of gates `gates` only, and the tail's
    /// panels if `with_tail`.
    fn project_part(
        &self,
        step: usize,
        units: std::ops::Range<usize>,
        std::ops::Range { start: r0, end: r1 }: std::ops::Range<usize>,
        gates_of: std::ops::Range<usize>,
        with_tail: bool,
    ) {
        let (batch, i_l) = (self.batch, self.i_l);
        let (t0, _) = self.chunk_times(step);
        if r0 >= r1 {
            return;
        }
        let rows = r1 - r0;
        let row0 = self.gate_row(t0, step) * batch + r0;
        let t0_row = t0 * batch + r0;
        // SAFETY: rows of X within t0*B..t1*B, which the layer below finished (a round before,
        // in the wavefront) and nothing writes meanwhile.
        let x = unsafe { self.io.x.part(t0_row * i_l, rows * i_l) };
        let (lay, gates) = (self.lay, self.bufs.gates);
        let (u0, n_units) = self.cut.units(&units);
        let place = self.gate_place(u0, n_units);
        let (base, ldo) = (place.base + row0 * place.row, place.row);
        for k in gates_of {
            let (panels, j0, n) = lay.whole_panels(k, &units);
            if n == 0 {
                continue;
            }
            // SAFETY: X holds these rows of I floats (above); this slice writes its units'
            // columns of gate k in its `rows` rows of the gates buffer (of its own region, where
            // `place` gives each slice one), which no other slice touches (other units, other
            // rows, or another region) and nothing reads meanwhile.
            unsafe {
                packed::gemm_block(
                    &self.pw.w_ih,
                    x.as_ptr(),
                    i_l,
                    gates.out_block(base + place.unit(k, j0), rows, ldo, n),
                    ldo,
                    false,
                    0..rows,
                    panels,
                    n,
                    PanelOrder::Forward,
                );
            }
        }
        let tail = lay.tail(&units);
        if tail.is_empty() || !with_tail {
            return;
        }
        // The tail's panels hold every gate's last units: computed into scratch rows of their
        // own (the chunk's rows `r0..r1`), then copied to each gate's block.
        let tc = lay.tail_cols;
        // SAFETY: as above; the scratch holds a chunk's rows of `tail_cols` floats and this
        // slice alone writes and reads its rows r0..r1 of it (the only slice with the tail's
        // units, or the one with these rows), the gate blocks' last `rem` units likewise (in
        // `rows` rows of `place.row` floats, bounded by `out_block`).
        unsafe {
            packed::gemm_block(
                &self.pw.w_ih,
                x.as_ptr(),
                i_l,
                self.bufs.tail.out_block(r0 * tc, rows, tc, tc),
                tc,
                false,
                0..rows,
                tail,
                tc,
                PanelOrder::Forward,
            );
            let scratch = self.bufs.tail.part(r0 * tc, rows * tc);
            let dst = gates.out_block(base, rows, ldo, ldo);
            for (r, src) in scratch.chunks_exact(tc).enumerate() {
                lay.spread_tail(
                    src.as_ptr(),
                    dst.at(r * ldo + place.unit(0, lay.hw)),
                    place.gate,
                );
            }
        }
    }

    /// Step `step` for unit blocks `units` (their first unit `j0`, `n` units) of the batch rows
    /// `rows`: the step GEMM of those rows and units' columns, then their cells.
    fn advance(
        &self,
        step: usize,
        (units, j0, n): (std::ops::Range<usize>, usize, usize),
        rows: std::ops::Range<usize>,
    ) {
        let desc = &self.desc;
        let (h, gate_count, batch) = (desc.hidden_size, desc.gates(), self.batch);
        let lay = self.lay;
        let blocks = self.cut.blocks();
        let DirBufs { states, gh, .. } = self.bufs;
        let at = self.gh_place(j0, n);
        let t = time_of(self.d, step, self.t_len);
        let (p, q) = slots(self.d, t);
        let (p, q) = (p % self.ring, q % self.ring);
        let (r0, nrows) = (rows.start, rows.len());
        // W_hh one way round on even steps, the other on odd ones (see `PanelOrder`).
        let order = PanelOrder::of_step(step);
        // SAFETY: this round reads rows `rows` of the state slot `p` (every unit), which nothing
        // writes meanwhile (cut by units: written the round before; cut by rows: this slice's
        // own), and writes these units' columns of every gate block of `gh` in these rows, then
        // reads them back: a part no other slice touches (its own region of `gh`, or its rows).
        // The slot's rows hold H floats and `gh`'s region rows `at.row` floats, as the GEMM needs.
        unsafe {
            let h_prev = states.part((p * batch + r0) * h, nrows * h);
            // The riders of gates `g` (see `riders`), with the call of W_hh's same panels.
            let call = |panels: std::ops::Range<usize>, col: usize, width: usize, g| {
                let riders = self.riders(step, &units, g);
                // The riders write rows of the next chunk's gates, which nothing reads or
                // writes before that chunk (a slot of their own, or rows past the current).
                packed::gemm_block_riding(
                    &self.pw.w_hh,
                    h_prev.as_ptr(),
                    h,
                    gh.out_block(at.base + r0 * at.row + col, nrows, at.row, width),
                    at.row,
                    false,
                    0..nrows,
                    panels,
                    width,
                    order,
                    (riders.count, &|i| riders.get(i)),
                )
            };
            if units == (0..blocks) {
                // Every unit: the gate blocks and the tail are one run of panels, as gh's
                // columns are, walked in the same order as gate by gate, so one call does all
                // the gates; with a few rows it lets the few-rows kernel take several panels at
                // a time across gates (H = 64 has 2 a gate: LSTM 100,1,64 0.109 -> 0.102 ms).
                call(0..self.pw.w_hh.panels(), 0, at.row, 0..gate_count);
            } else {
                // The gates (then the tail) in the panels' order too.
                let tail = lay.tail(&units);
                if order == PanelOrder::Backward && !tail.is_empty() {
                    call(tail.clone(), at.tail(gate_count), lay.tail_cols, 0..0);
                }
                for k in order.walk(0..gate_count) {
                    let (panels, _, n) = lay.whole_panels(k, &units);
                    if n > 0 {
                        call(panels, k * at.gate, n, k..k + 1);
                    }
                }
                if order == PanelOrder::Forward && !tail.is_empty() {
                    call(tail, at.tail(gate_count), lay.tail_cols, 0..0);
                }
            }
        }
        // The cells of the units in whole blocks, then of the tail's: their gates in `gh` are
        // `at.gate` or `rem` columns apart.
        let whole = at.gate;
        let place = self.gate_place(j0, n);
        if whole > 0 {
            let gh_of = (at.base, at.gate, at.row);
            let rows_of_step = self.step_rows(step, t, (p, q), (j0, whole), gh_of, place);
            cell::forward_rows(desc.cell, self.isa, rows.clone(), rows_of_step);
        }
        if whole < n {
            let tail = (at.base + at.tail(gate_count), lay.rem, at.row);
            let rows_of_step = self.step_rows(step, t, (p, q), (lay.hw, lay.rem), tail, place);
            cell::forward_rows(desc.cell, self.isa, rows, rows_of_step);
        }
    }

    /// The cells' view of step `step` (time `t`, state slots `p` before and `q` after) for
    /// units `j0..j0 + n`, whose gate `k` sits in row `b` of `gh` at `gh_at + b * ldg + k *
    /// gh_stride`, and in `gates` as `place` puts it.
    fn step_rows(
        &self,
        step: usize,
        t: usize,
        (p, q): (usize, usize),
        (j0, n): (usize, usize),
        (gh_at, gh_stride, ldg): (usize, usize, usize),
        place: GatePlace,
    ) -> StepRows<'_, 'a> {
        let desc = &self.desc;
        let (h, gate_count, batch) = (desc.hidden_size, desc.gates(), self.batch);
        let (bh, dh) = (batch * h, desc.output_size());
        StepRows {
            b_hh: std::array::from_fn(|k| match k < gate_count {
                true => &self.pw.b_hh[k * h + j0..][..n],
                false => &[],
            }),
            gate_at: place.base + self.gate_row(t, step) * batch * place.row + place.unit(0, j0),
            gate_rows: (place.row, place.gate),
            hn_at: if self.keep_gates { t * bh } else { 0 } + j0,
            y_at: t * batch * dh + self.d * h + j0,
            step: self,
            t,
            slots: (p * bh + j0, q * bh + j0),
            gh_at,
            ldg,
            gh_stride,
            n,
        }
    }
}

/// One step's riders (see `DirStep::riders`): per gate, the panels of W_ih it projects this
/// step, and where the next chunk's rows of that gate's gates are.
struct StepRiders<'s, 'a> {
    step: &'s DirStep<'a>,
    /// The next chunk's rows of X.
    x: *const f32,
    rows: usize,
    /// Where those rows start in `gates`, laid out as `place` says.
    base: usize,
    place: GatePlace,
    /// Per gate of the call: (gate, its panels to project this step, the first of its whole
    /// panels among the slice's units, and those units: the first, how many).
    gates: [(usize, std::ops::Range<usize>, usize, usize, usize); 4],
    count: usize,
}

impl StepRiders<'_, '_> {
    /// Rider `i` of `count`, in gate order.
    fn get(&self, mut i: usize) -> microkernel::Rider {
        let s = self.step;
        for (k, mine, first, j0, n) in &self.gates {
            if i >= mine.len() {
                i -= mine.len();
                continue;
            }
            // Panel p's columns within the gate's block of the slice's units.
            let p = mine.start + i;
            let off = (p - first) * s.lay.nr;
            let cols = s.lay.nr.min(n - off);
            let (b, bias) = s.pw.w_ih.panel_and_bias(p);
            let at = self.base + self.place.unit(*k, *j0) + off;
            let c = s.bufs.gates.out_block(at, self.rows, self.place.row, cols);
            return microkernel::Rider {
                rows: self.rows,
                k: s.pw.w_ih.k(),
                a: self.x,
                lda: s.i_l,
                b,
                width: s.lay.nr,
                bias,
                c: c.at(0),
                ldc: self.place.row,
                cols,
            };
        }
        unreachable!("a rider past the step's count")
    }
}

/// The rows of one step of one slice, as its cells take them (see [`cell::Rows`]): each row's
/// units `j0..j0 + n` of every buffer. The offsets of row 0 are taken once a step.
struct StepRows<'s, 'a> {
    step: &'s DirStep<'a>,
    /// Per gate: b_hh of these units (empty past the cell's gates).
    b_hh: [&'a [f32]; 4],
    t: usize,
    /// Where row 0's units start: in `gates`, in `hn`, in the output, in the state slots
    /// before and after the step, in `gh`.
    gate_at: usize,
    /// `gates`' row width and the floats between one gate's units and the next's there.
    gate_rows: (usize, usize),
    hn_at: usize,
    y_at: usize,
    slots: (usize, usize),
    gh_at: usize,
    /// `gh`'s row width (of the slice's region), and the columns between one gate's units and
    /// the next's there.
    ldg: usize,
    gh_stride: usize,
    n: usize,
}

/// Where a slice's gates sit in the `gates` buffer: unit `j` of gate `k` in row `r` at `base +
/// r * row + k * gate + j - origin`. Kept for the backward, or read by whole rows, they are in
/// the backward's layout (`(rows, G, H)`: base 0, row G*H, gate H, origin 0). Otherwise each
/// slice of a team cut by units has a region of its own, its rows `G * n` floats of its `n`
/// units (the regions tile the buffer, slice after slice): with the slices' units interleaved
/// in every row, each core's reads of its own runs slowed the other's (the cells of LSTM
/// 100,1,256 at 2 threads took 1450 cycles a step for 128 units against 750 in regions).
#[derive(Clone, Copy)]
struct GatePlace {
    base: usize,
    row: usize,
    gate: usize,
    origin: usize,
}

/// Where a slice's columns of the step GEMM's output `gh` sit: row `r`'s unit `j` (of the
/// slice's whole blocks) of gate `k` at `base + r * row + k * gate + j - j0`, then the tail's
/// columns (see `GateLayout`) at `base + r * row + tail(gates)`. Every unit at once (one slice,
/// or a cut by rows), that is the layout's own row of all the columns. Cut by units, each
/// slice's rows are its own region of the buffer, as [`GatePlace`] gives the gates. Against
/// the slices' columns interleaved in every row (runs of 1 KiB at H = 512), 2-thread inference
/// (`ab.sh`, 8 pairs each, Intel Xeon, 2026-12-04): LSTM 100, 64, 512 0.978x the time, 100,
/// 16, 512 0.971x, GRU 100, 64, 512 0.982x, LSTM 100, 1, 256 0.974x; training LSTM 100, 16,
/// 512 0.990x, GRU 100, 16, 512 0.992x; 1 thread unchanged (the same layout).
#[derive(Clone, Copy)]
struct GhPlace {
    base: usize,
    row: usize,
    /// The slice's units in whole blocks: the columns of one gate.
    gate: usize,
}

impl GhPlace {
    /// The column of the tail's first within a row of the region.
    fn tail(&self, gates: usize) -> usize {
        gates * self.gate
    }
}

impl GatePlace {
    /// The offset of gate `k`'s unit `j` in a row.
    fn unit(&self, k: usize, j: usize) -> usize {
        k * self.gate + j - self.origin
    }
}

impl<'a> cell::Rows<FwdUnits<'a>> for StepRows<'_, 'a> {
    /// Inlined into the ISA's row loop, so that the slices stay in registers.
    #[inline(always)]
    fn units(&mut self, b: usize) -> Option<FwdUnits<'a>> {
        let s = self.step;
        let (h, gate_count) = (s.desc.hidden_size, s.desc.gates());
        let dh = s.desc.output_size();
        let (n, at) = (self.n, b * h);
        let DirBufs {
            gates,
            states,
            cells,
            hn,
            gh,
            ..
        } = s.bufs;
        // SAFETY: units j0..j0+n of row b: this step's gates and gh of this slice's columns,
        // the slots before (read, written by none meanwhile) and after the step, hn, and the
        // output row (t, b), which only this slice touches in this round. Buffers a cell does
        // not use are empty, and so are their parts.
        let u = unsafe {
            FwdUnits {
                isa: s.isa,
                gates: gates.gates_mut(
                    self.gate_at + b * self.gate_rows.0,
                    self.gate_rows.1,
                    gate_count,
                    n,
                ),
                gh: gh.gates(self.gh_at + b * self.ldg, self.gh_stride, gate_count, n),
                b_hh: self.b_hh,
                h_prev: states.part(self.slots.0 + at, n),
                c_prev: cells.part(self.slots.0 + at, n),
                h: states.part_mut(self.slots.1 + at, n),
                c: cells.part_mut(self.slots.1 + at, n),
                hn: hn.part_mut(self.hn_at + at, n),
                y: s.io.y.part_mut(self.y_at + b * dh, n),
            }
        };
        if self.t < s.io.lengths[b] {
            return Some(u);
        }
        // Past the end of this sequence: hold the state (c is empty but for LSTM); the output is
        // zero, as PyTorch pads it.
        u.h.copy_from_slice(u.h_prev);
        u.c.copy_from_slice(u.c_prev);
        u.y.fill(0.0);
        None
    }
}

#[cfg(test)]
mod tests {
    use super::{few_rows_pay, rows_cut, UnitBlocks};

    /// Two rows a slice where W_hh stays in L2, the CPU's number past it (none: never), and
    /// never with one slice.
    #[test]
    fn rows_cut_needs_rows_a_slice() {
        assert!(rows_cut(4, 2, true, None));
        assert!(!rows_cut(3, 2, true, None));
        assert!(rows_cut(4, 2, true, Some(8)));
        assert!(!rows_cut(64, 1, true, Some(8)));
        assert!(!rows_cut(64, 2, false, None));
        assert!(rows_cut(16, 2, false, Some(8)));
        assert!(!rows_cut(15, 2, false, Some(8)));
        assert!(rows_cut(24, 3, false, Some(8)));
    }

    /// Three rows at 2 slices, by rows where the largest slice's extra share of a step is small.
    #[test]
    fn few_rows_pay_where_the_units_cut_no_better() {
        let cut = |h: usize, slices: usize| UnitBlocks {
            nr: 32,
            h,
            blocks: h.div_ceil(32),
            slices,
        };
        // H = 96: 3 blocks cut 2:1, as the rows are.
        assert!(few_rows_pay(3, &cut(96, 2), 4));
        // H = 64, LSTM: 2:1 rows against 1:1 blocks, 8K multiply-adds more.
        assert!(few_rows_pay(3, &cut(64, 2), 4));
        // H = 128: 24.6K (GRU) and 32.8K (LSTM) more.
        assert!(!few_rows_pay(3, &cut(128, 2), 3));
        assert!(!few_rows_pay(3, &cut(128, 2), 4));
        // One row a slice, two rows a slice (`rows_cut`'s), one slice.
        assert!(!few_rows_pay(2, &cut(96, 2), 4));
        assert!(!few_rows_pay(4, &cut(96, 2), 4));
        assert!(!few_rows_pay(3, &cut(96, 1), 4));
        assert!(!few_rows_pay(3, &cut(96, 3), 4));
    }
}
