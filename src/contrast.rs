//! `recur bench --contrast`: the sequential cost of a recurrence beside a parallel baseline,
//! causal self-attention of the same width over the same steps (the kernels crate's
//! [`CausalAttention`]).
//!
//! An RNN layer does `O(T D²)` work but in T dependent steps: each step is a small GEMM (B rows)
//! that waits for the one before, so neither long sequences nor more cores shorten its chain.
//! Attention does `O(T D² + T² D)` work with no dependence between steps: two large GEMMs over
//! all T * B rows and (batch entry, head) tasks that all run at once. The table shows where
//! each wins as T grows, and how each uses a second core. Generating one step at a time turns
//! it round: the RNN's step costs the same at any length, attention's step T (with a
//! [`KvCache`] of the T - 1 before it) reads every cached key and value.

use crate::bench::{
    cell_label, cpu_name, median_secs, random_values, BenchCase, BenchMode, Prepared,
};
use crate::error::Result;
use recur_kernels::{
    attention_flops, forward_inference, AttentionParams, AttentionWorkspace, CausalAttention,
    CellKind, Isa, KvCache, Mode, Outputs, PackedWeights, Packing, Params, RnnDesc, SeqBatch,
    SplitMix64, Workspace,
};
use std::time::Duration;

/// The steps the contrast sweeps when none is given.
pub const CONTRAST_STEPS: [usize; 5] = [16, 64, 256, 1024, 4096];

/// One shape of the contrast: an RNN layer of width D (input and hidden) and an attention layer
/// of width D with `heads` heads, both over T steps of B sequences.
#[derive(Debug, Clone, Copy)]
pub struct ContrastCase {
    /// The recurrence.
    pub cell: CellKind,
    /// Steps, T.
    pub seq: usize,
    /// Sequences, B.
    pub batch: usize,
    /// Width D.
    pub width: usize,
    /// Attention heads (dividing D).
    pub heads: usize,
}

/// An attention forward made ready to run: weights packed, input and workspace allocated once.
pub struct PreparedAttention {
    att: CausalAttention,
    ws: AttentionWorkspace,
    x: Vec<f32>,
    out: Vec<f32>,
    flops: f64,
}

impl PreparedAttention {
    /// Random weights and input for (D, heads, T, B).
    pub fn new(width: usize, heads: usize, seq: usize, batch: usize) -> Result<Self> {
        let ws = AttentionWorkspace::new(width, seq, batch)?;
        let params = AttentionParams::<f32>::random(width, heads, 1)?;
        let att = CausalAttention::new(&params)?;
        let n = seq * batch * width; // fits: the workspace holds 3n floats
        let mut x = vec![0.0f32; n];
        SplitMix64(2).fill_uniform(&mut x, 1.0);
        Ok(PreparedAttention {
            att,
            ws,
            x,
            out: vec![0.0; n],
            flops: attention_flops(width, seq, batch),
        })
    }

    /// One forward.
    pub fn run(&mut self) -> Result<()> {
        Ok(self.att.forward(&mut self.ws, &self.x, &mut self.out)?)
    }

    /// Its FLOPs ([`attention_flops`]).
    pub fn flops(&self) -> f64 {
        self.flops
    }

    /// The kernels it runs.
    pub fn isa(&self) -> Isa {
        self.att.isa()
    }
}

/// One generated step of an RNN layer: T = 1 from the state the last step left.
pub struct PreparedRnnStep {
    desc: RnnDesc,
    batch: usize,
    weights: PackedWeights,
    ws: Workspace,
    x: Vec<f32>,
    h: Vec<f32>,
    c: Vec<f32>,
    out: Outputs<f32>,
}

impl PreparedRnnStep {
    /// Random weights, input and state for a layer of width `width` over `batch` sequences.
    pub fn new(cell: CellKind, width: usize, batch: usize) -> Result<Self> {
        let desc = RnnDesc::new(cell, width, width);
        let ws = Workspace::new(&desc, 1, batch, Mode::Inference)?;
        let params = Params::<f32>::try_random(&desc, 1)?;
        let weights = PackedWeights::with_options(&params, Isa::detect()?, Packing::Inference)?;
        let mut rng = SplitMix64(3);
        let n = batch * width; // fits: the workspace holds more
        let x = random_values("input", n, &mut rng)?;
        let (h, c) = (
            random_values("h", n, &mut rng)?,
            random_values("c", n, &mut rng)?,
        );
        Ok(PreparedRnnStep {
            desc,
            batch,
            weights,
            ws,
            x,
            h,
            c,
            out: Outputs::try_zeros(&desc, 1, batch)?,
        })
    }

    /// One step; its state becomes the next step's.
    pub fn run(&mut self) -> Result<()> {
        let lstm = self.desc.cell.has_cell_state();
        let mut input = SeqBatch::new(1, self.batch, &self.x).with_h0(&self.h);
        if lstm {
            input = input.with_c0(&self.c);
        }
        forward_inference(&self.weights, &mut self.ws, &input, &mut self.out)?;
        self.h.copy_from_slice(&self.out.h_n);
        if lstm {
            self.c.copy_from_slice(&self.out.c_n);
        }
        Ok(())
    }
}

/// Step `seq` - 1 of causal attention decoded over a [`KvCache`] of the steps before it.
pub struct PreparedDecode {
    att: CausalAttention,
    cache: KvCache,
    before: usize,
    x: Vec<f32>,
    out: Vec<f32>,
}

impl PreparedDecode {
    /// Random weights, and a cache filled with `seq - 1` decoded steps of random input.
    pub fn new(width: usize, heads: usize, seq: usize, batch: usize) -> Result<Self> {
        let params = AttentionParams::<f32>::random(width, heads, 1)?;
        let att = CausalAttention::new(&params)?;
        let mut cache = KvCache::new(&att, batch, seq)?;
        let mut rng = SplitMix64(4);
        let mut x = vec![0.0f32; batch * width]; // fits: the cache holds more
        let mut out = vec![0.0f32; batch * width];
        for _ in 1..seq {
            rng.fill_uniform(&mut x, 1.0);
            att.decode(&mut cache, &x, &mut out)?;
        }
        rng.fill_uniform(&mut x, 1.0);
        Ok(PreparedDecode {
            att,
            cache,
            before: seq - 1,
            x,
            out,
        })
    }

    /// Step `seq` - 1 again: the cache cut back to the steps before it, then the step.
    pub fn run(&mut self) -> Result<()> {
        self.cache.truncate(self.before);
        Ok(self.att.decode(&mut self.cache, &self.x, &mut self.out)?)
    }
}

/// The timings of one [`ContrastCase`] on one thread count.
#[derive(Debug, Clone)]
pub struct ContrastResult {
    /// What was timed.
    pub case: ContrastCase,
    /// Threads.
    pub threads: usize,
    /// The kernels both ran with.
    pub isa: Isa,
    /// The CPU.
    pub cpu: &'static str,
    /// Median ms of the RNN's forward (inference).
    pub rnn_ms: f64,
    /// Its GEMM GFLOP/s.
    pub rnn_gflops: f64,
    /// Median ms of the attention forward.
    pub attention_ms: f64,
    /// Its GFLOP/s.
    pub attention_gflops: f64,
    /// Median us of one generated step of the RNN (any step: they all cost the same).
    pub rnn_token_us: f64,
    /// Median us of generating step T of the attention, over a cache of the T - 1 before it.
    pub attention_token_us: f64,
}

impl ContrastResult {
    /// The header of [`ContrastResult::table_row`]'s table.
    pub fn table_header() -> String {
        format!(
            "{:<6} {:>5} {:>4} {:>5} {:>5} {:>3} {:>10} {:>9} {:>10} {:>9} {:>9} {:>11} {:>11} {:>12}",
            "rnn",
            "T",
            "B",
            "D",
            "heads",
            "thr",
            "rnn ms",
            "GFLOP/s",
            "attn ms",
            "GFLOP/s",
            "attn/rnn",
            "rnn us/step",
            "gen rnn us",
            "gen attn us"
        )
    }

    /// One line: both times, their rates, attention's time over the RNN's, the RNN's time per
    /// dependent step, and the time of generating one step (the RNN's any step, attention's
    /// step T).
    pub fn table_row(&self) -> String {
        let c = &self.case;
        format!(
            "{:<6} {:>5} {:>4} {:>5} {:>5} {:>3} {:>10.3} {:>9.1} {:>10.3} {:>9.1} {:>8.2}x {:>11.1} {:>11.1} {:>12.1}",
            cell_label(c.cell),
            c.seq,
            c.batch,
            c.width,
            c.heads,
            self.threads,
            self.rnn_ms,
            self.rnn_gflops,
            self.attention_ms,
            self.attention_gflops,
            self.attention_ms / self.rnn_ms,
            self.rnn_ms * 1e3 / c.seq as f64,
            self.rnn_token_us,
            self.attention_token_us
        )
    }

    /// One JSON line: {"contrast","cell","seq","batch","width","heads","threads","isa","cpu",
    /// "rnn_ms","rnn_gflops","attention_ms","attention_gflops","rnn_token_us",
    /// "attention_token_us"}.
    pub fn json(&self) -> String {
        let c = &self.case;
        format!(
            "{{\"contrast\":true,\"cell\":\"{}\",\"seq\":{},\"batch\":{},\"width\":{},\"heads\":{},\
             \"threads\":{},\"isa\":\"{}\",\"cpu\":{},\"rnn_ms\":{:.4},\"rnn_gflops\":{:.2},\
             \"attention_ms\":{:.4},\"attention_gflops\":{:.2},\"rnn_token_us\":{:.2},\
             \"attention_token_us\":{:.2}}}",
            cell_label(c.cell),
            c.seq,
            c.batch,
            c.width,
            c.heads,
            self.threads,
            self.isa.name(),
            serde_json::Value::from(self.cpu),
            self.rnn_ms,
            self.rnn_gflops,
            self.attention_ms,
            self.attention_gflops,
            self.rnn_token_us,
            self.attention_token_us
        )
    }
}

/// Times `case`'s RNN inference and its attention forward on `threads`, then one generated
/// step of each, each for `budget` (median of at least `min_runs`), the RNN first.
pub fn run_contrast(
    case: ContrastCase,
    threads: usize,
    budget: Duration,
    min_runs: usize,
) -> Result<ContrastResult> {
    let rnn = BenchCase {
        desc: RnnDesc::new(case.cell, case.width, case.width),
        seq: case.seq,
        batch: case.batch,
    };
    let mut prepared = Prepared::new(rnn, BenchMode::Infer)?;
    let rnn_s = median_secs(threads, budget, min_runs, || prepared.run())?;
    let rnn_flops = prepared.flops();
    drop(prepared);
    let mut att = PreparedAttention::new(case.width, case.heads, case.seq, case.batch)?;
    let att_s = median_secs(threads, budget, min_runs, || att.run())?;
    let (att_flops, isa) = (att.flops(), att.isa());
    drop(att);
    let mut step = PreparedRnnStep::new(case.cell, case.width, case.batch)?;
    let step_s = median_secs(threads, budget, min_runs, || step.run())?;
    drop(step);
    let mut gen = PreparedDecode::new(case.width, case.heads, case.seq, case.batch)?;
    let gen_s = median_secs(threads, budget, min_runs, || gen.run())?;
    Ok(ContrastResult {
        case,
        threads,
        isa,
        cpu: cpu_name(),
        rnn_ms: rnn_s * 1e3,
        rnn_gflops: rnn_flops / rnn_s / 1e9,
        attention_ms: att_s * 1e3,
        attention_gflops: att_flops / att_s / 1e9,
        rnn_token_us: step_s * 1e6,
        attention_token_us: gen_s * 1e6,
    })
}
