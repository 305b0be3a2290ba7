//! `recur bench`: times the kernels on random weights, warm-up then the median of runs.

use crate::bail;
use crate::error::Result;
use crate::model::thread_pool;
use recur_kernels::{
    backward, forward_inference, forward_training, CellKind, Gradients, Isa, Mode, OutputGrads,
    Outputs, PackedWeights, Packing, Params, RnnDesc, SeqBatch, SplitMix64, Workspace,
};
use std::time::{Duration, Instant};

/// What one bench run times.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BenchMode {
    /// The forward pass without saved activations.
    Infer,
    /// The training forward plus the full backward.
    Train,
    /// The same with `Mode::TrainingRecompute`: gate activations recomputed in the backward.
    Recompute,
}

impl BenchMode {
    /// `infer`, `train` or `recompute`, as `--mode` takes it.
    pub fn name(self) -> &'static str {
        match self {
            BenchMode::Infer => "infer",
            BenchMode::Train => "train",
            BenchMode::Recompute => "recompute",
        }
    }
}

/// One shape to time.
#[derive(Debug, Clone, Copy)]
pub struct BenchCase {
    /// The network.
    pub desc: RnnDesc,
    /// Steps, T.
    pub seq: usize,
    /// Sequences, B.
    pub batch: usize,
}

impl BenchCase {
    /// `cell/T.._B.._I.._H..`: the criterion benches' name of the case.
    pub fn id(&self) -> String {
        let d = &self.desc;
        let (t, b, i, h) = (self.seq, self.batch, d.input_size, d.hidden_size);
        format!("{}/T{t}_B{b}_I{i}_H{h}", d.cell.name())
    }
}

/// The reference cases of ../shared/anchors/torch_rnn.py: (cell, T, B, I=H).
pub fn reference_cases() -> Vec<BenchCase> {
    [
        (CellKind::Lstm, 100, 1, 256),
        (CellKind::Lstm, 100, 16, 512),
        (CellKind::Lstm, 100, 64, 512),
        (CellKind::Lstm, 50, 64, 1024),
        (CellKind::Gru, 100, 16, 512),
        (CellKind::Gru, 100, 64, 512),
        (CellKind::RnnTanh, 100, 64, 512),
    ]
    .into_iter()
    .map(|(cell, seq, batch, h)| BenchCase {
        desc: RnnDesc::new(cell, h, h),
        seq,
        batch,
    })
    .collect()
}

/// The timing of one (case, mode, threads).
#[derive(Debug, Clone)]
pub struct BenchResult {
    /// What was timed.
    pub case: BenchCase,
    /// How it was run.
    pub mode: BenchMode,
    /// On how many threads.
    pub threads: usize,
    /// The kernels it ran with.
    pub isa: recur_kernels::Isa,
    /// The CPU it ran on ([`cpu_name`]): the same kernels' figures differ by machine.
    pub cpu: &'static str,
    /// Median wall time of one run.
    pub ms: f64,
    /// The GEMM FLOPs of one run (3x the forward's for training) over that time.
    pub gflops: f64,
}

impl BenchResult {
    /// One JSON line: {"cell","mode","seq","batch","input","hidden","layers","bidirectional",
    /// "threads","isa","cpu","ms","gflops"}.
    pub fn json(&self) -> String {
        let d = &self.case.desc;
        let cell = cell_label(d.cell);
        format!(
            "{{\"cell\":\"{cell}\",\"mode\":\"{}\",\"seq\":{},\"batch\":{},\"input\":{},\"hidden\":{},\
             \"layers\":{},\"bidirectional\":{},\"threads\":{},\"isa\":\"{}\",\"cpu\":{},\"ms\":{:.4},\
             \"gflops\":{:.2}}}",
            self.mode.name(),
            self.case.seq,
            self.case.batch,
            d.input_size,
            d.hidden_size,
            d.num_layers,
            d.bidirectional,
            self.threads,
            self.isa.name(),
            serde_json::Value::from(self.cpu),
            self.ms,
            self.gflops
        )
    }

    /// The line above the table: the CPU and the kernels the rows ran on.
    pub fn table_title(&self) -> String {
        table_title(self.cpu, self.isa)
    }

    /// The header line of [`BenchResult::table_row`]'s table.
    pub fn table_header() -> String {
        format!(
            "{:<6} {:<9} {:>5} {:>5} {:>6} {:>6} {:>3} {:>3} {:>3} {:>10} {:>9}",
            "cell", "mode", "T", "B", "I", "H", "L", "D", "thr", "ms", "GFLOP/s"
        )
    }

    /// One line of the table `recur bench` prints.
    pub fn table_row(&self) -> String {
        let d = &self.case.desc;
        format!(
            "{:<6} {:<9} {:>5} {:>5} {:>6} {:>6} {:>3} {:>3} {:>3} {:>10.3} {:>9.1}",
            cell_label(d.cell),
            self.mode.name(),
            self.case.seq,
            self.case.batch,
            d.input_size,
            d.hidden_size,
            d.num_layers,
            d.directions(),
            self.threads,
            self.ms,
            self.gflops
        )
    }
}

/// A case made ready to run in one mode: random weights packed for it, an input and an output
/// gradient, and the workspace, outputs and gradients, all sized once. [`Prepared::run`] is one
/// timed iteration; `recur bench` and the criterion benches both time it.
pub struct Prepared {
    /// What it runs.
    pub case: BenchCase,
    /// How.
    pub mode: BenchMode,
    weights: PackedWeights,
    ws: Workspace,
    x: Vec<f32>,
    go: Vec<f32>,
    out: Outputs<f32>,
    grads: Gradients<f32>,
}

impl Prepared {
    /// Everything `case` needs in `mode`, allocated and filled once (an error for sizes that
    /// do not fit).
    pub fn new(case: BenchCase, mode: BenchMode) -> Result<Self> {
        let desc = case.desc;
        let (t, b) = (case.seq, case.batch);
        let (ws_mode, packing) = match mode {
            BenchMode::Infer => (Mode::Inference, Packing::Inference),
            BenchMode::Train => (Mode::Training, Packing::Training),
            BenchMode::Recompute => (Mode::TrainingRecompute, Packing::Training),
        };
        // First, so that sizes that overflow are an error before anything is allocated.
        let ws = Workspace::new(&desc, t, b, ws_mode)?;
        let params = Params::<f32>::try_random(&desc, 1)?;
        let weights = PackedWeights::with_options(&params, Isa::detect()?, packing)?;
        let mut rng = SplitMix64(2);
        let x = random_values("input", t * b * desc.input_size, &mut rng)?;
        let go = random_values("grad_output", t * b * desc.output_size(), &mut rng)?;
        Ok(Prepared {
            case,
            mode,
            weights,
            ws,
            x,
            go,
            out: Outputs::try_zeros(&desc, t, b)?,
            grads: Gradients::try_zeros(&desc, t, b)?,
        })
    }

    /// One forward (inference), or one training forward and the full backward.
    pub fn run(&mut self) -> Result<()> {
        let input = SeqBatch::new(self.case.seq, self.case.batch, &self.x);
        match self.mode {
            BenchMode::Infer => {
                forward_inference(&self.weights, &mut self.ws, &input, &mut self.out)?
            }
            BenchMode::Train | BenchMode::Recompute => {
                forward_training(&self.weights, &mut self.ws, &input, &mut self.out)?;
                backward(
                    &self.weights,
                    &mut self.ws,
                    &input,
                    &OutputGrads::new(&self.go),
                    &mut self.grads,
                )?;
            }
        }
        Ok(())
    }

    /// The GEMM FLOPs of one run: the forward's, 3x that for training.
    pub fn flops(&self) -> f64 {
        let factor = match self.mode {
            BenchMode::Infer => 1.0,
            BenchMode::Train | BenchMode::Recompute => 3.0,
        };
        factor * self.case.desc.forward_flops(self.case.seq, self.case.batch)
    }
}

/// `len` values uniform in [-1, 1), or an error where there is no room for them (a shape
/// too large for this machine is an error, not an abort).
pub(crate) fn random_values(what: &str, len: usize, rng: &mut SplitMix64) -> Result<Vec<f32>> {
    let mut v = Vec::new();
    if v.try_reserve_exact(len).is_err() {
        bail!(
            "the bench's {what} of {len} floats ({} MiB) does not fit in memory, expected a \
             smaller shape",
            len.saturating_mul(4) >> 20
        );
    }
    v.resize(len, 0.0);
    rng.fill_uniform(&mut v, 1.0);
    Ok(v)
}

/// Times one case: one warm-up run, then runs until `budget` has passed (at least `min_runs`),
/// and reports the median. Workspaces and weights are made once, outside the timing.
pub fn run_case(
    case: BenchCase,
    mode: BenchMode,
    threads: usize,
    budget: Duration,
    min_runs: usize,
) -> Result<BenchResult> {
    let mut prepared = Prepared::new(case, mode)?;
    let median = median_secs(threads, budget, min_runs, || prepared.run())?;
    Ok(BenchResult {
        case,
        mode,
        threads,
        isa: prepared.weights.isa(),
        cpu: cpu_name(),
        ms: median * 1e3,
        gflops: prepared.flops() / median / 1e9,
    })
}

/// Seconds of the median run of `f` on a pool of `threads`: one warm-up run, then runs until
/// `budget` has passed (at least `min_runs`).
pub fn median_secs(
    threads: usize,
    budget: Duration,
    min_runs: usize,
    mut f: impl FnMut() -> Result<()> + Send,
) -> Result<f64> {
    let pool = thread_pool(threads)?;
    let mut once = || -> Result<Duration> {
        let start = Instant::now();
        f()?;
        Ok(start.elapsed())
    };
    let mut times = pool.install(|| -> Result<Vec<Duration>> {
        once()?;
        let start = Instant::now();
        let mut times = Vec::new();
        while times.len() < min_runs.max(1) || start.elapsed() < budget {
            times.push(once()?);
        }
        Ok(times)
    })?;
    times.sort();
    Ok(times[times.len() / 2].as_secs_f64())
}

/// The line above a bench table: `# CPU (ISA kernels)`.
pub fn table_title(cpu: &str, isa: recur_kernels::Isa) -> String {
    format!("# {cpu} ({} kernels)", isa.name())
}

/// A cell as `--cell` names it (`rnn`, `lstm`, `gru`): the bench's tables and JSON lines.
pub fn cell_label(cell: CellKind) -> &'static str {
    match cell {
        CellKind::RnnTanh | CellKind::RnnRelu => "rnn",
        CellKind::Lstm => "lstm",
        CellKind::Gru => "gru",
    }
}

/// The CPU's name as the OS gives it (`model name` in /proc/cpuinfo on Linux), or "unknown CPU";
/// read once.
pub fn cpu_name() -> &'static str {
    static NAME: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    NAME.get_or_init(|| {
        std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|info| {
                info.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split_once(':'))
                    .map(|(_, name)| name.trim().to_string())
            })
            .filter(|name| !name.is_empty())
            .unwrap_or_else(|| "unknown CPU".to_string())
    })
}
